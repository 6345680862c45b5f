"""Overfit: the real networks trained on a few rendered views of a test city must fit them: the NLL of the true
pose falls far below the uniform level and the argmax lands near the true position on those views."""

from __future__ import annotations

import math

import pytest
import torch

from maploc.config import apply_overrides
from maploc_bev_osm.matching import expectation_pose
from maploc_bev_osm.method import BEVOSMConfig, BEVOSMMethod

TINY = ["model.cell_m=2.0", "model.bev_depth_m=12.0", "search.crop_m=32.0", "search.max_offset_m=6.0",
        "search.num_yaws_train=8", "model.unet_dim=16", "model.bev_net_dim=16"]  # fmt: skip


@pytest.mark.slow
def test_overfits_a_few_rendered_views(tmp_path, city_osm, monkeypatch):
    from maploc_simcity.command import render_command
    from maploc_simcity.dataset import SimCity

    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    out = render_command(str(city_osm), 8, ["day"], tmp_path / "r", width=64, height=48, layouts=("traversals",),
                         progress=False)  # fmt: skip
    data = SimCity(out, "train", image_height=48)
    samples = [data[i] for i in range(len(data))]
    torch.manual_seed(0)
    method = BEVOSMMethod(apply_overrides(BEVOSMConfig(), TINY))
    model = method.configure_model()
    from maploc_bev_osm.data import raster_of

    method.raster = raster_of(data, 2.0)
    opt = torch.optim.Adam(model.parameters(), 5e-3)
    size = method.crop_cells
    uniform = math.log(8 * size * size)
    losses = []
    for step in range(120):
        batch = method.collate(samples)
        out = method.training_step(model, batch, step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    model.eval()
    errors = []
    with torch.no_grad():
        for _ in range(3):
            batch = method.collate(samples)
            vol = model(batch["image"], batch["K"], batch["raster"], 8)["log_volume"]
            _, arg = expectation_pose(vol, 0)
            errors += ((arg[:, 1:] - batch["gt_cell"][:, 1:]).float().norm(dim=1) * 2.0).tolist()
    late = sum(losses[-10:]) / 10
    assert late < uniform - 3, (uniform, losses[:5], losses[-10:])
    assert sorted(errors)[len(errors) // 2] <= 2.0, (errors, losses[-10:])  # median within one cell

"""Overfit: the real networks trained on a few rendered views of a test city must fit them: the NLL of the true
pose falls far below the uniform level, the argmax lands on the right street (cross-track error within one cell)
and near the true cell far more often than chance.

Along a street of uniform facades the position is not identifiable from one view (the view barely changes
when the camera moves along the street), so the argmax may land a few cells ahead or behind: that is the
ambiguity of the scene, not a fault of the model, and the test does not ask for it to vanish. (Asking for the
median total error within one cell failed on CI for one trajectory: its errors were all along the street.)"""

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
@pytest.mark.egl
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
    cell = 2.0
    yaw = torch.tensor([s.pose2.yaw for s in samples], dtype=torch.float32)  # CCW from map x (east)
    errors, cross_track, yaw_hit = [], [], []
    with torch.no_grad():
        for _ in range(5):  # five draws of the crop offsets
            batch = method.collate(samples)
            vol = model(batch["image"], batch["K"], batch["raster"], 8)["log_volume"]
            _, arg = expectation_pose(vol, 0)
            d_rc = (arg[:, 1:] - batch["gt_cell"][:, 1:]).float() * cell
            dx, dy = d_rc[:, 1], -d_rc[:, 0]  # rows grow southwards
            errors += d_rc.norm(dim=1).tolist()
            yaw_hit += (arg[:, 0] == batch["gt_cell"][:, 0]).tolist()
            cross_track += (-torch.sin(yaw) * dx + torch.cos(yaw) * dy).abs().tolist()
    late = sum(losses[-10:]) / 10
    # measured: 2.2-2.5 after 120 steps over seeds 0-5 here (about 2.5 on CI); 4.6-5.3 after 10 steps
    assert late < uniform - 4, (uniform, losses[:5], losses[-10:])
    assert sum(yaw_hit) >= 0.9 * len(yaw_hit), yaw_hit  # the right one of 8 yaw bins
    # on the right street: 90 % of cross-track errors within one cell
    assert sorted(cross_track)[int(0.9 * len(cross_track))] <= cell, (cross_track, errors)
    # near the true cell (within one cell) far more often than a uniform draw over the offsets would be
    max_cells = 3  # search.max_offset_m / cell_m
    offsets = [(r, c) for r in range(-max_cells, max_cells + 1) for c in range(-max_cells, max_cells + 1)]
    chance = sum(r * r + c * c <= 1 for r, c in offsets) / len(offsets)  # 5 / 49
    hit = sum(e <= cell for e in errors) / len(errors)
    assert hit >= 3 * chance, (hit, chance, errors)  # measured 0.55-0.75 over seeds 0-5 here

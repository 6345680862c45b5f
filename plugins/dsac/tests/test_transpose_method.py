"""The ``transpose`` method: conformance (with the baseline reloaded under ``maploc eval
--checkpoint``), the loss switch, and a shortened run on the real 7-Scenes stairs sample.

Until the synthesizer is available, :func:`standin_views` writes a DSAC*-layout folder of the real
mapping frames themselves (tests only): the pipeline is exercised, not the renders' value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maploc.engine import EngineConfig
from maploc.engine.runner import RunSpec, execute
from maploc.testing.conformance import check_method
from maploc_dsac.transpose.config import TransPoseConfig
from maploc_dsac.transpose.method import TransPoseMethod, other_exclusion


def standin_views(map_data, options, cache_dir: Path) -> Path:
    """A stand-in for ``build_synthetic_views``: the mapping frames (real) in the DSAC* layout."""
    root = Path(cache_dir) / "standin"
    for sub in ("rgb", "calibration", "poses", "depth"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(len(map_data)):
        s = map_data[i]
        rgb = (s.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cv2.imwrite(str(root / "train" / "rgb" / f"view-{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        np.savetxt(root / "train" / "calibration" / f"view-{i:04d}.txt", s.camera.K.numpy())
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = s.T_cam2world.R.numpy(), s.T_cam2world.t.numpy()
        np.savetxt(root / "train" / "poses" / f"view-{i:04d}.txt", T)
        depth = (s.depth.numpy() * 1000).round().clip(0, 65535).astype(np.uint16)
        cv2.imwrite(str(root / "train" / "depth" / f"view-{i:04d}.png"), depth)
    return root


def test_transpose_conformance_and_baseline_reload(tmp_path):
    """The conformance suite (which evaluates the checkpoint again and asserts the same metrics, rows
    of the variants included), plus: the baseline and the other uncertainty setting are rows of the
    core's table, and `maploc eval --checkpoint` reloads the baseline from RUN/baseline/."""
    metrics = check_method("transpose", tmp_path)
    run = tmp_path / "conformance-transpose"
    assert metrics["num_queries"] == 4
    for row in ("dsac_real_only", "uncertainty_mask_25pct", "coverage"):
        assert metrics[f"{row}:num_queries"] == 4, row
    assert not any(k.startswith("sift_pnp:") for k in metrics)  # no classical baseline in TransPose's default
    manifest = json.loads((run / "predictions" / "manifest.json").read_text())
    assert manifest["variants"]["dsac_real_only"]["baseline"] is True
    assert manifest["variants"]["uncertainty_mask_25pct"]["baseline"] is False
    assert (run / "baseline" / "checkpoints" / "last.ckpt").is_file()
    assert (run / "baseline" / "training_stages.json").is_file()
    for name in ("calibration.json", "calibration.png", "transpose_comparison.png", "uncertainty_map.png"):
        assert (run / name).is_file(), name
    report = (run / "report.txt").read_text()
    assert "dsac_real_only (baseline)" in report and "uncertainty_mask_25pct" in report
    # the checkpoint's evaluation (check_method's) had the baseline back: its row is there
    again = (tmp_path / "conformance-transpose-eval" / "report.txt").read_text()
    assert "dsac_real_only (baseline)" in again


def test_other_uncertainty_setting():
    assert other_exclusion(0.0)[:2] == ("uncertainty_mask_25pct", 0.25)
    assert other_exclusion(0.25)[:2] == ("no_uncertainty_mask", 0.0)


def test_init_loss_switch():
    g = torch.Generator().manual_seed(0)
    pred, gt = torch.randn(1, 3, 2, 2, generator=g), torch.randn(1, 3, 2, 2, generator=g)
    valid, s = torch.ones(1, 2, 2, dtype=torch.bool), torch.zeros(1, 1, 2, 2)
    sq = ((pred - gt) ** 2).sum(1).mean()
    kfnet = TransPoseMethod(TransPoseConfig())
    assert float(kfnet.init_loss(pred, gt, valid, s)) == pytest.approx(0.5 * float(sq), rel=1e-6)
    import attrs

    from maploc_dsac.transpose.config import UncertaintyConfig

    laplace = TransPoseMethod(attrs.evolve(TransPoseConfig(), uncertainty=UncertaintyConfig(loss="laplace")))
    dist = torch.linalg.vector_norm(pred - gt, dim=1).mean()
    assert float(laplace.init_loss(pred, gt, valid, s)) == pytest.approx(float(dist), rel=1e-6)
    assert float(kfnet.init_loss(pred, gt, valid, None)) == pytest.approx(float(dist), rel=1e-6)


def test_baseline_config_is_dsac_without_the_head():
    c = TransPoseConfig()
    b = c.baseline_config()
    assert not b.network.uncertainty and c.network.uncertainty
    assert not b.classical.enabled  # TransPose reports the classical baseline itself when enabled
    assert b.init == c.init and b.stages == c.stages and b.train == c.train and b.augment == c.augment


def _short_stairs_run(root, out):
    """A shortened ``maploc run --method transpose`` on the stairs sample at ``root`` (tiny budget)."""
    return execute(
        RunSpec(method="transpose", dataset="7scenes", data_root=root, out=out,
                overrides=("init.steps=6", "ransac.num_hypotheses=16", "train.batch_size=2", "data.image_height=60",
                           "synthetic.num_views=6"),
                engine=EngineConfig(progress=False)),
        say=lambda s: None,
    )


@pytest.mark.data
@pytest.mark.slow
def test_transpose_on_stairs(tmp_path, monkeypatch):
    """A shortened ``maploc run --method transpose`` on the real stairs sample (tiny budget)."""
    from maploc.data.fetch import fetch

    root = fetch("7scenes-stairs")
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(TransPoseMethod, "synthesize", staticmethod(standin_views))
    result = _short_stairs_run(root, tmp_path / "run")
    assert result.fit is not None and result.fit.steps == 6
    assert result.metrics["num_queries"] == 6
    run = tmp_path / "run"
    for row in ("dsac_real_only", "uncertainty_mask_25pct", "coverage"):
        assert result.metrics[f"{row}:num_queries"] == 6, row
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["cells"] > 100 and -1.0 <= cal["spearman"] <= 1.0
    assert (tmp_path / "cache" / "transpose-views" / "standin" / "train" / "rgb").is_dir()
    stages = json.loads((run / "training_stages.json").read_text())
    assert stages["stages"]["init"]["steps"] == 6 and math.isfinite(stages["stages"]["init"]["loss_last"])
    assert "rendered views" in result.report and "dsac_real_only (baseline)" in result.report


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.open3d
def test_transpose_on_stairs_with_renders(tmp_path, monkeypatch):
    """The same shortened run with the real synthesizer (TSDF fusion of the stairs frames, 6 renders)."""
    from maploc.data.fetch import fetch

    root = fetch("7scenes-stairs")
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    result = _short_stairs_run(root, tmp_path / "run")
    assert result.metrics["num_queries"] == 6
    views = list((tmp_path / "cache" / "transpose-views").glob("views-*/train/rgb/*"))
    assert 1 <= len(views) <= 6
    assert "rendered views" in result.report and "real (7-Scenes photographs" in result.report
    assert (tmp_path / "run" / "transpose_comparison.png").is_file()

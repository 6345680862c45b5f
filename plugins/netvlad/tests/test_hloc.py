"""hloc's pieces: depth lifting + PoseLib PnP recover an exact pose; the pose solver composed by name; failures are
counted."""

import numpy as np
import torch

from maploc.data.synthetic import SyntheticRoom
from maploc_netvlad.hloc import HlocConfig, HlocMethod, lift_keypoints


def test_lifted_keypoints_give_back_the_pose():
    import poselib

    s = SyntheticRoom(None, "query")[3]
    h, w = s.depth.shape
    rng = np.random.default_rng(0)
    kp = np.round(np.c_[rng.uniform(0, w - 1, 100), rng.uniform(0, h - 1, 100)])
    X = lift_keypoints(kp, s.depth, s.camera.K, s.T_cam2world)
    assert np.isfinite(X).all()
    K = s.camera.K.double()
    camera = {"model": "PINHOLE", "width": w, "height": h,
              "params": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]}
    pose, info = poselib.estimate_absolute_pose(kp, X, camera, {"max_reproj_error": 1.0}, {})
    R_cam2world = np.asarray(pose.R).T
    t_cam2world = -R_cam2world @ np.asarray(pose.t)
    assert info["num_inliers"] == 100
    np.testing.assert_allclose(R_cam2world, s.T_cam2world.R.numpy(), atol=1e-5)
    np.testing.assert_allclose(t_cam2world, s.T_cam2world.t.numpy(), atol=1e-5)


def test_lift_marks_invalid_depth_and_outside_points():
    depth = torch.zeros(4, 5)
    depth[1, 2] = 2.0
    K = torch.tensor([[10.0, 0, 2], [0, 10.0, 1.5], [0, 0, 1]])
    from maploc.types import Pose

    X = lift_keypoints(np.array([[2.0, 1.0], [0.0, 0.0], [9.0, 9.0]]), depth, K, Pose.identity())
    np.testing.assert_allclose(X[0], [0.0, -0.1, 2.0], atol=1e-6)
    assert np.isnan(X[1]).all() and np.isnan(X[2]).all()


def test_textureless_queries_fail_without_raising():
    method = HlocMethod(HlocConfig())
    room = SyntheticRoom(None, "map")
    method.build_map(room)
    q = SyntheticRoom(None, "query")[0]
    blank = type(q)(image=torch.full_like(q.image, 0.5), camera=q.camera, T_cam2world=q.T_cam2world, name="blank")
    out = method.localize([blank])
    assert len(out) == 1 and not out[0].success
    assert method.stats["failed_few_matches"] == 1
    assert out[0].extras["reason"] == "too few 2D-3D correspondences"
    assert len(out[0].retrieval) == method.config.top_k  # the retrieved map images, even for a failed query


def _lifted_correspondences():
    from maploc.types import Correspondences

    s = SyntheticRoom(None, "query")[3]
    h, w = s.depth.shape
    rng = np.random.default_rng(0)
    kp = np.round(np.c_[rng.uniform(0, w - 1, 100), rng.uniform(0, h - 1, 100)])
    X = lift_keypoints(kp, s.depth, s.camera.K, s.T_cam2world)
    return s, Correspondences(points2d=torch.from_numpy(kp), points3d=torch.from_numpy(X), camera=s.camera)


def test_default_solver_by_name_recovers_the_pose():
    from maploc_netvlad.hloc import DEFAULT_SOLVER, make_solver

    s, c = _lifted_correspondences()
    solver = make_solver(DEFAULT_SOLVER, max_error_px=1.0, max_iterations=1000, min_inliers=12, seed=0)
    est = solver.solve([c])[0]
    assert est.success and est.num_inliers == 100
    np.testing.assert_allclose(est.T_cam2world.t.numpy(), s.T_cam2world.t.numpy(), atol=1e-4)
    # degenerate input fails, never raises
    from maploc.types import Correspondences

    few = Correspondences(points2d=c.points2d[:3], points3d=c.points3d[:3], camera=c.camera)
    assert not solver.solve([few])[0].success


def test_solver_composed_by_name_from_another_plugin():
    import pytest

    pytest.importorskip("maploc_dsac")
    from maploc_netvlad.hloc import make_solver

    s, c = _lifted_correspondences()
    solver = make_solver("ransac-pnp", max_error_px=2.0, max_iterations=64, min_inliers=12, seed=0)
    assert type(solver).__name__ == "RansacPnPSolver" and solver.min_inliers == 12
    assert "inlier_threshold=2.0" in repr(solver)  # hloc's ransac_max_error_px reached it
    est = solver.solve([c])[0]
    assert est.success
    np.testing.assert_allclose(est.T_cam2world.t.numpy(), s.T_cam2world.t.numpy(), atol=1e-2)


def test_unknown_solver_and_retrieval_mismatch_are_one_line_errors():
    import pytest

    from maploc.errors import ConfigError, PluginError

    method = HlocMethod(HlocConfig(solver="no-such-solver"))
    with pytest.raises(PluginError, match="unknown solver 'no-such-solver'; installed solvers:") as e:
        method.build_map(SyntheticRoom(None, "map"))
    assert len(str(e.value).splitlines()) == 1
    with pytest.raises(ConfigError, match="needs retrieval_checkpoint"):
        HlocMethod(HlocConfig(retrieval="netvlad")).build_map(SyntheticRoom(None, "map"))

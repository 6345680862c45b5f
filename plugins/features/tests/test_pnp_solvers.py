"""The classical PnP pose solvers of maploc-features (``opencv-pnp``, ``poselib-pnp``, ``pycolmap-pnp``) and,
where maploc-dsac is installed, DSAC*'s ``ransac-pnp``: the same keywords, the same answer on noise-free
matches, failed estimates (never an exception) on degenerate input, and a one-line error naming the install
command when a library is missing. The ``ransac-pnp`` cases skip with that reason where maploc-dsac is absent
(maploc-features does not depend on it)."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from maploc.errors import ConfigError, PluginError
from maploc.geometry.errors import pose_error
from maploc.plugins import load_component
from maploc.types import Camera, Correspondences, Pose

FEATURE_SOLVERS = ("opencv-pnp", "poselib-pnp", "pycolmap-pnp")
PNP_SOLVERS = ("ransac-pnp", *FEATURE_SOLVERS)
COMMON = {"inlier_threshold_px": 4.0, "max_iterations": 256, "seed": 3}


def _need_dsac() -> None:
    pytest.importorskip("maploc_dsac", reason="ransac-pnp is maploc-dsac's (pip install './plugins/dsac')")


def _make(name: str, **kwargs):
    if name.startswith("ransac-"):
        _need_dsac()
    return load_component("solvers", name)(**kwargs)


def _random_view(seed: int, n: int = 200, outliers: float = 0.0, noise_px: float = 0.0):
    """A random camera (640x480, f = 500, slight skew-free principal point offset) and ``n`` matches
    of world points 2-6 m in front of it; a fraction ``outliers`` of the world points moved by ~1 m."""
    g = torch.Generator().manual_seed(seed)
    camera = Camera.from_focal(500.0, 640, 480, cx=331.0, cy=228.0, fy=505.0)
    T = Pose.from_axis_angle((torch.rand(3, generator=g, dtype=torch.float64) - 0.5) * 2.0,
                             torch.randn(3, generator=g, dtype=torch.float64) * 3.0)
    uv = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([639.0, 479.0], dtype=torch.float64)
    depth = 2 + 4 * torch.rand(n, generator=g, dtype=torch.float64)
    K = camera.K.double()
    pc = torch.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * depth, (uv[:, 1] - K[1, 2]) / K[1, 1] * depth, depth], -1)
    pw = T.transform(pc)
    k = int(outliers * n)
    pw[:k] += torch.randn(k, 3, generator=g, dtype=torch.float64)
    uv = uv + noise_px * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return camera, T, Correspondences(points2d=uv.float(), points3d=pw.float(), camera=camera)


@pytest.mark.parametrize("name", PNP_SOLVERS)
def test_noise_free_matches_give_the_true_pose(name):
    solver = _make(name, **COMMON)
    views = [_random_view(seed) for seed in range(3)]
    estimates = solver.solve([c for _, _, c in views])
    assert len(estimates) == 3
    for (_, T, c), e in zip(views, estimates):
        assert e.success and e.num_inliers >= 0.95 * len(c), (name, e)
        r, t = pose_error(e.T_cam2world.R.double(), e.T_cam2world.t.double(), T.R, T.t)
        assert math.degrees(float(r)) < 0.1 and float(t) < 1e-3, (name, math.degrees(float(r)), float(t))


@pytest.mark.parametrize("names", [FEATURE_SOLVERS, PNP_SOLVERS], ids=["features", "with-ransac-pnp"])
def test_the_solvers_agree(names):
    """The same noise-free matches (a random camera, 30 % outliers): every pair of solvers within
    1 mm and 0.1 degrees."""
    solvers = {name: _make(name, **COMMON) for name in names}
    for seed in (10, 11):
        _, T, c = _random_view(seed, n=300, outliers=0.3)
        poses = {name: s.solve([c])[0] for name, s in solvers.items()}
        for name, e in poses.items():
            assert e.success, name
        names = list(poses)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                pa, pb = poses[a].T_cam2world, poses[b].T_cam2world
                r, t = pose_error(pa.R.double(), pa.t.double(), pb.R.double(), pb.t.double())
                assert math.degrees(float(r)) < 0.1 and float(t) < 1e-3, (a, b, math.degrees(float(r)), float(t))


@pytest.mark.parametrize("name", PNP_SOLVERS)
def test_degenerate_input_gives_failed_estimates(name):
    solver = _make(name, **COMMON)
    camera, _, c = _random_view(20, n=50)
    three = Correspondences(points2d=c.points2d[:3], points3d=c.points3d[:3], camera=camera)
    empty = Correspondences(points2d=torch.zeros(0, 2), points3d=torch.zeros(0, 3), camera=camera)
    nan = Correspondences(points2d=c.points2d, points3d=torch.full_like(c.points3d, float("nan")), camera=camera)
    masked = Correspondences(points2d=c.points2d, points3d=c.points3d, camera=camera,
                             weights=torch.tensor([1.0] * 3 + [0.0] * 47))
    same = Correspondences(points2d=c.points2d[:1].repeat(20, 1), points3d=c.points3d[:1].repeat(20, 1), camera=camera)
    estimates = solver.solve([three, empty, nan, masked, same, c])
    assert [e.success for e in estimates] == [False] * 5 + [True], name
    for e in estimates[:5]:
        assert e.T_cam2world is None and e.num_inliers is not None and e.num_inliers < 4  # a column, not an extra
        assert e.extras["reason"]
    assert solver.solve([]) == []


def test_common_keywords():
    cv = load_component("solvers", "opencv-pnp")(inlier_threshold_px=4.0, max_iterations=32, seed=1)
    assert (cv.inlier_threshold_px, cv.max_iterations, cv.seed) == (4.0, 32, 1)
    for name in FEATURE_SOLVERS:
        with pytest.raises(ConfigError, match="inlier_threshold_px"):
            load_component("solvers", name)(inlier_threshold_px=0.0)
        with pytest.raises(ConfigError, match="max_iterations"):
            load_component("solvers", name)(max_iterations=0)


def test_ransac_pnp_keywords_and_aliases():
    _need_dsac()
    pnp = load_component("solvers", "ransac-pnp")(inlier_threshold_px=4.0, max_iterations=32, seed=1)
    assert pnp.ransac.inlier_threshold == 4.0 and pnp.ransac.num_hypotheses == 32 and pnp.seed == 1
    old = load_component("solvers", "ransac-pnp")(inlier_threshold=4.0, num_hypotheses=32)  # the old keywords
    assert old.ransac.inlier_threshold == 4.0 and old.ransac.num_hypotheses == 32
    with pytest.raises(ConfigError, match="not both"):
        load_component("solvers", "ransac-pnp")(inlier_threshold=4.0, inlier_threshold_px=5.0)
    kabsch = load_component("solvers", "ransac-kabsch")(max_iterations=16)
    assert kabsch.ransac.num_hypotheses == 16


@pytest.mark.parametrize("name", PNP_SOLVERS)
def test_seeds_are_reproducible(name):
    _, _, c = _random_view(30, n=200, outliers=0.6, noise_px=1.0)
    a = _make(name, inlier_threshold_px=3.0, max_iterations=64, seed=5).solve([c])[0]
    b = _make(name, inlier_threshold_px=3.0, max_iterations=64, seed=5).solve([c])[0]
    assert a.success and b.success and torch.equal(a.T_cam2world.R, b.T_cam2world.R), name


@pytest.mark.parametrize("module,name", [("poselib", "poselib-pnp"), ("pycolmap", "pycolmap-pnp"),
                                         ("cv2", "opencv-pnp")])
def test_a_missing_library_is_one_line_naming_the_extra(module, name, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(PluginError) as info:
        load_component("solvers", name)()
    message = str(info.value)
    assert "\n" not in message and "pip install './plugins/features'" in message and module in message


def test_maploc_list_names_each_solver_once(capsys):
    """The three classical solvers are registered by maploc-features only (no second registration left
    in maploc-dsac, which would be refused as a duplicate)."""
    from maploc.cli import main
    from maploc.plugins import list_entry_points

    solvers = [(e.name, e.distribution) for e in list_entry_points("solvers")["solvers"]]
    for name in FEATURE_SOLVERS:
        assert solvers.count((name, "maploc-features")) == 1 and [n for n, _ in solvers].count(name) == 1, solvers
    assert main(["list", "--kind", "solvers"]) == 0
    out = capsys.readouterr().out
    for name in FEATURE_SOLVERS:
        assert name in out, out

"""The TransPose novel-view sampler: bounds on rotation and translation, reproducibility, coverage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation, Slerp

from maploc.errors import ConfigError
from maploc.testing import strategies as mst
from maploc.types import Pose
from maploc_dsac.transpose.views import nearest_rotation, rotation_angle_deg, sample_novel_poses, slerp

# float32 poses: the bounds hold up to float32 rounding.
ANGLE_TOL_DEG = 1e-3
DIST_TOL_M = 1e-5


def _segment_distance(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    denom = float(ab @ ab)
    s = 0.0 if denom == 0 else float(np.clip((c - a) @ ab / denom, 0.0, 1.0))
    return float(np.linalg.norm(c - (a + s * ab)))


@st.composite
def mapping_poses(draw: st.DrawFn) -> list[Pose]:
    k = draw(st.integers(1, 4))
    out = []
    for _ in range(k):
        R, t = draw(mst.poses())
        out.append(Pose(R=R.float(), t=(t / 5).float()))
    return out


@settings(max_examples=40, deadline=None)
@given(
    T_map=mapping_poses(),
    n=st.integers(1, 12),
    max_angle=st.floats(0.0, 120.0),
    max_translation=st.floats(0.0, 1.0),
    pivot=st.sampled_from([0.0, 0.5, 3.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_sampled_poses_respect_the_bounds(T_map, n, max_angle, max_translation, pivot, seed):
    poses = sample_novel_poses(T_map, n, max_angle_deg=max_angle, max_translation_m=max_translation,
                               seed=seed, pivot_distance_m=pivot)
    assert len(poses) == n
    R_map = np.stack([nearest_rotation(T.R.double().numpy()) for T in T_map])
    c_map = [T.t.double().numpy() for T in T_map]
    for T in poses:
        R = T.R.double().numpy()
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)
        assert np.linalg.det(R) > 0
        assert rotation_angle_deg(R[None], R_map).min() <= max_angle + ANGLE_TOL_DEG
        # within max_translation of SOME segment between two mapping centres (it was sampled on one)
        c = T.t.double().numpy()
        d = min(_segment_distance(c, a, b) for a in c_map for b in c_map)
        assert d <= max_translation + DIST_TOL_M


def test_seeds_reproduce_and_prefixes_are_stable():
    T_map = [Pose(R=torch.eye(3), t=torch.zeros(3)), Pose.from_axis_angle(torch.tensor([0.0, 1.0, 0.0]), torch.ones(3))]
    a = sample_novel_poses(T_map, 10, seed=3)
    b = sample_novel_poses(T_map, 10, seed=3)
    c = sample_novel_poses(T_map, 4, seed=3)
    d = sample_novel_poses(T_map, 10, seed=4)
    for x, y in zip(a, b):
        assert torch.equal(x.R, y.R) and torch.equal(x.t, y.t)
    for x, y in zip(a, c):
        assert torch.equal(x.R, y.R) and torch.equal(x.t, y.t)
    assert not torch.equal(a[0].t, d[0].t)


def test_the_range_is_used_around_and_between_frames():
    """Not a degenerate sampler: with two frames 1 m and 90 degrees apart, poses reach the angle
    bound, lie between the frames (not only near them) and vary in every axis."""
    T_map = [Pose(R=torch.eye(3), t=torch.zeros(3)),
             Pose.from_axis_angle(torch.tensor([0.0, np.pi / 2, 0.0]), torch.tensor([1.0, 0.0, 0.0]))]
    poses = sample_novel_poses(T_map, 400, max_angle_deg=60.0, max_translation_m=0.2, seed=0)
    R_map = np.stack([T.R.double().numpy() for T in T_map])
    angles = np.array([rotation_angle_deg(T.R.double().numpy()[None], R_map).min() for T in poses])
    centres = np.stack([T.t.numpy() for T in poses])
    assert angles.max() > 50.0 and np.median(angles) > 15.0
    far_from_both = np.minimum(np.linalg.norm(centres, axis=1), np.linalg.norm(centres - [1, 0, 0], axis=1)) > 0.3
    assert far_from_both.mean() > 0.1  # interpolated between the frames
    assert (centres.std(axis=0) > 0.05).all()


def _off_axis_deg(T: Pose, point: np.ndarray) -> float:
    p_cam = T.R.double().numpy().T @ (point - T.t.double().numpy())
    return float(np.degrees(np.arctan2(np.linalg.norm(p_cam[:2]), p_cam[2])))


def test_orbit_keeps_looking_at_the_pivot():
    """Orbiting about a point 2 m ahead keeps it near the optical axis; turning in place does not."""
    T_map = [Pose(R=torch.eye(3), t=torch.zeros(3))]
    pivot = np.array([0.0, 0.0, 2.0])
    kw = dict(max_angle_deg=40.0, max_translation_m=1.5, seed=1)
    orbit = [_off_axis_deg(T, pivot) for T in sample_novel_poses(T_map, 200, pivot_distance_m=2.0, **kw)]
    in_place = [_off_axis_deg(T, pivot) for T in sample_novel_poses(T_map, 200, pivot_distance_m=0.0, **kw)]
    assert np.median(orbit) < 0.6 * np.median(in_place)
    assert np.percentile(orbit, 90) < 90.0  # the pivot stays in front


def test_slerp_matches_scipy():
    R = Rotation.random(2, random_state=5).as_matrix()
    oracle = Slerp([0.0, 1.0], Rotation.from_matrix(R))
    for s in (0.0, 0.25, 0.5, 1.0):
        np.testing.assert_allclose(slerp(R[0], R[1], s), oracle([s]).as_matrix()[0], atol=1e-9)


@pytest.mark.parametrize("kwargs", [dict(n=-1), dict(max_angle_deg=200.0), dict(max_translation_m=-0.1),
                                    dict(pivot_distance_m=-1.0)])
def test_bad_arguments_raise_config_errors(kwargs):
    args = dict(n=3) | kwargs
    with pytest.raises(ConfigError):
        sample_novel_poses([Pose(R=torch.eye(3), t=torch.zeros(3))], **args)
    with pytest.raises(ConfigError):
        sample_novel_poses([], 1)


@settings(max_examples=50, deadline=None)
@given(R_a=mst.rotations(), R_b=mst.rotations())
def test_rotation_angle_matches_scipy(R_a, R_b):
    a, b = R_a.numpy(), R_b.numpy()
    expected = np.degrees((Rotation.from_matrix(a).inv() * Rotation.from_matrix(b)).magnitude())
    assert abs(rotation_angle_deg(a, b) - expected) < 1e-6

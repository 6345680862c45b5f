"""Value types: Camera resizing/cropping keeps projections consistent, Pose wraps SE(3) correctly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from maploc.data.collate import collate
from maploc.types import Camera, Pose, Pose2, PoseEstimate, Sample


def _random_pose(seed: int, batch=()) -> Pose:
    rot = Rotation.random(int(np.prod(batch)) if batch else None, random_state=seed)
    R = torch.tensor(rot.as_matrix(), dtype=torch.float64).reshape(*batch, 3, 3)
    t = torch.tensor(np.random.default_rng(seed).normal(size=(*batch, 3)))
    return Pose(R=R, t=t)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_pose_group_laws(seed):
    a, b, c = (_random_pose(seed + i, (4,)) for i in range(3))
    assert ((a @ b) @ c).allclose(a @ (b @ c), atol=1e-9)
    assert (a @ a.inverse()).allclose(Pose.identity((4,), torch.float64), atol=1e-9)
    assert Pose.from_matrix(a.matrix()).allclose(a, atol=0)
    torch.testing.assert_close((a @ b).matrix(), a.matrix() @ b.matrix())
    pts = torch.randn(4, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(a.transform(b.transform(pts)), (a @ b).transform(pts))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_quaternion_matches_scipy(seed):
    pose = _random_pose(seed)
    q = pose.quaternion()
    x, y, z, w = Rotation.from_matrix(pose.R.numpy()).as_quat()
    expected = torch.tensor([w, x, y, z], dtype=torch.float64)
    expected = expected if expected[0] >= 0 else -expected
    torch.testing.assert_close(q, expected, atol=1e-9, rtol=0)
    assert Pose.from_quaternion(q, pose.t).allclose(pose, atol=1e-9)


def test_pose_validation_and_indexing():
    with pytest.raises(ValueError, match="t must have shape"):
        Pose(R=torch.eye(3).expand(2, 3, 3), t=torch.zeros(3))
    p = _random_pose(0, (3,))
    assert len(p) == 3 and p[1].allclose(Pose(R=p.R[1], t=p.t[1]))
    assert Pose.stack([p[0], p[2]]).allclose(p[[0, 2]])
    angle, dist = p.inverse().magnitude()
    torch.testing.assert_close(dist, p.t.norm(dim=-1))


@settings(max_examples=30, deadline=None)
@given(
    st.floats(100, 1000), st.integers(64, 640), st.integers(48, 480), st.floats(0.2, 3.0),
    st.floats(-1, 1), st.floats(-1, 1), st.floats(1, 20),
)
def test_camera_resize_and_crop_keep_projection_consistent(f, w, h, scale, x, y, z):
    cam = Camera.from_focal(f, w, h)
    p = torch.tensor([x, y, z], dtype=torch.float64)
    K = cam.K.double()
    uv = (K @ p)[:2] / z
    small = cam.scale(scale)
    uv_small = (small.K.double() @ p)[:2] / z
    # pixel-centre convention: u' + 0.5 = s (u + 0.5)
    torch.testing.assert_close(uv_small, scale * (uv + 0.5) - 0.5, atol=1e-3, rtol=1e-5)
    crop = cam.crop(10, 7, 20, 20)
    uv_crop = (crop.K.double() @ p)[:2] / z
    torch.testing.assert_close(uv_crop, uv - torch.tensor([10.0, 7.0], dtype=torch.float64), atol=1e-3, rtol=1e-5)
    assert (crop.width, crop.height) == (20, 20)
    resized = cam.resize_to_height(120)
    assert resized.height == 120 and abs(resized.width - w * 120 / h) <= 0.5


def test_sample_validation():
    cam = Camera.from_focal(50, 8, 6)
    with pytest.raises(ValueError, match="camera is 8x6 but image is 7x6"):
        Sample(image=torch.zeros(3, 6, 7), camera=cam, name="x")
    with pytest.raises(ValueError, match="depth must be"):
        Sample(image=torch.zeros(3, 6, 8), camera=cam, depth=torch.zeros(5, 8))


def test_pose2_wraps_and_composes():
    a = Pose2(x=1, y=2, yaw=3 * math.pi)
    assert math.isclose(abs(a.yaw), math.pi)
    b = Pose2(x=0.5, y=-1, yaw=0.3)
    c = a.compose(b).compose(b.inverse())
    assert math.isclose(c.x, a.x, abs_tol=1e-12) and math.isclose(c.y, a.y, abs_tol=1e-12)
    assert PoseEstimate.failed(seconds=0.1).success is False


def test_collate_stacks_and_refuses_mixed_sizes():
    cam = Camera.from_focal(50, 8, 6)
    pose = _random_pose(1)
    s = Sample(image=torch.rand(3, 6, 8), camera=cam, T_cam2world=pose.to(torch.float32), depth=torch.ones(6, 8), name="a")
    batch = collate([s, s])
    assert batch["image"].shape == (2, 3, 6, 8) and batch["R_cam2world"].shape == (2, 3, 3)
    assert batch["depth"].shape == (2, 6, 8) and batch["name"] == ["a", "a"]
    other = Sample(image=torch.rand(3, 12, 16), camera=Camera.from_focal(50, 16, 12), name="b")
    with pytest.raises(ValueError, match="different sizes"):
        collate([s, other])

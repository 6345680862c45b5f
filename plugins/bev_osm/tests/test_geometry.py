"""Gravity rectification and the polar-to-BEV projection (properties, gradcheck, failures)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc.geometry.rotation import axis_angle_to_matrix
from maploc_bev_osm.geometry import RectificationError, gravity_rectify, polar_to_bev, tilt_deg, virtual_rotation
from maploc_bev_osm.synthetic import camera_pose

K = torch.tensor([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])


def _tilted(yaw, pitch_deg, roll_deg):
    R = camera_pose(0.0, 0.0, yaw).R.double()
    pitch = axis_angle_to_matrix(torch.tensor([math.radians(pitch_deg), 0.0, 0.0], dtype=torch.float64))
    roll = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(roll_deg)], dtype=torch.float64))
    return R @ pitch @ roll  # camera-frame rotations: x = pitch, z = roll


@settings(max_examples=25, deadline=None)
@given(yaw=st.floats(-3.1, 3.1), pitch=st.floats(-25, 25), roll=st.floats(-25, 25))
def test_virtual_camera_is_upright_with_same_heading(yaw, pitch, roll):
    R = _tilted(yaw, pitch, roll)
    Rv = virtual_rotation(R)
    assert torch.allclose(Rv.T @ Rv, torch.eye(3, dtype=torch.float64), atol=1e-9)
    assert tilt_deg(Rv) == pytest.approx(0.0, abs=1e-4)
    assert math.atan2(Rv[1, 2], Rv[0, 2]) == pytest.approx(math.atan2(R[1, 2], R[0, 2]), abs=1e-9)
    assert Rv[2, 2].item() == pytest.approx(0.0, abs=1e-12)


def test_rectification_moves_the_horizon():
    # a camera pitched down by 10 deg sees the horizon above the centre; after rectification it is at cy
    R = _tilted(0.3, -10.0, 0.0)
    h, w = 48, 64
    v = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    # image coded by the elevation of each pixel's ray: above horizon 1, below 0
    rays = torch.stack([(torch.arange(w)[None, :].expand(h, w) - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1],
                        torch.ones(h, w)], -1).double() @ R.T
    image = (rays[..., 2] > 0).float()[None].expand(3, h, w).contiguous()
    out, K2, Rv = gravity_rectify(image, K, R.float())
    assert torch.equal(K2, K)
    col = out[0, :, w // 2]
    cy = int(K[1, 2])  # rows above cy - 10 look higher than the tilted camera saw (zeros)
    assert col[cy - 8:cy - 1].min() > 0.9 and col[cy + 2:].max() < 0.1
    assert image[0, cy - 8:cy - 1, w // 2].min() < 0.1  # before rectification those rows were below the horizon
    assert tilt_deg(R) == pytest.approx(10.0, abs=1e-4)


def test_rectification_limit_is_an_error():
    with pytest.raises(RectificationError, match="beyond"):
        gravity_rectify(torch.zeros(3, 8, 8), K, _tilted(0.0, 40.0, 0.0).float(), max_tilt_deg=30.0)
    with pytest.raises(RectificationError):
        virtual_rotation(_tilted(0.0, 90.0, 0.0))


def test_upright_camera_passes_through():
    image = torch.rand(3, 8, 8)
    out, _, _ = gravity_rectify(image, K, camera_pose(1.0, 2.0, 0.7).R)
    assert torch.equal(out, image)


def test_polar_to_bev_places_a_column_on_its_ray():
    # polar feature 1 only in feature column u0, depth bin d0: the BEV lights up along that column's ray at that depth
    b, c, d, wf, stride = 1, 1, 8, 16, 4.0
    polar = torch.zeros(b, c, d, wf, dtype=torch.float64)
    u0, d0 = 12, 5
    polar[0, 0, d0, u0] = 1.0
    Kd = K[None].double()
    bev, valid = polar_to_bev(polar, Kd, stride, half_cells=20, cell_m=0.5, min_depth_m=1.0, max_depth_m=10.0)
    i, j = divmod(int(bev[0, 0].argmax()), 41)
    fwd, right = (20 - i) * 0.5, (j - 20) * 0.5
    depth = 1.0 * 10.0 ** (d0 / (d - 1))
    u_img = (u0 + 0.5) * stride - 0.5
    assert fwd == pytest.approx(depth, abs=0.6)
    assert right / fwd == pytest.approx((u_img - K[0, 2].item()) / K[0, 0].item(), abs=0.05)
    assert not valid[0, 25:].any()  # behind the camera


def test_gradcheck_projection():
    g = torch.Generator().manual_seed(0)
    polar = torch.randn(1, 2, 4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    Kd = torch.tensor([[[3.0, 0, 11.5], [0, 3.0, 8.0], [0, 0, 1]]], dtype=torch.float64)

    def f(p):
        return polar_to_bev(p, Kd, 4.0, half_cells=3, cell_m=1.0, min_depth_m=1.0, max_depth_m=4.0)[0]

    assert torch.autograd.gradcheck(f, (polar,), eps=1e-6, atol=1e-5)

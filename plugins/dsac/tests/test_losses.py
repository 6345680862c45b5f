"""DSAC*'s objectives and the cell geometry, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from maploc.geometry.rotation import axis_angle_to_matrix
from maploc_dsac.losses import (
    camera_coordinates_from_depth,
    cell_centres,
    cells_inside,
    euclidean_loss,
    pose_loss,
    reprojection_loss,
    rotation_error_deg,
    scene_coordinates_from_depth,
)


def _scene(B: int = 2, H: int = 48, W: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[50.0, 0.0, 31.5], [0.0, 52.0, 23.5], [0.0, 0.0, 1.0]]).expand(B, 3, 3).clone()
    R = axis_angle_to_matrix(torch.randn(B, 3, generator=g) * 0.5)
    t = torch.randn(B, 3, generator=g)
    depth = 1.0 + 2.0 * torch.rand(B, H, W, generator=g)
    depth[:, :8, :8] = 0.0  # the first cell has no depth
    return K, R, t, depth


def _project(points_world: torch.Tensor, K, R, t):
    """(B, 3, h, w) world -> (B, h, w, 2) pixels and (B, h, w) depth."""
    pc = torch.einsum("bji,bhwj->bhwi", R, points_world.permute(0, 2, 3, 1) - t[:, None, None])
    uv = torch.einsum("bij,bhwj->bhwi", K, pc)
    return uv[..., :2] / uv[..., 2:], pc[..., 2]


def test_cell_centres_follow_dsacstar_pixel_grid():
    c = cell_centres(3, 4)
    assert c.shape == (3, 4, 2)
    assert c[0, 0].tolist() == [4.0, 4.0]
    assert c[1, 2].tolist() == [20.0, 12.0]  # (u, v) = (8 j + 4, 8 i + 4)
    assert cells_inside(3, 4, height=24, width=32).all()


def test_cells_inside_an_image_whose_size_is_not_a_multiple_of_8():
    inside = cells_inside(3, 4, height=20, width=27)
    # centres u = 4, 12, 20, 28 (28 > 26: outside); v = 4, 12, 20 (20 > 19: outside)
    assert inside.tolist() == [[True, True, True, False], [True, True, True, False], [False] * 4]


def test_ground_truth_coordinates_project_to_their_cells():
    K, R, t, depth = _scene()
    coords, valid = scene_coordinates_from_depth(depth, K, R, t, 6, 8)
    assert coords.shape == (2, 3, 6, 8) and valid.shape == (2, 6, 8)
    assert not valid[:, 0, 0].any() and valid.sum() == 2 * 48 - 2
    uv, z = _project(coords, K, R, t)
    centres = cell_centres(6, 8).expand(2, 6, 8, 2)
    torch.testing.assert_close(uv[valid], centres[valid], atol=1e-3, rtol=0)
    torch.testing.assert_close(z[valid], depth[:, 4::8, 4::8][valid], atol=1e-5, rtol=0)
    assert (coords[:, :, 0, 0] == 0).all()  # invalid cells are zero (DSAC*'s convention)


def test_camera_coordinates_have_the_depth_as_z():
    K, _, _, depth = _scene()
    pc, valid = camera_coordinates_from_depth(depth, K, 6, 8)
    torch.testing.assert_close(pc[..., 2][valid], depth[:, 4::8, 4::8][valid])
    # u = fx x / z + cx for the cell (1, 2) -> (20, 12)
    x = pc[0, 1, 2]
    assert abs(float(50 * x[0] / x[2] + 31.5) - 20.0) < 1e-4 and abs(float(52 * x[1] / x[2] + 23.5) - 12.0) < 1e-4


def test_euclidean_loss_values():
    target = torch.zeros(1, 3, 2, 2)
    pred = target + torch.tensor([0.03, 0.04, 0.0]).view(1, 3, 1, 1)
    valid = torch.tensor([[[True, True], [True, False]]])
    pred[0, :, 1, 1] = 100.0  # invalid cell: ignored
    assert float(euclidean_loss(pred, target, valid)) == pytest.approx(0.05, abs=1e-7)
    assert float(euclidean_loss(pred, target, torch.zeros_like(valid))) == 0.0


def test_uncertainty_loss_is_minimal_at_the_squared_error():
    target = torch.zeros(1, 3, 1, 1)
    pred = torch.tensor([0.2, 0.0, 0.0]).view(1, 3, 1, 1)
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    s = torch.tensor(2 * math.log(0.2)).view(1, 1, 1, 1).requires_grad_(True)
    loss = euclidean_loss(pred, target, valid, s)
    (g,) = torch.autograd.grad(loss, s)
    assert abs(float(g)) < 1e-6
    assert float(loss.detach()) == pytest.approx(1.0 + math.log(0.2), abs=1e-6)


def test_reprojection_loss_is_zero_at_the_ground_truth():
    K, R, t, depth = _scene()
    coords, valid = scene_coordinates_from_depth(depth, K, R, t, 6, 8)
    # without ground truth: fill the cell without depth with a point on its ray at 2 m
    pc, _ = camera_coordinates_from_depth(torch.full_like(depth, 2.0), K, 6, 8)
    filler = (torch.einsum("bij,bhwj->bhwi", R, pc) + t[:, None, None]).permute(0, 3, 1, 2)
    pred = torch.where(valid[:, None], coords, filler)
    loss, frac = reprojection_loss(pred, K, R, t)
    assert float(loss) < 1e-3 and float(frac) == 1.0
    loss, frac = reprojection_loss(pred, K, R, t, target=coords, target_valid=valid)
    assert float(loss) < 1e-3 and float(frac) == 1.0


def test_reprojection_loss_uses_the_3d_distance_beyond_the_tolerance():
    K, R, t, depth = _scene(B=1)
    coords, valid = scene_coordinates_from_depth(depth, K, R, t, 6, 8)
    pc, _ = camera_coordinates_from_depth(depth, K, 6, 8)
    # move every prediction 0.5 m along its own viewing ray: reprojection error 0, but beyond tolerance
    rays = pc / pc.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    moved_cam = pc + 0.5 * rays
    moved = (torch.einsum("bij,bhwj->bhwi", R, moved_cam) + t[:, None, None]).permute(0, 3, 1, 2)
    loss, frac = reprojection_loss(moved, K, R, t, target=coords, target_valid=valid)
    assert float(frac) == 0.0  # every cell is beyond tolerance (the one without depth sits at the camera centre)
    assert float(loss) == pytest.approx(0.5 * 47 / 48, rel=1e-4)  # sum of 3-D distances / number of cells
    # without ground truth the ray ambiguity is not penalised (DSAC*'s RGB-only initialisation)
    loss, frac = reprojection_loss(moved[:, :, 1:, :], K, R, t)
    assert float(frac) > 0.99


def test_reprojection_loss_soft_clamp_and_proxy_target():
    K = torch.tensor([[100.0, 0.0, 4.0], [0.0, 100.0, 4.0], [0.0, 0.0, 1.0]])[None]
    R, t = torch.eye(3)[None], torch.zeros(1, 3)
    # one cell at pixel (4, 4); a point 2 m deep, 3 m to the side: reprojection error 150 px
    pred = torch.tensor([3.0, 0.0, 2.0]).view(1, 3, 1, 1)
    loss, frac = reprojection_loss(pred, K, R, t, soft_clamp=100.0)
    assert float(frac) == 1.0 and float(loss) == pytest.approx(math.sqrt(100 * 150), rel=1e-5)
    # behind the camera: L1 distance to the proxy target (0, 0, target_depth) in the camera frame
    pred = torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1)
    loss, frac = reprojection_loss(pred, K, R, t, target_depth=10.0)
    assert float(frac) == 0.0 and float(loss) == pytest.approx(1.0 + 11.0)


def test_rotation_error_and_its_gradient_at_zero():
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(10.0)], dtype=torch.float64))
    assert float(rotation_error_deg(R, torch.eye(3, dtype=torch.float64))) == pytest.approx(10.0, abs=1e-9)
    assert float(rotation_error_deg(R.T, R)) == pytest.approx(20.0, abs=1e-9)
    eye = torch.eye(3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(rotation_error_deg(eye, torch.eye(3, dtype=torch.float64)), eye)
    assert torch.isfinite(g).all()


def test_pose_loss_matches_dsacstar():
    R = axis_angle_to_matrix(torch.tensor([math.radians(10.0), 0.0, 0.0], dtype=torch.float64))
    t_gt = torch.zeros(3, dtype=torch.float64)
    t_est = torch.tensor([0.03, 0.04, 0.0], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    assert float(pose_loss(R, t_est, eye, t_gt)) == pytest.approx(15.0, abs=1e-6)  # 10 deg + 5 cm
    far = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)  # 10 + 200 = 210 > 100: sqrt(100 * 210)
    assert float(pose_loss(R, far, eye, t_gt)) == pytest.approx(math.sqrt(100 * 210), abs=1e-6)
    batch = pose_loss(R.expand(4, 3, 3), t_est.expand(4, 3), eye, t_gt)
    assert batch.shape == (4,)

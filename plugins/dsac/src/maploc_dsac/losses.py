"""Training objectives of DSAC* and the geometry of the output cells.

Source: E. Brachmann and C. Rother, "Visual Camera Re-Localization from RGB and RGB-D Images Using
DSAC", TPAMI 2021 (DSAC*): Sec. 4.2 (initialisation: Eq. 8-10, with ground-truth scene coordinates
from depth, or the RGB-only heuristic with a target depth), Sec. 4.3 (end-to-end training, the
expected pose loss, Eq. 11-12) and the public code (``train_init.py``, ``dsacstar_loss.h``).

Conventions: scene coordinates are ``(B, 3, h, w)`` world points in metres, one per ``8 x 8`` cell;
the cell ``(i, j)`` belongs to the pixel ``(u, v) = (8 j + 4, 8 i + 4)`` (DSAC*'s pixel grid, OpenCV
pixel centres); poses are ``R_cam2world (B, 3, 3)``, ``t_cam2world (B, 3)`` metres; ``K (B, 3, 3)``
in pixels. Every loss returns a scalar (mean over the batch) that is differentiable in the
predictions; reduction over the cells is DSAC*'s: the sum over the cells divided by their number.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from maploc_dsac.network import OUTPUT_STRIDE

__all__ = [
    "cell_centres",
    "cells_inside",
    "sample_at_cells",
    "camera_coordinates_from_depth",
    "scene_coordinates_from_depth",
    "euclidean_loss",
    "reprojection_loss",
    "rotation_error_deg",
    "pose_loss",
]


def cell_centres(
    h: int, w: int, stride: int = OUTPUT_STRIDE, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Pixel positions ``(u, v)`` of the output cells: ``(h, w, 2)``, ``[i, j] = (stride j + stride // 2,
    stride i + stride // 2)`` (DSAC*'s ``pixel_grid``: ``x * OUTPUT_SUBSAMPLE + OUTPUT_SUBSAMPLE / 2``)."""
    v, u = torch.meshgrid(
        torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device), indexing="ij"
    )
    return torch.stack([u, v], -1) * stride + stride // 2


def cells_inside(h: int, w: int, height: int, width: int, stride: int = OUTPUT_STRIDE, device=None) -> Tensor:
    """``(h, w)`` bool: cells whose centre pixel lies inside a ``height x width`` image (the last row
    or column of cells of an image whose size is not a multiple of ``stride`` may not)."""
    c = cell_centres(h, w, stride, device=device)
    return (c[..., 0] <= width - 1) & (c[..., 1] <= height - 1)


def sample_at_cells(values: Tensor, h: int, w: int, stride: int = OUTPUT_STRIDE) -> Tensor:
    """Nearest samples of a per-pixel map at the cell centres (DSAC*: ``depth[4::8, 4::8]``).

    Args:
        values: ``(B, H, W)`` (any dtype).
        h, w: the output size.
        stride: the output stride.

    Returns:
        ``(B, h, w)``; centres outside the image take the last row/column (mask them with
        :func:`cells_inside`).
    """
    H, W = values.shape[-2:]
    rows = (torch.arange(h, device=values.device) * stride + stride // 2).clamp(max=H - 1)
    cols = (torch.arange(w, device=values.device) * stride + stride // 2).clamp(max=W - 1)
    return values[..., rows[:, None], cols[None, :]]


def camera_coordinates_from_depth(depth: Tensor, K: Tensor, h: int, w: int, stride: int = OUTPUT_STRIDE) -> tuple[Tensor, Tensor]:
    """Camera-frame points of the cell centres from a depth map (DSAC*'s "eye" coordinates).

    Args:
        depth: ``(B, H, W)`` z-depth, metres, 0 (or non-finite) = invalid.
        K: ``(B, 3, 3)`` intrinsics of the depth map, pixels.
        h, w: the output size.
        stride: the output stride.

    Returns:
        ``(points_cam (B, h, w, 3) metres, valid (B, h, w) bool)``; invalid points are zero.
    """
    H, W = depth.shape[-2:]
    d = sample_at_cells(depth, h, w, stride).to(K.dtype)
    valid = torch.isfinite(d) & (d > 0) & cells_inside(h, w, H, W, stride, depth.device)
    d = torch.where(valid, d, torch.zeros_like(d))
    uv = cell_centres(h, w, stride, K.dtype, depth.device)
    fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
    cx, cy, s = K[:, 0, 2, None, None], K[:, 1, 2, None, None], K[:, 0, 1, None, None]
    yn = (uv[..., 1] - cy) / fy
    xn = (uv[..., 0] - cx - s * yn) / fx
    return torch.stack([xn * d, yn * d, d], -1), valid


def scene_coordinates_from_depth(
    depth: Tensor, K: Tensor, R_cam2world: Tensor, t_cam2world: Tensor, h: int, w: int, stride: int = OUTPUT_STRIDE
) -> tuple[Tensor, Tensor]:
    """Ground-truth scene coordinates of the cells from depth and pose (DSAC* ``dataset.py``, mode 1).

    Args:
        depth: ``(B, H, W)`` z-depth registered to the image, metres, 0 = invalid.
        K: ``(B, 3, 3)`` intrinsics, pixels.
        R_cam2world: ``(B, 3, 3)``.
        t_cam2world: ``(B, 3)`` metres.
        h, w: the output size.
        stride: the output stride.

    Returns:
        ``(coords (B, 3, h, w) world metres, valid (B, h, w) bool)``; invalid coordinates are zero.
    """
    pc, valid = camera_coordinates_from_depth(depth, K, h, w, stride)
    R = R_cam2world.to(pc.dtype)
    pw = torch.einsum("bij,bhwj->bhwi", R, pc) + t_cam2world.to(pc.dtype)[:, None, None, :]
    pw = torch.where(valid[..., None], pw, torch.zeros_like(pw))
    return pw.permute(0, 3, 1, 2).contiguous(), valid


def euclidean_loss(pred: Tensor, target: Tensor, valid: Tensor, log_variance: Tensor | None = None) -> Tensor:
    """Mean 3-D distance between predicted and ground-truth scene coordinates over the valid cells
    (DSAC* ``train_init.py`` RGB-D mode, Eq. 10 with depth).

    With ``log_variance`` ``s`` (the network's uncertainty output), the per-cell term is the
    heteroscedastic L1 form ``e * exp(-s / 2) + s / 2`` (minimised at ``exp(s / 2) = e``; Kendall &
    Gal, NeurIPS 2017, Eq. 8 with a Laplace likelihood), so ``exp(s)`` estimates the squared error.

    Args:
        pred: ``(B, 3, h, w)`` metres.
        target: ``(B, 3, h, w)`` metres.
        valid: ``(B, h, w)`` bool.
        log_variance: optional ``(B, 1, h, w)``.

    Returns:
        Scalar, metres (0 when no cell is valid, still connected to ``pred``).
    """
    err = torch.linalg.vector_norm(pred - target, dim=1)  # (B, h, w)
    if log_variance is not None:
        s = log_variance[:, 0]
        err = err * torch.exp(-0.5 * s) + 0.5 * s
    mask = valid.to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def _world_to_camera(points: Tensor, R_cam2world: Tensor, t_cam2world: Tensor) -> Tensor:
    """``(B, 3, h, w)`` world -> ``(B, h, w, 3)`` camera frame."""
    p = points.permute(0, 2, 3, 1) - t_cam2world[:, None, None, :]
    return torch.einsum("bji,bhwj->bhwi", R_cam2world, p)


def reprojection_loss(
    pred: Tensor,
    K: Tensor,
    R_cam2world: Tensor,
    t_cam2world: Tensor,
    *,
    target: Tensor | None = None,
    target_valid: Tensor | None = None,
    cell_valid: Tensor | None = None,
    min_depth: float = 0.1,
    max_depth: float = 1000.0,
    target_depth: float = 10.0,
    init_tolerance: float = 0.1,
    soft_clamp: float = 100.0,
    hard_clamp: float = 1000.0,
) -> tuple[Tensor, Tensor]:
    """DSAC*'s reprojection objective (``train_init.py``, RGB modes; Sec. 4.2, Eq. 8-9).

    A prediction is *valid* when it lies at least ``min_depth`` in front of the camera, its
    reprojection error is at most ``hard_clamp`` pixels and, where a ground-truth coordinate is
    known, it is within ``init_tolerance`` metres of it (without ground truth: at most ``max_depth``
    deep). Valid predictions cost their reprojection error, soft-clamped: ``e`` up to
    ``soft_clamp``, ``sqrt(soft_clamp * e)`` above. Invalid ones cost the 3-D distance to their
    ground truth (where known) or, without ground truth, the L1 distance in the camera frame to a
    proxy target on the pixel ray at ``target_depth`` metres. (The reference code sets the proxy's
    z to 1 instead of ``target_depth``, an evident slip; here it is on the ray at that depth.)

    Args:
        pred: ``(B, 3, h, w)`` predicted scene coordinates, metres.
        K: ``(B, 3, 3)`` intrinsics, pixels.
        R_cam2world, t_cam2world: ``(B, 3, 3)``, ``(B, 3)`` ground-truth pose (metres).
        target: optional ``(B, 3, h, w)`` ground-truth scene coordinates.
        target_valid: ``(B, h, w)`` bool, where ``target`` is known (required with ``target``).
        cell_valid: optional ``(B, h, w)`` bool; other cells contribute nothing (e.g. outside an
            augmented image).
        min_depth, max_depth, target_depth, init_tolerance: metres.
        soft_clamp, hard_clamp: pixels.

    Returns:
        ``(loss, fraction_valid)``: the scalar loss (sum over cells / number of cells, mean over the
        batch) and the fraction of valid predictions (no gradient).
    """
    B, _, h, w = pred.shape
    pc = _world_to_camera(pred, R_cam2world.to(pred.dtype), t_cam2world.to(pred.dtype))  # (B, h, w, 3)
    z = pc[..., 2]
    z_safe = z.clamp(min=min_depth)
    uv_pred = torch.stack(
        [
            (K[:, 0, 0, None, None] * pc[..., 0] + K[:, 0, 1, None, None] * pc[..., 1]) / z_safe + K[:, 0, 2, None, None],
            K[:, 1, 1, None, None] * pc[..., 1] / z_safe + K[:, 1, 2, None, None],
        ],
        -1,
    )
    uv = cell_centres(h, w, dtype=pred.dtype, device=pred.device)
    err = torch.linalg.vector_norm(uv_pred - uv, dim=-1)  # (B, h, w) pixels
    cells = torch.ones_like(err, dtype=torch.bool) if cell_valid is None else cell_valid
    invalid_min_depth = z < min_depth
    invalid_repro = err > hard_clamp
    if target is not None:
        if target_valid is None:
            raise ValueError("target_valid is required with target")
        pc_target = _world_to_camera(target.to(pred.dtype), R_cam2world.to(pred.dtype), t_cam2world.to(pred.dtype))
        dist = torch.linalg.vector_norm(pc - pc_target, dim=-1)
        invalid_gt = (dist > init_tolerance) & target_valid
        valid = ~(invalid_min_depth | invalid_gt | invalid_repro)
    else:
        valid = ~(invalid_min_depth | (z > max_depth) | invalid_repro)
    valid = valid & cells
    err_c = torch.where(valid, err, torch.zeros_like(err))
    robust = torch.where(err_c <= soft_clamp, err_c, torch.sqrt(soft_clamp * err_c.clamp_min(soft_clamp)))
    loss = (robust * valid).sum(dim=(1, 2))
    invalid = cells & ~valid
    if target is not None:
        loss = loss + (torch.where(invalid & target_valid, dist, torch.zeros_like(dist))).sum(dim=(1, 2))
    else:
        fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
        proxy = torch.stack(
            [
                (uv[..., 0] - K[:, 0, 2, None, None]) / fx * target_depth,
                (uv[..., 1] - K[:, 1, 2, None, None]) / fy * target_depth,
                torch.full_like(err, target_depth),
            ],
            -1,
        )
        l1 = (pc - proxy).abs().sum(-1)
        loss = loss + torch.where(invalid, l1, torch.zeros_like(l1)).sum(dim=(1, 2))
    loss = (loss / (h * w)).mean()
    fraction = (valid.sum() / cells.sum().clamp_min(1)).detach()
    return loss, fraction


def rotation_error_deg(R_a: Tensor, R_b: Tensor) -> Tensor:
    """Angle of ``R_a R_b^T`` in degrees, ``(...)``, with a gradient that is finite everywhere
    (``atan2`` of the sine and cosine of the angle instead of ``acos`` of the trace)."""
    D = R_a @ R_b.transpose(-1, -2)
    cos = (D[..., 0, 0] + D[..., 1, 1] + D[..., 2, 2] - 1) / 2
    w = torch.stack([D[..., 2, 1] - D[..., 1, 2], D[..., 0, 2] - D[..., 2, 0], D[..., 1, 0] - D[..., 0, 1]], -1)
    sin = 0.5 * torch.sqrt((w * w).sum(-1) + 1e-12)
    return torch.atan2(sin, cos) * (180.0 / math.pi)


def pose_loss(
    R_est: Tensor,
    t_est: Tensor,
    R_gt: Tensor,
    t_gt: Tensor,
    weight_rot: float = 1.0,
    weight_trans: float = 100.0,
    soft_clamp: float = 100.0,
) -> Tensor:
    """DSAC*'s pose loss (``dsacstar_loss.h``; Sec. 4.3): ``l = w_rot * angle_deg + w_trans * |c_est - c_gt|``
    (camera centres, metres), and ``sqrt(soft_clamp * l)`` where ``l > soft_clamp``.

    Args:
        R_est, t_est: ``(..., 3, 3)``, ``(..., 3)`` estimated camera-to-world pose.
        R_gt, t_gt: the ground truth, broadcast against the estimate.
        weight_rot: per degree (DSAC*: 1).
        weight_trans: per metre (DSAC*: 100, i.e. 1 per cm).
        soft_clamp: DSAC*: 100.

    Returns:
        ``(...)`` losses.
    """
    rot = rotation_error_deg(R_est, R_gt)
    trans = torch.sqrt(((t_est - t_gt) ** 2).sum(-1) + 1e-12)
    loss = weight_rot * rot + weight_trans * trans
    return torch.where(loss > soft_clamp, torch.sqrt(soft_clamp * loss.clamp_min(soft_clamp)), loss)

"""Pinhole camera geometry: projection, back-projection and intrinsics under resizing/cropping.

Conventions:

* Camera frame (OpenCV): x right, y down, z forward along the optical axis; metres.
* ``K`` is ``(..., 3, 3)`` ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels; the last row is
  assumed to be ``(0, 0, 1)``.
* Pixel coordinates ``(u, v)``: u to the right, v down; the centre of the top-left pixel is at
  ``(0, 0)`` (OpenCV), so the image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
* Depth is the z coordinate in the camera frame (not the distance along the ray), metres.

All functions broadcast over leading dimensions, are differentiable and keep dtype and device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "backproject_depth",
    "crop_intrinsics",
    "pixel_grid",
    "project",
    "scale_intrinsics",
    "unproject",
]


def _check_K(K: Tensor) -> None:
    if not isinstance(K, Tensor) or K.ndim < 2 or K.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape (..., 3, 3), got {getattr(K, 'shape', type(K))}")


def project(points_cam: Tensor, K: Tensor, min_depth: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Projects camera-frame points to pixels.

    ``(u, v) = K[:2] @ (x / z, y / z, 1)``. Points with ``z <= min_depth`` (behind or too close to
    the camera) are flagged invalid; their ``uv`` is finite but meaningless (they are projected as
    if ``z`` were 1) and their gradient does not involve ``1 / z``.

    Args:
        points_cam: ``(..., N, 3)`` points in the camera frame, metres.
        K: ``(..., 3, 3)`` intrinsics in pixels; leading dims broadcast with the points'.
        min_depth: smallest valid depth, metres.

    Returns:
        ``uv``: ``(..., N, 2)`` pixel coordinates; ``valid``: ``(..., N)`` bool, ``z > min_depth``.

    Raises:
        ValueError: on wrong trailing shapes.
    """
    _check_K(K)
    if points_cam.ndim < 2 or points_cam.shape[-1] != 3:
        raise ValueError(f"points_cam must have shape (..., N, 3), got {tuple(points_cam.shape)}")
    z = points_cam[..., 2]
    valid = z > min_depth
    z_safe = torch.where(valid, z, torch.ones_like(z))
    xy = points_cam[..., :2] / z_safe[..., None]
    return xy @ K[..., :2, :2].transpose(-1, -2) + K[..., None, :2, 2], valid


def unproject(uv: Tensor, depth: Tensor, K: Tensor) -> Tensor:
    """Lifts pixels with known depth to camera-frame points (inverse of :func:`project`).

    Args:
        uv: ``(..., N, 2)`` pixel coordinates.
        depth: ``(..., N)`` z-depth in metres.
        K: ``(..., 3, 3)`` intrinsics in pixels (upper triangular). All leading dims broadcast.

    Returns:
        ``(..., N, 3)`` points in the camera frame, metres, with ``z == depth``.

    Raises:
        ValueError: on wrong trailing shapes.
    """
    _check_K(K)
    if uv.shape[-1] != 2:
        raise ValueError(f"uv must have shape (..., N, 2), got {tuple(uv.shape)}")
    fx, s, cx = K[..., 0, 0, None], K[..., 0, 1, None], K[..., 0, 2, None]
    fy, cy = K[..., 1, 1, None], K[..., 1, 2, None]
    yn = (uv[..., 1] - cy) / fy
    xn = (uv[..., 0] - cx - s * yn) / fx
    xn, yn, depth = torch.broadcast_tensors(xn, yn, depth)
    return torch.stack([xn * depth, yn * depth, depth], dim=-1)


def pixel_grid(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """The ``(u, v)`` coordinates of all pixel centres.

    Args:
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.
        dtype: floating-point dtype of the result.
        device: device of the result.

    Returns:
        ``(H, W, 2)`` tensor with ``grid[v, u] == (u, v)`` (OpenCV: pixel ``(0, 0)`` is centred at
        ``(0, 0)``).

    Raises:
        ValueError: if ``height`` or ``width`` is negative.
    """
    if height < 0 or width < 0:
        raise ValueError(f"image size must be non-negative, got {width}x{height}")
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device), indexing="ij"
    )
    return torch.stack([u, v], dim=-1)


def backproject_depth(depth: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """Back-projects a depth map to a camera-frame point per pixel.

    Args:
        depth: ``(..., H, W)`` z-depth in metres; ``0``, negative or non-finite values are invalid.
        K: ``(..., 3, 3)`` intrinsics of the depth map; leading dims broadcast with ``depth``'s.

    Returns:
        ``points_cam``: ``(..., H, W, 3)`` points in the camera frame, metres (zero where invalid);
        ``valid``: ``(..., H, W)`` bool, ``depth > 0`` and finite.

    Raises:
        ValueError: if ``depth`` has fewer than 2 dims or ``K`` is not ``(..., 3, 3)``.
    """
    _check_K(K)
    if depth.ndim < 2:
        raise ValueError(f"depth must have shape (..., H, W), got {tuple(depth.shape)}")
    H, W = depth.shape[-2:]
    valid = torch.isfinite(depth) & (depth > 0)
    d = torch.where(valid, depth, torch.zeros_like(depth))
    grid = pixel_grid(H, W, dtype=depth.dtype, device=depth.device).reshape(H * W, 2)
    pts = unproject(grid, d.reshape(depth.shape[:-2] + (H * W,)), K)
    return pts.reshape(pts.shape[:-2] + (H, W, 3)), valid


def _row_affine(K: Tensor, a0: Tensor | float, b0: Tensor | float, a1: Tensor | float, b1: Tensor | float) -> Tensor:
    """``S @ K`` with ``S = [[a0, 0, b0], [0, a1, b1], [0, 0, 1]]`` (pixel transform u' = a0 u + b0)."""
    a0, b0, a1, b1 = (torch.as_tensor(v, dtype=K.dtype, device=K.device)[..., None] for v in (a0, b0, a1, b1))
    r0 = a0 * K[..., 0, :] + b0 * K[..., 2, :]
    r1 = a1 * K[..., 1, :] + b1 * K[..., 2, :]
    r0, r1, r2 = torch.broadcast_tensors(r0, r1, K[..., 2, :])
    return torch.stack([r0, r1, r2], dim=-2)


def scale_intrinsics(K: Tensor, sx: Tensor | float, sy: Tensor | float) -> Tensor:
    """Intrinsics of the image resized by factors ``(sx, sy)``, preserving pixel centres.

    A pixel coordinate maps as ``u' = sx * (u + 0.5) - 0.5``, ``v' = sy * (v + 0.5) - 0.5`` (the
    image borders ``-0.5`` and ``W - 0.5`` map to ``-0.5`` and ``sx * W - 0.5``), hence
    ``fx' = sx fx``, ``s' = sx s``, ``cx' = sx (cx + 0.5) - 0.5`` and likewise for y.

    Args:
        K: ``(..., 3, 3)`` intrinsics in pixels.
        sx: horizontal scale factor (new width / old width), float or ``(...)`` tensor.
        sy: vertical scale factor (new height / old height), float or ``(...)`` tensor.

    Returns:
        ``(..., 3, 3)`` new intrinsics, same dtype as ``K``.

    Raises:
        ValueError: if ``K`` is not ``(..., 3, 3)``.
    """
    _check_K(K)
    sx = torch.as_tensor(sx, dtype=K.dtype, device=K.device)
    sy = torch.as_tensor(sy, dtype=K.dtype, device=K.device)
    return _row_affine(K, sx, 0.5 * (sx - 1), sy, 0.5 * (sy - 1))


def crop_intrinsics(K: Tensor, left: Tensor | float, top: Tensor | float) -> Tensor:
    """Intrinsics of the crop whose top-left pixel is pixel ``(left, top)`` of the original.

    A pixel coordinate maps as ``u' = u - left``, ``v' = v - top``; only the principal point moves.

    Args:
        K: ``(..., 3, 3)`` intrinsics in pixels.
        left: first column of the crop in the original image, pixels (float or ``(...)`` tensor).
        top: first row of the crop in the original image, pixels.

    Returns:
        ``(..., 3, 3)`` new intrinsics, same dtype as ``K``.

    Raises:
        ValueError: if ``K`` is not ``(..., 3, 3)``.
    """
    _check_K(K)
    left = torch.as_tensor(left, dtype=K.dtype, device=K.device)
    top = torch.as_tensor(top, dtype=K.dtype, device=K.device)
    return _row_affine(K, 1.0, -left, 1.0, -top)

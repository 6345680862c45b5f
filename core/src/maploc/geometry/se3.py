"""Rigid transforms in SE(3) represented as ``(R, t)`` pairs.

A pose ``(R, t)`` maps points from a source frame to a target frame: ``x_target = R @ x_source + t``
(e.g. ``T_cam2world``). ``R`` is ``(..., 3, 3)``, ``t`` is ``(..., 3)`` in metres; all functions
broadcast over leading dimensions, are differentiable and keep the input dtype and device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["compose", "from_matrix", "invert", "to_matrix", "transform_points"]


def _check(R: Tensor, t: Tensor) -> None:
    if R.shape[-2:] != (3, 3) or R.ndim < 2:
        raise ValueError(f"R must have shape (..., 3, 3), got {tuple(R.shape)}")
    if t.shape[-1:] != (3,):
        raise ValueError(f"t must have shape (..., 3), got {tuple(t.shape)}")


def to_matrix(R: Tensor, t: Tensor) -> Tensor:
    """The ``(..., 4, 4)`` homogeneous matrix ``[[R, t], [0, 1]]``.

    Args:
        R: ``(..., 3, 3)`` rotation.
        t: ``(..., 3)`` translation in metres; leading dims broadcast with ``R``'s.

    Returns:
        ``(..., 4, 4)`` matrix with the dtype promoted from ``R`` and ``t``.

    Raises:
        ValueError: on wrong trailing shapes.
    """
    _check(R, t)
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    dtype = torch.promote_types(R.dtype, t.dtype)
    top = torch.cat([R.expand(batch + (3, 3)).to(dtype), t.expand(batch + (3,)).to(dtype)[..., None]], dim=-1)
    bottom = torch.zeros(batch + (1, 4), dtype=dtype, device=R.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def from_matrix(T: Tensor) -> tuple[Tensor, Tensor]:
    """Splits a homogeneous matrix into ``(R, t)``.

    Args:
        T: ``(..., 4, 4)`` or ``(..., 3, 4)`` matrix; the last row of a 4x4 matrix is ignored.

    Returns:
        ``R`` ``(..., 3, 3)`` and ``t`` ``(..., 3)`` (views of ``T``).

    Raises:
        ValueError: if ``T`` is not ``(..., 4, 4)`` or ``(..., 3, 4)``.
    """
    if T.ndim < 2 or T.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"T must have shape (..., 4, 4) or (..., 3, 4), got {tuple(T.shape)}")
    return T[..., :3, :3], T[..., :3, 3]


def invert(R: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse transform ``(R^T, -R^T t)`` (e.g. ``T_world2cam`` from ``T_cam2world``).

    Args:
        R: ``(..., 3, 3)`` rotation (assumed orthonormal).
        t: ``(..., 3)`` translation in metres.

    Returns:
        ``(R_inv (..., 3, 3), t_inv (..., 3))``.

    Raises:
        ValueError: on wrong trailing shapes.
    """
    _check(R, t)
    R_inv = R.transpose(-1, -2)
    return R_inv, -(R_inv @ t[..., None])[..., 0]


def compose(R1: Tensor, t1: Tensor, R2: Tensor, t2: Tensor) -> tuple[Tensor, Tensor]:
    """The composition ``pose1 ∘ pose2`` (``pose2`` is applied first).

    ``(R1, t1) ∘ (R2, t2) = (R1 R2, R1 t2 + t1)``; e.g. ``T_a2c = compose(T_b2c, T_a2b)``.

    Args:
        R1: ``(..., 3, 3)`` rotation of the pose applied second.
        t1: ``(..., 3)`` its translation.
        R2: ``(..., 3, 3)`` rotation of the pose applied first.
        t2: ``(..., 3)`` its translation. Leading dims of all four broadcast.

    Returns:
        ``(R (..., 3, 3), t (..., 3))``.

    Raises:
        ValueError: on wrong trailing shapes.
    """
    _check(R1, t1)
    _check(R2, t2)
    return R1 @ R2, (R1 @ t2[..., None])[..., 0] + t1


def transform_points(R: Tensor, t: Tensor, points: Tensor) -> Tensor:
    """Applies ``x' = R x + t`` to a set of points.

    Args:
        R: ``(..., 3, 3)`` rotation.
        t: ``(..., 3)`` translation in metres.
        points: ``(..., N, 3)`` points in the source frame; leading dims broadcast with the pose's.

    Returns:
        ``(..., N, 3)`` points in the target frame.

    Raises:
        ValueError: on wrong trailing shapes.
    """
    _check(R, t)
    if points.ndim < 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., N, 3), got {tuple(points.shape)}")
    return points @ R.transpose(-1, -2) + t[..., None, :]

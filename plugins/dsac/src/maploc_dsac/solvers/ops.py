"""Small tensor helpers shared by the solver modules (internal).

Batched 3x3 products are written elementwise: ``torch.matmul`` on many tiny matrices is slow on the
CPU. Rotations from axis-angle and cross-product matrices come from :mod:`maploc.geometry.rotation`.
"""

from __future__ import annotations

from typing import overload

import torch
from torch import Tensor

__all__ = [
    "Z_MIN",
    "compute_dtype",
    "gather_points",
    "invert",
    "matmul3",
    "matvec3",
    "project",
    "rows",
    "safe_norm",
    "transform",
]

#: metres: points closer to (or behind) the camera plane do not project
Z_MIN = 1e-6


def matmul3(a: Tensor, b: Tensor) -> Tensor:
    """``a (..., 3, 3) @ b (..., 3, 3)`` elementwise."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def matvec3(a: Tensor, v: Tensor) -> Tensor:
    """``a (..., 3, 3) @ v (..., 3)`` elementwise."""
    return (a * v[..., None, :]).sum(-1)


def transform(R: Tensor, t: Tensor, points: Tensor) -> Tensor:
    """``R (..., 3, 3)``, ``t (..., 3)``, ``points (..., N, 3)`` -> ``R points + t (..., N, 3)``."""
    if points.shape[-2] <= 8:  # many tiny matmuls are slow on CPU: elementwise instead
        return (points[..., :, None, :] * R[..., None, :, :]).sum(-1) + t[..., None, :]
    return points @ R.transpose(-1, -2) + t[..., None, :]


def invert(R: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse rigid transform ``(R^T, -R^T t)``."""
    Rt = R.transpose(-1, -2)
    return Rt, -matvec3(Rt, t)


def project(points_cam: Tensor, K: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pinhole projection of ``(..., N, 3)`` camera points with ``K (..., 3, 3)``.

    Returns ``(pixels (..., N, 2), z_safe (..., N), in_front (..., N))``; ``z_safe`` is 1 where the
    point is not in front (``z <= Z_MIN``)."""
    x, y, z = points_cam.unbind(-1)
    in_front = z > Z_MIN
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    k = K[..., None, :2, :]  # (..., 1, 2, 3), rows u and v of K
    uv = x[..., None] * k[..., 0] + y[..., None] * k[..., 1] + z[..., None] * k[..., 2]
    return uv / z_safe[..., None], z_safe, in_front


def safe_norm(v: Tensor) -> Tensor:
    """Euclidean norm over the last dim, with a finite gradient at zero."""
    return (v * v).sum(-1).clamp_min(1e-20).sqrt()


@overload
def rows(x: Tensor, index: Tensor | None) -> Tensor: ...
@overload
def rows(x: None, index: Tensor | None) -> None: ...
def rows(x: Tensor | None, index: Tensor | None) -> Tensor | None:
    """``x[index]`` along the first dim (``x`` itself for ``index=None``; ``None`` stays ``None``)."""
    return x if x is None or index is None else x.index_select(0, index)


def compute_dtype(x: Tensor) -> torch.dtype:
    """float64 for the small, precision-critical solves, except where a backend lacks it (MPS)."""
    return torch.float32 if x.device.type == "mps" else torch.float64


def gather_points(values: Tensor, indices: Tensor) -> Tensor:
    """``values (B, N, D)``, ``indices (B, C, k)`` -> ``(B, C, k, D)``."""
    B, C, k = indices.shape
    flat = indices.reshape(B, C * k, 1).expand(B, C * k, values.shape[-1])
    return torch.gather(values, 1, flat).reshape(B, C, k, values.shape[-1])

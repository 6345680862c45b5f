"""Rigid transforms in SE(2) for map-frame poses ``(x, y, yaw)``.

``x``, ``y`` are in metres and ``yaw`` in radians, counter-clockwise from the map x axis (the
convention of :class:`maploc.types.Pose2`). The pose maps body coordinates to map coordinates:
``p_map = Rot(yaw) @ p_body + (x, y)``. All functions broadcast over leading dimensions, are
differentiable and keep the input dtype and device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["angle_difference", "se2_from_matrix", "se2_matrix", "se2_transform_points", "wrap_angle"]


def wrap_angle(a: Tensor) -> Tensor:
    """Wraps angles (radians) to ``[-pi, pi)``.

    Args:
        a: ``(...)`` float tensor of angles in radians.

    Returns:
        ``(...)`` angles in ``[-pi, pi)`` (``pi`` maps to ``-pi``), equal to ``a`` modulo ``2 pi``.
    """
    a = torch.as_tensor(a)
    two_pi = 2 * math.pi
    # a - 2 pi k leaves angles already in range bit-identical (unlike remainder(a + pi, 2 pi) - pi,
    # which rounds tiny angles to 0); the corrections fix rounding at the two ends of the range.
    w = a - two_pi * torch.floor((a + math.pi) / two_pi)
    w = torch.where(w >= math.pi, w - two_pi, w)
    return torch.where(w < -math.pi, w + two_pi, w)


def se2_matrix(x: Tensor, y: Tensor, yaw: Tensor) -> Tensor:
    """The ``(..., 3, 3)`` homogeneous matrix ``[[c, -s, x], [s, c, y], [0, 0, 1]]``.

    Args:
        x: ``(...)`` translation along the map x axis, metres.
        y: ``(...)`` translation along the map y axis, metres.
        yaw: ``(...)`` heading, radians, counter-clockwise. The three broadcast.

    Returns:
        ``(..., 3, 3)`` matrix mapping body to map coordinates, in the promoted dtype of the inputs.
    """
    x, y, yaw = torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(yaw)
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), yaw.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    x, y, yaw = torch.broadcast_tensors(x.to(dtype), y.to(dtype), yaw.to(dtype))
    c, s = torch.cos(yaw), torch.sin(yaw)
    o, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, x, s, c, y, o, o, one], dim=-1).reshape(c.shape + (3, 3))


def se2_from_matrix(T: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Splits a homogeneous SE(2) matrix into ``(x, y, yaw)``.

    Args:
        T: ``(..., 3, 3)`` (or ``(..., 2, 3)``) matrix.

    Returns:
        ``x (...)`` metres, ``y (...)`` metres, ``yaw (...)`` radians in ``[-pi, pi]``.

    Raises:
        ValueError: if ``T`` is not ``(..., 3, 3)`` or ``(..., 2, 3)``.
    """
    if T.ndim < 2 or T.shape[-2:] not in ((3, 3), (2, 3)):
        raise ValueError(f"T must have shape (..., 3, 3) or (..., 2, 3), got {tuple(T.shape)}")
    return T[..., 0, 2], T[..., 1, 2], torch.atan2(T[..., 1, 0], T[..., 0, 0])


def se2_transform_points(x: Tensor, y: Tensor, yaw: Tensor, points: Tensor) -> Tensor:
    """Maps ``(..., N, 2)`` body-frame points to the map frame.

    Args:
        x: ``(...)`` metres.
        y: ``(...)`` metres.
        yaw: ``(...)`` radians, counter-clockwise.
        points: ``(..., N, 2)`` points in metres; leading dims broadcast with the pose's.

    Returns:
        ``(..., N, 2)`` points in the map frame.

    Raises:
        ValueError: if ``points`` is not ``(..., N, 2)``.
    """
    if points.ndim < 2 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., N, 2), got {tuple(points.shape)}")
    x, y, yaw = (torch.as_tensor(v)[..., None] for v in (x, y, yaw))
    c, s = torch.cos(yaw), torch.sin(yaw)
    px, py = points[..., 0], points[..., 1]
    return torch.stack([c * px - s * py + x, s * px + c * py + y], dim=-1)


def angle_difference(a: Tensor, b: Tensor) -> Tensor:
    """The absolute wrapped difference ``|wrap(a - b)|`` between angles, radians, in ``[0, pi]``.

    Args:
        a: ``(...)`` radians.
        b: ``(...)`` radians; broadcasts with ``a``.

    Returns:
        ``(...)`` non-negative differences in radians.
    """
    return wrap_angle(torch.as_tensor(a) - torch.as_tensor(b)).abs()

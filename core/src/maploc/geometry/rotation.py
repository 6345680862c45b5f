"""Rotations in SO(3): quaternions, rotation vectors (axis-angle) and matrices.

Conventions:

* Rotation matrices are ``(..., 3, 3)`` and act on column vectors: ``x' = R @ x``.
* Quaternions are ordered ``(w, x, y, z)`` (scalar first) and are Hamilton quaternions; the
  quaternion ``q`` and ``-q`` describe the same rotation. Functions that return a quaternion pick
  the representative with ``w >= 0``.
* Rotation vectors (axis-angle) are ``(..., 3)`` tensors ``v = angle * axis`` with the angle in
  radians, as in ``scipy.spatial.transform.Rotation.as_rotvec``.

Every function is batched over arbitrary leading dimensions, differentiable with finite gradients
at the identity, works in float32 and float64 and on any device, and keeps the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "project_to_so3",
    "quaternion_to_matrix",
    "relative_rotation_angle",
    "rotation_angle",
    "skew",
]

# Below this squared angle (rad^2) the closed forms are replaced by their Taylor series. The
# truncation error of the series used is O(angle^6) < 1e-24, below float64 resolution.
_SMALL_ANGLE_SQ = 1e-4


def _check_last(x: Tensor, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[x.ndim - len(shape):]) != shape or x.ndim < len(shape):
        dims = ", ".join(str(s) for s in shape)
        raise ValueError(f"{name} must have shape (..., {dims}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def skew(v: Tensor) -> Tensor:
    """The cross-product matrix ``[v]_x`` with ``[v]_x @ w == cross(v, w)``.

    Args:
        v: ``(..., 3)`` float tensor.

    Returns:
        ``(..., 3, 3)`` skew-symmetric matrix, same dtype and device as ``v``.

    Raises:
        ValueError: if the last dimension of ``v`` is not 3.
    """
    _check_last(v, (3,), "v")
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(v.shape[:-1] + (3, 3))


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Converts quaternions ``(w, x, y, z)`` to rotation matrices.

    The quaternion is normalised here, so any non-zero multiple of a unit quaternion gives the same
    rotation. A zero quaternion has no rotation and gives a non-finite result.

    Args:
        q: ``(..., 4)`` float tensor, scalar-first ``(w, x, y, z)``.

    Returns:
        ``(..., 3, 3)`` rotation matrix, same dtype and device as ``q``.

    Raises:
        ValueError: if the last dimension of ``q`` is not 4.
        TypeError: if ``q`` is not a floating-point tensor.

    Source:
        The standard unit-quaternion-to-matrix formula (e.g. Shoemake, "Animating rotation with
        quaternion curves", SIGGRAPH 1985).
    """
    _check_last(q, (4,), "q")
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    R = torch.stack(
        [
            1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
        ],
        dim=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Converts rotation matrices to unit quaternions ``(w, x, y, z)`` with ``w >= 0``.

    Numerically robust for every rotation: of the four algebraically equivalent extraction
    formulas, the one dividing by the largest of ``|w|, |x|, |y|, |z|`` is used per element
    (Shepperd's method), so the divisor is always at least ``1/2``. Matrices that are only
    approximately orthonormal give a normalised quaternion close to the nearest rotation.

    Args:
        R: ``(..., 3, 3)`` float tensor of rotation matrices.

    Returns:
        ``(..., 4)`` unit quaternion ``(w, x, y, z)``, ``w >= 0``, same dtype and device as ``R``.
        For a rotation by exactly ``pi`` (``w == 0``) the sign of ``(x, y, z)`` is arbitrary.

    Raises:
        ValueError: if ``R`` is not ``(..., 3, 3)``.
        TypeError: if ``R`` is not a floating-point tensor.

    Source:
        S. W. Shepperd, "Quaternion from rotation matrix", Journal of Guidance and Control 1(3),
        1978.
    """
    _check_last(R, (3, 3), "R")
    m = R.reshape(R.shape[:-2] + (9,))
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    # 4 w^2, 4 x^2, 4 y^2, 4 z^2
    sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    # Row k is 4 * q_k * (w, x, y, z).
    cand = torch.stack(
        [
            torch.stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, sq[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    best = sq.argmax(dim=-1, keepdim=True)  # (..., 1)
    row = torch.take_along_dim(cand, best[..., None].expand(best.shape + (4,)), dim=-2).squeeze(-2)
    # The chosen 4 q_k^2 is the largest of four numbers summing to 4 (for a rotation), hence >= 1.
    denom = 2 * torch.sqrt(torch.take_along_dim(sq, best, dim=-1).clamp_min(0.1))
    q = row / denom
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    sign = torch.where(q[..., :1] < 0, -torch.ones_like(q[..., :1]), torch.ones_like(q[..., :1]))
    return q * sign


def _safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) gradient at ``x == 0``."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def axis_angle_to_matrix(v: Tensor) -> Tensor:
    """Converts rotation vectors (axis * angle, radians) to rotation matrices.

    Uses Rodrigues' formula ``R = I + a [v]_x + b [v]_x^2`` with ``a = sin(t)/t`` and
    ``b = (1 - cos(t))/t^2`` (``t = |v|``). Near ``t = 0`` the coefficients are evaluated by their
    Taylor series in ``t^2``, so values and gradients are smooth and finite at (and near) zero.

    Args:
        v: ``(..., 3)`` float rotation vector, angle in radians, any magnitude.

    Returns:
        ``(..., 3, 3)`` rotation matrix, same dtype and device as ``v``.

    Raises:
        ValueError: if the last dimension of ``v`` is not 3.
        TypeError: if ``v`` is not a floating-point tensor.

    Source:
        O. Rodrigues, 1840; e.g. Hartley & Zisserman, "Multiple View Geometry", 2nd ed., A4.3.2.
    """
    _check_last(v, (3,), "v")
    t2 = (v * v).sum(-1)
    small = t2 < _SMALL_ANGLE_SQ
    t2_big = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_big)
    a_big = torch.sin(t) / t
    half = torch.sin(t / 2) / t  # b = 2 sin^2(t/2) / t^2 avoids the cancellation in 1 - cos(t)
    b_big = 2 * half * half
    a_small = 1 - t2 / 6 + t2 * t2 / 120
    b_small = 0.5 - t2 / 24 + t2 * t2 / 720
    a = torch.where(small, a_small, a_big)[..., None, None]
    b = torch.where(small, b_small, b_big)[..., None, None]
    K = skew(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return eye + a * K + b * (K @ K)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Converts rotation matrices to rotation vectors (axis * angle, radians).

    Goes through the Shepperd quaternion (robust everywhere, see :func:`matrix_to_quaternion`):
    with ``q = (w, u)``, ``w >= 0``, the angle is ``2 atan2(|u|, w)`` in ``[0, pi]`` and the vector
    is ``u * angle / |u|``; near the identity ``angle / |u|`` is evaluated by its Taylor series,
    so the result and its gradient are finite at zero. Near ``pi`` the direction of the vector is
    well determined but its sign is arbitrary (``v`` and ``-v`` are the same rotation there).

    Args:
        R: ``(..., 3, 3)`` float rotation matrices.

    Returns:
        ``(..., 3)`` rotation vector with norm in ``[0, pi]``, same dtype and device as ``R``.

    Raises:
        ValueError: if ``R`` is not ``(..., 3, 3)``.
        TypeError: if ``R`` is not a floating-point tensor.
    """
    q = matrix_to_quaternion(R)
    w, u = q[..., 0], q[..., 1:]
    s2 = (u * u).sum(-1)
    # Series truncation error ~ s^6 / 7 (relative), below float64 resolution for s^2 < 1e-6.
    small = s2 < 1e-6
    s = torch.sqrt(torch.where(small, torch.ones_like(s2), s2))
    ratio_big = 2 * torch.atan2(s, w) / s
    # 2 atan(s / w) / s = (2 / w) (1 - s^2 / (3 w^2) + s^4 / (5 w^4) - ...); w ~ 1 here.
    ws = torch.where(small, w, torch.ones_like(w))
    r2 = s2 / (ws * ws)
    ratio_small = (2 / ws) * (1 - r2 / 3 + r2 * r2 / 5)
    ratio = torch.where(small, ratio_small, ratio_big)
    return u * ratio[..., None]


def rotation_angle(R: Tensor) -> Tensor:
    """The rotation angle of rotation matrices, in radians, in ``[0, pi]``.

    Computed as ``atan2(|vee(R - R^T)|, trace(R) - 1)`` (``= atan2(2 sin t, 2 cos t)``), which is
    accurate to machine precision over the whole range, unlike ``arccos((trace - 1) / 2)`` whose
    error grows like ``sqrt(eps)`` near ``0`` and ``pi`` and whose gradient is infinite there.
    The gradient is finite everywhere; at exactly the identity (where the angle has a cone-shaped
    minimum) it is zero.

    Args:
        R: ``(..., 3, 3)`` float rotation matrices.

    Returns:
        ``(...)`` angles in radians, same dtype and device as ``R``.

    Raises:
        ValueError: if ``R`` is not ``(..., 3, 3)``.
        TypeError: if ``R`` is not a floating-point tensor.
    """
    _check_last(R, (3, 3), "R")
    sk = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], dim=-1
    )
    sin2 = _safe_sqrt((sk * sk).sum(-1))
    cos2 = R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1
    return torch.atan2(sin2, cos2)


def relative_rotation_angle(R1: Tensor, R2: Tensor) -> Tensor:
    """The angle of the relative rotation ``R1^T @ R2`` in radians, in ``[0, pi]``.

    This is the geodesic distance on SO(3) between ``R1`` and ``R2``; it is symmetric and also
    equals the angle of ``R2 @ R1^T``.

    Args:
        R1: ``(..., 3, 3)`` float rotation matrices.
        R2: ``(..., 3, 3)`` float rotation matrices; leading dims broadcast with ``R1``'s.

    Returns:
        ``(...)`` angles in radians (broadcast leading shape).

    Raises:
        ValueError: if either input is not ``(..., 3, 3)``.
    """
    _check_last(R1, (3, 3), "R1")
    _check_last(R2, (3, 3), "R2")
    return rotation_angle(R1.transpose(-1, -2) @ R2)


def project_to_so3(M: Tensor) -> Tensor:
    """The rotation matrix nearest to ``M`` in Frobenius norm.

    With the SVD ``M = U S V^T``, returns ``U diag(1, 1, det(U V^T)) V^T``, which has determinant
    ``+1`` even when ``M`` is a reflection. The gradient is ill-conditioned where ``M`` has
    (nearly) repeated singular values (a property of the SVD).

    Args:
        M: ``(..., 3, 3)`` float matrices.

    Returns:
        ``(..., 3, 3)`` rotation matrices, same dtype and device as ``M``.

    Raises:
        ValueError: if ``M`` is not ``(..., 3, 3)``.
        TypeError: if ``M`` is not a floating-point tensor.

    Source:
        Umeyama, "Least-squares estimation of transformation parameters between two point
        patterns", TPAMI 1991 (the determinant correction); Kabsch 1976.
    """
    _check_last(M, (3, 3), "M")
    U, _, Vh = torch.linalg.svd(M)
    d = torch.linalg.det(U @ Vh)
    ones = torch.ones_like(d)
    D = torch.stack([ones, ones, d], dim=-1)
    return (U * D[..., None, :]) @ Vh

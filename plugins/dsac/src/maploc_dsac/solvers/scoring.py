"""Errors and soft inlier scores of pose hypotheses (DSAC* ``getReproErrs``, ``get3DDistErrs``).

Source: E. Brachmann and C. Rother, "Visual Camera Re-Localization from RGB and RGB-D Images Using
DSAC", TPAMI 2021 (DSAC*), Sec. 3: the soft inlier count ``s_h = sum_i sigmoid(beta (tau - e_hi))``.
The differentiable functions serve training; :func:`soft_inlier_counts_fast` computes the same
counts at test time; :func:`reprojection_error_components` is the candidate search's check.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from maploc_dsac.solvers.ops import Z_MIN, matmul3, matvec3, safe_norm, transform

__all__ = [
    "alignment_errors",
    "reprojection_error_components",
    "reprojection_errors",
    "soft_inlier_count",
    "soft_inlier_counts_fast",
]

_SCORE_BLOCK = 1 << 16  # CPU: hypothesis x correspondence elements scored at once (buffers stay in cache)


def reprojection_error_components(
    rot: list[list[Tensor]] | tuple,
    trans: list[Tensor] | tuple,
    X: list[Tensor],
    u: Tensor,
    v: Tensor,
    k: list[list[Tensor]],
    max_error: float,
) -> Tensor:
    """:func:`reprojection_errors` of one point per pose, on component tensors (all broadcast):
    ``rot[r][c]``, ``trans[r]``, point ``X[c]``, observation ``(u, v)``, intrinsics rows ``k[0]``,
    ``k[1]`` (the third row of K is ``e_z``)."""
    x, y, z = (rot[r][0] * X[0] + rot[r][1] * X[1] + rot[r][2] * X[2] + trans[r] for r in range(3))
    in_front = z > Z_MIN
    inv_z = 1.0 / torch.where(in_front, z, torch.ones_like(z))
    du = (k[0][0] * x + k[0][1] * y + k[0][2] * z) * inv_z - u
    dv = (k[1][0] * x + k[1][1] * y + k[1][2] * z) * inv_z - v
    err = (du * du + dv * dv).clamp_min(1e-20).sqrt().clamp(max=max_error)
    return torch.where(in_front, err, torch.full_like(err, max_error))


def reprojection_errors(
    R_world2cam: Tensor, t_world2cam: Tensor, scene_coordinates: Tensor, pixels: Tensor, K: Tensor, max_error: float
) -> Tensor:
    """Reprojection errors of scene coordinates under pose hypotheses (DSAC* ``getReproErrs``).

    Args:
        R_world2cam: ``(..., 3, 3)`` rotations world to camera.
        t_world2cam: ``(..., 3)`` translations, metres.
        scene_coordinates: ``(..., N, 3)`` world points, metres (broadcast against the poses).
        pixels: ``(..., N, 2)`` observed pixel positions ``(u, v)``.
        K: ``(..., 3, 3)`` pinhole intrinsics in pixels (last row ``0, 0, 1``), one per pose: its
            leading dims broadcast against those of the poses.
        max_error: clamp, pixels. Points at or behind the camera plane get this error.

    Returns:
        ``(..., N)`` errors in pixels, in ``[0, max_error]``; differentiable.
    """
    # One transform with P = K [R | t] (the third row of K is e_z, so the third coordinate is z).
    KR = matmul3(K, R_world2cam)
    Kt = matvec3(K, t_world2cam)
    p = transform(KR, Kt, scene_coordinates)
    z = p[..., 2]
    in_front = z > Z_MIN
    inv_z = 1.0 / torch.where(in_front, z, torch.ones_like(z))
    du = p[..., 0] * inv_z - pixels[..., 0]
    dv = p[..., 1] * inv_z - pixels[..., 1]
    err = (du * du + dv * dv).clamp_min(1e-20).sqrt().clamp(max=max_error)
    return torch.where(in_front, err, torch.full_like(err, max_error))


def alignment_errors(
    R_world2cam: Tensor, t_world2cam: Tensor, scene_coordinates: Tensor, points_cam: Tensor, max_error: float
) -> Tensor:
    """3-D distances between transformed scene coordinates and measured camera-frame points
    (DSAC* ``get3DDistErrs``), in metres, clamped at ``max_error`` metres; shapes as
    :func:`reprojection_errors` with ``points_cam (..., N, 3)`` in place of the pixels."""
    return safe_norm(transform(R_world2cam, t_world2cam, scene_coordinates) - points_cam).clamp(max=max_error)


def soft_inlier_count(errors: Tensor, mask: Tensor, threshold: float, beta: float) -> Tensor:
    """DSAC* soft inlier count ``sum_i mask_i * sigmoid(beta * (threshold - e_i))`` over the last dim.

    Args:
        errors: ``(..., N)`` errors (pixels or metres, as ``threshold``).
        mask: ``(..., N)`` bool, the correspondences that count.
        threshold: inlier threshold ``tau``.
        beta: sigmoid sharpness (1 / error unit); DSAC* uses ``5 / tau``.

    Returns:
        ``(...)`` soft inlier counts, differentiable in ``errors``.
    """
    return (torch.sigmoid(beta * (threshold - errors)) * mask).sum(-1)


def soft_inlier_counts_fast(
    P: Tensor,
    target: Tensor,
    sc: Tensor,
    valid: Tensor,
    threshold: float,
    beta: float,
    max_error: float,
    projective: bool,
) -> Tensor:
    """Soft inlier counts ``(B, H)`` of ``H`` poses per image, without autograd, without the
    ``(B, H, N, 3)`` intermediates of :func:`soft_inlier_count` on :func:`reprojection_errors`
    (equal up to rounding; ``tests/test_ransac.py`` compares them).

    One GEMM ``P [X; 1]`` per block of hypotheses, then a few in-place passes over ``(hypotheses, N)``
    buffers that are reused (fresh large allocations page-fault on the CPU), and the masked sum as a
    matrix-vector product. On the CPU, blocks of about ``_SCORE_BLOCK`` elements keep the buffers in
    cache; elsewhere one block holds the whole batch.

    Args:
        P: ``(B, H, 3, 4)`` the pose matrices applied to homogeneous scene coordinates: ``K [R | t]``
            (``projective``: errors in pixels after division by the third row) or ``[R | t]``
            (3-D distances).
        target: ``(B, D, N)`` the observations, NEGATED: ``-(u, v)`` (``D = 2``) or ``-x_cam``
            (``D = 3``).
        sc: ``(B, N, 3)`` scene coordinates, metres.
        valid: ``(B, N)`` bool, the correspondences that count.
        threshold: inlier threshold ``tau``.
        beta: sigmoid sharpness.
        max_error: the error clamp.
        projective: pixel errors with points at or behind ``z = Z_MIN`` clamped (``True``), or
            Euclidean distances (``False``).
    """
    B, H = P.shape[:2]
    N = sc.shape[1]
    dtype = sc.dtype
    rgb = projective
    P = P.to(dtype).reshape(B, H * 3, 4)
    Xh = torch.cat([sc, torch.ones_like(sc[..., :1])], -1).transpose(1, 2)  # (B, 4, N)
    weights = valid.to(dtype)[..., None]  # (B, N, 1)
    if sc.device.type == "cpu":
        bb, hb = 1, max(1, min(H, _SCORE_BLOCK // max(N, 1)))
        Xh, target = Xh.contiguous(), target.contiguous()
    else:
        bb, hb = B, H
    bt, max2 = beta * threshold, max_error**2
    if rgb:
        # Points at or behind the plane z = Z_MIN get the error clamp: with zc = max(z, z_next)
        # (z_next the next float above Z_MIN), (zc - z) is zero in front and at least one ulp of
        # z_next behind; scaled by `big` it pushes the squared error past the clamp.
        z_next = float(torch.nextafter(torch.tensor(Z_MIN, dtype=dtype), torch.tensor(1.0, dtype=dtype)))
        ulp = z_next - float(torch.nextafter(torch.tensor(z_next, dtype=dtype), torch.tensor(0.0, dtype=dtype)))
        big = 2.0 ** math.ceil(math.log2(4.0 * max2 / ulp))
    bt_t = torch.full((1, 1, 1), bt, dtype=dtype, device=sc.device)
    counts = torch.empty(B, H, 1, dtype=dtype, device=sc.device)
    proj = e2 = a = c = None
    for b0 in range(0, B, bb):
        b1 = min(B, b0 + bb)
        for h0 in range(0, H, hb):
            h1 = min(H, h0 + hb)
            shape = (b1 - b0, h1 - h0, N)
            if proj is None or proj.shape[0] != shape[0] or proj.shape[1] != 3 * shape[1]:
                proj = torch.empty(shape[0], 3 * shape[1], N, dtype=dtype, device=sc.device)
                e2, a, c = (torch.empty(shape, dtype=dtype, device=sc.device) for _ in range(3))
            torch.bmm(P[b0:b1, 3 * h0 : 3 * h1], Xh[b0:b1], out=proj)
            p = proj.view(shape[0], shape[1], 3, N)
            x, y, z = p[:, :, 0], p[:, :, 1], p[:, :, 2]
            tx, ty = target[b0:b1, 0, None], target[b0:b1, 1, None]
            if rgb:
                torch.clamp_min(z, z_next, out=a)
                torch.sub(a, z, out=c)  # > 0 behind the camera
                a.reciprocal_()
                torch.addcmul(tx, x, a, out=e2)  # u - u_obs
                torch.addcmul(ty, y, a, out=z)  # v - v_obs (z is no longer needed)
                e2.mul_(e2).addcmul_(z, z).add_(c, alpha=big)
            else:
                torch.add(x, tx, out=e2)
                torch.add(y, ty, out=a)
                torch.add(z, target[b0:b1, 2, None], out=c)
                e2.mul_(e2).addcmul_(a, a).addcmul_(c, c)
            # sigmoid(beta (tau - min(sqrt(max(e2, 1e-20)), max_error)))
            e2.clamp_(1e-20, max2).sqrt_()
            torch.add(bt_t, e2, alpha=-beta, out=e2).sigmoid_()
            torch.bmm(e2, weights[b0:b1], out=counts[b0:b1, h0:h1])
    return counts[..., 0]

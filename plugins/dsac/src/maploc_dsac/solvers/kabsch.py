"""Batched, weighted Kabsch / Umeyama rigid alignment (rotation and translation, no scale).

Source: W. Kabsch, "A solution for the best rotation to relate two sets of vectors", Acta Cryst. A32
(1976); with the reflection correction of S. Umeyama, "Least-squares estimation of transformation
parameters between two point patterns", TPAMI 13(4), 1991, eq. 39-43 (scale fixed to one).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kabsch"]


def kabsch(points_cam: Tensor, points_world: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Finds the rigid transform that best maps camera-frame points onto world-frame points.

    Minimizes ``sum_i w_i |R_cam2world @ p_cam_i + t_cam2world - p_world_i|^2`` over rotations
    (``det = +1``, reflections excluded) and translations, for every batch element at once.

    Args:
        points_cam: ``(..., N, 3)`` float, points in the camera frame, metres (e.g. from depth).
        points_world: ``(..., N, 3)`` same dtype, the corresponding points in the world frame, metres
            (e.g. scene coordinates). Leading dimensions broadcast against ``points_cam``.
        weights: ``(..., N)`` non-negative float weights, or ``None`` for all ones. A zero weight
            removes a correspondence (its coordinates may then be anything, NaN included).

    Returns:
        ``(R_cam2world, t_cam2world, valid)``:

        * ``R_cam2world``: ``(..., 3, 3)`` rotation from the camera to the world frame; identity where
          not ``valid``.
        * ``t_cam2world``: ``(..., 3)`` translation in metres (the camera centre in world coordinates);
          zero where not ``valid``.
        * ``valid``: ``(...)`` bool; ``False`` when fewer than three correspondences have a positive
          weight, when the weighted points are collinear or coincide (the rotation about their line is
          undetermined), or when the inputs are not finite. Never raises for degenerate data.

    Raises:
        ValueError: if the trailing dimension is not 3 or the point counts differ.

    Differentiable (float64 ``gradcheck``-tested) in both point sets and the weights wherever
    ``valid`` and the two largest singular values of the weighted cross-covariance are distinct.
    """
    if points_cam.shape[-1] != 3 or points_world.shape[-1] != 3:
        raise ValueError(f"expected (..., N, 3) points, got {tuple(points_cam.shape)} and {tuple(points_world.shape)}")
    if points_cam.shape[-2] != points_world.shape[-2]:
        raise ValueError(f"point counts differ: {points_cam.shape[-2]} vs {points_world.shape[-2]}")
    dtype = torch.promote_types(points_cam.dtype, points_world.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    points_cam, points_world = torch.broadcast_tensors(points_cam.to(dtype), points_world.to(dtype))
    if weights is None:
        weights = torch.ones(points_cam.shape[:-1], dtype=dtype, device=points_cam.device)
    weights = weights.to(dtype)
    batch = torch.broadcast_shapes(points_cam.shape[:-2], weights.shape[:-1])
    n = points_cam.shape[-2]
    points_cam = points_cam.expand(*batch, n, 3)
    points_world = points_world.expand(*batch, n, 3)
    weights = weights.expand(*batch, n)

    finite = torch.isfinite(points_cam).all(-1) & torch.isfinite(points_world).all(-1) & torch.isfinite(weights)
    use = finite & (weights > 0)
    w = torch.where(use, weights, torch.zeros_like(weights))
    pc = torch.where(use[..., None], points_cam, torch.zeros_like(points_cam))
    pw = torch.where(use[..., None], points_world, torch.zeros_like(points_world))
    bad_weight = (finite.logical_not() & (weights != 0)) | (weights < 0)

    w_sum = w.sum(-1)
    w_ok = w_sum > 0
    w_norm = w / torch.where(w_ok, w_sum, torch.ones_like(w_sum))[..., None]
    mu_c = (w_norm[..., None] * pc).sum(-2)
    mu_w = (w_norm[..., None] * pw).sum(-2)
    qc = pc - mu_c[..., None, :]
    qw = pw - mu_w[..., None, :]
    # Cross-covariance H = sum_i w_i q_cam_i q_world_i^T; H = U S V^T, R = V diag(1, 1, d) U^T.
    cov = (w_norm[..., None] * qc).transpose(-1, -2) @ qw
    eye = torch.eye(3, dtype=dtype, device=cov.device)
    ok_pre = w_ok & (use.sum(-1) >= 3) & ~bad_weight.any(-1)
    cov_safe = torch.where(ok_pre[..., None, None], cov, eye)
    u, s, vh = torch.linalg.svd(cov_safe)
    v = vh.transpose(-1, -2)
    d = torch.sign(torch.linalg.det(v @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    diag = torch.ones_like(s)
    diag = torch.cat([diag[..., :2], d[..., None]], dim=-1)
    rot = (v * diag[..., None, :]) @ u.transpose(-1, -2)
    trans = mu_w - (rot @ mu_c[..., None])[..., 0]

    # Degenerate: rank(H) < 2 (collinear or coincident points). Relative to the spread of the points.
    spread = ((w_norm * (qc * qc).sum(-1)).sum(-1) * (w_norm * (qw * qw).sum(-1)).sum(-1)).sqrt()
    tol = 1e3 * torch.finfo(dtype).eps
    valid = ok_pre & (s[..., 1] > tol * spread) & (spread > 0)
    valid = valid & torch.isfinite(rot).all(-1).all(-1) & torch.isfinite(trans).all(-1)
    rot = torch.where(valid[..., None, None], rot, eye)
    trans = torch.where(valid[..., None], trans, torch.zeros_like(trans))
    return rot, trans, valid

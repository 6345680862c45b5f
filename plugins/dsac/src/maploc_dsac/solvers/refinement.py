"""Pose refinement of the DSAC* RANSAC: Levenberg-Marquardt PnP and DSAC*'s inlier re-collection.

Source: E. Brachmann and C. Rother, "Visual Camera Re-Localization from RGB and RGB-D Images Using
DSAC", TPAMI 2021 (DSAC*), Sec. 3 and ``dsacstar_util.h`` (``refineHyp``: re-fit to the hard inliers
until their number stops growing). The reference code calls OpenCV's iterative PnP (also LM);
:func:`refine_pnp_lm` is the differentiable LM used in training, :func:`refine_pnp_lm_inliers` the same
steps at test time (one Gram matrix per iteration, converged problems dropped from the batch).
Levenberg-Marquardt: K. Levenberg, Q. Appl. Math. 1944; D. Marquardt, SIAM J. Appl. Math. 1963.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from maploc.geometry.rotation import axis_angle_to_matrix
from maploc_dsac.solvers.ops import Z_MIN, matmul3, matvec3, project, rows, transform

__all__ = ["pnp_gram", "pnp_normal_equations", "refine_on_inliers", "refine_pnp_lm", "refine_pnp_lm_inliers"]


def pnp_normal_equations(
    R: Tensor, t: Tensor, X: Tensor, pixels: Tensor, K: Tensor, weights: Tensor, max_error: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(J^T W J (..., 6, 6), J^T W r (..., 6), cost (...))`` for the left perturbation
    ``x_cam -> exp(omega) x_cam + delta`` of the pose, parameters ``(omega, delta)``."""
    xc = transform(R, t, X)
    uv, z, in_front = project(xc, K)
    r = uv - pixels
    w = weights * in_front
    # d(u, v)/d(x_cam) = (K[:2] - (u, v) e_z^T) / z, rows d_u, d_v; the rotation columns are x cross d.
    inv_z = 1.0 / z
    k = K[..., None, :2, :]  # (..., 1, 2, 3)
    dx = k[..., 0] * inv_z[..., None]  # (..., N, 2)
    dy = k[..., 1] * inv_z[..., None]
    dz = (k[..., 2] - uv) * inv_z[..., None]
    px, py, pz = (c[..., None] for c in xc.unbind(-1))
    jac = torch.stack([py * dz - pz * dy, pz * dx - px * dz, px * dy - py * dx, dx, dy, dz], -1)  # (..., N, 2, 6)
    jac = jac.flatten(-3, -2)  # (..., 2N, 6)
    batch = torch.broadcast_shapes(jac.shape[:-2], w.shape[:-1])
    jac = jac.expand(*batch, *jac.shape[-2:])
    jac_w = jac * w.repeat_interleave(2, dim=-1).expand(*batch, jac.shape[-2])[..., None]
    jtj = jac_w.transpose(-1, -2) @ jac
    jtr = (jac_w * r.flatten(-2, -1)[..., None]).sum(-2)
    return jtj, jtr, _pnp_cost(r, w, in_front, weights, max_error)


def _pnp_cost(r: Tensor, w: Tensor, in_front: Tensor, weights: Tensor, max_error: float) -> Tensor:
    behind = (weights * (~in_front)).sum(-1)
    return (w * (r * r).sum(-1)).sum(-1) + behind * max_error**2


def _pnp_cost_at(
    R: Tensor, t: Tensor, X: Tensor, pixels: Tensor, K: Tensor, weights: Tensor, max_error: float
) -> Tensor:
    uv, _, in_front = project(transform(R, t, X), K)
    return _pnp_cost(uv - pixels, weights * in_front, in_front, weights, max_error)


def refine_pnp_lm(
    R_world2cam: Tensor,
    t_world2cam: Tensor,
    scene_coordinates: Tensor,
    pixels: Tensor,
    K: Tensor,
    weights: Tensor,
    iterations: int = 10,
    damping: float = 1e-4,
    max_error: float = 100.0,
) -> tuple[Tensor, Tensor]:
    """Levenberg-Marquardt on the weighted squared reprojection error, batched over leading dims.

    Minimises ``sum_i w_i |pi(K, R X_i + t) - u_i|^2``. Each step solves the damped normal equations
    ``(J^T W J + lambda diag(J^T W J)) delta = -J^T W r`` for the left perturbation ``(omega, delta)``
    (``R <- exp(omega) R``, ``t <- exp(omega) t + delta``) and is kept only if the cost decreases;
    ``lambda`` shrinks tenfold after a kept step and grows tenfold otherwise. The decisions are
    piecewise constant, so the result is differentiable (autograd through every step) where they do
    not flip. A point that would move behind the camera costs ``max_error^2``.

    Args:
        R_world2cam: ``(..., 3, 3)`` initial rotation world to camera.
        t_world2cam: ``(..., 3)`` initial translation, metres.
        scene_coordinates: ``(..., N, 3)`` world points, metres (leading dims broadcast).
        pixels: ``(..., N, 2)`` observed pixels.
        K: ``(..., 3, 3)`` intrinsics, pixels.
        weights: ``(..., N)`` non-negative weights (e.g. a 0/1 inlier mask).
        iterations: LM iterations (a fixed number; without autograd it stops early once converged).
        damping: initial ``lambda``.
        max_error: the cost, in pixels, of a point behind the camera.

    Returns:
        ``(R_world2cam, t_world2cam)`` refined, same shapes. Unchanged where fewer than three points
        carry weight or no step lowers the cost.
    """
    batch = torch.broadcast_shapes(R_world2cam.shape[:-2], scene_coordinates.shape[:-2], weights.shape[:-1])
    R = R_world2cam.expand(*batch, 3, 3)
    t = t_world2cam.expand(*batch, 3)
    lam = torch.full(batch, damping, dtype=R.dtype, device=R.device)
    eye6 = torch.eye(6, dtype=R.dtype, device=R.device)
    enough = (weights > 0).sum(-1).expand(batch) >= 3
    stalls = torch.zeros(batch, dtype=torch.int64, device=R.device)
    eps = torch.finfo(R.dtype).eps
    for _ in range(iterations):
        jtj, jtr, cost = pnp_normal_equations(R, t, scene_coordinates, pixels, K, weights, max_error)
        diag = jtj.diagonal(dim1=-2, dim2=-1)
        scale = diag.amax(-1).clamp_min(1e-30)
        lhs = jtj + (lam[..., None] * diag + 1e-12 * scale[..., None]).diag_embed()
        lhs = torch.where(enough[..., None, None], lhs, eye6)
        step, info = torch.linalg.solve_ex(lhs, -jtr)
        ok = enough & (info == 0) & torch.isfinite(step).all(-1)
        step = torch.where(ok[..., None], step, torch.zeros_like(step))
        dR = axis_angle_to_matrix(step[..., :3])
        R_new = matmul3(dR, R)
        t_new = matvec3(dR, t) + step[..., 3:]
        new_cost = _pnp_cost_at(R_new, t_new, scene_coordinates, pixels, K, weights, max_error)
        accept = ok & (new_cost < cost)
        R = torch.where(accept[..., None, None], R_new, R)
        t = torch.where(accept[..., None], t_new, t)
        lam = torch.where(accept, (lam * 0.1).clamp_min(1e-12), (lam * 10.0).clamp_max(1e12))
        if not torch.is_grad_enabled():
            # Stop once every problem has converged: a kept step at rounding level, or two
            # rejected steps in a row (no further decrease is representable), or nothing to solve.
            stalls = torch.where(accept, torch.zeros_like(stalls), stalls + 1)
            tiny = step.abs().amax(-1) < 100.0 * eps * (1.0 + t.abs().amax(-1))
            if bool(((accept & tiny) | (stalls >= 2) | ~ok).all()):
                break
    return R, t


def pnp_gram(
    R: Tensor,
    t: Tensor,
    Xh: Tensor,
    uv_obs: Tensor,
    K: Tensor,
    weights: Tensor,
    max_error: float,
    buffer: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The normal equations of :func:`pnp_normal_equations` for ``B`` poses, in one Gram matrix.

    ``Xh (B, 4, M)`` homogeneous world points, ``uv_obs (B, 2, M)``, ``weights (B, M)`` in ``{0, 1}``
    (an inlier mask). With ``A`` the ``(7, 2M)`` matrix whose rows are the six Jacobian columns and
    the residuals, each column scaled by its weight, ``A A^T`` holds ``J^T W J``, ``J^T W r`` and
    ``r^T W r`` (``w^2 = w``): one batched GEMM instead of per-point 6x6 products. ``A`` is written
    in place, into ``buffer`` (at least ``B x 7 x 2 x M`` elements) when given: a fresh allocation of
    that size page-faults on every call on the CPU.
    Returns ``(J^T W J (B, 6, 6), J^T W r (B, 6), cost (B,))``.
    """
    B, M = weights.shape
    P = torch.cat([R, t[..., None]], -1)  # (B, 3, 4)
    KP = (K[:, :2, :, None] * P[:, None]).sum(-2)  # rows u, v of K [R | t]
    Y = torch.bmm(torch.cat([P, KP], 1), Xh)  # (B, 5, M): x_cam, u z, v z
    x, y, z = Y[:, 0:1], Y[:, 1:2], Y[:, 2:3]
    in_front = z > Z_MIN
    iz = 1.0 / torch.where(in_front, z, torch.ones_like(z))
    uv = Y[:, 3:5] * iz  # (B, 2, M)
    w = weights[:, None] * in_front  # (B, 1, M)
    izw = iz * w
    if buffer is None:
        A = torch.empty(B, 7, 2, M, dtype=R.dtype, device=R.device)
    else:
        A = buffer.view(-1)[: B * 7 * 2 * M].view(B, 7, 2, M)
    # d(u, v)/d(x_cam) = (K[:2] - (u, v) e_z^T) / z, weighted; the rotation columns are x_cam cross d.
    dx, dy, dz = A[:, 3], A[:, 4], A[:, 5]
    torch.mul(K[:, :2, 0:1], izw, out=dx)
    torch.mul(K[:, :2, 1:2], izw, out=dy)
    torch.sub(K[:, :2, 2:3], uv, out=dz).mul_(izw)
    torch.mul(y, dz, out=A[:, 0]).addcmul_(z, dy, value=-1.0)
    torch.mul(z, dx, out=A[:, 1]).addcmul_(x, dz, value=-1.0)
    torch.mul(x, dy, out=A[:, 2]).addcmul_(y, dx, value=-1.0)
    torch.sub(uv, uv_obs, out=A[:, 6]).mul_(w)
    A2 = A.view(B, 7, 2 * M)
    G = torch.bmm(A2, A2.transpose(1, 2))
    behind = (weights * (~in_front[:, 0])).sum(-1)
    return G[:, :6, :6], G[:, :6, 6], G[:, 6, 6] + behind * max_error**2


def refine_pnp_lm_inliers(
    R: Tensor,
    t: Tensor,
    Xh: Tensor,
    uv_obs: Tensor,
    K: Tensor,
    inliers: Tensor,
    iterations: int,
    damping: float = 1e-4,
    max_error: float = 100.0,
) -> tuple[Tensor, Tensor]:
    """Test-time :func:`refine_pnp_lm` (no autograd) for ``B`` poses on a boolean inlier set.

    ``R (B, 3, 3)``, ``t (B, 3)``, ``Xh (B, 4, N)`` homogeneous world points, ``uv_obs (B, 2, N)``,
    ``K (B, 3, 3)``, ``inliers (B, N)`` bool. The same damped steps, acceptance test and damping
    schedule; faster by (1) gathering each image's inliers first unless they are most of the
    correspondences (zero weights add nothing), (2) one
    Gram-matrix evaluation per iteration, at the trial pose (its normal equations are the next
    iteration's when the step is kept; :func:`refine_pnp_lm` evaluates the current pose again), and
    (3) dropping each problem from the batch once it has converged by :func:`refine_pnp_lm`'s test
    (which instead iterates until every problem of the batch has).
    """
    B, N = inliers.shape
    counts = inliers.sum(-1)
    M = int(counts.max()) if B > 0 else 0
    if M == 0 or iterations == 0:
        return R, t
    if M <= 0.75 * N:
        # Inliers first, gathered as rows of one flat table (a strided gather along N is slow).
        order = torch.argsort((~inliers).to(torch.uint8), dim=-1, stable=True)[:, :M]
        flat = (order + N * torch.arange(B, device=R.device)[:, None]).reshape(-1)
        table = torch.cat([Xh, uv_obs], 1).transpose(1, 2).reshape(B * N, 6)
        picked = table.index_select(0, flat).reshape(B, M, 6).transpose(1, 2)
        Xh, uv_obs = picked[:, :4].contiguous(), picked[:, 4:].contiguous()
        w = (torch.arange(M, device=R.device) < counts[:, None]).to(R.dtype)
    else:  # few outliers: zero weights cost less than the gather
        M = N
        w = inliers.to(R.dtype)
    eps = torch.finfo(R.dtype).eps
    R, t = R.clone(), t.clone()
    buffer = torch.empty(B, 7, 2, M, dtype=R.dtype, device=R.device)
    jtj, jtr, cost = pnp_gram(R, t, Xh, uv_obs, K, w, max_error, buffer)
    lam = torch.full((B,), damping, dtype=R.dtype, device=R.device)
    stalls = torch.zeros(B, dtype=torch.int64, device=R.device)
    active = (counts >= 3).nonzero()[:, 0]
    for _ in range(iterations):
        if active.numel() == 0:
            break
        full = active.numel() == B
        sel = functools.partial(rows, index=None if full else active)
        R_a, t_a, jtj_a, jtr_a, cost_a, lam_a = sel(R), sel(t), sel(jtj), sel(jtr), sel(cost), sel(lam)
        diag = jtj_a.diagonal(dim1=-2, dim2=-1)
        scale = diag.amax(-1).clamp_min(1e-30)
        lhs = jtj_a + (lam_a[..., None] * diag + 1e-12 * scale[..., None]).diag_embed()
        step, info = torch.linalg.solve_ex(lhs, -jtr_a)
        ok = (info == 0) & torch.isfinite(step).all(-1)
        step = torch.where(ok[..., None], step, torch.zeros_like(step))
        dR = axis_angle_to_matrix(step[..., :3])
        R_new = matmul3(dR, R_a)
        t_new = matvec3(dR, t_a) + step[..., 3:]
        jtj_n, jtr_n, cost_n = pnp_gram(R_new, t_new, sel(Xh), sel(uv_obs), sel(K), sel(w), max_error, buffer)
        accept = ok & (cost_n < cost_a)
        R_a = torch.where(accept[..., None, None], R_new, R_a)
        t_a = torch.where(accept[..., None], t_new, t_a)
        jtj_a = torch.where(accept[..., None, None], jtj_n, jtj_a)
        jtr_a = torch.where(accept[..., None], jtr_n, jtr_a)
        cost_a = torch.where(accept, cost_n, cost_a)
        lam_a = torch.where(accept, (lam_a * 0.1).clamp_min(1e-12), (lam_a * 10.0).clamp_max(1e12))
        stalls_a = torch.where(accept, torch.zeros_like(active), sel(stalls) + 1)
        tiny = step.abs().amax(-1) < 100.0 * eps * (1.0 + t_a.abs().amax(-1))
        done = (accept & tiny) | (stalls_a >= 2) | ~ok
        if full:
            R, t, jtj, jtr, cost, lam, stalls = R_a, t_a, jtj_a, jtr_a, cost_a, lam_a, stalls_a
        else:
            R[active], t[active], jtj[active], jtr[active] = R_a, t_a, jtj_a, jtr_a
            cost[active], lam[active], stalls[active] = cost_a, lam_a, stalls_a
        active = active[~done]
    return R, t


def refine_on_inliers(
    R: Tensor,
    t: Tensor,
    errors_fn: Callable[[Tensor, Tensor], Tensor],
    fit_fn: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]],
    mask: Tensor,
    threshold: float,
    min_inliers: int,
    max_steps: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """DSAC* ``refineHyp``: re-fit to the hard inliers until their number stops growing.

    Returns the refined pose and the inlier set of the last fit (``(..., N)`` bool); without
    gradients. ``fit_fn(R, t, inliers) -> (R, t, ok)``.
    """
    err = errors_fn(R, t)
    inliers = (err < threshold) & mask
    used = inliers
    best = torch.full(inliers.shape[:-1], min_inliers, dtype=torch.int64, device=R.device)
    active = torch.ones_like(best, dtype=torch.bool)
    for _ in range(max_steps):
        count = inliers.sum(-1)
        active = active & (count > best)
        if not bool(active.any()):
            break
        best = torch.where(active, count, best)
        R_new, t_new, ok = fit_fn(R, t, inliers)
        upd = active & ok
        R = torch.where(upd[..., None, None], R_new, R)
        t = torch.where(upd[..., None], t_new, t)
        used = torch.where(upd[..., None], inliers, used)
        active = upd
        inliers = (errors_fn(R, t) < threshold) & mask
    return R, t, used

"""Batched differentiable RANSAC of DSAC*: scene coordinates to a camera pose, RGB (PnP) or RGB-D (Kabsch).

Source: E. Brachmann and C. Rother, "Visual Camera Re-Localization from RGB and RGB-D Images Using
DSAC", TPAMI 2021 (DSAC*), section 3 and its public code (``dsacstar/dsacstar_util.h``,
``dsacstar.cpp``), whose defaults are used here:

* 64 hypotheses, each from a minimal set: four correspondences in RGB mode (P3P on three, the fourth
  picks among the up to four solutions), three in RGB-D mode (Kabsch). A hypothesis whose own minimal
  set does not reproject within the inlier threshold is redrawn.
* Inlier threshold ``tau`` = 10 px (RGB) or 0.1 m (RGB-D; the reference's 10 cm). Errors are clamped at
  100 px (RGB) or 1 m (RGB-D; the reference's 100 cm).
* Soft inlier count ``s_h = sum_i sigmoid(beta (tau - e_hi))`` with ``beta = 5 / tau`` (0.5 / px).
* Selection distribution ``p_h = softmax_h(alpha * s_h / N)`` with ``alpha = 100`` and ``N`` the number
  of (valid) correspondences.
* Test time: argmax hypothesis, then refinement on its hard inlier set (``e < tau``), re-collecting
  the inliers after each fit until their number stops growing, at most 100 times.
* Training: every hypothesis is refined and the expectation of a loss under ``p_h`` is minimised.

What differs, for a batched tensor implementation (none changes the estimator's definition):

* Sampling is bounded: at most ``candidates_per_hypothesis * H`` minimal sets (default 64 H) are drawn
  per image, in order and in chunks, each image until it has ``H`` self-consistent ones; the first
  ``H`` self-consistent ones are kept (the reference redraws each hypothesis up to 10^6 times).
  When too few are consistent, the remaining slots take candidates with a valid but inconsistent
  solution; only when no solution exists at all is a slot invalid (probability zero).
* Random numbers come from a counter-based hash of a per-image seed, so an image gets the same
  minimal sets alone or in a batch, and on any device.
* PnP refinement is Levenberg-Marquardt on the reprojection error (the reference calls OpenCV's
  iterative PnP, also LM); RGB-D refinement is weighted Kabsch, as in the reference.
* Training gradients: the reference differentiates each refined hypothesis implicitly at its optimum
  (``dsacstar.cpp``, "path I") and the scores through the minimal solver ("path II"). Here the final
  inlier set of each hypothesis is found without gradients, then ``train_refinement_steps``
  differentiable LM steps (RGB) or one weighted Kabsch (RGB-D) on that set start from the
  differentiable hypothesis; autograd then gives both paths, exactly for the computed function.

Precision: float32 or float64 in, the same out (half precision is computed in float32). The
minimal solvers and the test-time refinement run in float64 (float32 on backends without it, MPS);
hypothesis scoring runs in the input dtype.

Test time (``DSACRansac.__call__``, no autograd) computes the same quantities as the training path
with faster kernels, equal up to rounding (``tests/test_ransac.py`` compares them): the candidate
search solves P3P on component tensors (``p3p._p3p_components``) and stops each image once it has
its ``H`` hypotheses; the soft inlier counts come from one GEMM per block of hypotheses and in-place
passes over reused buffers, never materialising ``(B, H, N, 3)``; the winner's refinement re-fits
only the images whose inlier set still grows, with an LM whose normal equations are one Gram matrix
per iteration (:func:`_refine_pnp_lm_inliers`). The training path (``expectation``) shares only the
candidate search (without autograd; its kept sets are those of solving every candidate) and then
solves, scores and refines the kept hypotheses with the differentiable reference code.

Poses: internally ``x_cam = R_world2cam @ x_world + t_world2cam``; results are reported as
``R_cam2world``, ``t_cam2world`` (the camera centre in the world frame), as the rest of maploc.
Pixels follow OpenCV: the centre of the top-left pixel is ``(0, 0)``, and ``u = K[0] @ x_cam / z``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal, overload

import attrs
import torch
from torch import Tensor

from maploc_dsac.solvers.kabsch import kabsch
from maploc_dsac.solvers.p3p import _p3p_solve_components, p3p_lambda_twist

__all__ = [
    "DSACRansac",
    "RansacResult",
    "DSACExpectation",
    "sample_minimal_sets",
    "reprojection_errors",
    "alignment_errors",
    "soft_inlier_count",
    "refine_pnp_lm",
]

Mode = Literal["rgb", "rgbd"]
_MASK32 = 0xFFFFFFFF
_Z_MIN = 1e-6  # metres: points closer to (or behind) the camera plane do not project
_CANDIDATE_PIECE = 8192  # CPU: minimal problems solved at once (the solver's intermediates stay in cache)
_SCORE_BLOCK = 1 << 16  # CPU: hypothesis x correspondence elements scored at once (buffers stay in cache)


# --------------------------------------------------------------------------------------------------
# small geometry helpers


def _skew(v: Tensor) -> Tensor:
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack(
        [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2
    )


def _so3_exp(omega: Tensor) -> Tensor:
    """Rodrigues' formula, ``(..., 3)`` axis-angle (radians) to ``(..., 3, 3)``; smooth at zero."""
    theta2 = (omega * omega).sum(-1)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)
    k = _skew(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a[..., None, None] * k + b[..., None, None] * _matmul3(k, k)


def _transform(R: Tensor, t: Tensor, points: Tensor) -> Tensor:
    """``R (..., 3, 3)``, ``t (..., 3)``, ``points (..., N, 3)`` -> ``(..., N, 3)``."""
    if points.shape[-2] <= 8:  # many tiny matmuls are slow on CPU: elementwise instead
        return (points[..., :, None, :] * R[..., None, :, :]).sum(-1) + t[..., None, :]
    return points @ R.transpose(-1, -2) + t[..., None, :]


def _matmul3(a: Tensor, b: Tensor) -> Tensor:
    """``a (..., 3, 3) @ b (..., 3, 3)`` elementwise (batched tiny matmuls are slow on CPU)."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def _matvec3(a: Tensor, v: Tensor) -> Tensor:
    """``a (..., 3, 3) @ v (..., 3)`` elementwise."""
    return (a * v[..., None, :]).sum(-1)


def _invert(R: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    Rt = R.transpose(-1, -2)
    return Rt, -_matvec3(Rt, t)


def _project(points_cam: Tensor, K: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pinhole projection. Returns ``(pixels (..., N, 2), z_safe (..., N), in_front (..., N))``."""
    x, y, z = points_cam.unbind(-1)
    in_front = z > _Z_MIN
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    k = K[..., None, :2, :]  # (..., 1, 2, 3), rows u and v of K
    uv = x[..., None] * k[..., 0] + y[..., None] * k[..., 1] + z[..., None] * k[..., 2]
    return uv / z_safe[..., None], z_safe, in_front


def _reprojection_error_components(
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
    in_front = z > _Z_MIN
    inv_z = 1.0 / torch.where(in_front, z, torch.ones_like(z))
    du = (k[0][0] * x + k[0][1] * y + k[0][2] * z) * inv_z - u
    dv = (k[1][0] * x + k[1][1] * y + k[1][2] * z) * inv_z - v
    err = (du * du + dv * dv).clamp_min(1e-20).sqrt().clamp(max=max_error)
    return torch.where(in_front, err, torch.full_like(err, max_error))


@overload
def _rows(x: Tensor, index: Tensor | None) -> Tensor: ...
@overload
def _rows(x: None, index: Tensor | None) -> None: ...
def _rows(x: Tensor | None, index: Tensor | None) -> Tensor | None:
    """``x[index]`` along the first dim (``x`` itself for ``index=None``; ``None`` stays ``None``)."""
    return x if x is None or index is None else x.index_select(0, index)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 for the small, precision-critical solves, except where a backend lacks it."""
    return torch.float32 if x.device.type == "mps" else torch.float64


# --------------------------------------------------------------------------------------------------
# sampling


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer mixing function on int64 tensors holding values in ``[0, 2^32)``."""
    x = x & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def _seed_key(seed: Tensor) -> Tensor:
    return _hash32(_hash32(seed & _MASK32) ^ ((seed >> 32) & _MASK32))


def sample_minimal_sets(mask: Tensor, num_sets: int, set_size: int, seed: Tensor | int) -> tuple[Tensor, Tensor]:
    """Draws minimal sets of distinct valid correspondences, uniformly, for every image at once.

    Args:
        mask: ``(B, N)`` bool, the correspondences that may be drawn.
        num_sets: sets per image, ``C``.
        set_size: correspondences per set, ``k`` (at most ``N``).
        seed: an int (the same for every image) or ``(B,)`` int64, one seed per image. The sets of an
            image depend only on its seed and its mask, on every device.

    Returns:
        ``(indices, ok)``: ``(B, C, k)`` int64 indices into ``N`` (distinct within a set) and ``(B, C)``
        bool, ``False`` where the image has fewer than ``k`` valid correspondences (those indices are
        arbitrary, and in range when ``N > 0``).
    """
    B, N = mask.shape
    device = mask.device
    if N == 0:
        return (
            torch.zeros(B, num_sets, set_size, dtype=torch.int64, device=device),
            torch.zeros(B, num_sets, dtype=torch.bool, device=device),
        )
    return _minimal_set_sampler(mask, set_size, seed)(0, num_sets, None)


def _minimal_set_sampler(
    mask: Tensor, set_size: int, seed: Tensor | int
) -> Callable[[int, int, Tensor | None], tuple[Tensor, Tensor]]:
    """:func:`sample_minimal_sets` by ranges: ``draw(start, end, images)`` returns sets
    ``start .. end - 1`` of the images ``images`` (an index tensor, or ``None`` for all), the same as
    the corresponding slice of ``sample_minimal_sets(mask, n, set_size, seed)`` for any ``n >= end``
    (set ``c`` depends only on ``c``, the image's seed and its mask). ``mask`` has ``N > 0`` columns."""
    B, N = mask.shape
    device = mask.device
    seed_t = torch.as_tensor(seed, dtype=torch.int64, device=device).expand(B)
    key_all = _seed_key(seed_t)[:, None]  # (B, 1)
    n_valid_all = mask.sum(-1)  # (B,)
    order_all = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)  # valid indices first

    def draw(start: int, end: int, images: Tensor | None) -> tuple[Tensor, Tensor]:
        key, n_valid, order = (
            (key_all, n_valid_all, order_all)
            if images is None
            else (key_all[images], n_valid_all[images], order_all[images])
        )
        counter = torch.arange(start, end, device=device, dtype=torch.int64)[None, :] * set_size
        chosen: list[Tensor] = []
        for j in range(set_size):
            bits = _hash32(key ^ _hash32(counter + j + 0x9E3779B1))  # (B, C) uniform in [0, 2^32)
            m = (n_valid - j).clamp_min(1)[:, None]
            r = (bits * m) >> 32  # uniform in [0, m)
            if chosen:
                prev = torch.sort(torch.stack(chosen, -1), dim=-1).values
                for i in range(j):
                    r = r + (r >= prev[..., i]).to(r.dtype)
            chosen.append(r)
        ranks = torch.stack(chosen, -1).clamp_max(max(N - 1, 0))  # (B, C, k)
        indices = torch.gather(order, 1, ranks.reshape(order.shape[0], -1)).reshape(ranks.shape)
        ok = (n_valid >= set_size)[:, None].expand(ranks.shape[:2])
        return indices, ok

    return draw


def _gather_points(values: Tensor, indices: Tensor) -> Tensor:
    """``values (B, N, D)``, ``indices (B, C, k)`` -> ``(B, C, k, D)``."""
    B, C, k = indices.shape
    flat = indices.reshape(B, C * k, 1).expand(B, C * k, values.shape[-1])
    return torch.gather(values, 1, flat).reshape(B, C, k, values.shape[-1])


# --------------------------------------------------------------------------------------------------
# errors and scores


def _safe_norm(v: Tensor) -> Tensor:
    return (v * v).sum(-1).clamp_min(1e-20).sqrt()


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
    KR = _matmul3(K, R_world2cam)
    Kt = _matvec3(K, t_world2cam)
    p = _transform(KR, Kt, scene_coordinates)
    z = p[..., 2]
    in_front = z > _Z_MIN
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
    return _safe_norm(_transform(R_world2cam, t_world2cam, scene_coordinates) - points_cam).clamp(max=max_error)


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


# --------------------------------------------------------------------------------------------------
# refinement


def _pnp_normal_equations(
    R: Tensor, t: Tensor, X: Tensor, pixels: Tensor, K: Tensor, weights: Tensor, max_error: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(J^T W J (..., 6, 6), J^T W r (..., 6), cost (...))`` for the left perturbation
    ``x_cam -> exp(omega) x_cam + delta`` of the pose, parameters ``(omega, delta)``."""
    xc = _transform(R, t, X)
    uv, z, in_front = _project(xc, K)
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
    uv, _, in_front = _project(_transform(R, t, X), K)
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
        jtj, jtr, cost = _pnp_normal_equations(R, t, scene_coordinates, pixels, K, weights, max_error)
        diag = jtj.diagonal(dim1=-2, dim2=-1)
        scale = diag.amax(-1).clamp_min(1e-30)
        lhs = jtj + (lam[..., None] * diag + 1e-12 * scale[..., None]).diag_embed()
        lhs = torch.where(enough[..., None, None], lhs, eye6)
        step, info = torch.linalg.solve_ex(lhs, -jtr)
        ok = enough & (info == 0) & torch.isfinite(step).all(-1)
        step = torch.where(ok[..., None], step, torch.zeros_like(step))
        dR = _so3_exp(step[..., :3])
        R_new = _matmul3(dR, R)
        t_new = _matvec3(dR, t) + step[..., 3:]
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


def _pnp_gram(
    R: Tensor,
    t: Tensor,
    Xh: Tensor,
    uv_obs: Tensor,
    K: Tensor,
    weights: Tensor,
    max_error: float,
    buffer: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The normal equations of :func:`_pnp_normal_equations` for ``B`` poses, in one Gram matrix.

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
    in_front = z > _Z_MIN
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


def _refine_pnp_lm_inliers(
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
        rows = torch.cat([Xh, uv_obs], 1).transpose(1, 2).reshape(B * N, 6)
        picked = rows.index_select(0, flat).reshape(B, M, 6).transpose(1, 2)
        Xh, uv_obs = picked[:, :4].contiguous(), picked[:, 4:].contiguous()
        w = (torch.arange(M, device=R.device) < counts[:, None]).to(R.dtype)
    else:  # few outliers: zero weights cost less than the gather
        M = N
        w = inliers.to(R.dtype)
    eps = torch.finfo(R.dtype).eps
    R, t = R.clone(), t.clone()
    buffer = torch.empty(B, 7, 2, M, dtype=R.dtype, device=R.device)
    jtj, jtr, cost = _pnp_gram(R, t, Xh, uv_obs, K, w, max_error, buffer)
    lam = torch.full((B,), damping, dtype=R.dtype, device=R.device)
    stalls = torch.zeros(B, dtype=torch.int64, device=R.device)
    active = (counts >= 3).nonzero()[:, 0]
    for _ in range(iterations):
        if active.numel() == 0:
            break
        full = active.numel() == B
        sel = functools.partial(_rows, index=None if full else active)
        R_a, t_a, jtj_a, jtr_a, cost_a, lam_a = sel(R), sel(t), sel(jtj), sel(jtr), sel(cost), sel(lam)
        diag = jtj_a.diagonal(dim1=-2, dim2=-1)
        scale = diag.amax(-1).clamp_min(1e-30)
        lhs = jtj_a + (lam_a[..., None] * diag + 1e-12 * scale[..., None]).diag_embed()
        step, info = torch.linalg.solve_ex(lhs, -jtr_a)
        ok = (info == 0) & torch.isfinite(step).all(-1)
        step = torch.where(ok[..., None], step, torch.zeros_like(step))
        dR = _so3_exp(step[..., :3])
        R_new = _matmul3(dR, R_a)
        t_new = _matvec3(dR, t_a) + step[..., 3:]
        jtj_n, jtr_n, cost_n = _pnp_gram(R_new, t_new, sel(Xh), sel(uv_obs), sel(K), sel(w), max_error, buffer)
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


def _refine_on_inliers(
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


# --------------------------------------------------------------------------------------------------
# results


def _tensor_field() -> Tensor:
    return attrs.field(eq=False)


@attrs.frozen(kw_only=True, eq=False)
class RansacResult:
    """Test-time DSAC* result for a batch of ``B`` images.

    Attributes:
        R_cam2world: ``(B, 3, 3)`` estimated rotation camera to world; identity where no hypothesis
            was valid.
        t_cam2world: ``(B, 3)`` camera centre in the world frame, metres.
        success: ``(B,)`` bool; ``False`` when the image had too few valid correspondences (< 4 RGB,
            < 3 RGB-D), no valid hypothesis, or fewer final inliers than a minimal set.
        num_inliers: ``(B,)`` int64, correspondences within the inlier threshold of the final pose.
        inliers: ``(B, N)`` bool, those correspondences.
        soft_inlier_count: ``(B,)`` the selected hypothesis' soft inlier count (before refinement).
        hypothesis_index: ``(B,)`` int64, which of the ``H`` hypotheses was selected.
    """

    R_cam2world: Tensor = _tensor_field()
    t_cam2world: Tensor = _tensor_field()
    success: Tensor = _tensor_field()
    num_inliers: Tensor = _tensor_field()
    inliers: Tensor = _tensor_field()
    soft_inlier_count: Tensor = _tensor_field()
    hypothesis_index: Tensor = _tensor_field()

    @property
    def R_world2cam(self) -> Tensor:
        """``(B, 3, 3)`` rotation world to camera."""
        return self.R_cam2world.transpose(-1, -2)

    @property
    def t_world2cam(self) -> Tensor:
        """``(B, 3)`` translation world to camera, metres."""
        return -(self.R_world2cam @ self.t_cam2world[..., None])[..., 0]

    @property
    def T_cam2world(self) -> Tensor:
        """``(B, 4, 4)`` homogeneous camera-to-world transforms."""
        T = torch.zeros(
            *self.R_cam2world.shape[:-2], 4, 4, dtype=self.R_cam2world.dtype, device=self.R_cam2world.device
        )
        T[..., :3, :3] = self.R_cam2world
        T[..., :3, 3] = self.t_cam2world
        T[..., 3, 3] = 1.0
        return T


@attrs.frozen(kw_only=True, eq=False)
class DSACExpectation:
    """Training-time DSAC* output: every refined hypothesis and its selection probability.

    The DSAC objective is the expected loss ``E_h[loss] = sum_h p_h loss(R_h, t_h)``; use
    :meth:`expected_loss` (or :meth:`expectation` on per-hypothesis values). Gradients reach the
    scene coordinates through the probabilities (soft inlier counts, minimal solvers) and through
    the refined poses.

    Attributes:
        R_cam2world: ``(B, H, 3, 3)`` refined hypotheses, camera to world.
        t_cam2world: ``(B, H, 3)`` camera centres in the world frame, metres.
        probabilities: ``(B, H)`` selection probabilities ``softmax(alpha * s / N)``; zero for invalid
            hypotheses; rows sum to one where ``success``, are all zero otherwise.
        soft_inlier_count: ``(B, H)`` soft inlier counts ``s`` of the unrefined hypotheses.
        valid: ``(B, H)`` bool, hypotheses that exist.
        success: ``(B,)`` bool, images with at least one valid hypothesis.
        minimal_sets: ``(B, H, k)`` int64, the correspondences each hypothesis came from.
        inliers: ``(B, H, N)`` bool, the inlier set each hypothesis was refined on.
    """

    R_cam2world: Tensor = _tensor_field()
    t_cam2world: Tensor = _tensor_field()
    probabilities: Tensor = _tensor_field()
    soft_inlier_count: Tensor = _tensor_field()
    valid: Tensor = _tensor_field()
    success: Tensor = _tensor_field()
    minimal_sets: Tensor = _tensor_field()
    inliers: Tensor = _tensor_field()

    def expectation(self, values: Tensor) -> Tensor:
        """``sum_h p_h values[:, h]`` for ``values (B, H, ...)``; returns ``(B, ...)``."""
        p = self.probabilities.reshape(*self.probabilities.shape, *([1] * (values.dim() - 2)))
        return (p * torch.where(p > 0, values, torch.zeros_like(values))).sum(1)

    def expected_loss(self, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """DSAC expected loss ``(B,)``: ``loss_fn(R_cam2world (B, H, 3, 3), t_cam2world (B, H, 3))``
        must return per-hypothesis losses ``(B, H)``."""
        return self.expectation(loss_fn(self.R_cam2world, self.t_cam2world))


# --------------------------------------------------------------------------------------------------
# the solver


class DSACRansac:
    """DSAC* differentiable RANSAC, batched over images and hypotheses, on any device.

    ``solver(...)`` is the test-time estimator (argmax hypothesis, refined; no gradients);
    ``solver.expectation(...)`` is the training-time one (all hypotheses refined, selection
    probabilities; differentiable). See the module docstring for the algorithm and its source.

    Args:
        mode: ``"rgb"`` (2D-3D, P3P hypotheses, pixel errors) or ``"rgbd"`` (3D-3D, Kabsch hypotheses,
            metric errors).
        num_hypotheses: ``H`` hypotheses per image (DSAC*: 64).
        inlier_threshold: ``tau``; default 10 px (RGB) or 0.1 m (RGB-D).
        inlier_alpha: ``alpha`` of the selection softmax over ``s / N`` (DSAC*: 100).
        inlier_beta: sigmoid sharpness of the soft inlier count; default ``5 / tau``.
        max_error: error clamp; default 100 px (RGB) or 1 m (RGB-D).
        max_refinement_steps: inlier re-collections at most (DSAC*: 100).
        candidates_per_hypothesis: bound on the redraws: at most ``candidates_per_hypothesis * H``
            minimal sets per image are solved (in growing chunks, stopping once ``H`` are
            self-consistent). 64 keeps all hypotheses consistent up to about 80 % outliers.
        lm_iterations: LM iterations per PnP re-fit (each inlier re-collection) at test time.
        train_refinement_steps: differentiable LM iterations per hypothesis in training (RGB).

    Raises:
        ValueError: for an unknown mode, a non-positive count, threshold, clamp or ``alpha``, or a
            negative number of steps.

    Example::

        solver = DSACRansac("rgb")                      # DSAC* defaults
        result = solver(scene_coordinates, pixels, K)   # (B, N, 3), (B, N, 2), (B, 3, 3)
        result.R_cam2world, result.t_cam2world, result.success

        out = solver.expectation(scene_coordinates, pixels, K, seed=step)
        loss = out.expected_loss(lambda R, t: pose_loss(R, t, R_gt[:, None], t_gt[:, None])).mean()
        loss.backward()                                 # reaches scene_coordinates
    """

    def __init__(
        self,
        mode: Mode = "rgb",
        *,
        num_hypotheses: int = 64,
        inlier_threshold: float | None = None,
        inlier_alpha: float = 100.0,
        inlier_beta: float | None = None,
        max_error: float | None = None,
        max_refinement_steps: int = 100,
        candidates_per_hypothesis: int = 64,
        lm_iterations: int = 10,
        train_refinement_steps: int = 5,
    ) -> None:
        if mode not in ("rgb", "rgbd"):
            raise ValueError(f"mode must be 'rgb' or 'rgbd', got {mode!r}")
        self.mode: Mode = mode
        self.num_hypotheses = int(num_hypotheses)
        self.inlier_threshold = float(
            inlier_threshold if inlier_threshold is not None else (10.0 if mode == "rgb" else 0.1)
        )
        self.inlier_alpha = float(inlier_alpha)
        self.inlier_beta = float(inlier_beta if inlier_beta is not None else 5.0 / self.inlier_threshold)
        self.max_error = float(max_error if max_error is not None else (100.0 if mode == "rgb" else 1.0))
        self.max_refinement_steps = int(max_refinement_steps)
        self.candidates_per_hypothesis = int(candidates_per_hypothesis)
        self.lm_iterations = int(lm_iterations)
        self.train_refinement_steps = int(train_refinement_steps)
        for name in ("num_hypotheses", "candidates_per_hypothesis"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.inlier_threshold <= 0 or self.max_error <= 0 or self.inlier_alpha <= 0 or self.inlier_beta <= 0:
            raise ValueError(
                "inlier_threshold, max_error, inlier_alpha and inlier_beta must be positive, got "
                f"{self.inlier_threshold}, {self.max_error}, {self.inlier_alpha}, {self.inlier_beta}"
            )
        for name in ("max_refinement_steps", "lm_iterations", "train_refinement_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    @property
    def set_size(self) -> int:
        """Correspondences per minimal set: 4 (RGB: P3P plus one to disambiguate) or 3 (RGB-D)."""
        return 4 if self.mode == "rgb" else 3

    def __repr__(self) -> str:
        return (
            f"DSACRansac(mode={self.mode!r}, num_hypotheses={self.num_hypotheses}, "
            f"inlier_threshold={self.inlier_threshold}, inlier_alpha={self.inlier_alpha}, "
            f"inlier_beta={self.inlier_beta}, max_error={self.max_error})"
        )

    # ---- inputs -----------------------------------------------------------------------------------

    def _prepare(
        self,
        scene_coordinates: Tensor,
        pixels: Tensor | None,
        K: Tensor | None,
        points_cam: Tensor | None,
        mask: Tensor | None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor]:
        if scene_coordinates.dim() != 3 or scene_coordinates.shape[-1] != 3:
            raise ValueError(f"scene_coordinates must be (B, N, 3), got {tuple(scene_coordinates.shape)}")
        B, N, _ = scene_coordinates.shape
        dtype = scene_coordinates.dtype if scene_coordinates.is_floating_point() else torch.get_default_dtype()
        if torch.finfo(dtype).bits < 32:  # half precision (autocast): geometry needs at least float32
            dtype = torch.float32
        sc = scene_coordinates.to(dtype)
        valid = torch.isfinite(sc).all(-1)
        if mask is not None:
            if mask.shape != (B, N):
                raise ValueError(f"mask must be (B, N) = {(B, N)}, got {tuple(mask.shape)}")
            valid = valid & mask.to(torch.bool)
        if self.mode == "rgb":
            if pixels is None or K is None:
                raise ValueError("RGB mode needs pixels (B, N, 2) and K (B, 3, 3)")
            if pixels.shape != (B, N, 2):
                raise ValueError(f"pixels must be (B, N, 2) = {(B, N, 2)}, got {tuple(pixels.shape)}")
            K = K.to(dtype=dtype, device=sc.device)
            if K.shape[-2:] != (3, 3):
                raise ValueError(f"K must be (B, 3, 3) or (3, 3), got {tuple(K.shape)}")
            K = K.expand(B, 3, 3)
            pixels = pixels.to(dtype)
            valid = valid & torch.isfinite(pixels).all(-1)
            pixels = torch.where(valid[..., None], pixels, torch.zeros_like(pixels))
        else:
            if points_cam is None:
                raise ValueError("RGB-D mode needs points_cam (B, N, 3)")
            if points_cam.shape != (B, N, 3):
                raise ValueError(f"points_cam must be (B, N, 3) = {(B, N, 3)}, got {tuple(points_cam.shape)}")
            points_cam = points_cam.to(dtype)
            valid = valid & torch.isfinite(points_cam).all(-1) & (points_cam[..., 2] > 0)
            points_cam = torch.where(valid[..., None], points_cam, torch.zeros_like(points_cam))
        sc = torch.where(valid[..., None], sc, torch.zeros_like(sc))
        return sc, pixels, K, points_cam, valid

    @staticmethod
    def _seeds(seed: Tensor | int | None, B: int, device: torch.device) -> Tensor:
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        if isinstance(seed, int):
            # Decorrelate the images of a batch, deterministically.
            idx = torch.arange(B, dtype=torch.int64, device=device)
            return (
                (_hash32(torch.full_like(idx, seed & _MASK32) ^ _hash32(idx + 0x632BE5AB)) << 31) ^ (seed >> 32) ^ idx
            )
        seed_t = torch.as_tensor(seed, dtype=torch.int64, device=device)
        if seed_t.shape != (B,):
            raise ValueError(f"seed must be an int or a (B,) = ({B},) tensor, got shape {tuple(seed_t.shape)}")
        return seed_t

    # ---- hypotheses -------------------------------------------------------------------------------

    def _candidates_rgb(
        self, sc: Tensor, pixels: Tensor, K: Tensor, sets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """P3P on the first three of each set, the fourth picks the solution (OpenCV ``SOLVEPNP_P3P``
        on four points, as DSAC* ``sampleHypotheses``). Returns R, t (compute dtype), has_solution,
        consistent (all four within the threshold)."""
        cd = _compute_dtype(sc)
        Kc = K.to(cd)
        Kinv = torch.linalg.inv(Kc)
        if torch.is_grad_enabled():
            # With autograd (training: the kept sets are solved again), the reference solver.
            X = _gather_points(sc, sets).to(cd)  # (B, C, 4, 3)
            uv = _gather_points(pixels, sets).to(cd)  # (B, C, 4, 2)
            rays = _matvec3(Kinv[:, None, None], torch.cat([uv, torch.ones_like(uv[..., :1])], -1))
            R, t, ok = p3p_lambda_twist(rays[..., :3, :], X[..., :3, :])  # (B, C, 4, 3, 3), (B, C, 4, 3), (B, C, 4)
            err = reprojection_errors(R, t, X[:, :, None], uv[:, :, None], Kc[:, None, None], self.max_error)
            fourth = torch.where(ok, err[..., 3], torch.full_like(err[..., 3], float("inf")))
            best = fourth.argmin(-1)  # (B, C)
            R = torch.gather(R, 2, best[..., None, None, None].expand(*best.shape, 1, 3, 3)).squeeze(2)
            t = torch.gather(t, 2, best[..., None, None].expand(*best.shape, 1, 3)).squeeze(2)
            has = ok.any(-1)
            err_best = torch.gather(err, 2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(2)
            consistent = has & (err_best < self.inlier_threshold).all(-1)
            return R, t, has, consistent
        # Without autograd (the candidate search), the same on component tensors: faster.
        B, C, k = sets.shape
        N = sc.shape[1]
        flat = (sets + N * torch.arange(B, device=sets.device)[:, None, None]).reshape(-1)
        # Component-major (coordinate, point, B, C): every coordinate of every point is contiguous.
        Xp = sc.reshape(B * N, 3).index_select(0, flat).reshape(B, C, k, 3).permute(3, 2, 0, 1).to(cd).contiguous()
        up = pixels.reshape(B * N, 2).index_select(0, flat).reshape(B, C, k, 2).permute(3, 2, 0, 1).to(cd).contiguous()
        kinv = [[Kinv[:, r, c, None] for c in range(3)] for r in range(3)]  # (B, 1)
        rays = tuple(
            tuple(kinv[r][0] * up[0, i] + kinv[r][1] * up[1, i] + kinv[r][2] for r in range(3)) for i in range(3)
        )
        points = tuple((Xp[0, i], Xp[1, i], Xp[2, i]) for i in range(3))
        poses, ok, slot = _p3p_solve_components(rays, points)  # sparse: (12, S), (S,), (S,) into (B, C, 4)
        # The fourth point picks the solution (on the solved slots only); then the chosen one must
        # reproject all four within tau.
        problem = torch.div(slot, 4, rounding_mode="floor")  # into (B * C)
        image = torch.div(problem, C, rounding_mode="floor")
        Ks = Kc[:, :2].reshape(B, 6).index_select(0, image).T  # (6, S): rows u, v of K
        kk = [[Ks[3 * i + j] for j in range(3)] for i in range(2)]
        X4 = [Xp[c, 3].reshape(-1).index_select(0, problem) for c in range(3)]
        u4, v4 = (up[c, 3].reshape(-1).index_select(0, problem) for c in range(2))
        rot = [[poses[3 * r + c] for c in range(3)] for r in range(3)]
        err4 = _reprojection_error_components(rot, poses[9:], X4, u4, v4, kk, self.max_error)
        err4 = torch.where(ok, err4, float("inf"))
        fourth = torch.full((B * C * 4,), float("inf"), dtype=cd, device=sc.device).index_copy_(0, slot, err4)
        fourth = fourth.reshape(B, C, 4)
        best = fourth.argmin(-1)  # (B, C)
        has = torch.isfinite(fourth).any(-1)
        # Position of each problem's chosen slot among the solved slots (valid where `has`; unsolved
        # slots point past the end, at an identity pose with an infinite error).
        S = slot.numel()
        identity = torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], dtype=cd, device=sc.device)[:, None]
        poses = torch.cat([poses, identity], 1)
        err4 = torch.cat([err4, err4.new_full((1,), float("inf"))])
        position = torch.full((B * C * 4,), S, dtype=torch.int64, device=sc.device)
        position.index_copy_(0, slot, torch.arange(S, device=sc.device))
        flat_best = (best + 4 * torch.arange(B * C, device=sc.device).reshape(B, C)).reshape(-1)
        chosen_pos = position.index_select(0, flat_best)
        chosen = torch.where(has.reshape(1, -1), poses.index_select(1, chosen_pos), identity)  # (12, B * C)
        err_best4 = err4.index_select(0, chosen_pos)
        chosen = chosen.reshape(12, B, C)
        R = chosen[:9].movedim(0, -1).reshape(B, C, 3, 3)
        t = chosen[9:].movedim(0, -1).contiguous()
        rot_b = [[chosen[3 * r + c] for c in range(3)] for r in range(3)]
        trans_b = [chosen[9 + r] for r in range(3)]
        kk = [[Kc[:, i, j, None] for j in range(3)] for i in range(2)]  # (B, 1)
        consistent = has & (err_best4.reshape(B, C) < self.inlier_threshold)
        for i in range(3):
            Xi = [Xp[c, i] for c in range(3)]
            err = _reprojection_error_components(rot_b, trans_b, Xi, up[0, i], up[1, i], kk, self.max_error)
            consistent = consistent & (err < self.inlier_threshold)
        return R, t, has, consistent

    def _candidates_rgbd(self, sc: Tensor, points_cam: Tensor, sets: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        cd = _compute_dtype(sc)
        X = _gather_points(sc, sets).to(cd)
        P = _gather_points(points_cam, sets).to(cd)
        R_c2w, t_c2w, ok = kabsch(P, X)
        R, t = _invert(R_c2w, t_c2w)
        err = alignment_errors(R, t, X, P, self.max_error)
        consistent = ok & (err < self.inlier_threshold).all(-1)
        return R, t, ok, consistent

    def hypotheses(
        self,
        scene_coordinates: Tensor,
        pixels: Tensor | None = None,
        K: Tensor | None = None,
        points_cam: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        seed: Tensor | int | None = None,
        minimal_sets: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draws and solves the minimal sets (DSAC* ``sampleHypotheses``).

        Args: as :meth:`__call__`.

        Returns:
            ``(R_world2cam (B, H, 3, 3), t_world2cam (B, H, 3), valid (B, H), minimal_sets (B, H, k))``
            in the dtype of ``scene_coordinates``; differentiable in the inputs.
        """
        sc, pixels, K, points_cam, valid = self._prepare(scene_coordinates, pixels, K, points_cam, mask)
        return self._hypotheses(sc, pixels, K, points_cam, valid, seed, minimal_sets)

    def _hypotheses(
        self,
        sc: Tensor,
        pixels: Tensor | None,
        K: Tensor | None,
        points_cam: Tensor | None,
        valid: Tensor,
        seed: Tensor | int | None,
        minimal_sets: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        B, N, _ = sc.shape
        H, k = self.num_hypotheses, self.set_size
        if minimal_sets is not None:
            if minimal_sets.dim() != 3 or minimal_sets.shape[0] != B or minimal_sets.shape[-1] != k:
                raise ValueError(f"minimal_sets must be (B, H', {k}), got {tuple(minimal_sets.shape)}")
            sets = minimal_sets.to(device=sc.device, dtype=torch.int64).clamp(0, max(N - 1, 0))
            sets_ok = torch.gather(valid, 1, sets.reshape(B, -1)).reshape(sets.shape).all(-1)
            H = sets.shape[1]
        elif N == 0:
            sets, sets_ok = sample_minimal_sets(valid, H, k, 0)

        def solve(
            chosen: Tensor,
            chosen_ok: Tensor,
            sc_: Tensor = sc,
            pixels_: Tensor | None = pixels,
            K_: Tensor | None = K,
            points_cam_: Tensor | None = points_cam,
        ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            if self.mode == "rgb":
                assert pixels_ is not None and K_ is not None
                R_, t_, has_, cons_ = self._candidates_rgb(sc_, pixels_, K_, chosen)
            else:
                assert points_cam_ is not None
                R_, t_, has_, cons_ = self._candidates_rgbd(sc_, points_cam_, chosen)
            has_ = has_ & chosen_ok
            return R_, t_, has_, cons_ & has_

        if minimal_sets is not None or N == 0:
            R, t, has, _ = solve(sets, sets_ok)
        else:
            # Choose the sets without autograd: keep the first H self-consistent candidates, then the
            # other solvable ones. The candidates are solved in order, in chunks, and an image stops as
            # soon as it has H self-consistent ones: the kept sets are then the same as when solving
            # all of them (an image with fewer than H consistent ones is solved to the end).
            grad = torch.is_grad_enabled()
            with torch.no_grad():
                draw = _minimal_set_sampler(valid, k, self._seeds(seed, B, sc.device))
                R, t, has, consistent, sets, sets_ok = self._solve_candidates(
                    solve, draw, H * self.candidates_per_hypothesis, sc, pixels, K, points_cam
                )
                priority = 2 - consistent.to(torch.int64) - has.to(torch.int64)
                order = torch.argsort(priority, dim=1, stable=True)[:, :H]
            sets = torch.gather(sets, 1, order[..., None].expand(B, H, k))
            if grad:  # solve the kept sets again, now with autograd
                R, t, has, _ = solve(sets, torch.gather(sets_ok, 1, order))
            else:
                R = torch.gather(R, 1, order[..., None, None].expand(B, H, 3, 3))
                t = torch.gather(t, 1, order[..., None].expand(B, H, 3))
                has = torch.gather(has, 1, order)
        dtype = sc.dtype
        return R.to(dtype), t.to(dtype), has, sets

    def _solve_candidates(
        self,
        solve: Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]],
        draw: Callable[[int, int, Tensor | None], tuple[Tensor, Tensor]],
        C: int,
        sc: Tensor,
        pixels: Tensor | None,
        K: Tensor | None,
        points_cam: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Draws and solves candidate sets ``0 .. C - 1`` in order until each image has ``H``
        self-consistent ones (or none is left), without autograd.

        Returns ``(R, t, has, consistent, sets, sets_ok)`` for the first ``C'`` candidates, ``C'`` the
        most any image needed; candidates an image did not need are marked as not solved (``has`` and
        ``consistent`` False). The first chunk has ``1.25 H + 8`` candidates (enough when outliers are
        rare: even then noise makes a few ill-conditioned sets inconsistent); the next ones are sized
        from the images' observed rates of consistent candidates, and only the images still short of
        ``H`` are drawn and solved. On the CPU a chunk is solved in pieces of at most
        ``_CANDIDATE_PIECE`` minimal problems, which keeps the solver's intermediates in cache.
        """
        B = sc.shape[0]
        H, k = self.num_hypotheses, self.set_size
        device = sc.device
        n_cons = torch.zeros(B, dtype=torch.int64, device=device)
        active = torch.arange(B, device=device)
        rounds: list[tuple[Tensor | None, int, int, tuple[Tensor, ...]]] = []
        start = 0
        while start < C and active.numel() > 0:
            if start == 0:
                size = H + H // 4 + 8
            else:
                # Candidates each image still needs at its observed rate (half a success when it has
                # none yet), with a margin; the median over the images still short of H.
                need = (H - n_cons[active]).to(torch.float64)
                rate = n_cons[active].to(torch.float64).clamp_min(0.5) / start
                size = max(H // 4, int(math.ceil(1.25 * float((need / rate).median()) + 4)))
            end = min(C, start + size)
            images = None if active.numel() == B else active
            sub = functools.partial(_rows, index=images)
            sc_a, px_a, K_a, pc_a = sub(sc), sub(pixels), sub(K), sub(points_cam)
            piece = end - start
            if device.type == "cpu":
                piece = max(1, min(piece, _CANDIDATE_PIECE // max(1, active.numel())))
            sets_r, ok_r = draw(start, end, images)
            parts = [
                solve(sets_r[:, i : i + piece], ok_r[:, i : i + piece], sc_a, px_a, K_a, pc_a)
                for i in range(0, end - start, piece)
            ]
            result = (
                *(torch.cat(items, dim=1) if len(items) > 1 else items[0] for items in zip(*parts, strict=True)),
                sets_r,
                ok_r,
            )
            rounds.append((images, start, end, result))
            n_cons[active] += result[3].sum(1)
            start = end
            active = active[n_cons[active] < H]
        # Assemble (B, C') buffers; candidates an image did not need stay "not solved".
        R_all = torch.eye(3, dtype=rounds[0][3][0].dtype, device=device).repeat(B, start, 1, 1)
        t_all = torch.zeros(B, start, 3, dtype=R_all.dtype, device=device)
        has_all = torch.zeros(B, start, dtype=torch.bool, device=device)
        cons_all = torch.zeros(B, start, dtype=torch.bool, device=device)
        sets_all = torch.zeros(B, start, k, dtype=torch.int64, device=device)
        ok_all = torch.zeros(B, start, dtype=torch.bool, device=device)
        buffers = (R_all, t_all, has_all, cons_all, sets_all, ok_all)
        for images, a, b, result in rounds:
            for buf, val in zip(buffers, result, strict=True):
                if images is None:
                    buf[:, a:b] = val
                else:
                    buf[images, a:b] = val
        return buffers

    # ---- scoring ----------------------------------------------------------------------------------

    def _errors(
        self, R: Tensor, t: Tensor, sc: Tensor, pixels: Tensor | None, K: Tensor | None, points_cam: Tensor | None
    ) -> Tensor:
        """Errors ``(B, *, N)`` for poses ``(B, *, 3, 3)``; ``*`` is empty or one hypothesis dim."""
        extra = R.dim() - 3

        def expand(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], *([1] * extra), *x.shape[1:])

        if self.mode == "rgb":
            assert pixels is not None and K is not None
            return reprojection_errors(R, t, expand(sc), expand(pixels), expand(K), self.max_error)
        assert points_cam is not None
        return alignment_errors(R, t, expand(sc), expand(points_cam), self.max_error)

    def _score(self, errors: Tensor, valid: Tensor, hyp_valid: Tensor) -> tuple[Tensor, Tensor]:
        """Soft inlier counts ``(B, H)`` and selection logits ``alpha * s / N`` (``-inf`` if invalid)."""
        counts = soft_inlier_count(errors, valid[:, None, :], self.inlier_threshold, self.inlier_beta)
        n = valid.sum(-1).clamp_min(1).to(errors.dtype)[:, None]
        logits = self.inlier_alpha * counts / n
        logits = torch.where(hyp_valid, logits, torch.full_like(logits, float("-inf")))
        return counts, logits

    def _soft_counts(
        self,
        R: Tensor,
        t: Tensor,
        sc: Tensor,
        pixels: Tensor | None,
        K: Tensor | None,
        points_cam: Tensor | None,
        valid: Tensor,
    ) -> Tensor:
        """Soft inlier counts ``(B, H)`` of poses ``(B, H, 3, 3)``, ``(B, H, 3)`` without autograd.

        The same values as ``soft_inlier_count(self._errors(...), ...)`` up to rounding, computed
        without the ``(B, H, N, 3)`` intermediates: one GEMM ``[K R | K t] [X; 1]`` per block of
        hypotheses, then a few in-place passes over ``(hypotheses, N)`` buffers that are reused
        (fresh large allocations page-fault on the CPU), and the masked sum as a matrix-vector product.
        On the CPU, blocks of about ``_SCORE_BLOCK`` elements keep the buffers in cache; elsewhere one
        block holds the whole batch.
        """
        B, H = R.shape[:2]
        N = sc.shape[1]
        dtype = sc.dtype
        rgb = self.mode == "rgb"
        if rgb:
            assert pixels is not None and K is not None
            P = torch.cat([_matmul3(K[:, None], R), _matvec3(K[:, None], t)[..., None]], -1)  # K [R | t]
            target = pixels.transpose(1, 2).neg()  # (B, 2, N), -(u, v)
        else:
            assert points_cam is not None
            P = torch.cat([R, t[..., None]], -1)
            target = points_cam.transpose(1, 2).neg()  # (B, 3, N)
        P = P.to(dtype).reshape(B, H * 3, 4)
        Xh = torch.cat([sc, torch.ones_like(sc[..., :1])], -1).transpose(1, 2)  # (B, 4, N)
        weights = valid.to(dtype)[..., None]  # (B, N, 1)
        if sc.device.type == "cpu":
            bb, hb = 1, max(1, min(H, _SCORE_BLOCK // max(N, 1)))
            Xh, target = Xh.contiguous(), target.contiguous()
        else:
            bb, hb = B, H
        beta, bt, max2 = self.inlier_beta, self.inlier_beta * self.inlier_threshold, self.max_error**2
        if rgb:
            # Points at or behind the plane z = _Z_MIN get the error clamp: with zc = max(z, z_next)
            # (z_next the next float above _Z_MIN), (zc - z) is zero in front and at least one ulp of
            # z_next behind; scaled by `big` it pushes the squared error past the clamp.
            z_next = float(torch.nextafter(torch.tensor(_Z_MIN, dtype=dtype), torch.tensor(1.0, dtype=dtype)))
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

    # ---- refinement -------------------------------------------------------------------------------

    def _fit_fn(
        self,
        sc: Tensor,
        pixels: Tensor | None,
        K: Tensor | None,
        points_cam: Tensor | None,
        extra: int,
        iterations: int,
    ) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
        def expand(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], *([1] * extra), *x.shape[1:])

        if self.mode == "rgb":
            assert pixels is not None and K is not None
            X, uv, Kx = expand(sc), expand(pixels), expand(K)

            def fit(R: Tensor, t: Tensor, inliers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
                R_new, t_new = refine_pnp_lm(R, t, X, uv, Kx, inliers.to(R.dtype), iterations, max_error=self.max_error)
                return R_new, t_new, inliers.sum(-1) >= 4

            return fit
        assert points_cam is not None
        X, P = expand(sc), expand(points_cam)

        def fit_rgbd(R: Tensor, t: Tensor, inliers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            R_c2w, t_c2w, ok = kabsch(P, X, inliers.to(R.dtype))
            R_new, t_new = _invert(R_c2w, t_c2w)
            return R_new, t_new, ok

        return fit_rgbd

    def _refine_winner(
        self,
        R: Tensor,
        t: Tensor,
        sc: Tensor,
        pixels: Tensor | None,
        K: Tensor | None,
        points_cam: Tensor | None,
        mask: Tensor,
        valid: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Test-time ``_refine_on_inliers`` for one pose per image ``(B, 3, 3)``, ``(B, 3)``, in the
        compute dtype: the same re-fits, but each step only re-fits (and re-scores) the images whose
        inlier set is still growing, and PnP uses :func:`_refine_pnp_lm_inliers`. Returns the refined
        pose and its inliers among ``valid``."""
        B = R.shape[0]
        rgb = self.mode == "rgb"
        Xh = torch.cat([sc, torch.ones_like(sc[..., :1])], -1).transpose(1, 2).contiguous()  # (B, 4, N)
        if rgb:
            assert pixels is not None and K is not None
            target = pixels.transpose(1, 2).contiguous()  # (B, 2, N)
        else:
            assert points_cam is not None
            target = points_cam.transpose(1, 2).contiguous()  # (B, 3, N)

        def errors(idx: Tensor | None, R_: Tensor, t_: Tensor) -> Tensor:
            if idx is None:
                return self._pose_errors(R_, t_, Xh, target, K)
            return self._pose_errors(R_, t_, _rows(Xh, idx), _rows(target, idx), _rows(K, idx))

        R, t = R.clone(), t.clone()
        inliers = (errors(None, R, t) < self.inlier_threshold) & mask
        best = torch.full((B,), self.set_size, dtype=torch.int64, device=R.device)
        active = torch.ones(B, dtype=torch.bool, device=R.device)
        for _ in range(self.max_refinement_steps):
            count = inliers.sum(-1)
            active = active & (count > best)
            idx = active.nonzero()[:, 0]
            if idx.numel() == 0:
                break
            best = torch.where(active, count, best)
            every = idx.numel() == B
            sub = functools.partial(_rows, index=None if every else idx)
            inl = sub(inliers)
            R_a, t_a = sub(R), sub(t)
            if rgb:
                R_new, t_new = _refine_pnp_lm_inliers(
                    R_a, t_a, sub(Xh), sub(target), sub(K), inl, self.lm_iterations, max_error=self.max_error
                )
                ok = sub(count) >= 4
            else:
                R_c2w, t_c2w, ok = kabsch(sub(points_cam), sub(sc), inl.to(R.dtype))
                R_new, t_new = _invert(R_c2w, t_c2w)
            R_a = torch.where(ok[:, None, None], R_new, R_a)
            t_a = torch.where(ok[:, None], t_new, t_a)
            inl = (errors(None if every else idx, R_a, t_a) < self.inlier_threshold) & sub(mask)
            if every:
                R, t, active, inliers = R_a, t_a, ok, inl
            else:
                R[idx], t[idx], active[idx], inliers[idx] = R_a, t_a, ok, inl
        return R, t, (errors(None, R, t) < self.inlier_threshold) & valid

    def _pose_errors(self, R: Tensor, t: Tensor, Xh: Tensor, target: Tensor, K: Tensor | None) -> Tensor:
        """:meth:`_errors` ``(B, N)`` of one pose per image from homogeneous points ``Xh (B, 4, N)`` and
        ``target (B, 2 | 3, N)`` (pixels or camera points): one GEMM for the transform."""
        P = torch.cat([R, t[..., None]], -1)  # (B, 3, 4)
        if self.mode == "rgb":
            assert K is not None
            p = torch.bmm(_matmul3(K, P[..., :3]).contiguous(), Xh[:, :3]) + _matvec3(K, t)[..., None]  # K [R | t] X
            z = p[:, 2]
            in_front = z > _Z_MIN
            inv_z = 1.0 / torch.where(in_front, z, torch.ones_like(z))
            du = p[:, 0] * inv_z - target[:, 0]
            dv = p[:, 1] * inv_z - target[:, 1]
            err = (du * du + dv * dv).clamp_min(1e-20).sqrt().clamp(max=self.max_error)
            return torch.where(in_front, err, torch.full_like(err, self.max_error))
        d = torch.bmm(P, Xh) - target
        return (d * d).sum(1).clamp_min(1e-20).sqrt().clamp(max=self.max_error)

    # ---- public entry points ----------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        scene_coordinates: Tensor,
        pixels: Tensor | None = None,
        K: Tensor | None = None,
        points_cam: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        seed: Tensor | int | None = None,
        minimal_sets: Tensor | None = None,
    ) -> RansacResult:
        """Test-time DSAC*: hypotheses, soft inlier scores, argmax, refinement (no gradients).

        Args:
            scene_coordinates: ``(B, N, 3)`` float world points, metres (predicted scene coordinates).
                Non-finite rows are masked out.
            pixels: ``(B, N, 2)`` pixel positions ``(u, v)`` of the correspondences (RGB mode).
            K: ``(B, 3, 3)`` or ``(3, 3)`` pinhole intrinsics, pixels (RGB mode).
            points_cam: ``(B, N, 3)`` camera-frame points from depth, metres (RGB-D mode); rows with a
                non-positive depth or non-finite values are masked out.
            mask: ``(B, N)`` bool, correspondences to use (default all).
            seed: int, ``(B,)`` int64 per-image seeds, or ``None`` (drawn from torch's global RNG).
                An image solved alone with seed ``s`` gives the same result as in a batch where its
                seed is ``s`` (pass a tensor of seeds for that).
            minimal_sets: ``(B, H', k)`` int64, fixed minimal sets (indices into ``N``), replacing the
                random sampling (then no redraws).

        Returns:
            :class:`RansacResult`, in the dtype of ``scene_coordinates``. Never raises on degenerate
            data (too few points, NaN, collinear sets): ``success`` is ``False`` instead.

        Raises:
            ValueError: for inputs of the wrong shape or missing for the mode.
        """
        sc, pixels, K, points_cam, valid = self._prepare(scene_coordinates, pixels, K, points_cam, mask)
        B, N, _ = sc.shape
        dtype = sc.dtype
        if N == 0:
            eye = torch.eye(3, dtype=dtype, device=sc.device).expand(B, 3, 3)
            zeros_b = torch.zeros(B, dtype=torch.int64, device=sc.device)
            return RansacResult(
                R_cam2world=eye.clone(),
                t_cam2world=torch.zeros(B, 3, dtype=dtype, device=sc.device),
                success=zeros_b.bool(),
                num_inliers=zeros_b,
                inliers=valid.clone(),
                soft_inlier_count=zeros_b.to(dtype),
                hypothesis_index=zeros_b.clone(),
            )
        R, t, hyp_valid, _ = self._hypotheses(sc, pixels, K, points_cam, valid, seed, minimal_sets)
        counts = self._soft_counts(R, t, sc, pixels, K, points_cam, valid)
        n = valid.sum(-1).clamp_min(1).to(dtype)[:, None]
        logits = torch.where(hyp_valid, self.inlier_alpha * counts / n, torch.full_like(counts, float("-inf")))
        best = logits.argmax(-1)
        has_any = hyp_valid.any(-1)
        R0 = R[torch.arange(B, device=sc.device), best]
        t0 = t[torch.arange(B, device=sc.device), best]
        # Refine the winner in the compute dtype.
        cd = _compute_dtype(sc)
        scc = sc.to(cd)
        pxc = pixels.to(cd) if pixels is not None else None
        Kc = K.to(cd) if K is not None else None
        pcc = points_cam.to(cd) if points_cam is not None else None
        R_ref, t_ref, inliers = self._refine_winner(
            R0.to(cd), t0.to(cd), scc, pxc, Kc, pcc, valid & has_any[:, None], valid
        )
        num_inliers = inliers.sum(-1)
        success = has_any & (valid.sum(-1) >= self.set_size) & (num_inliers >= self.set_size)
        eye = torch.eye(3, dtype=cd, device=sc.device)
        R_ref = torch.where(has_any[:, None, None], R_ref, eye)
        t_ref = torch.where(has_any[:, None], t_ref, torch.zeros_like(t_ref))
        R_c2w, t_c2w = _invert(R_ref, t_ref)
        return RansacResult(
            R_cam2world=R_c2w.to(dtype),
            t_cam2world=t_c2w.to(dtype),
            success=success,
            num_inliers=num_inliers,
            inliers=inliers,
            soft_inlier_count=counts.gather(1, best[:, None])[:, 0],
            hypothesis_index=best,
        )

    def expectation(
        self,
        scene_coordinates: Tensor,
        pixels: Tensor | None = None,
        K: Tensor | None = None,
        points_cam: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        seed: Tensor | int | None = None,
        minimal_sets: Tensor | None = None,
    ) -> DSACExpectation:
        """Training-time DSAC*: all hypotheses refined differentiably, with selection probabilities.

        Arguments as :meth:`__call__`. Each hypothesis' final inlier set is found as at test time
        (without gradients); then it is refined on that set with ``train_refinement_steps`` LM
        iterations from the (differentiable) hypothesis (RGB) or by weighted Kabsch (RGB-D), with
        autograd. Computed in the dtype of ``scene_coordinates`` (except the minimal solvers).

        Returns:
            :class:`DSACExpectation`; ``expected_loss`` back-propagates to ``scene_coordinates`` (and
            ``points_cam``).
        """
        sc, pixels, K, points_cam, valid = self._prepare(scene_coordinates, pixels, K, points_cam, mask)
        n_input = sc.shape[1]
        if n_input == 0:  # no correspondences: one dummy, masked out, keeps every shape valid
            sc = torch.zeros(sc.shape[0], 1, 3, dtype=sc.dtype, device=sc.device)
            valid = torch.zeros(sc.shape[0], 1, dtype=torch.bool, device=sc.device)
            pixels = None if pixels is None else torch.zeros(sc.shape[0], 1, 2, dtype=sc.dtype, device=sc.device)
            points_cam = None if points_cam is None else torch.zeros_like(sc)
            minimal_sets = None
        R, t, hyp_valid, sets = self._hypotheses(sc, pixels, K, points_cam, valid, seed, minimal_sets)
        errors = self._errors(R, t, sc, pixels, K, points_cam)
        counts, logits = self._score(errors, valid, hyp_valid)
        has_any = hyp_valid.any(-1)
        logits_safe = torch.where(has_any[:, None], logits, torch.zeros_like(logits))
        probs = torch.softmax(logits_safe, dim=-1) * (hyp_valid & has_any[:, None])
        with torch.no_grad():
            _, _, inliers = _refine_on_inliers(
                R.detach(),
                t.detach(),
                lambda R_, t_: self._errors(R_, t_, sc.detach(), _d(pixels), _d(K), _d(points_cam)),
                self._fit_fn(sc.detach(), _d(pixels), _d(K), _d(points_cam), 1, self.lm_iterations),
                valid[:, None, :] & hyp_valid[..., None],
                self.inlier_threshold,
                self.set_size,
                self.max_refinement_steps,
            )
        if self.mode == "rgb":
            assert pixels is not None and K is not None
            R_ref, t_ref = refine_pnp_lm(
                R,
                t,
                sc[:, None],
                pixels[:, None],
                K[:, None],
                inliers.to(sc.dtype),
                self.train_refinement_steps,
                max_error=self.max_error,
            )
        else:
            assert points_cam is not None
            R_c2w, t_c2w, ok = kabsch(points_cam[:, None], sc[:, None], inliers.to(sc.dtype))
            R_k, t_k = _invert(R_c2w, t_c2w)
            R_ref = torch.where(ok[..., None, None], R_k, R)
            t_ref = torch.where(ok[..., None], t_k, t)
        R_c2w, t_c2w = _invert(R_ref, t_ref)
        return DSACExpectation(
            R_cam2world=R_c2w,
            t_cam2world=t_c2w,
            probabilities=probs,
            soft_inlier_count=counts,
            valid=hyp_valid,
            success=has_any & (valid.sum(-1) >= self.set_size),
            minimal_sets=sets,
            inliers=inliers[..., :n_input],
        )


def _d(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.detach()

"""Lambda Twist P3P: the absolute pose of a calibrated camera from three 2D-3D correspondences.

Source: M. Persson and K. Nordberg, "Lambda Twist: An Accurate Fast Robust Perspective Three Point
(P3P) Solver", ECCV 2018 (Algorithm 1). This is an independent, fully vectorized PyTorch version:
every step is a closed form evaluated on whole tensors, so a batch of any shape is solved at once,
on any device, in float32 or float64.

Outline (paper section 3). The unknown depths ``lambda_i > 0`` along the unit rays ``y_i`` satisfy
``|lambda_i y_i - lambda_j y_j|^2 = a_ij = |X_i - X_j|^2``, three quadrics ``Lambda^T M_ij Lambda =
a_ij``. Two homogeneous combinations ``D1 = a23 M12 - a12 M23`` and ``D2 = a23 M13 - a13 M23`` vanish
on every solution, and so does every member of the pencil ``D0 = D1 + gamma D2``. The ``gamma`` with
``det(D0) = 0`` (a root of a cubic) makes ``D0`` a pair of planes through the origin, so each
solution lies on one of two planes; on each plane a second quadric of the pencil gives at most two
directions, and the scale follows from the distances. The depths are then polished by Newton's method
on the three distance equations and the pose follows from ``R [X1-X2, X1-X3, (X1-X2)x(X1-X3)] =
[v1, v2, v1 x v2]`` with ``v1 = l1 y1 - l2 y2``, ``v2 = l1 y1 - l3 y3``.

Differences from the paper's reference code, all for a branch-free tensor implementation:

* the cubic is solved in closed form (Cardano / trigonometric form) followed by Newton steps, and
  when ``|det(D2)| < |det(D1)|`` the reversed cubic in ``1 / gamma`` is solved instead;
* the two planes and the two directions on each plane come from closed-form symmetric eigen
  problems (3x3 with a known zero eigenvalue, and 2x2), so no case split on the largest component;
* the closed forms are evaluated in float64 (where the backend has it, i.e. not on MPS) and
  without autograd; the Newton steps on the depths (paper section 3.5) and the pose construction
  run in the input dtype and are differentiated. At convergence this equals the implicit-function
  derivative of the exact solution and avoids the singular derivatives of the root and eigen
  formulas;
* the rotation ``Y X^-1`` is projected onto SO(3) (Newton iteration for the polar factor) and the
  translation fits all three points, which matters in float32 for thin triangles.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["p3p_lambda_twist"]


def _cross(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.cross(a, b, dim=-1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def _matvec(m: Tensor, v: Tensor) -> Tensor:
    """``m (..., 3, 3) @ v (..., 3)``, elementwise: batched tiny matmuls are slow on CPU."""
    return (m * v[..., None, :]).sum(-1)


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a (..., 3, 3) @ b (..., 3, 3)``, elementwise."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def _det3(m: Tensor) -> Tensor:
    return _dot(m[..., 0, :], _cross(m[..., 1, :], m[..., 2, :]))


def _cofactor3(m: Tensor) -> Tensor:
    """Cofactor matrix of ``(..., 3, 3)`` matrices (the transpose of the adjugate)."""
    r0, r1, r2 = m[..., 0, :], m[..., 1, :], m[..., 2, :]
    return torch.stack([_cross(r1, r2), _cross(r2, r0), _cross(r0, r1)], dim=-2)


def _safe_sqrt(x: Tensor) -> Tensor:
    return torch.sqrt(x.clamp_min(0.0))


def _cbrt(x: Tensor) -> Tensor:
    return torch.sign(x) * x.abs().pow(1.0 / 3.0)


def _cubic_root(a: Tensor, b: Tensor, c: Tensor, newton_steps: int = 3) -> Tensor:
    """One real root of ``x^3 + a x^2 + b x + c`` (the largest one when all three are real)."""
    a3 = a / 3.0
    p = b - a * a3
    q = 2.0 * a3**3 - a3 * b + c
    disc = (q / 2.0) ** 2 + (p / 3.0) ** 3
    # One real root (Cardano).
    sq = _safe_sqrt(disc)
    x_one = _cbrt(-q / 2.0 + sq) + _cbrt(-q / 2.0 - sq)
    # Three real roots (trigonometric form, k = 0 gives the largest).
    p_neg = torch.where(p < 0, p, -torch.ones_like(p))
    arg = (1.5 * q / p_neg * torch.sqrt(-3.0 / p_neg)).clamp(-1.0, 1.0)
    x_three = 2.0 * torch.sqrt(-p_neg / 3.0) * torch.cos(torch.acos(arg) / 3.0)
    x = torch.where((disc > 0) | (p >= 0), x_one, x_three) - a3
    for _ in range(newton_steps):
        f = ((x + a) * x + b) * x + c
        df = (3.0 * x + 2.0 * a) * x + b
        ok = df.abs() > 0
        x = x - torch.where(ok, f / torch.where(ok, df, torch.ones_like(df)), torch.zeros_like(f))
    return x


def _null_vector_of_shifted(m: Tensor, sigma: Tensor) -> Tensor:
    """Unit eigenvector of symmetric ``m (..., 3, 3)`` for its simple eigenvalue ``sigma (...)``.

    The eigenvector spans the null space of ``m - sigma I``: the cross product of two of its rows;
    the best conditioned of the three pairs is taken.
    """
    eye = torch.eye(3, dtype=m.dtype, device=m.device)
    s = m - sigma[..., None, None] * eye
    c = _cofactor3(s)  # rows: r1 x r2, r2 x r0, r0 x r1
    norms = c.norm(dim=-1)
    idx = norms.argmax(dim=-1)
    v = torch.gather(c, -2, idx[..., None, None].expand(*idx.shape, 1, 3)).squeeze(-2)
    n = norms.amax(dim=-1, keepdim=True)
    return v / torch.where(n > 0, n, torch.ones_like(n))


def _plane_basis(n: Tensor) -> tuple[Tensor, Tensor]:
    """Two orthonormal vectors ``(..., 3)`` spanning the plane orthogonal to unit ``n (..., 3)``."""
    axis_idx = n.abs().argmin(dim=-1)
    axis = torch.nn.functional.one_hot(axis_idx, 3).to(n.dtype)
    p = _cross(n, axis)
    p = p / p.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(n.dtype).tiny)
    q = _cross(n, p)
    return p, q


def _initial_lambdas(a12: Tensor, a13: Tensor, a23: Tensor, b12: Tensor, b13: Tensor, b23: Tensor) -> Tensor:
    """Up to four candidate depth triplets ``(..., 4, 3)``; NaN-free, may contain junk (checked later)."""
    zero = torch.zeros_like(a12)
    # D1 = a23 M12 - a12 M23, D2 = a23 M13 - a13 M23 (paper eq. 7).
    d1 = torch.stack(
        [
            torch.stack([a23, -a23 * b12, zero], -1),
            torch.stack([-a23 * b12, a23 - a12, a12 * b23], -1),
            torch.stack([zero, a12 * b23, -a12], -1),
        ],
        -2,
    )
    d2 = torch.stack(
        [
            torch.stack([a23, zero, -a23 * b13], -1),
            torch.stack([zero, -a13, a13 * b23], -1),
            torch.stack([-a23 * b13, a13 * b23, a23 - a13], -1),
        ],
        -2,
    )
    # det(D1 + g D2) = c3 g^3 + c2 g^2 + c1 g + c0.
    c3 = _det3(d2)
    c2 = (d1 * _cofactor3(d2)).sum((-1, -2))
    c1 = (d2 * _cofactor3(d1)).sum((-1, -2))
    c0 = _det3(d1)
    flip = c3.abs() < c0.abs()  # solve det(g D1 + D2) = 0 instead: better conditioned
    lead = torch.where(flip, c0, c3)
    lead = torch.where(lead.abs() > 0, lead, torch.ones_like(lead))
    k2 = torch.where(flip, c1, c2) / lead
    k1 = torch.where(flip, c2, c1) / lead
    k0 = torch.where(flip, c3, c0) / lead
    gamma = _cubic_root(k2, k1, k0)
    base = torch.where(flip[..., None, None], d2, d1)
    other = torch.where(flip[..., None, None], d1, d2)
    d0 = base + gamma[..., None, None] * other
    # D0 has a zero eigenvalue; the other two solve s^2 - tr s + m2 = 0 (m2: principal 2x2 minors).
    tr = d0[..., 0, 0] + d0[..., 1, 1] + d0[..., 2, 2]
    m2 = _cofactor3(d0).diagonal(dim1=-2, dim2=-1).sum(-1)
    root = _safe_sqrt(tr * tr / 4.0 - m2)
    sig_pos = tr / 2.0 + root
    sig_neg = tr / 2.0 - root
    e_pos = _null_vector_of_shifted(d0, sig_pos)
    e_neg = _null_vector_of_shifted(d0, sig_neg)
    # Lambda^T D0 Lambda = sig_pos (e_pos.L)^2 + sig_neg (e_neg.L)^2 = 0: two planes (paper eq. 12-14).
    w_pos = _safe_sqrt(sig_pos)[..., None]
    w_neg = _safe_sqrt(-sig_neg)[..., None]
    # On each plane, a second member of the pencil gives the directions. On the plane D0 = base + g other
    # vanishes, so base = -g other there: take `other` when |g| <= 1 (it is the larger), else `base`.
    quad = torch.where((gamma.abs() <= 1.0)[..., None, None], other, base)
    m_sum = torch.stack(
        [
            torch.stack([2.0 + zero, -b12, -b13], -1),
            torch.stack([-b12, 2.0 + zero, -b23], -1),
            torch.stack([-b13, -b23, 2.0 + zero], -1),
        ],
        -2,
    )
    a_sum = a12 + a13 + a23
    tol = torch.finfo(a12.dtype).eps ** 0.5
    out = []
    for sign in (1.0, -1.0):
        n = w_pos * e_pos + sign * w_neg * e_neg
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(n.dtype).tiny)
        p, q = _plane_basis(n)
        qa = _dot(p, _matvec(quad, p))
        qb = _dot(p, _matvec(quad, q))
        qc = _dot(q, _matvec(quad, q))
        theta = 0.5 * torch.atan2(2.0 * qb, qa - qc)
        ct, st = torch.cos(theta), torch.sin(theta)
        half_sum, radius = (qa + qc) / 2.0, torch.hypot((qa - qc) / 2.0, qb)
        kap1, kap2 = half_sum + radius, half_sum - radius
        # Null directions of the 2x2 form: sqrt(-kap2) u1 +- sqrt(kap1) u2 with u1 = (c, s), u2 = (-s, c).
        s1, s2 = _safe_sqrt(-kap2), _safe_sqrt(kap1)
        for sign2 in (1.0, -1.0):
            alpha = s1 * ct - sign2 * s2 * st
            beta = s1 * st + sign2 * s2 * ct
            lam = alpha[..., None] * p + beta[..., None] * q
            denom = _dot(lam, _matvec(m_sum, lam))
            scale = torch.sqrt(a_sum / torch.where(denom > 0, denom, torch.ones_like(denom)))
            lam = lam * (scale * torch.sign(lam.sum(-1)))[..., None]
            # Near-double roots may come out with the wrong sign by rounding: accept them as double
            # roots (the Newton refinement and the residual test decide).
            ok = (sig_pos > 0) & (sig_neg < tol * sig_pos) & (kap1 >= 0) & (kap2 <= tol * kap1) & (denom > 0)
            out.append(torch.where(ok[..., None], lam, torch.full_like(lam, -1.0)))
    lam = torch.stack(out, dim=-2)
    return torch.nan_to_num(lam, nan=-1.0, posinf=-1.0, neginf=-1.0)


def _residuals(lam: Tensor, a: Tensor, b: Tensor) -> Tensor:
    l1, l2, l3 = lam.unbind(-1)
    a12, a13, a23 = a.unbind(-1)
    b12, b13, b23 = b.unbind(-1)
    return torch.stack(
        [
            l1 * l1 - 2.0 * b12 * l1 * l2 + l2 * l2 - a12,
            l1 * l1 - 2.0 * b13 * l1 * l3 + l3 * l3 - a13,
            l2 * l2 - 2.0 * b23 * l2 * l3 + l3 * l3 - a23,
        ],
        -1,
    )


def _refine_lambdas(lam: Tensor, a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Newton steps on the three distance equations (paper section 3.5), closed-form 3x3 solve."""
    b12, b13, b23 = b.unbind(-1)
    zero = torch.zeros_like(lam[..., 0])
    for _ in range(steps):
        l1, l2, l3 = lam.unbind(-1)
        r = _residuals(lam, a, b)
        jac = 2.0 * torch.stack(
            [
                torch.stack([l1 - b12 * l2, l2 - b12 * l1, zero], -1),
                torch.stack([l1 - b13 * l3, zero, l3 - b13 * l1], -1),
                torch.stack([zero, l2 - b23 * l3, l3 - b23 * l2], -1),
            ],
            -2,
        )
        det = _det3(jac)
        ok = det.abs() > torch.finfo(lam.dtype).tiny ** 0.5
        inv_det = 1.0 / torch.where(ok, det, torch.ones_like(det))
        adj = _cofactor3(jac).transpose(-1, -2)
        step = _matvec(adj, r) * inv_det[..., None]
        lam = lam - torch.where(ok[..., None], step, torch.zeros_like(step))
    return lam


def p3p_lambda_twist(bearings: Tensor, points_world: Tensor, refine_steps: int = 5) -> tuple[Tensor, Tensor, Tensor]:
    """Solves the perspective-three-point problem for a batch of point triplets (Lambda Twist).

    Finds every camera pose ``(R_world2cam, t_world2cam)`` with ``R_world2cam @ X_i + t_world2cam =
    lambda_i * y_i`` and ``lambda_i > 0`` for the three world points ``X_i`` and unit rays ``y_i``.

    Source: Persson & Nordberg, "Lambda Twist: An Accurate Fast Robust Perspective Three Point (P3P)
    Solver", ECCV 2018, Algorithm 1 (see the module docstring for what differs).

    Args:
        bearings: ``(..., 3, 3)`` float32/float64, row ``i`` is the ray of correspondence ``i`` in the
            camera frame (OpenCV: x right, y down, z forward), e.g. ``K^-1 [u, v, 1]``. Normalized here,
            so any positive length is accepted.
        points_world: ``(..., 3, 3)`` same dtype, row ``i`` is the world point ``X_i`` in metres.
        refine_steps: Newton iterations polishing the depths (the reference code uses 5).

    Returns:
        ``(R_world2cam, t_world2cam, valid)``:

        * ``R_world2cam``: ``(..., 4, 3, 3)``, rotations world to camera frame; identity where invalid.
        * ``t_world2cam``: ``(..., 4, 3)``, translations in metres (camera frame); zero where invalid.
        * ``valid``: ``(..., 4)`` bool, which of the (at most four) slots hold a solution. Degenerate
          triplets and non-finite inputs give all-``False`` rows, never NaN: world points that are
          repeated or collinear (the squared sine of the angle at ``X_1`` below ``1e3 * eps`` of the
          dtype, i.e. about 1e-4 in float32), and rays that coincide or are zero. A slot is valid when
          its depths are positive and solve the distance equations to ``10 sqrt(eps)`` (relative).
          A solution may appear twice (e.g. at a double root).

    Raises:
        ValueError: if the trailing shapes are not ``(3, 3)`` or the batch shapes differ.

    Gradients flow to both inputs (through the final Newton steps and the pose construction).
    """
    if bearings.shape[-2:] != (3, 3) or points_world.shape[-2:] != (3, 3):
        raise ValueError(f"expected (..., 3, 3) inputs, got {tuple(bearings.shape)} and {tuple(points_world.shape)}")
    if bearings.shape != points_world.shape:
        raise ValueError(f"batch shapes differ: {tuple(bearings.shape)} vs {tuple(points_world.shape)}")
    dtype = torch.promote_types(bearings.dtype, points_world.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    bearings = bearings.to(dtype)
    points_world = points_world.to(dtype)
    eps = torch.finfo(dtype).eps

    finite = torch.isfinite(bearings).all(-1).all(-1) & torch.isfinite(points_world).all(-1).all(-1)
    bearings = torch.where(finite[..., None, None], bearings, torch.eye(3, dtype=dtype, device=bearings.device))
    points_world = torch.where(finite[..., None, None], points_world, torch.eye(3, dtype=dtype, device=bearings.device))

    ray_norm = bearings.norm(dim=-1, keepdim=True)
    ray_ok = (ray_norm[..., 0] > 0).all(-1)
    y = bearings / torch.where(ray_norm > 0, ray_norm, torch.ones_like(ray_norm))
    y1, y2, y3 = y.unbind(-2)
    x1, x2, x3 = points_world.unbind(-2)
    d12, d13, d23 = x1 - x2, x1 - x3, x2 - x3
    a = torch.stack([_dot(d12, d12), _dot(d13, d13), _dot(d23, d23)], -1)
    b = torch.stack([_dot(y1, y2), _dot(y1, y3), _dot(y2, y3)], -1)

    # Degeneracy: collinear / repeated world points, coincident rays.
    n_world = _cross(d12, d13)
    area2 = _dot(n_world, n_world)
    tol_geom = 1e3 * eps
    world_ok = (area2 > tol_geom * a[..., 0] * a[..., 1]) & (a.amin(-1) > 0)
    ray_sep = torch.stack([_cross(y1, y2), _cross(y1, y3), _cross(y2, y3)], -2).norm(dim=-1).amin(-1)
    nondegenerate = finite & ray_ok & world_ok & (ray_sep > tol_geom)

    # Work with distances normalized to a mean of one (conditioning in float32).
    scale = torch.where(nondegenerate, a.mean(-1), torch.ones_like(a[..., 0]))
    a_n = torch.where(nondegenerate[..., None], a / scale[..., None], torch.ones_like(a))
    b_safe = torch.where(nondegenerate[..., None], b, torch.zeros_like(b))

    with torch.no_grad():
        # The closed forms are poorly conditioned near double roots: evaluate them in float64
        # (except on backends without it); the Newton steps below run in the input dtype.
        root_dtype = torch.float32 if a_n.device.type == "mps" else torch.float64
        lam0 = _initial_lambdas(*a_n.detach().to(root_dtype).unbind(-1), *b_safe.detach().to(root_dtype).unbind(-1))
        lam0 = lam0.to(dtype)
    lam0_ok = (lam0 > 0).all(-1)
    lam0 = torch.where(lam0_ok[..., None], lam0, torch.ones_like(lam0))

    a4, b4 = a_n[..., None, :], b_safe[..., None, :]
    lam = _refine_lambdas(lam0, a4, b4, refine_steps)
    res = _residuals(lam, a4, b4).abs().amax(-1)
    lam = lam * scale.sqrt()[..., None, None]

    # Pose: R [d12, d13, d12 x d13] = [v1, v2, v1 x v2].
    l1, l2, l3 = lam[..., 0:1], lam[..., 1:2], lam[..., 2:3]
    y1e, y2e, y3e = y1[..., None, :], y2[..., None, :], y3[..., None, :]
    v1 = l1 * y1e - l2 * y2e
    v2 = l1 * y1e - l3 * y3e
    ymat = torch.stack([v1, v2, _cross(v1, v2)], -1)  # (..., 4, 3, 3), columns
    xmat = torch.stack([d12, d13, n_world], -1)  # (..., 3, 3), columns
    det_x = torch.where(nondegenerate, area2, torch.ones_like(area2))  # det[a, b, a x b] = |a x b|^2
    xinv = _cofactor3(xmat).transpose(-1, -2) / det_x[..., None, None]
    rot = _matmul(ymat, xinv[..., None, :, :])
    eye = torch.eye(3, dtype=dtype, device=rot.device)
    orth_err = (_matmul(rot.transpose(-1, -2), rot) - eye).abs().amax((-1, -2))
    det_r = _det3(rot)
    # Rounding in the depths is amplified by thin triangles: project onto SO(3) by Newton's
    # iteration for the polar factor, R <- (R + R^-T) / 2 with R^-T = cof(R) / det(R).
    for _ in range(3):
        det = _det3(rot)
        det = torch.where(det > 0, det, torch.ones_like(det))
        rot = 0.5 * (rot + _cofactor3(rot) / det[..., None, None])
    # The translation that best fits all three points (l_i y_i = R X_i + t).
    trans = (
        lam[..., :, None] * y[..., None, :, :] - _matvec(rot[..., None, :, :], points_world[..., None, :, :])
    ).mean(-2)

    tol = 10.0 * eps**0.5
    valid = (
        nondegenerate[..., None]
        & lam0_ok
        & (lam > 0).all(-1)
        & (res < tol)
        & (orth_err < min(1e3 * tol, 0.1))
        & (det_r > 0)
        & torch.isfinite(rot).all(-1).all(-1)
        & torch.isfinite(trans).all(-1)
    )
    rot = torch.where(valid[..., None, None], rot, eye)
    trans = torch.where(valid[..., None], trans, torch.zeros_like(trans))
    return rot, trans, valid

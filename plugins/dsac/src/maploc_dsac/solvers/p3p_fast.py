"""Lambda Twist P3P on component tensors: the fast kernel of the RANSAC's candidate search.

Source: M. Persson and K. Nordberg, "Lambda Twist: An Accurate Fast Robust Perspective Three Point
(P3P) Solver", ECCV 2018 (Algorithm 1), as in :mod:`maploc_dsac.solvers.p3p` (the reference).

:func:`p3p_components` computes what :func:`~maploc_dsac.solvers.p3p.p3p_lambda_twist` computes,
with the same formulas and branch rules, on separate component tensors and without autograd: about
three times faster on the CPU, where the candidate search solves thousands of minimal problems per
image. ``tests/test_p3p.py`` keeps the two in agreement (to rounding); the reference keeps its exact
arithmetic, which the differentiable training path relies on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maploc_dsac.solvers.p3p import _cubic_root, _safe_sqrt

__all__ = ["p3p_components", "p3p_solve_components"]

# Every quantity is held as separate component tensors ("structure of arrays"): a vector is a tuple
# of three tensors, a 3x3 matrix a tuple of three row vectors, a symmetric one a tuple of its six
# entries (m00, m01, m02, m11, m12, m22). Each formula is then a short chain of elementwise ops on
# whole batches; batched tiny reductions, cross products and stacks over size-3 dims, which dominate
# on the CPU, are avoided.
Vec = tuple[Tensor, Tensor, Tensor]
Mat = tuple[Vec, Vec, Vec]
Sym = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def _c_dot(a: Vec, b: Vec) -> Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _c_cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _c_norm(a: Vec) -> Tensor:
    return torch.sqrt(_c_dot(a, a))


def _c_scale(a: Vec, s: Tensor) -> Vec:
    return (a[0] * s, a[1] * s, a[2] * s)


def _c_div(a: Vec, s: Tensor) -> Vec:
    return (a[0] / s, a[1] / s, a[2] / s)


def _c_sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _c_where(cond: Tensor, a: Vec, b: Vec) -> Vec:
    return (torch.where(cond, a[0], b[0]), torch.where(cond, a[1], b[1]), torch.where(cond, a[2], b[2]))


def _c_sym_rows(m: Sym) -> Mat:
    m00, m01, m02, m11, m12, m22 = m
    return (m00, m01, m02), (m01, m11, m12), (m02, m12, m22)


def _c_sym_cofactor(m: Sym) -> Sym:
    """Cofactor matrix of a symmetric matrix (symmetric too): rows ``r1 x r2, r2 x r0, r0 x r1``."""
    m00, m01, m02, m11, m12, m22 = m
    return (
        m11 * m22 - m12 * m12,
        m12 * m02 - m01 * m22,
        m01 * m12 - m11 * m02,
        m22 * m00 - m02 * m02,
        m02 * m01 - m00 * m12,
        m00 * m11 - m01 * m01,
    )


def _c_sym_det(m: Sym) -> Tensor:
    c = _c_sym_cofactor(m)
    return m[0] * c[0] + m[1] * c[1] + m[2] * c[2]


def _c_sym_inner(a: Sym, b: Sym) -> Tensor:
    """``sum_ij a_ij b_ij``."""
    return a[0] * b[0] + a[3] * b[3] + a[5] * b[5] + 2.0 * (a[1] * b[1] + a[2] * b[2] + a[4] * b[4])


def _c_sym_quad(m: Sym, u: Vec, v: Vec) -> Tensor:
    """``u^T m v``."""
    r0, r1, r2 = _c_sym_rows(m)
    return u[0] * _c_dot(r0, v) + u[1] * _c_dot(r1, v) + u[2] * _c_dot(r2, v)


def _c_sym_where(cond: Tensor, a: Sym, b: Sym) -> Sym:
    return tuple(torch.where(cond, x, y) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _c_det(m: Mat) -> Tensor:
    return _c_dot(m[0], _c_cross(m[1], m[2]))


def _c_cofactor(m: Mat) -> Mat:
    """Cofactor matrix (the transpose of the adjugate): rows ``r1 x r2, r2 x r0, r0 x r1``."""
    return _c_cross(m[1], m[2]), _c_cross(m[2], m[0]), _c_cross(m[0], m[1])


def _c_null_vector_of_shifted(m: Sym, sigma: Tensor) -> Vec:
    """Unit eigenvector of symmetric ``m`` for its simple eigenvalue ``sigma``.

    The eigenvector spans the null space of ``m - sigma I``: the cross product of two of its rows,
    i.e. a row of its cofactor matrix; the best conditioned (longest) of the three is taken.
    """
    m00, m01, m02, m11, m12, m22 = m
    c = _c_sym_rows(_c_sym_cofactor((m00 - sigma, m01, m02, m11 - sigma, m12, m22 - sigma)))
    n0, n1, n2 = _c_norm(c[0]), _c_norm(c[1]), _c_norm(c[2])
    first = (n0 >= n1) & (n0 >= n2)  # the first longest, as argmax
    v = _c_where(first, c[0], _c_where(n1 >= n2, c[1], c[2]))
    n = torch.maximum(torch.maximum(n0, n1), n2)
    return _c_div(v, torch.where(n > 0, n, torch.ones_like(n)))


def _c_plane_basis(n: Vec) -> tuple[Vec, Vec]:
    """Two orthonormal vectors spanning the plane orthogonal to unit ``n``."""
    ax, ay, az = n[0].abs(), n[1].abs(), n[2].abs()
    zero = torch.zeros_like(n[0])
    # n x e_k for the axis e_k of the first smallest |n_k| (as argmin).
    p = _c_where(
        (ax <= ay) & (ax <= az), (zero, n[2], -n[1]), _c_where(ay <= az, (-n[2], zero, n[0]), (n[1], -n[0], zero))
    )
    p = _c_div(p, _c_norm(p).clamp_min(torch.finfo(n[0].dtype).tiny))
    return p, _c_cross(n, p)


def _c_initial_lambdas(
    a12: Tensor, a13: Tensor, a23: Tensor, b12: Tensor, b13: Tensor, b23: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Up to four candidate depth triplets, as three ``(..., 4)`` tensors ``(l1, l2, l3)``; NaN-free,
    may contain junk (checked later)."""
    zero = torch.zeros_like(a12)
    # D1 = a23 M12 - a12 M23, D2 = a23 M13 - a13 M23 (paper eq. 7).
    d1: Sym = (a23, -a23 * b12, zero, a23 - a12, a12 * b23, -a12)
    d2: Sym = (a23, zero, -a23 * b13, -a13, a13 * b23, a23 - a13)
    # det(D1 + g D2) = c3 g^3 + c2 g^2 + c1 g + c0.
    c3 = _c_sym_det(d2)
    c2 = _c_sym_inner(d1, _c_sym_cofactor(d2))
    c1 = _c_sym_inner(d2, _c_sym_cofactor(d1))
    c0 = _c_sym_det(d1)
    flip = c3.abs() < c0.abs()  # solve det(g D1 + D2) = 0 instead: better conditioned
    lead = torch.where(flip, c0, c3)
    lead = torch.where(lead.abs() > 0, lead, torch.ones_like(lead))
    k2 = torch.where(flip, c1, c2) / lead
    k1 = torch.where(flip, c2, c1) / lead
    k0 = torch.where(flip, c3, c0) / lead
    gamma = _cubic_root(k2, k1, k0)
    base = _c_sym_where(flip, d2, d1)
    other = _c_sym_where(flip, d1, d2)
    d0: Sym = tuple(x + gamma * y for x, y in zip(base, other, strict=True))  # type: ignore[assignment]
    # D0 has a zero eigenvalue; the other two solve s^2 - tr s + m2 = 0 (m2: principal 2x2 minors).
    tr = d0[0] + d0[3] + d0[5]
    cof = _c_sym_cofactor(d0)
    m2 = cof[0] + cof[3] + cof[5]
    root = _safe_sqrt(tr * tr / 4.0 - m2)
    sig_pos = tr / 2.0 + root
    sig_neg = tr / 2.0 - root
    # Both eigenvectors, and below both planes and both directions on each, at once: a leading dim
    # of 2 (sign of the plane), then 2 x 2 (and of the direction), in the reference's loop order.
    e = _c_null_vector_of_shifted(tuple(v[None] for v in d0), torch.stack([sig_pos, sig_neg]))  # type: ignore[arg-type]
    e_pos, e_neg = tuple(c[0] for c in e), tuple(c[1] for c in e)
    # Lambda^T D0 Lambda = sig_pos (e_pos.L)^2 + sig_neg (e_neg.L)^2 = 0: two planes (paper eq. 12-14).
    w_pos = _safe_sqrt(sig_pos)
    w_neg = _safe_sqrt(-sig_neg)
    # On each plane, a second member of the pencil gives the directions. On the plane D0 = base + g other
    # vanishes, so base = -g other there: take `other` when |g| <= 1 (it is the larger), else `base`.
    quad = tuple(v[None] for v in _c_sym_where(gamma.abs() <= 1.0, other, base))
    two = torch.full_like(a12, 2.0)
    m_sum: Sym = (two, -b12, -b13, two, -b23, two)
    a_sum = a12 + a13 + a23
    tol = torch.finfo(a12.dtype).eps ** 0.5
    tiny = torch.finfo(a12.dtype).tiny
    roots_ok = (sig_pos > 0) & (sig_neg < tol * sig_pos)
    signs = torch.tensor([1.0, -1.0], dtype=a12.dtype, device=a12.device).reshape(2, *([1] * a12.dim()))
    n = tuple(w_pos * ep + signs * w_neg * en for ep, en in zip(e_pos, e_neg, strict=True))  # (2, ...)
    n = _c_div(n, _c_norm(n).clamp_min(tiny))  # type: ignore[arg-type]
    p, q = _c_plane_basis(n)
    qa = _c_sym_quad(quad, p, p)  # type: ignore[arg-type]
    qb = _c_sym_quad(quad, p, q)  # type: ignore[arg-type]
    qc = _c_sym_quad(quad, q, q)  # type: ignore[arg-type]
    theta = 0.5 * torch.atan2(2.0 * qb, qa - qc)
    ct, st = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    half_sum, radius = (qa + qc) / 2.0, torch.hypot((qa - qc) / 2.0, qb)
    kap1, kap2 = half_sum + radius, half_sum - radius
    # Null directions of the 2x2 form: sqrt(-kap2) u1 +- sqrt(kap1) u2 with u1 = (c, s), u2 = (-s, c).
    s1, s2 = _safe_sqrt(-kap2)[:, None], _safe_sqrt(kap1)[:, None]
    plane_ok = roots_ok & (kap1 >= 0) & (kap2 <= tol * kap1)
    signs2 = signs[None]  # (1, 2, ...) against (2[plane], 1, ...): (2, 2, ...)
    alpha = s1 * ct - signs2 * s2 * st
    beta = s1 * st + signs2 * s2 * ct
    lam = tuple(alpha * pi[:, None] + beta * qi[:, None] for pi, qi in zip(p, q, strict=True))
    denom = _c_sym_quad(m_sum, lam, lam)  # type: ignore[arg-type]
    scale = torch.sqrt(a_sum / torch.where(denom > 0, denom, torch.ones_like(denom)))
    lam = _c_scale(lam, scale * torch.sign(lam[0] + lam[1] + lam[2]))  # type: ignore[arg-type]
    # Near-double roots may come out with the wrong sign by rounding: accept them as double
    # roots (the Newton refinement and the residual test decide).
    ok = plane_ok[:, None] & (denom > 0)
    return tuple(  # type: ignore[return-value]
        torch.nan_to_num(
            torch.where(ok, x, torch.full_like(x, -1.0)).flatten(0, 1).movedim(0, -1),
            nan=-1.0,
            posinf=-1.0,
            neginf=-1.0,
        )
        for x in lam
    )


def _c_residuals(lam: Vec, a: Vec, b: Vec) -> Vec:
    l1, l2, l3 = lam
    a12, a13, a23 = a
    b12, b13, b23 = b
    return (
        l1 * l1 - 2.0 * b12 * l1 * l2 + l2 * l2 - a12,
        l1 * l1 - 2.0 * b13 * l1 * l3 + l3 * l3 - a13,
        l2 * l2 - 2.0 * b23 * l2 * l3 + l3 * l3 - a23,
    )


def _c_refine_lambdas(lam: Vec, a: Vec, b: Vec, steps: int) -> Vec:
    """Newton steps on the three distance equations (paper section 3.5), closed-form 3x3 solve.

    The Jacobian is ``2 [[l1 - b12 l2, l2 - b12 l1, 0], [l1 - b13 l3, 0, l3 - b13 l1],
    [0, l2 - b23 l3, l3 - b23 l2]] = [[A, B, 0], [C, 0, D], [0, E, F]]``; its adjugate and
    determinant are written out.
    """
    b12, b13, b23 = b
    min_det = torch.finfo(lam[0].dtype).tiny ** 0.5
    for _ in range(steps):
        l1, l2, l3 = lam
        r1, r2, r3 = _c_residuals(lam, a, b)
        A, B = 2.0 * (l1 - b12 * l2), 2.0 * (l2 - b12 * l1)
        C, D = 2.0 * (l1 - b13 * l3), 2.0 * (l3 - b13 * l1)
        E, F = 2.0 * (l2 - b23 * l3), 2.0 * (l3 - b23 * l2)
        DE, CF, BD = D * E, C * F, B * D
        det = -(A * DE) - B * CF
        ok = det.abs() > min_det
        inv_det = 1.0 / torch.where(ok, det, torch.ones_like(det))
        s1 = (BD * r3 - DE * r1 - B * F * r2) * inv_det
        s2 = (A * F * r2 - CF * r1 - A * D * r3) * inv_det
        s3 = (C * E * r1 - A * E * r2 - B * C * r3) * inv_det
        zero = torch.zeros_like(s1)
        lam = (
            l1 - torch.where(ok, s1, zero),
            l2 - torch.where(ok, s2, zero),
            l3 - torch.where(ok, s3, zero),
        )
    return lam


def _c_lambda_twist(y: Mat, x: Mat, finite: Tensor, refine_steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Lambda Twist on component tensors: rays ``y`` (three rays of any positive length, each a
    vector of ``(...)`` tensors), world points ``x`` (same), finite (``finite (...)`` marks the
    problems whose inputs were); see :func:`p3p_lambda_twist`.

    Only the slots that can become valid (a nondegenerate problem, positive initial depths) are
    polished and turned into poses: they are gathered into flat tensors (typically fewer than half
    of the ``4 x`` slots). Returns them sparsely: ``(poses (12, S), valid (S,), slot (S,))``, the
    rotation's entries row by row then the translation, whether the slot passed the solution tests,
    and its index into the flattened ``(..., 4)`` slots.
    """
    dtype = y[0][0].dtype
    eps = torch.finfo(dtype).eps
    n1, n2, n3 = _c_norm(y[0]), _c_norm(y[1]), _c_norm(y[2])
    ray_ok = (n1 > 0) & (n2 > 0) & (n3 > 0)
    one = torch.ones_like(n1)
    y1, y2, y3 = (_c_div(yi, torch.where(ni > 0, ni, one)) for yi, ni in zip(y, (n1, n2, n3), strict=True))
    x1, x2, x3 = x
    d12, d13, d23 = _c_sub(x1, x2), _c_sub(x1, x3), _c_sub(x2, x3)
    a = (_c_dot(d12, d12), _c_dot(d13, d13), _c_dot(d23, d23))
    b = (_c_dot(y1, y2), _c_dot(y1, y3), _c_dot(y2, y3))

    # Degeneracy: collinear / repeated world points, coincident rays.
    n_world = _c_cross(d12, d13)
    area2 = _c_dot(n_world, n_world)
    tol_geom = 1e3 * eps
    world_ok = (area2 > tol_geom * a[0] * a[1]) & (torch.minimum(torch.minimum(a[0], a[1]), a[2]) > 0)
    ray_sep = torch.minimum(
        torch.minimum(_c_norm(_c_cross(y1, y2)), _c_norm(_c_cross(y1, y3))), _c_norm(_c_cross(y2, y3))
    )
    nondegenerate = finite & ray_ok & world_ok & (ray_sep > tol_geom)

    # Work with distances normalized to a mean of one (conditioning in float32).
    scale = torch.where(nondegenerate, (a[0] + a[1] + a[2]) / 3.0, one)
    a_n = tuple(torch.where(nondegenerate, ai / scale, one) for ai in a)
    b_safe = tuple(torch.where(nondegenerate, bi, torch.zeros_like(bi)) for bi in b)

    with torch.no_grad():
        # The closed forms are poorly conditioned near double roots: evaluate them in float64
        # (except on backends without it); the Newton steps below run in the input dtype.
        root_dtype = torch.float32 if n1.device.type == "mps" else torch.float64
        lam0 = _c_initial_lambdas(*(v.detach().to(root_dtype) for v in (*a_n, *b_safe)))
        lam0 = tuple(v.to(dtype) for v in lam0)
    lam0_ok = (lam0[0] > 0) & (lam0[1] > 0) & (lam0[2] > 0) & nondegenerate[..., None]  # (..., 4)

    # X^-1 for X = [d12, d13, n] (columns): adj(X) / det(X), det = |d12 x d13|^2; adj(X) = cof(X)^T.
    det_x = torch.where(nondegenerate, area2, one)
    xrows: Mat = ((d12[0], d13[0], n_world[0]), (d12[1], d13[1], n_world[1]), (d12[2], d13[2], n_world[2]))
    cof_x = _c_cofactor(xrows)
    xinv = [cof_x[c][k] / det_x for k in range(3) for c in range(3)]  # xinv[k][c] at 3 k + c

    # Gather the candidate slots: per-problem quantities (rows) at each slot's problem.
    shape = lam0_ok.shape
    slot = lam0_ok.reshape(-1).nonzero()[:, 0]
    problem = torch.div(slot, shape[-1], rounding_mode="floor")
    per_problem = torch.stack([*a_n, *b_safe, scale.sqrt(), *y1, *y2, *y3, *x1, *x2, *x3, *xinv]).reshape(34, -1)
    g = torch.gather(per_problem, 1, problem[None].expand(34, -1)).unbind(0)
    lam = torch.stack(lam0).reshape(3, -1).index_select(1, slot).unbind(0)
    rot, trans, ok = _c_slot_poses(
        lam, g[0:3], g[3:6], g[6], (g[7:10], g[10:13], g[13:16]), (g[16:19], g[19:22], g[22:25]), g[25:34], refine_steps
    )
    return torch.stack([*(c for row in rot for c in row), *trans]), ok, slot


def _c_slot_poses(
    lam0: Vec, a: Vec, b: Vec, sq_scale: Tensor, y: Mat, x: Mat, xinv: list[Tensor], refine_steps: int
) -> tuple[Mat, Vec, Tensor]:
    """Polishes the initial depths ``lam0`` and builds the poses, for flat tensors of slots with
    their problems' normalized distances ``a``, cosines ``b``, ``sqrt(scale)``, unit rays ``y``, world
    points ``x`` and ``X^-1`` (``xinv[3 k + c]``). Returns rotation rows, translation and which slots
    pass the solution tests (besides nondegeneracy and positive initial depths, checked before)."""
    eps = torch.finfo(lam0[0].dtype).eps
    lam = _c_refine_lambdas(lam0, a, b, refine_steps)
    r1, r2, r3 = _c_residuals(lam, a, b)
    res = torch.maximum(torch.maximum(r1.abs(), r2.abs()), r3.abs())
    lam_pos = (lam[0] > 0) & (lam[1] > 0) & (lam[2] > 0)
    l1, l2, l3 = (v * sq_scale for v in lam)

    # Pose: R [d12, d13, d12 x d13] = [v1, v2, v1 x v2].
    y1, y2, y3 = y
    v1 = _c_sub(_c_scale(y1, l1), _c_scale(y2, l2))
    v2 = _c_sub(_c_scale(y1, l1), _c_scale(y3, l3))
    v3 = _c_cross(v1, v2)
    ycols = (v1, v2, v3)  # Y[r][k] = ycols[k][r]
    rot: Mat = tuple(  # type: ignore[assignment]
        tuple(ycols[0][r] * xinv[c] + ycols[1][r] * xinv[3 + c] + ycols[2][r] * xinv[6 + c] for c in range(3))
        for r in range(3)
    )
    cols = tuple(tuple(rot[k][c] for k in range(3)) for c in range(3))
    orth_err = torch.stack(
        [
            (_c_dot(cols[0], cols[0]) - 1.0).abs(),
            (_c_dot(cols[1], cols[1]) - 1.0).abs(),
            (_c_dot(cols[2], cols[2]) - 1.0).abs(),
            _c_dot(cols[0], cols[1]).abs(),
            _c_dot(cols[0], cols[2]).abs(),
            _c_dot(cols[1], cols[2]).abs(),
        ],
        -1,
    ).amax(-1)
    # Rounding in the depths is amplified by thin triangles: project onto SO(3) by Newton's
    # iteration for the polar factor, R <- (R + R^-T) / 2 with R^-T = cof(R) / det(R); det(R) is the
    # first row dotted with the first cofactor row.
    det_r = None
    for _ in range(3):
        cof = _c_cofactor(rot)
        det = _c_dot(rot[0], cof[0])
        det_r = det if det_r is None else det_r
        inv = 1.0 / torch.where(det > 0, det, torch.ones_like(det))
        rot = tuple(  # type: ignore[assignment]
            tuple(0.5 * (rot[r][c] + cof[r][c] * inv) for c in range(3)) for r in range(3)
        )
    # The translation that best fits all three points (l_i y_i = R X_i + t).
    x1, x2, x3 = x
    trans = tuple(
        ((l1 * y1[r] - _c_dot(rot[r], x1)) + (l2 * y2[r] - _c_dot(rot[r], x2)) + (l3 * y3[r] - _c_dot(rot[r], x3)))
        / 3.0
        for r in range(3)
    )
    total = trans[0] + trans[1] + trans[2]  # finite iff every entry is (O(1) and metre-scale values)
    for row in rot:
        total = total + row[0] + row[1] + row[2]
    tol = 10.0 * eps**0.5
    assert det_r is not None
    ok = lam_pos & (res < tol) & (orth_err < min(1e3 * tol, 0.1)) & (det_r > 0) & torch.isfinite(total)
    return rot, trans, ok  # type: ignore[return-value]


def p3p_solve_components(y: Mat, x: Mat, refine_steps: int = 5) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`p3p_lambda_twist` on component tensors: rays ``y[i][c]`` and world points ``x[i][c]``
    (point ``i``, coordinate ``c``), ``(...)`` tensors of one floating dtype; non-finite problems have
    no solution. Returns the candidate slots sparsely, ``(poses (12, S), valid (S,), slot (S,))``:
    ``R_world2cam`` entries row by row then ``t_world2cam``, whether it is a solution, and the index of
    the slot in the flattened ``(..., 4)`` slots of :func:`p3p_lambda_twist` (slots not listed have
    no solution)."""
    total = None
    for v in (*y, *x):
        for c in v:
            total = c if total is None else total + c
    assert total is not None
    finite = torch.isfinite(total)  # every input finite (a sum of finite inputs does not overflow here)
    y = tuple(tuple(torch.where(finite, c, 1.0 if i == j else 0.0) for j, c in enumerate(v)) for i, v in enumerate(y))  # type: ignore[assignment]
    x = tuple(tuple(torch.where(finite, c, 1.0 if i == j else 0.0) for j, c in enumerate(v)) for i, v in enumerate(x))  # type: ignore[assignment]
    return _c_lambda_twist(y, x, finite, refine_steps)


def p3p_components(bearings: Tensor, points_world: Tensor, refine_steps: int = 5) -> tuple[Mat, Vec, Tensor]:
    """:func:`p3p_lambda_twist` through :func:`p3p_solve_components`, densely: the rotation as rows
    of three ``(..., 4)`` tensors, the translation as three ``(..., 4)`` tensors, and
    ``valid (..., 4)``; identity / zero where invalid. Inputs ``(..., 3, 3)`` of one floating dtype."""
    # (3, 3, ...) component-major, so that each component is one contiguous tensor.
    yb = bearings.movedim((-2, -1), (0, 1)).contiguous()
    xb = points_world.movedim((-2, -1), (0, 1)).contiguous()
    y: Mat = tuple((yb[i, 0], yb[i, 1], yb[i, 2]) for i in range(3))  # type: ignore[assignment]
    x: Mat = tuple((xb[i, 0], xb[i, 1], xb[i, 2]) for i in range(3))  # type: ignore[assignment]
    poses, ok, slot = p3p_solve_components(y, x, refine_steps)
    shape = (*bearings.shape[:-2], 4)
    out = torch.zeros(12, *shape, dtype=bearings.dtype, device=bearings.device).reshape(12, -1)
    out[[0, 4, 8]] = 1.0
    out.index_copy_(1, slot, torch.where(ok, poses, out[:, :1]))
    valid = torch.zeros(out.shape[1], dtype=torch.bool, device=out.device).index_copy_(0, slot, ok)
    out = out.reshape(12, *shape)
    rot = ((out[0], out[1], out[2]), (out[3], out[4], out[5]), (out[6], out[7], out[8]))
    return rot, (out[9], out[10], out[11]), valid.reshape(shape)

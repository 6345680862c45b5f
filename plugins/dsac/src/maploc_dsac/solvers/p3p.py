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


# --------------------------------------------------------------------------------------------------
# The same solver on component tensors, for the no-autograd candidate search of the RANSAC
#
# ``_p3p_components`` computes what ``p3p_lambda_twist`` computes, with the same formulas and
# branch rules, but on separate component tensors, and about three times faster on the CPU (the
# candidate search solves thousands of minimal problems per image). Results agree to rounding, which
# ``tests/test_p3p.py`` checks; the public function above keeps its exact arithmetic, which the
# differentiable training path relies on.
#
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


def _p3p_solve_components(y: Mat, x: Mat, refine_steps: int = 5) -> tuple[Tensor, Tensor, Tensor]:
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


def _p3p_components(bearings: Tensor, points_world: Tensor, refine_steps: int = 5) -> tuple[Mat, Vec, Tensor]:
    """:func:`p3p_lambda_twist` through :func:`_p3p_solve_components`, densely: the rotation as rows
    of three ``(..., 4)`` tensors, the translation as three ``(..., 4)`` tensors, and
    ``valid (..., 4)``; identity / zero where invalid. Inputs ``(..., 3, 3)`` of one floating dtype."""
    # (3, 3, ...) component-major, so that each component is one contiguous tensor.
    yb = bearings.movedim((-2, -1), (0, 1)).contiguous()
    xb = points_world.movedim((-2, -1), (0, 1)).contiguous()
    y: Mat = tuple((yb[i, 0], yb[i, 1], yb[i, 2]) for i in range(3))  # type: ignore[assignment]
    x: Mat = tuple((xb[i, 0], xb[i, 1], xb[i, 2]) for i in range(3))  # type: ignore[assignment]
    poses, ok, slot = _p3p_solve_components(y, x, refine_steps)
    shape = (*bearings.shape[:-2], 4)
    out = torch.zeros(12, *shape, dtype=bearings.dtype, device=bearings.device).reshape(12, -1)
    out[[0, 4, 8]] = 1.0
    out.index_copy_(1, slot, torch.where(ok, poses, out[:, :1]))
    valid = torch.zeros(out.shape[1], dtype=torch.bool, device=out.device).index_copy_(0, slot, ok)
    out = out.reshape(12, *shape)
    rot = ((out[0], out[1], out[2]), (out[3], out[4], out[5]), (out[6], out[7], out[8]))
    return rot, (out[9], out[10], out[11]), valid.reshape(shape)

"""Lambda Twist P3P (maploc_dsac.solvers.p3p): OpenCV's P3P solvers as oracle, exact recovery, degeneracies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from maploc_dsac.solvers import p3p_lambda_twist
from maploc_dsac.solvers.p3p_fast import p3p_components

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def p3p_problems(draw):
    """A pinhole camera, a pose and three points in front of it that project into the image.

    Returns numpy float64 ``K (3, 3)``, ``R_world2cam``, ``t_world2cam``, ``points_world (3, 3)``,
    ``pixels (3, 2)``, ``bearings (3, 3)``. Triplets are kept reasonably conditioned (pixels at
    least 20 px apart and not nearly collinear), where OpenCV itself is accurate.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    width, height = draw(st.sampled_from([(640, 480), (1024, 768), (320, 240)]))
    focal = draw(st.floats(200.0, 1500.0))
    K = np.array(
        [[focal, 0.0, width / 2 + rng.uniform(-20, 20)], [0.0, focal * rng.uniform(0.9, 1.1), height / 2], [0, 0, 1]]
    )
    pixels = np.stack([rng.uniform(0, width - 1, 3), rng.uniform(0, height - 1, 3)], 1)
    depths = rng.uniform(0.5, 20.0, 3)
    rays = np.concatenate([pixels, np.ones((3, 1))], 1) @ np.linalg.inv(K).T
    points_cam = rays * depths[:, None]
    R = Rotation.random(random_state=rng).as_matrix()
    t = rng.normal(size=3) * draw(st.sampled_from([0.1, 1.0, 10.0]))
    points_world = (points_cam - t) @ R  # R^T (x_cam - t)
    d = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1)
    assume(d[np.triu_indices(3, 1)].min() > 20.0)
    e1, e2 = pixels[1] - pixels[0], pixels[2] - pixels[0]
    area = abs(e1[0] * e2[1] - e1[1] * e2[0]) / 2
    assume(area > 0.05 * d.max() ** 2)
    bearings = points_cam / np.linalg.norm(points_cam, axis=1, keepdims=True)
    return K, R, t, points_world, pixels, bearings


def _pose_distance(R1, t1, R2, t2) -> float:
    return float(np.abs(R1 - R2).max() + np.abs(t1 - t2).max() / max(1.0, np.abs(t2).max()))


def _opencv_solutions(K, points_world, pixels, flag):
    """OpenCV's P3P solutions with all three points in front of the camera (AP3P also returns
    some with negative depths, which are not solutions of the constrained problem)."""
    _, rvecs, tvecs = cv2.solveP3P(points_world, pixels, K, None, flags=flag)
    out = []
    for rvec, tvec in zip(rvecs, tvecs, strict=True):
        R = cv2.Rodrigues(rvec)[0]
        t = tvec.ravel()
        if ((points_world @ R.T + t)[:, 2] > 0).all():
            out.append((R, t))
    return out


@SETTINGS
@given(p3p_problems())
def test_true_pose_recovered_float64(problem):
    K, R, t, X, _, y = problem
    R_est, t_est, valid = p3p_lambda_twist(torch.from_numpy(y), torch.from_numpy(X))
    assert R_est.shape == (4, 3, 3) and t_est.shape == (4, 3) and valid.shape == (4,)
    assert valid.any()
    dists = [_pose_distance(R_est[k].numpy(), t_est[k].numpy(), R, t) for k in range(4) if valid[k]]
    assert min(dists) < 1e-6
    # Every valid solution is a proper rotation that maps the points onto their rays, in front.
    for k in range(4):
        if not valid[k]:
            continue
        Rk, tk = R_est[k].numpy(), t_est[k].numpy()
        np.testing.assert_allclose(Rk.T @ Rk, np.eye(3), atol=1e-9)
        assert np.linalg.det(Rk) > 0
        xc = X @ Rk.T + tk
        assert (xc[:, 2] > 0).all()
        np.testing.assert_allclose(xc / np.linalg.norm(xc, axis=1, keepdims=True), y, atol=1e-7)


@SETTINGS
@given(p3p_problems(), st.sampled_from(["P3P", "AP3P"]))
def test_matches_opencv_solution_sets(problem, method):
    K, R, t, X, uv, y = problem
    flag = cv2.SOLVEPNP_P3P if method == "P3P" else cv2.SOLVEPNP_AP3P
    R_est, t_est, valid = p3p_lambda_twist(torch.from_numpy(y), torch.from_numpy(X))
    ours = [(R_est[k].numpy(), t_est[k].numpy()) for k in range(4) if valid[k]]
    theirs = _opencv_solutions(K, X, uv, flag)
    # Each of OpenCV's solutions is one of ours (OpenCV's accuracy sets the tolerance) ...
    for Rc, tc in theirs:
        assert min(_pose_distance(Ro, to, Rc, tc) for Ro, to in ours) < 1e-4
    # ... and the true pose is among ours.
    assert min(_pose_distance(Ro, to, R, t) for Ro, to in ours) < 1e-6
    # OpenCV's P3P (Ding et al. 2023) finds the same solution set: none of ours is missing there.
    if method == "P3P":
        for Ro, to in ours:
            assert min(_pose_distance(Ro, to, Rc, tc) for Rc, tc in theirs) < 1e-4


@SETTINGS
@given(p3p_problems())
def test_float32_recovers_pose(problem):
    K, R, t, X, _, y = problem
    # float32 flags thin world triangles (sin^2 of an angle below 1e3 eps) as degenerate.
    d12, d13 = X[0] - X[1], X[0] - X[2]
    assume(np.sum(np.cross(d12, d13) ** 2) > 1e-2 * np.sum(d12**2) * np.sum(d13**2))
    R_est, t_est, valid = p3p_lambda_twist(torch.from_numpy(y).float(), torch.from_numpy(X).float())
    assert R_est.dtype == torch.float32
    dists = [_pose_distance(R_est[k].double().numpy(), t_est[k].double().numpy(), R, t) for k in range(4) if valid[k]]
    assert dists and min(dists) < 1e-2


def test_batched_matches_one_by_one():
    rng = np.random.default_rng(3)
    y = torch.from_numpy(rng.normal(size=(2, 5, 3, 3)) * 0.2 + np.array([0.0, 0.0, 1.0]))
    X = torch.from_numpy(rng.normal(size=(2, 5, 3, 3)))
    R, t, v = p3p_lambda_twist(y, X)
    assert R.shape == (2, 5, 4, 3, 3) and t.shape == (2, 5, 4, 3) and v.shape == (2, 5, 4)
    assert v.any()
    for i in range(2):
        for j in range(5):
            Rij, tij, vij = p3p_lambda_twist(y[i, j], X[i, j])
            torch.testing.assert_close(Rij, R[i, j], rtol=0, atol=1e-12)
            torch.testing.assert_close(tij, t[i, j], rtol=0, atol=1e-12)
            assert torch.equal(vij, v[i, j])


def _simple_problem(dtype=torch.float64):
    y = torch.tensor([[0.1, -0.2, 1.0], [-0.3, 0.1, 1.0], [0.2, 0.25, 1.0]], dtype=dtype)
    y = y / y.norm(dim=-1, keepdim=True)
    depths = torch.tensor([3.0, 4.0, 5.0], dtype=dtype)
    R = torch.from_numpy(Rotation.from_rotvec([0.3, -0.2, 0.1]).as_matrix()).to(dtype)
    t = torch.tensor([0.5, -1.0, 2.0], dtype=dtype)
    X = (y * depths[:, None] - t) @ R
    return y, X, R, t


@pytest.mark.parametrize(
    "case",
    ["collinear", "duplicate", "all_same", "nan_point", "inf_ray", "same_ray", "zero_ray"],
)
def test_degenerate_triplets_flagged_without_nan(case):
    y, X, _, _ = _simple_problem()
    if case == "collinear":
        X = torch.stack([X[0], X[1], 2.0 * X[1] - X[0]])
    elif case == "duplicate":
        X = torch.stack([X[0], X[1], X[1]])
    elif case == "all_same":
        X = X[:1].expand(3, 3).clone()
    elif case == "nan_point":
        X[1, 0] = float("nan")
    elif case == "inf_ray":
        y[2, 1] = float("inf")
    elif case == "same_ray":
        y = torch.stack([y[0], y[0], y[2]])
    elif case == "zero_ray":
        y[0] = 0.0
    R, t, valid = p3p_lambda_twist(y, X)
    assert not valid.any()
    assert torch.isfinite(R).all() and torch.isfinite(t).all()
    torch.testing.assert_close(R, torch.eye(3, dtype=R.dtype).expand(4, 3, 3))


def test_unnormalised_bearings_and_mixed_batch():
    y, X, R, t = _simple_problem()
    good = (y * torch.tensor([[2.0], [0.5], [7.0]], dtype=y.dtype), X)
    bad = (y, torch.stack([X[0], X[0], X[2]]))
    Rb, tb, vb = p3p_lambda_twist(torch.stack([good[0], bad[0]]), torch.stack([good[1], bad[1]]))
    assert vb[0].any() and not vb[1].any()
    k = int(torch.nonzero(vb[0])[0, 0])
    errs = [(Rb[0, i] - R).abs().max() + (tb[0, i] - t).abs().max() for i in range(4) if vb[0, i]]
    assert min(errs) < 1e-9 and k >= 0


def test_gradcheck_float64():
    y, X, R_true, t_true = _simple_problem()
    _, _, valid = p3p_lambda_twist(y, X)
    R_all, t_all, _ = p3p_lambda_twist(y, X)
    k = min((i for i in range(4) if valid[i]), key=lambda i: float((R_all[i] - R_true).abs().max()))

    def fn(bearings, points):
        R, t, _ = p3p_lambda_twist(bearings, points)
        return R[k], t[k]

    assert torch.autograd.gradcheck(fn, (y.clone().requires_grad_(), X.clone().requires_grad_()), atol=1e-6, rtol=1e-4)


def test_shape_errors():
    with pytest.raises(ValueError):
        p3p_lambda_twist(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        p3p_lambda_twist(torch.zeros(2, 3, 3), torch.zeros(3, 3, 3))


def _components(bearings, points):
    """``p3p_components`` (the RANSAC's no-autograd solver) stacked like ``p3p_lambda_twist``."""
    rot, trans, valid = p3p_components(bearings, points)
    return torch.stack([torch.stack(row, -1) for row in rot], -2), torch.stack(trans, -1), valid


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_component_solver_matches_reference(dtype):
    """The component-tensor solver of the candidate search agrees with ``p3p_lambda_twist``: the
    same valid slots (up to a few borderline ones), poses to rounding, identity / zero elsewhere,
    on random problems with noise, thin triangles, degenerate and non-finite triplets."""
    g = torch.Generator().manual_seed(0)
    n = 4000
    X = torch.randn(n, 3, 3, generator=g, dtype=torch.float64) * 2
    R = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))[0]
    R = R * torch.linalg.det(R).sign()[:, None, None]
    t = torch.randn(n, 3, generator=g, dtype=torch.float64) + torch.tensor([0.0, 0.0, 8.0], dtype=torch.float64)
    xc = X @ R.transpose(1, 2) + t[:, None]
    y = xc / xc.norm(dim=-1, keepdim=True)
    noisy = torch.rand(n, 1, 1, generator=g, dtype=torch.float64) < 0.3
    y = y + torch.randn(y.shape, generator=g, dtype=torch.float64) * 1e-3 * noisy
    X[:20, 2] = 2.0 * X[:20, 1] - X[:20, 0]  # collinear
    X[20:30, 2] = X[20:30, 1]  # repeated
    y[30:40, 1] = y[30:40, 0]  # same ray
    y[40:50, 1, 0] = float("nan")
    X[50:60, 2, 1] = float("inf")
    y[60:70, 0] = 0.0
    y, X = y.to(dtype), X.to(dtype)
    R_ref, t_ref, v_ref = p3p_lambda_twist(y, X)
    R_c, t_c, v_c = _components(y, X)
    assert R_c.shape == R_ref.shape and t_c.shape == t_ref.shape and v_c.shape == v_ref.shape
    assert not v_c[:70].any()
    assert int((v_ref != v_c).sum()) <= max(2, int(v_ref.sum()) // 2000)
    both = v_ref & v_c
    tol = 1e-8 if dtype == torch.float64 else 1e-3
    # Relative to the conditioning: compare the median and bound the worst case loosely.
    dR = (R_ref - R_c)[both].abs().amax((-1, -2))
    dt = (t_ref - t_c)[both].abs().amax(-1) / t_ref[both].abs().amax(-1).clamp_min(1.0)
    assert float(dR.median()) < tol * 1e-3 and float(dt.median()) < tol * 1e-3
    assert float(dR.max()) < tol * 100 and float(dt.max()) < tol * 100
    assert torch.isfinite(R_c).all() and torch.isfinite(t_c).all()
    torch.testing.assert_close(R_c[~v_c], torch.eye(3, dtype=dtype).expand_as(R_c[~v_c]), rtol=0, atol=0)
    assert bool((t_c[~v_c] == 0).all())
    # Batch shapes are kept.
    R2, t2, v2 = _components(y[:12].reshape(3, 4, 3, 3), X[:12].reshape(3, 4, 3, 3))
    assert R2.shape == (3, 4, 4, 3, 3) and t2.shape == (3, 4, 4, 3) and v2.shape == (3, 4, 4)
    assert torch.equal(v2.reshape(12, 4), v_c[:12])

"""Weighted Kabsch (maploc_dsac.solvers.kabsch): scipy's Rotation.align_vectors as oracle, degeneracies, gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from maploc_dsac.solvers import kabsch

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def alignment_problems(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(3, 30))
    R = Rotation.random(random_state=rng).as_matrix()
    t = rng.normal(size=3) * draw(st.sampled_from([0.0, 1.0, 100.0]))
    points_cam = rng.normal(size=(n, 3)) * rng.uniform(0.1, 5.0, size=3) + rng.normal(size=3)
    noise = draw(st.sampled_from([0.0, 0.01, 0.5]))
    points_world = points_cam @ R.T + t + rng.normal(size=(n, 3)) * noise
    weights = rng.uniform(0.1, 2.0, n) if draw(st.booleans()) else np.ones(n)
    return points_cam, points_world, weights, R, t, noise


def _oracle(points_cam, points_world, weights):
    w = weights / weights.sum()
    mu_c, mu_w = w @ points_cam, w @ points_world
    rot, _ = Rotation.align_vectors(points_world - mu_w, points_cam - mu_c, weights=weights)
    R = rot.as_matrix()
    return R, mu_w - R @ mu_c


@SETTINGS
@given(alignment_problems())
def test_matches_scipy_align_vectors(problem):
    pc, pw, w, R_true, t_true, noise = problem
    R, t, valid = kabsch(torch.from_numpy(pc), torch.from_numpy(pw), torch.from_numpy(w))
    assert valid
    R_ref, t_ref = _oracle(pc, pw, w)
    np.testing.assert_allclose(R.numpy(), R_ref, atol=1e-8)
    np.testing.assert_allclose(t.numpy(), t_ref, atol=1e-8 * max(1.0, np.abs(t_ref).max()))
    np.testing.assert_allclose(R.numpy().T @ R.numpy(), np.eye(3), atol=1e-12)
    assert np.linalg.det(R.numpy()) > 0
    if noise == 0.0:  # exact recovery from noise-free data
        np.testing.assert_allclose(R.numpy(), R_true, atol=1e-9)
        np.testing.assert_allclose(t.numpy(), t_true, atol=1e-9 * max(1.0, np.abs(t_true).max()))


def test_reflection_is_not_returned():
    """Mirrored targets: the unconstrained optimum is a reflection; the result must be a rotation."""
    rng = np.random.default_rng(0)
    pc = rng.normal(size=(10, 3))
    pw = pc * np.array([1.0, 1.0, -1.0])  # a reflection of the cloud
    R, t, valid = kabsch(torch.from_numpy(pc), torch.from_numpy(pw))
    assert valid
    assert torch.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    R_ref, t_ref = _oracle(pc, pw, np.ones(10))
    np.testing.assert_allclose(R.numpy(), R_ref, atol=1e-8)
    np.testing.assert_allclose(t.numpy(), t_ref, atol=1e-8)


def test_minimal_three_points_exact():
    rng = np.random.default_rng(1)
    R_true = Rotation.random(random_state=rng).as_matrix()
    t_true = np.array([1.0, -2.0, 0.5])
    pc = rng.normal(size=(3, 3))
    R, t, valid = kabsch(torch.from_numpy(pc), torch.from_numpy(pc @ R_true.T + t_true))
    assert valid
    np.testing.assert_allclose(R.numpy(), R_true, atol=1e-12)
    np.testing.assert_allclose(t.numpy(), t_true, atol=1e-12)


@pytest.mark.parametrize(
    "case", ["collinear", "coincident", "two_points", "zero_weights", "nan_weighted", "negative_weight"]
)
def test_degenerate_inputs_flagged(case):
    pc = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 2.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.5]], dtype=torch.float64)
    w = torch.ones(4, dtype=torch.float64)
    if case == "collinear":
        pc = torch.arange(4, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    elif case == "coincident":
        pc = pc[:1].expand(4, 3).clone()
    elif case == "two_points":
        w = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    elif case == "zero_weights":
        w = torch.zeros(4, dtype=torch.float64)
    elif case == "nan_weighted":
        pc[2, 1] = float("nan")
    elif case == "negative_weight":
        w[1] = -1.0
    R, t, valid = kabsch(pc, pc + 1.0, w)
    assert not valid
    torch.testing.assert_close(R, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(t, torch.zeros(3, dtype=torch.float64))


def test_zero_weight_rows_ignored_even_if_nan():
    rng = np.random.default_rng(2)
    R_true = Rotation.random(random_state=rng).as_matrix()
    pc = rng.normal(size=(6, 3))
    pw = pc @ R_true.T + 0.3
    pc_bad, pw_bad = pc.copy(), pw.copy()
    pc_bad[4] = np.nan
    pw_bad[5] = np.inf
    w = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    R, t, valid = kabsch(torch.from_numpy(pc_bad), torch.from_numpy(pw_bad), torch.from_numpy(w))
    R2, t2, _ = kabsch(torch.from_numpy(pc[:4]), torch.from_numpy(pw[:4]))
    assert valid
    torch.testing.assert_close(R, R2, rtol=0, atol=1e-12)
    torch.testing.assert_close(t, t2, rtol=0, atol=1e-12)


def test_batched_broadcasting_matches_loop():
    rng = np.random.default_rng(3)
    pc = torch.from_numpy(rng.normal(size=(1, 8, 3)))  # broadcast over the batch
    pw = torch.from_numpy(rng.normal(size=(2, 4, 8, 3)))
    w = torch.from_numpy(rng.uniform(0.5, 1.5, size=(2, 4, 8)))
    R, t, valid = kabsch(pc, pw, w)
    assert R.shape == (2, 4, 3, 3) and t.shape == (2, 4, 3) and valid.shape == (2, 4)
    for i in range(2):
        for j in range(4):
            Rij, tij, vij = kabsch(pc[0], pw[i, j], w[i, j])
            torch.testing.assert_close(R[i, j], Rij, rtol=0, atol=1e-12)
            torch.testing.assert_close(t[i, j], tij, rtol=0, atol=1e-12)
            assert bool(vij) == bool(valid[i, j])


def test_float32():
    rng = np.random.default_rng(4)
    R_true = Rotation.random(random_state=rng).as_matrix()
    pc = rng.normal(size=(50, 3))
    pw = pc @ R_true.T + np.array([10.0, -5.0, 2.0])
    R, t, valid = kabsch(torch.from_numpy(pc).float(), torch.from_numpy(pw).float())
    assert valid and R.dtype == torch.float32
    np.testing.assert_allclose(R.numpy(), R_true, atol=1e-5)
    np.testing.assert_allclose(t.numpy(), [10.0, -5.0, 2.0], atol=1e-4)


@pytest.mark.parametrize("n", [3, 7])
def test_gradcheck_float64(n):
    rng = np.random.default_rng(5)
    R_true = Rotation.from_rotvec([0.4, -0.3, 0.2]).as_matrix()
    pc = torch.from_numpy(rng.normal(size=(n, 3)) * np.array([1.0, 2.0, 3.0])).requires_grad_()
    pw = torch.from_numpy(pc.detach().numpy() @ R_true.T + 0.5 + rng.normal(size=(n, 3)) * 0.05).requires_grad_()
    w = torch.from_numpy(rng.uniform(0.5, 1.5, n)).requires_grad_()

    def fn(a, b, c):
        R, t, _ = kabsch(a, b, c)
        return R, t

    assert torch.autograd.gradcheck(fn, (pc, pw, w), atol=1e-7, rtol=1e-5)


def test_shape_errors():
    with pytest.raises(ValueError):
        kabsch(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError):
        kabsch(torch.zeros(4, 3), torch.zeros(5, 3))

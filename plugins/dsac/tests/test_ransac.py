"""DSAC* RANSAC (maploc_dsac.solvers.ransac): accuracy against OpenCV, exact recovery, masking, batching,
degenerate input and gradients."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from maploc.geometry.rotation import axis_angle_to_matrix
from maploc_dsac.solvers import (
    DSACRansac,
    refinement,
    reprojection_errors,
    sample_minimal_sets,
    sampling,
    scoring,
    soft_inlier_count,
)


@pytest.fixture(autouse=True)
def _single_thread():
    """Small tensors gain nothing from intra-op threads, and oversubscribed cores make them crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_scene(seed: int, n: int = 400, outlier_ratio: float = 0.0, noise_px: float = 0.0, dtype=torch.float64):
    """A random pinhole camera and pose, ``n`` points 1-6 m in front of it, pixel noise on the
    observations, and a fraction of the scene coordinates replaced by random points in the scene's
    bounding box (outliers)."""
    rng = np.random.default_rng(seed)
    width, height, focal = 640, 480, rng.uniform(400.0, 700.0)
    K = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])
    R_c2w = Rotation.random(random_state=rng).as_matrix()
    t_c2w = rng.normal(size=3) * 2.0
    uv = np.stack([rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)], 1)
    depth = rng.uniform(1.0, 6.0, n)
    points_cam = np.concatenate([uv, np.ones((n, 1))], 1) @ np.linalg.inv(K).T * depth[:, None]
    scene = points_cam @ R_c2w.T + t_c2w
    outliers = rng.permutation(n)[: int(round(outlier_ratio * n))]
    scene[outliers] = rng.uniform(scene.min(0), scene.max(0), size=(len(outliers), 3))
    uv_obs = uv + rng.normal(size=uv.shape) * noise_px
    t = lambda a: torch.tensor(a, dtype=dtype)  # noqa: E731
    return {
        "K": t(K),
        "R_c2w": t(R_c2w),
        "t_c2w": t(t_c2w),
        "pixels": t(uv_obs),
        "scene": t(scene),
        "points_cam": t(points_cam),
    }


def rotation_error_deg(R_est, R_gt) -> float:
    chord = float(np.linalg.norm(np.asarray(R_est, dtype=np.float64) - np.asarray(R_gt, dtype=np.float64)))
    return math.degrees(2.0 * math.asin(min(chord / (2.0 * math.sqrt(2.0)), 1.0)))


def solve_rgb(solver, d, seed=0):
    return solver(d["scene"][None], d["pixels"][None], d["K"][None], seed=seed)


# --------------------------------------------------------------------------------------------
# accuracy
# --------------------------------------------------------------------------------------------


def opencv_p3p_refined(d, iterations: int, threshold_px: float = 10.0):
    """OpenCV's fair counterpart: ``solvePnPRansac`` with P3P on 4-point sets (as DSAC*), the same
    threshold, ``iterations`` minimal sets (confidence ~1, so the bound stays at ``iterations``
    whenever outliers remain), then ``solvePnPRefineLM`` on its inliers (its own final fit is EPnP).
    Returns ``(rotation error deg, translation error m)``, or ``None`` when OpenCV finds no pose."""
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(
        d["scene"].numpy(), d["pixels"].numpy(), d["K"].numpy(), None, iterationsCount=int(iterations),
        reprojectionError=threshold_px, confidence=1.0 - 1e-12, flags=cv2.SOLVEPNP_P3P,
    )
    if not ok or inliers is None or len(inliers) < 4:
        return None
    idx = inliers.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(d["scene"].numpy()[idx], d["pixels"].numpy()[idx], d["K"].numpy(), None, rvec, tvec)
    R_w2c = cv2.Rodrigues(rvec)[0]
    return rotation_error_deg(R_w2c.T, d["R_c2w"]), float(np.linalg.norm(-R_w2c.T @ tvec.ravel() - d["t_c2w"].numpy()))


#: Per-frame tolerance of the OpenCV comparison: both end in a least-squares fit on their inlier sets,
#: which may differ by a few boundary points (maploc re-collects inliers after each re-fit).
ROT_TOL_DEG, TRANS_TOL_M, REL_TOL = 0.005, 0.0005, 0.10


@pytest.mark.parametrize("outlier_ratio", [0.0, 0.5, 0.8])
def test_at_least_as_accurate_as_opencv_with_the_same_budget(outlier_ratio):
    """Per frame, 1 px noise: maploc's error is at most OpenCV's (P3P RANSAC given as many minimal
    sets as maploc solved on that frame, then LM on its inliers) plus ``REL_TOL`` of it plus
    ``ROT_TOL_DEG`` / ``TRANS_TOL_M``. A frame where maploc picks a wrong hypothesis fails this, at
    every outlier ratio; a frame where OpenCV finds no pose counts as maploc's win."""
    solver = DSACRansac("rgb")
    cv2.setRNGSeed(0)
    budgets = []
    for trial in range(5):
        d = make_scene(100 + trial, n=500, outlier_ratio=outlier_ratio, noise_px=1.0)
        res = solve_rgb(solver, d, seed=trial)
        assert bool(res.success[0])
        rot = rotation_error_deg(res.R_cam2world[0], d["R_c2w"])
        trans = float((res.t_cam2world[0] - d["t_c2w"]).norm())
        budget = int(res.num_minimal_sets[0])
        budgets.append(budget)
        ref = opencv_p3p_refined(d, budget)
        if ref is None:
            continue
        assert rot <= ref[0] * (1 + REL_TOL) + ROT_TOL_DEG, (trial, rot, ref, budget)
        assert trans <= ref[1] * (1 + REL_TOL) + TRANS_TOL_M, (trial, trans, ref, budget)
        # And absolutely: 1 px noise on 100+ inliers gives a few hundredths of a degree / a few mm.
        assert rot < 0.1 and trans < 0.01, (trial, rot, trans)
    assert min(budgets) >= solver.num_hypotheses  # at least one minimal set per hypothesis


def test_opencv_comparison_can_fail():
    """The comparison above detects a worse estimate: maploc with 1 hypothesis and no redraws, at
    50 % outliers, loses to OpenCV with a fair budget on at least one frame."""
    solver = DSACRansac("rgb", num_hypotheses=1, candidates_per_hypothesis=1, max_refinement_steps=0)
    cv2.setRNGSeed(0)
    lost = 0
    for trial in range(5):
        d = make_scene(100 + trial, n=500, outlier_ratio=0.5, noise_px=1.0)
        res = solve_rgb(solver, d, seed=trial)
        rot = rotation_error_deg(res.R_cam2world[0], d["R_c2w"])
        ref = opencv_p3p_refined(d, 64)
        assert ref is not None
        lost += rot > ref[0] * (1 + REL_TOL) + ROT_TOL_DEG
    assert lost >= 1


@pytest.mark.parametrize("outlier_ratio", [0.0, 0.5])
@pytest.mark.parametrize("mode", ["rgb", "rgbd"])
def test_noise_free_recovery_float64(mode, outlier_ratio):
    d = make_scene(7, n=300, outlier_ratio=outlier_ratio)
    solver = DSACRansac(mode)
    res = solver(d["scene"][None], d["pixels"][None], d["K"][None], points_cam=d["points_cam"][None], seed=1)
    assert bool(res.success[0])
    torch.testing.assert_close(res.R_cam2world[0], d["R_c2w"], rtol=0, atol=1e-6)
    torch.testing.assert_close(res.t_cam2world[0], d["t_c2w"], rtol=0, atol=1e-6)
    n_in = round(300 * (1 - outlier_ratio))
    assert int(res.num_inliers[0]) >= n_in  # random outliers may happen to fall within tau
    assert int(res.num_inliers[0]) <= n_in + 15
    T = res.T_cam2world[0]
    torch.testing.assert_close(T[:3, :3], res.R_cam2world[0])
    torch.testing.assert_close(
        res.R_world2cam[0] @ res.t_cam2world[0] + res.t_world2cam[0], torch.zeros(3, dtype=T.dtype)
    )


def test_float32_input_gives_float32_output():
    d = make_scene(8, n=300, outlier_ratio=0.3, noise_px=0.5, dtype=torch.float32)
    res = solve_rgb(DSACRansac("rgb"), d)
    assert res.R_cam2world.dtype == torch.float32 and res.t_cam2world.dtype == torch.float32
    assert rotation_error_deg(res.R_cam2world[0], d["R_c2w"]) < 0.2
    assert float((res.t_cam2world[0] - d["t_c2w"]).norm()) < 0.02


# --------------------------------------------------------------------------------------------
# degenerate input, masking, batching
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, n", [("rgb", 3), ("rgbd", 2), ("rgb", 0), ("rgbd", 0)])
def test_too_few_points_fail_without_exception(mode, n):
    d = make_scene(9, n=max(n, 1))
    sl = slice(0, n)
    solver = DSACRansac(mode)
    res = solver(
        d["scene"][None, sl], d["pixels"][None, sl], d["K"][None], points_cam=d["points_cam"][None, sl], seed=0
    )
    assert not bool(res.success[0])
    assert torch.isfinite(res.R_cam2world).all() and torch.isfinite(res.t_cam2world).all()
    out = solver.expectation(
        d["scene"][None, sl], d["pixels"][None, sl], d["K"][None], points_cam=d["points_cam"][None, sl], seed=0
    )
    assert not bool(out.success[0])
    assert float(out.probabilities.sum()) == 0.0
    assert out.inliers.shape[-1] == n


def test_masked_out_points_and_degenerate_sets_fail_gracefully():
    d = make_scene(10, n=50)
    solver = DSACRansac("rgb")
    mask = torch.zeros(1, 50, dtype=torch.bool)
    mask[0, :3] = True  # only three usable correspondences
    res = solver(d["scene"][None], d["pixels"][None], d["K"][None], mask=mask, seed=0)
    assert not bool(res.success[0])
    # All scene coordinates on one line: every minimal set is degenerate.
    line = d["scene"][:1] + torch.linspace(0, 1, 50, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.5, 0.2])
    res = solver(line[None], d["pixels"][None], d["K"][None], seed=0)
    assert not bool(res.success[0])
    assert torch.isfinite(res.R_cam2world).all()


def test_nan_coordinates_are_masked():
    """NaN / inf scene coordinates or pixels behave exactly as if those rows were not there."""
    d = make_scene(11, n=300, outlier_ratio=0.3, noise_px=1.0)
    bad = torch.zeros(300, dtype=torch.bool)
    bad[::7] = True
    scene, pixels = d["scene"].clone(), d["pixels"].clone()
    scene[bad.nonzero()[::2, 0], 1] = float("nan")
    pixels[bad.nonzero()[1::2, 0], 0] = float("inf")
    solver = DSACRansac("rgb")
    res = solver(scene[None], pixels[None], d["K"][None], seed=5)
    ref = solver(d["scene"][None, ~bad], d["pixels"][None, ~bad], d["K"][None], seed=5)
    assert bool(res.success[0])
    torch.testing.assert_close(res.R_cam2world, ref.R_cam2world, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.t_cam2world, ref.t_cam2world, rtol=0, atol=1e-12)
    assert int(res.num_inliers[0]) == int(ref.num_inliers[0])
    assert not res.inliers[0, bad].any()
    # RGB-D: missing depth (0 or NaN) is masked too.
    pc = d["points_cam"].clone()
    pc[bad.nonzero()[::2, 0]] = 0.0
    pc[bad.nonzero()[1::2, 0], 2] = float("nan")
    solver_d = DSACRansac("rgbd")
    res = solver_d(d["scene"][None], points_cam=pc[None], seed=5)
    ref = solver_d(d["scene"][None, ~bad], points_cam=d["points_cam"][None, ~bad], seed=5)
    torch.testing.assert_close(res.R_cam2world, ref.R_cam2world, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.t_cam2world, ref.t_cam2world, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["rgb", "rgbd"])
def test_batch_equals_one_by_one(mode):
    scenes = [make_scene(20 + i, n=200, outlier_ratio=r, noise_px=1.0) for i, r in enumerate([0.0, 0.5, 0.7])]
    stack = lambda key: torch.stack([s[key] for s in scenes])  # noqa: E731
    masks = torch.ones(3, 200, dtype=torch.bool)
    masks[1, 150:] = False
    seeds = torch.tensor([3, 99, 12345678901])
    solver = DSACRansac(mode)
    batch = solver(stack("scene"), stack("pixels"), stack("K"), points_cam=stack("points_cam"), mask=masks, seed=seeds)
    for i, s in enumerate(scenes):
        one = solver(
            s["scene"][None],
            s["pixels"][None],
            s["K"][None],
            points_cam=s["points_cam"][None],
            mask=masks[i : i + 1],
            seed=seeds[i : i + 1],
        )
        torch.testing.assert_close(batch.R_cam2world[i], one.R_cam2world[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(batch.t_cam2world[i], one.t_cam2world[0], rtol=0, atol=1e-10)
        assert int(batch.num_inliers[i]) == int(one.num_inliers[0])
        assert int(batch.hypothesis_index[i]) == int(one.hypothesis_index[0])
        assert bool(batch.success[i])


def test_seeds_reproducible_and_distinct():
    d = make_scene(12, n=200, outlier_ratio=0.5, noise_px=1.0)
    solver = DSACRansac("rgb")
    x = (d["scene"][None], d["pixels"][None], d["K"][None])
    a, b = solver.hypotheses(*x, seed=4), solver.hypotheses(*x, seed=4)
    c = solver.hypotheses(*x, seed=5)
    assert torch.equal(a[3], b[3]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[3], c[3])
    # With autograd (the kept sets are solved again) the hypotheses are the same.
    g = solver.hypotheses(x[0].clone().requires_grad_(), *x[1:], seed=4)
    assert g[0].requires_grad
    torch.testing.assert_close(g[0].detach(), a[0], rtol=0, atol=1e-12)
    assert torch.equal(g[3], a[3])
    # Candidates are solved in chunks until H are consistent: same result as one chunk when the first suffices.
    clean = make_scene(12, n=200, outlier_ratio=0.0, noise_px=1.0)
    y = (clean["scene"][None], clean["pixels"][None], clean["K"][None])
    h1 = DSACRansac("rgb", candidates_per_hypothesis=2).hypotheses(*y, seed=4)
    h2 = DSACRansac("rgb", candidates_per_hypothesis=64).hypotheses(*y, seed=4)
    assert torch.equal(h1[3], h2[3]) and torch.equal(h1[0], h2[0])
    torch.manual_seed(0)
    e = solver.hypotheses(*x)  # seed from torch's global generator
    torch.manual_seed(0)
    f = solver.hypotheses(*x)
    assert torch.equal(e[3], f[3])


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


def test_sample_minimal_sets_distinct_valid_and_uniform():
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0, ::2] = True  # 20 valid
    mask[1, :5] = True  # 5 valid
    idx, ok = sample_minimal_sets(mask, 4000, 4, torch.tensor([1, 2]))
    assert idx.shape == (2, 4000, 4) and ok.all()
    assert torch.gather(mask, 1, idx.reshape(2, -1)).all()
    s = idx.sort(-1).values
    assert (s[..., 1:] != s[..., :-1]).all()  # distinct within a set
    counts = torch.bincount(idx[0].reshape(-1), minlength=40)[::2].double()
    expected = 4000 * 4 / 20
    assert float(((counts - expected) ** 2 / expected).sum()) < 60.0  # chi^2, 19 dof: p ~ 1e-6
    idx2, ok2 = sample_minimal_sets(mask[:, :4], 10, 4, 0)  # image 0: 2 valid < 4
    assert not ok2[0].any() and ok2[1].all()


def test_soft_inlier_count_and_selection_distribution():
    errors = torch.tensor([[0.0, 10.0, 20.0, 100.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False]])
    s = soft_inlier_count(errors, mask, threshold=10.0, beta=0.5)
    expected = 1 / (1 + math.exp(-5.0)) + 0.5 + 1 / (1 + math.exp(5.0))
    assert float(s) == pytest.approx(expected, abs=1e-12)
    # DSAC* defaults: beta = 5 / tau, softmax(alpha * s / N).
    solver = DSACRansac("rgb")
    assert solver.inlier_beta == pytest.approx(0.5) and solver.inlier_alpha == 100.0 and solver.max_error == 100.0
    rgbd = DSACRansac("rgbd")
    assert rgbd.inlier_threshold == pytest.approx(0.1) and rgbd.inlier_beta == pytest.approx(50.0)
    assert rgbd.max_error == pytest.approx(1.0)
    d = make_scene(13, n=60, outlier_ratio=0.5, noise_px=2.0)
    out = solver.expectation(d["scene"][None], d["pixels"][None], d["K"][None], seed=0)
    R_w2c, t_w2c, valid, _ = solver.hypotheses(d["scene"][None], d["pixels"][None], d["K"][None], seed=0)
    err = reprojection_errors(R_w2c, t_w2c, d["scene"][None, None], d["pixels"][None, None], d["K"][None, None], 100.0)
    assert float(err.max()) <= 100.0
    counts = soft_inlier_count(err, torch.ones(1, 1, 60, dtype=torch.bool), 10.0, 0.5)
    torch.testing.assert_close(out.soft_inlier_count, counts)
    logits = torch.where(valid, 100.0 * counts / 60, torch.tensor(float("-inf"), dtype=torch.float64))
    torch.testing.assert_close(out.probabilities, torch.softmax(logits, -1))
    assert float(out.probabilities.sum()) == pytest.approx(1.0)


def test_rgb_hypotheses_reproduce_their_minimal_sets():
    """The fourth point picks the P3P solution; kept hypotheses reproject their sets within tau."""
    d = make_scene(14, n=100, outlier_ratio=0.3, noise_px=1.0)
    solver = DSACRansac("rgb", num_hypotheses=16)
    R, t, valid, sets = solver.hypotheses(d["scene"][None], d["pixels"][None], d["K"][None], seed=3)
    assert valid.all()
    X = d["scene"][sets[0]]  # (16, 4, 3)
    uv = d["pixels"][sets[0]]
    err = reprojection_errors(R[0], t[0], X, uv, d["K"].expand(16, 3, 3), 100.0)
    assert (err < 10.0).all()


# --------------------------------------------------------------------------------------------
# the test-time fast path against the reference functions
# --------------------------------------------------------------------------------------------


def _stack_scenes(scenes, key):
    return torch.stack([s[key] for s in scenes])


@pytest.mark.parametrize("mode", ["rgb", "rgbd"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_soft_counts_match_reference(mode, dtype, monkeypatch):
    """The fused scoring of ``__call__`` equals ``soft_inlier_count`` of the reference errors, with
    masked correspondences, hypotheses that put points behind the camera, and small blocks."""
    scenes = [make_scene(50 + i, n=300, outlier_ratio=r, noise_px=1.0, dtype=dtype) for i, r in enumerate([0.0, 0.6])]
    sc, px, K, pc = (_stack_scenes(scenes, k) for k in ("scene", "pixels", "K", "points_cam"))
    valid = torch.ones(2, 300, dtype=torch.bool)
    valid[1, ::5] = False
    solver = DSACRansac(mode, num_hypotheses=24)
    R, t, _, _ = solver.hypotheses(sc, px, K, points_cam=pc, mask=valid, seed=torch.tensor([1, 2]))
    R, t = R.detach().clone(), t.detach().clone()
    # Some hypotheses looking away (points behind the camera) or far off.
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=dtype))
    R[:, :4] = flip @ R[:, :4]
    t[:, 4:8] += torch.tensor([5.0, -3.0, 40.0], dtype=dtype)
    reference = soft_inlier_count(
        solver._errors(R, t, sc, px, K, pc), valid[:, None], solver.inlier_threshold, solver.inlier_beta
    )
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=2e-4)
    for block in (1 << 16, 700):  # one block per image, and blocks of two hypotheses
        monkeypatch.setattr(scoring, "_SCORE_BLOCK", block)
        counts = solver._soft_counts(R, t, sc, px, K, pc, valid)
        assert counts.dtype == dtype
        torch.testing.assert_close(counts, reference, **tol)


@pytest.mark.parametrize("inlier_ratio", [0.9, 0.4])
def test_test_time_lm_matches_refine_pnp_lm(inlier_ratio):
    """The Gram-matrix LM on gathered inliers converges to the same pose as ``refine_pnp_lm``."""
    scenes = [make_scene(60 + i, n=400, outlier_ratio=0.3, noise_px=1.0) for i in range(3)]
    sc, px, K = (_stack_scenes(scenes, k) for k in ("scene", "pixels", "K"))
    R_w2c = torch.stack([s["R_c2w"].T for s in scenes])
    t_w2c = -(R_w2c @ torch.stack([s["t_c2w"] for s in scenes])[..., None])[..., 0]
    # Start from perturbed poses.
    omega = torch.tensor([[0.02, -0.01, 0.015], [-0.03, 0.02, 0.0], [0.0, 0.01, -0.02]], dtype=torch.float64)
    dR = axis_angle_to_matrix(omega)
    R0, t0 = dR @ R_w2c, t_w2c + torch.tensor([0.05, -0.03, 0.04], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    inliers = torch.rand(3, 400, generator=g) < inlier_ratio
    inliers[2, 5:] = False  # few points: stays where it is unless >= 3
    inliers[2, :5] = True
    R_ref, t_ref = refinement.refine_pnp_lm(R0, t0, sc, px, K, inliers.double(), 10)
    Xh = torch.cat([sc, torch.ones_like(sc[..., :1])], -1).transpose(1, 2).contiguous()
    R_new, t_new = refinement.refine_pnp_lm_inliers(R0, t0, Xh, px.transpose(1, 2).contiguous(), K, inliers, 10)
    torch.testing.assert_close(R_new, R_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(t_new, t_ref, rtol=0, atol=1e-9)
    # The normal equations themselves.
    jtj, jtr, cost = refinement.pnp_normal_equations(R0, t0, sc, px, K, inliers.double(), 100.0)
    g_jtj, g_jtr, g_cost = refinement.pnp_gram(R0, t0, Xh, px.transpose(1, 2), K, inliers.double(), 100.0)
    torch.testing.assert_close(g_jtj, jtj, rtol=1e-12, atol=1e-6)
    torch.testing.assert_close(g_jtr, jtr, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(g_cost, cost, rtol=1e-12, atol=1e-9)


def test_sampler_ranges_equal_full_sampling():
    mask = torch.ones(3, 50, dtype=torch.bool)
    mask[1, 10:] = False
    mask[2, ::3] = False
    seeds = torch.tensor([7, 8, 9])
    full, ok = sample_minimal_sets(mask, 300, 4, seeds)
    draw = sampling.minimal_set_sampler(mask, 4, seeds)
    part, part_ok = draw(120, 250, None)
    assert torch.equal(part, full[:, 120:250]) and torch.equal(part_ok, ok[:, 120:250])
    images = torch.tensor([2, 0])
    part, part_ok = draw(5, 17, images)
    assert torch.equal(part, full[images, 5:17]) and torch.equal(part_ok, ok[images, 5:17])


@pytest.mark.parametrize("mode", ["rgb", "rgbd"])
def test_candidate_search_keeps_the_sets_of_solving_all(mode):
    """Solving candidates in chunks and stopping each image once it has H self-consistent ones keeps
    the same sets as solving every candidate at once, also for an image that never reaches H."""
    ratios = [0.0, 0.5, 0.9]
    scenes = [make_scene(70 + i, n=200, outlier_ratio=r, noise_px=1.0) for i, r in enumerate(ratios)]
    sc, px, K, pc = (_stack_scenes(scenes, k) for k in ("scene", "pixels", "K", "points_cam"))
    solver = DSACRansac(mode, num_hypotheses=16, candidates_per_hypothesis=16)
    seeds = torch.tensor([11, 12, 13])
    with torch.no_grad():
        R, t, has, sets = solver.hypotheses(sc, px, K, points_cam=pc, seed=seeds)
        valid = torch.ones(3, 200, dtype=torch.bool)
        all_sets, all_ok = sample_minimal_sets(valid, 16 * 16, solver.set_size, seeds)
        R_all, t_all, has_all, cons_all = solver._candidates(sc, px, K, pc, all_sets)
        has_all, cons_all = has_all & all_ok, cons_all & has_all & all_ok
    assert int(cons_all[2].sum()) < 16 <= int(cons_all[0].sum())  # one image short of H
    order = torch.argsort(2 - cons_all.long() - has_all.long(), dim=1, stable=True)[:, :16]
    assert torch.equal(sets, torch.gather(all_sets, 1, order[..., None].expand(3, 16, solver.set_size)))
    assert torch.equal(has, torch.gather(has_all, 1, order))
    torch.testing.assert_close(R, torch.gather(R_all, 1, order[..., None, None].expand(3, 16, 3, 3)), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["rgb", "rgbd"])
@pytest.mark.parametrize("outlier_ratio", [0.0, 0.5])
def test_test_time_path_matches_reference_functions(mode, outlier_ratio):
    """``__call__`` (fused scoring, per-image refinement, Gram LM) against the reference building
    blocks: the same selected hypothesis and inliers, the pose to LM convergence."""
    scenes = [make_scene(80 + i, n=400, outlier_ratio=outlier_ratio, noise_px=1.0) for i in range(3)]
    sc, px, K, pc = (_stack_scenes(scenes, k) for k in ("scene", "pixels", "K", "points_cam"))
    mask = torch.ones(3, 400, dtype=torch.bool)
    mask[0, 300:] = False
    solver = DSACRansac(mode, num_hypotheses=32)
    seeds = torch.tensor([4, 5, 6])
    res = solver(sc, px, K, points_cam=pc, mask=mask, seed=seeds)
    with torch.no_grad():
        R, t, hyp_valid, _ = solver.hypotheses(sc, px, K, points_cam=pc, mask=mask, seed=seeds)
        counts, logits = solver._score(solver._errors(R, t, sc, px, K, pc), mask, hyp_valid)
        best = logits.argmax(-1)
        b = torch.arange(3)
        R_ref, t_ref, _ = refinement.refine_on_inliers(
            R[b, best],
            t[b, best],
            lambda R_, t_: solver._errors(R_, t_, sc, px, K, pc),
            solver._fit_fn(sc, px, K, pc, 0, solver.lm_iterations),
            mask,
            solver.inlier_threshold,
            solver.set_size,
            solver.max_refinement_steps,
        )
        inliers = (solver._errors(R_ref, t_ref, sc, px, K, pc) < solver.inlier_threshold) & mask
    assert torch.equal(res.hypothesis_index, best)
    torch.testing.assert_close(res.soft_inlier_count, counts[b, best], rtol=1e-10, atol=1e-10)
    R_c2w, t_c2w = R_ref.transpose(-1, -2), -(R_ref.transpose(-1, -2) @ t_ref[..., None])[..., 0]
    torch.testing.assert_close(res.R_cam2world, R_c2w, rtol=0, atol=1e-8)
    torch.testing.assert_close(res.t_cam2world, t_c2w, rtol=0, atol=1e-8)
    assert torch.equal(res.inliers, inliers)
    assert res.success.all()


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------


def _pose_loss(R_gt, t_gt):
    def loss(R, t):
        return ((R - R_gt) ** 2).sum((-1, -2)) + ((t - t_gt) ** 2).sum(-1)

    return loss


def test_gradcheck_rgb_expectation():
    """Soft scoring + P3P hypotheses + differentiable LM refinement, float64, fixed minimal sets."""
    d = make_scene(15, n=10)
    scene = d["scene"].clone()
    scene[8] += torch.tensor([0.8, -0.5, 0.3], dtype=torch.float64)  # an outlier
    sets = torch.tensor([[[0, 1, 2, 3], [4, 5, 6, 7], [1, 3, 5, 9], [0, 2, 8, 6]]])
    solver = DSACRansac("rgb", train_refinement_steps=6, inlier_alpha=10.0)  # softer: all paths weigh
    loss = _pose_loss(d["R_c2w"], d["t_c2w"] + 0.01)
    noise = torch.from_numpy(np.random.default_rng(0).normal(size=(10, 3)) * 1e-3)

    def fn(sc):
        out = solver.expectation(sc[None], d["pixels"][None], d["K"][None], minimal_sets=sets)
        return out.expected_loss(loss), out.probabilities

    x = (scene + noise).requires_grad_()
    out = solver.expectation(x[None], d["pixels"][None], d["K"][None], minimal_sets=sets)
    assert out.valid.all() and out.probabilities.min() > 1e-6  # every path carries weight
    assert torch.autograd.gradcheck(fn, (x,), atol=1e-6, rtol=1e-4)


def test_gradcheck_rgbd_expectation():
    d = make_scene(16, n=9)
    sets = torch.tensor([[[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 4, 8]]])
    solver = DSACRansac("rgbd", inlier_threshold=0.5, max_error=2.0)
    loss = _pose_loss(d["R_c2w"], d["t_c2w"])
    rng = np.random.default_rng(1)
    sc = (d["scene"] + torch.from_numpy(rng.normal(size=(9, 3)) * 0.05)).requires_grad_()
    pc = (d["points_cam"] + torch.from_numpy(rng.normal(size=(9, 3)) * 0.05)).requires_grad_()

    def fn(a, b):
        out = solver.expectation(a[None], points_cam=b[None], minimal_sets=sets)
        return out.expected_loss(loss), out.probabilities

    assert torch.autograd.gradcheck(fn, (sc, pc), atol=1e-6, rtol=1e-4)


def test_expected_loss_backpropagates_and_descends():
    """A gradient step on the scene coordinates lowers the DSAC expected pose loss."""
    d = make_scene(17, n=200, outlier_ratio=0.2, noise_px=2.0)
    solver = DSACRansac("rgb", num_hypotheses=16)
    loss = _pose_loss(d["R_c2w"], d["t_c2w"])
    sc = d["scene"].clone().requires_grad_()
    out = solver.expectation(sc[None], d["pixels"][None], d["K"][None], seed=0)
    value = out.expected_loss(loss).sum()
    value.backward()
    g = sc.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with torch.no_grad():
        step = sc - 1e-3 * g / g.abs().max()
        after = solver.expectation(step[None], d["pixels"][None], d["K"][None], seed=0).expected_loss(loss).sum()
    assert float(after) < float(value.detach())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["rgb", "rgbd"])
def test_cuda_matches_cpu(mode):
    """Same seeds, same minimal sets (counter-based sampling), same result on either device."""
    scenes = [make_scene(30 + i, n=500, outlier_ratio=0.5, noise_px=1.0) for i in range(4)]
    stack = lambda key, dev: torch.stack([s[key] for s in scenes]).to(dev)  # noqa: E731
    solver = DSACRansac(mode)
    seeds = torch.arange(4)
    out = {}
    for dev in ("cpu", "cuda"):
        out[dev] = solver(
            stack("scene", dev),
            stack("pixels", dev),
            stack("K", dev),
            points_cam=stack("points_cam", dev),
            seed=seeds.to(dev),
        )
        exp = solver.expectation(
            stack("scene", dev),
            stack("pixels", dev),
            stack("K", dev),
            points_cam=stack("points_cam", dev),
            seed=seeds.to(dev),
        )
        out[dev + "_sets"] = exp.minimal_sets.cpu()
    cpu, gpu = out["cpu"], out["cuda"]
    assert torch.equal(out["cpu_sets"], out["cuda_sets"])
    assert torch.equal(cpu.hypothesis_index, gpu.hypothesis_index.cpu())
    assert gpu.success.all()
    torch.testing.assert_close(cpu.R_cam2world, gpu.R_cam2world.cpu(), rtol=0, atol=1e-8)
    torch.testing.assert_close(cpu.t_cam2world, gpu.t_cam2world.cpu(), rtol=0, atol=1e-8)

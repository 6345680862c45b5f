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
search solves P3P on component tensors (:mod:`~maploc_dsac.solvers.p3p_fast`) and stops each image
once it has its ``H`` hypotheses; the soft inlier counts come from
:func:`~maploc_dsac.solvers.scoring.soft_inlier_counts_fast`, never materialising ``(B, H, N, 3)``;
the winner's refinement re-fits only the images whose inlier set still grows, with
:func:`~maploc_dsac.solvers.refinement.refine_pnp_lm_inliers`. The training path (``expectation``)
shares only the candidate search (without autograd; its kept sets are those of solving every
candidate) and then solves, scores and refines the kept hypotheses with the differentiable
reference code.

Adaptive stop (test time only, off by default; a deviation from DSAC*): ``adaptive_confidence``,
see :mod:`~maploc_dsac.solvers.adaptive`.

This module is the driver; the mode-specific parts are the models of :mod:`~maploc_dsac.solvers.models`.

Poses: internally ``x_cam = R_world2cam @ x_world + t_world2cam``; results are reported as
``R_cam2world``, ``t_cam2world`` (the camera centre in the world frame), as the rest of maploc.
Pixels follow OpenCV: the centre of the top-left pixel is ``(0, 0)``, and ``u = K[0] @ x_cam / z``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from maploc_dsac.solvers.adaptive import adaptive_hypotheses
from maploc_dsac.solvers.models import MODELS, Observations
from maploc_dsac.solvers.ops import compute_dtype, invert, rows
from maploc_dsac.solvers.results import DSACExpectation, RansacResult
from maploc_dsac.solvers.sampling import image_seeds, minimal_set_sampler, sample_minimal_sets
from maploc_dsac.solvers.scoring import soft_inlier_count, soft_inlier_counts_fast

__all__ = ["DSACRansac"]

Mode = Literal["rgb", "rgbd"]
_CANDIDATE_PIECE = 8192  # CPU: minimal problems solved at once (the solver's intermediates stay in cache)


class DSACRansac:
    """DSAC* differentiable RANSAC, batched over images and hypotheses, on any device.

    ``solver(...)`` is the test-time estimator (argmax hypothesis, refined; no gradients);
    ``solver.expectation(...)`` is the training-time one (all hypotheses refined, selection
    probabilities; differentiable). See the module docstring for the algorithm and its source.

    Args:
        mode: ``"rgb"`` (2D-3D, P3P hypotheses, pixel errors; :class:`~maploc_dsac.solvers.models.PnPModel`)
            or ``"rgbd"`` (3D-3D, Kabsch hypotheses, metric errors; :class:`~maploc_dsac.solvers.models.KabschModel`).
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
        adaptive_confidence: test time only: the confidence ``p`` of the adaptive stop (module
            docstring), ``None`` (default, DSAC*) for always ``H`` hypotheses.
        min_hypotheses: hypotheses of the adaptive stop's first round.

    Raises:
        ValueError: for an unknown mode, a non-positive count, threshold, clamp or ``alpha``, a
            negative number of steps, or a confidence outside ``(0, 1)``.

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
        adaptive_confidence: float | None = None,
        min_hypotheses: int = 8,
    ) -> None:
        if mode not in MODELS:
            raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODELS)}, got {mode!r}")
        self.mode: Mode = mode
        self.model = MODELS[mode]()
        self.num_hypotheses = int(num_hypotheses)
        self.inlier_threshold = float(inlier_threshold if inlier_threshold is not None else self.model.default_threshold)
        self.inlier_alpha = float(inlier_alpha)
        self.inlier_beta = float(inlier_beta if inlier_beta is not None else 5.0 / self.inlier_threshold)
        self.max_error = float(max_error if max_error is not None else self.model.default_max_error)
        self.max_refinement_steps = int(max_refinement_steps)
        self.candidates_per_hypothesis = int(candidates_per_hypothesis)
        self.lm_iterations = int(lm_iterations)
        self.train_refinement_steps = int(train_refinement_steps)
        self.adaptive_confidence = None if adaptive_confidence is None else float(adaptive_confidence)
        self.min_hypotheses = int(min_hypotheses)
        for name in ("num_hypotheses", "candidates_per_hypothesis", "min_hypotheses"):
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
        if self.adaptive_confidence is not None and not 0.0 < self.adaptive_confidence < 1.0:
            raise ValueError(f"adaptive_confidence must be in (0, 1) or None, got {self.adaptive_confidence}")

    @property
    def set_size(self) -> int:
        """Correspondences per minimal set: 4 (RGB: P3P plus one to disambiguate) or 3 (RGB-D)."""
        return self.model.set_size

    def __repr__(self) -> str:
        keys = ("num_hypotheses", "inlier_threshold", "inlier_alpha", "inlier_beta", "max_error", "adaptive_confidence")
        return f"DSACRansac(mode={self.mode!r}, " + ", ".join(f"{k}={getattr(self, k)}" for k in keys) + ")"

    # ---- inputs -----------------------------------------------------------------------------------

    def _prepare(
        self,
        scene_coordinates: Tensor,
        pixels: Tensor | None,
        K: Tensor | None,
        points_cam: Tensor | None,
        mask: Tensor | None,
    ) -> tuple[Tensor, Observations, Tensor]:
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
        obs, valid = self.model.prepare(self.model.observations(pixels, K, points_cam), B, N, dtype, valid)
        sc = torch.where(valid[..., None], sc, torch.zeros_like(sc))
        return sc, obs, valid

    # ---- hypotheses -------------------------------------------------------------------------------

    def _solve(self, sets: Tensor, sets_ok: Tensor, sc: Tensor, obs: Observations) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        R, t, has, consistent = self.model.candidates(sc, obs, sets, self.inlier_threshold, self.max_error)
        has = has & sets_ok
        return R, t, has, consistent & has

    def hypotheses(
        self, scene_coordinates: Tensor, pixels: Tensor | None = None, K: Tensor | None = None,
        points_cam: Tensor | None = None, mask: Tensor | None = None, *, seed: Tensor | int | None = None,
        minimal_sets: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draws and solves the minimal sets (DSAC* ``sampleHypotheses``).

        Args: as :meth:`__call__`.

        Returns:
            ``(R_world2cam (B, H, 3, 3), t_world2cam (B, H, 3), valid (B, H), minimal_sets (B, H, k))``
            in the dtype of ``scene_coordinates``; differentiable in the inputs.
        """
        sc, obs, valid = self._prepare(scene_coordinates, pixels, K, points_cam, mask)
        R, t, has, sets, _, _ = self._hypotheses(sc, obs, valid, seed, minimal_sets, self.num_hypotheses)
        return R, t, has, sets

    def _hypotheses(
        self,
        sc: Tensor,
        obs: Observations,
        valid: Tensor,
        seed: Tensor | int | None,
        minimal_sets: Tensor | None,
        H: int,
        first: int = 0,
        keep: int | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(R, t, has, sets, drawn, consistent)``: the hypotheses of a search from candidate
        ``first`` that stops an image at ``H`` self-consistent ones, ``keep`` (default ``H``) kept per
        image (self-consistent first); ``drawn (B,)`` the index past the last candidate each image
        drew; ``consistent`` which kept ones are self-consistent."""
        keep = H if keep is None else keep
        B, N, _ = sc.shape
        k = self.set_size
        if minimal_sets is not None:
            if minimal_sets.dim() != 3 or minimal_sets.shape[0] != B or minimal_sets.shape[-1] != k:
                raise ValueError(f"minimal_sets must be (B, H', {k}), got {tuple(minimal_sets.shape)}")
            sets = minimal_sets.to(device=sc.device, dtype=torch.int64).clamp(0, max(N - 1, 0))
            sets_ok = torch.gather(valid, 1, sets.reshape(B, -1)).reshape(sets.shape).all(-1)
        elif N == 0:
            sets, sets_ok = sample_minimal_sets(valid, keep, k, 0)
        if minimal_sets is not None or N == 0:
            R, t, has, cons = self._solve(sets, sets_ok, sc, obs)
            drawn = torch.full((B,), sets.shape[1], dtype=torch.int64, device=sc.device)
        else:
            # Choose the sets without autograd: keep the first H self-consistent candidates, then the
            # other solvable ones. The candidates are solved in order, in chunks, and an image stops as
            # soon as it has H self-consistent ones: the kept sets are then the same as when solving
            # all of them (an image with fewer than H consistent ones is solved to the end).
            grad = torch.is_grad_enabled()
            with torch.no_grad():
                draw = minimal_set_sampler(valid, k, image_seeds(seed, B, sc.device))
                C = self.num_hypotheses * self.candidates_per_hypothesis
                R, t, has, consistent, sets, sets_ok, drawn = self._solve_candidates(draw, C, H, sc, obs, first)
                priority = 2 - consistent.to(torch.int64) - has.to(torch.int64)
                order = torch.argsort(priority, dim=1, stable=True)[:, :keep]
                cons = torch.gather(consistent, 1, order)
            sets = torch.gather(sets, 1, order[..., None].expand(B, order.shape[1], k))
            if grad:  # solve the kept sets again, now with autograd
                R, t, has, _ = self._solve(sets, torch.gather(sets_ok, 1, order), sc, obs)
            else:
                R = torch.gather(R, 1, order[..., None, None].expand(B, order.shape[1], 3, 3))
                t = torch.gather(t, 1, order[..., None].expand(B, order.shape[1], 3))
                has = torch.gather(has, 1, order)
        return R.to(sc.dtype), t.to(sc.dtype), has, sets, drawn, cons

    def _solve_candidates(
        self,
        draw: Callable[[int, int, Tensor | None], tuple[Tensor, Tensor]],
        C: int,
        H: int,
        sc: Tensor,
        obs: Observations,
        first: int = 0,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Draws and solves candidate sets ``first .. C - 1`` in order until each image has ``H``
        self-consistent ones (or none is left), without autograd.

        Returns ``(R, t, has, consistent, sets, sets_ok, drawn)`` for the first ``C'`` candidates, ``C'`` the
        most any image needed; candidates an image did not need are marked as not solved (``has`` and
        ``consistent`` False). The first chunk has ``1.25 H + 8`` candidates (enough when outliers are
        rare: even then noise makes a few ill-conditioned sets inconsistent); the next ones are sized
        from the images' observed rates of consistent candidates, and only the images still short of
        ``H`` are drawn and solved. On the CPU a chunk is solved in pieces of at most
        ``_CANDIDATE_PIECE`` minimal problems, which keeps the solver's intermediates in cache.
        ``drawn (B,)``: how many candidates each image drew.
        """
        B = sc.shape[0]
        k = self.set_size
        device = sc.device
        n_cons = torch.zeros(B, dtype=torch.int64, device=device)
        drawn = torch.zeros(B, dtype=torch.int64, device=device)
        active = torch.arange(B, device=device)
        rounds: list[tuple[Tensor | None, int, int, tuple[Tensor, ...]]] = []
        start = first
        while start < C and active.numel() > 0:
            if start == first:
                size = H + H // 4 + 8
            else:
                # Candidates each image still needs at its observed rate (half a success when it has
                # none yet), with a margin; the median over the images still short of H.
                need = (H - n_cons[active]).to(torch.float64)
                rate = n_cons[active].to(torch.float64).clamp_min(0.5) / (start - first)
                size = max(H // 4, int(math.ceil(1.25 * float((need / rate).median()) + 4)))
            end = min(C, start + size)
            images = None if active.numel() == B else active
            sc_a, obs_a = rows(sc, images), obs.rows(images)
            piece = end - start
            if device.type == "cpu":
                piece = max(1, min(piece, _CANDIDATE_PIECE // max(1, active.numel())))
            sets_r, ok_r = draw(start, end, images)
            parts = [
                self._solve(sets_r[:, i : i + piece], ok_r[:, i : i + piece], sc_a, obs_a)
                for i in range(0, end - start, piece)
            ]
            result = (
                *(torch.cat(items, dim=1) if len(items) > 1 else items[0] for items in zip(*parts, strict=True)),
                sets_r,
                ok_r,
            )
            rounds.append((images, start, end, result))
            n_cons[active] += result[3].sum(1)
            drawn[active] = end
            start = end
            active = active[n_cons[active] < H]
        # Assemble (B, C') buffers; candidates an image did not need stay "not solved".
        start -= first
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
                    buf[:, a - first : b - first] = val
                else:
                    buf[images, a - first : b - first] = val
        return (*buffers, drawn)

    # ---- scoring ----------------------------------------------------------------------------------

    def _errors_obs(self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations) -> Tensor:
        return self.model.errors(R, t, sc, obs, self.max_error)

    def _errors(
        self, R: Tensor, t: Tensor, sc: Tensor, pixels: Tensor | None, K: Tensor | None, points_cam: Tensor | None
    ) -> Tensor:
        """Differentiable errors ``(B, *, N)`` for poses ``(B, *, 3, 3)`` (reference; tests)."""
        return self._errors_obs(R, t, sc, self.model.observations(pixels, K, points_cam))

    def _score(self, errors: Tensor, valid: Tensor, hyp_valid: Tensor) -> tuple[Tensor, Tensor]:
        """Soft inlier counts ``(B, H)`` and selection logits ``alpha * s / N`` (``-inf`` if invalid)."""
        counts = soft_inlier_count(errors, valid[:, None, :], self.inlier_threshold, self.inlier_beta)
        n = valid.sum(-1).clamp_min(1).to(errors.dtype)[:, None]
        logits = self.inlier_alpha * counts / n
        logits = torch.where(hyp_valid, logits, torch.full_like(logits, float("-inf")))
        return counts, logits

    def _soft_counts_obs(self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations, valid: Tensor) -> Tensor:
        P, target = self.model.score_matrices(R, t, obs)
        return soft_inlier_counts_fast(
            P, target, sc, valid, self.inlier_threshold, self.inlier_beta, self.max_error, self.model.projective
        )

    def _soft_counts(
        self, R: Tensor, t: Tensor, sc: Tensor, pixels: Tensor | None, K: Tensor | None, points_cam: Tensor | None,
        valid: Tensor,
    ) -> Tensor:
        """Test-time soft inlier counts ``(B, H)`` without autograd (tests)."""
        return self._soft_counts_obs(R, t, sc, self.model.observations(pixels, K, points_cam), valid)

    def _candidates(
        self, sc: Tensor, pixels: Tensor | None, K: Tensor | None, points_cam: Tensor | None, sets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The model's minimal solves of ``sets`` (tests)."""
        obs = self.model.observations(pixels, K, points_cam)
        return self.model.candidates(sc, obs, sets, self.inlier_threshold, self.max_error)

    def _fit_fn(
        self, sc: Tensor, pixels: Tensor | None, K: Tensor | None, points_cam: Tensor | None, extra: int, iterations: int
    ) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
        return self.model.fit_fn(sc, self.model.observations(pixels, K, points_cam), extra, iterations, self.max_error)

    # ---- refinement -------------------------------------------------------------------------------

    def _refine_winner(
        self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations, mask: Tensor, valid: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Fast :func:`~maploc_dsac.solvers.refinement.refine_on_inliers` (no autograd) for one pose
        per problem ``(B, 3, 3)``, ``(B, 3)``, in the compute dtype: the same re-fits, but each step
        only re-fits (and re-scores) the problems whose inlier set is still growing. Returns the
        refined pose, its inliers among ``valid``, and the inlier set of its last fit (``mask``)."""
        B = R.shape[0]
        model = self.model
        Xh = torch.cat([sc, torch.ones_like(sc[..., :1])], -1).transpose(1, 2).contiguous()  # (B, 4, N)
        target = obs.target.transpose(1, 2).contiguous()  # (B, 2 | 3, N)

        def errors(idx: Tensor | None, R_: Tensor, t_: Tensor) -> Tensor:
            return model.pose_errors(R_, t_, rows(Xh, idx), rows(target, idx), rows(obs.K, idx), self.max_error)

        R, t = R.clone(), t.clone()
        inliers = (errors(None, R, t) < self.inlier_threshold) & mask
        used = inliers.clone()
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
            sub = functools.partial(rows, index=None if every else idx)
            inl = sub(inliers)
            R_a, t_a = sub(R), sub(t)
            R_new, t_new, ok = model.refit(
                R_a, t_a, sub(sc), obs.rows(None if every else idx), sub(Xh), sub(target), inl, self.lm_iterations,
                self.max_error,
            )
            R_a = torch.where(ok[:, None, None], R_new, R_a)
            t_a = torch.where(ok[:, None], t_new, t_a)
            inl = (errors(None if every else idx, R_a, t_a) < self.inlier_threshold) & sub(mask)
            fitted = torch.where(ok[:, None], sub(inliers), sub(used))
            if every:
                R, t, active, inliers, used = R_a, t_a, ok, inl, fitted
            else:
                R[idx], t[idx], active[idx], inliers[idx], used[idx] = R_a, t_a, ok, inl, fitted
        return R, t, (errors(None, R, t) < self.inlier_threshold) & valid, used

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
                random sampling (then no redraws and no adaptive stop).

        Returns:
            :class:`~maploc_dsac.solvers.results.RansacResult`, in the dtype of ``scene_coordinates``.
            Never raises on degenerate data (too few points, NaN, collinear sets): ``success`` is
            ``False`` instead.

        Raises:
            ValueError: for inputs of the wrong shape or missing for the mode.
        """
        sc, obs, valid = self._prepare(scene_coordinates, pixels, K, points_cam, mask)
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
                num_minimal_sets=zeros_b.clone(),
            )
        if self.adaptive_confidence is not None and minimal_sets is None:
            R, t, hyp_valid, counts, drawn = adaptive_hypotheses(self, sc, obs, valid, seed)
        else:
            R, t, hyp_valid, _, drawn, _ = self._hypotheses(sc, obs, valid, seed, minimal_sets, self.num_hypotheses)
            counts = self._soft_counts_obs(R, t, sc, obs, valid)
        n = valid.sum(-1).clamp_min(1).to(dtype)[:, None]
        logits = torch.where(hyp_valid, self.inlier_alpha * counts / n, torch.full_like(counts, float("-inf")))
        best = logits.argmax(-1)
        has_any = hyp_valid.any(-1)
        b = torch.arange(B, device=sc.device)
        R0, t0 = R[b, best], t[b, best]
        # Refine the winner in the compute dtype.
        cd = compute_dtype(sc)
        R_ref, t_ref, inliers, _ = self._refine_winner(
            R0.to(cd), t0.to(cd), sc.to(cd), obs.to(cd), valid & has_any[:, None], valid
        )
        num_inliers = inliers.sum(-1)
        success = has_any & (valid.sum(-1) >= self.set_size) & (num_inliers >= self.set_size)
        eye = torch.eye(3, dtype=cd, device=sc.device)
        R_ref = torch.where(has_any[:, None, None], R_ref, eye)
        t_ref = torch.where(has_any[:, None], t_ref, torch.zeros_like(t_ref))
        R_c2w, t_c2w = invert(R_ref, t_ref)
        return RansacResult(
            R_cam2world=R_c2w.to(dtype),
            t_cam2world=t_c2w.to(dtype),
            success=success,
            num_inliers=num_inliers,
            inliers=inliers,
            soft_inlier_count=counts.gather(1, best[:, None])[:, 0],
            hypothesis_index=best,
            num_minimal_sets=drawn,
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

        Arguments as :meth:`__call__` (``adaptive_confidence`` is ignored: always ``H`` hypotheses).
        Each hypothesis' final inlier set is found as at test time (without gradients); then it is
        refined on that set with ``train_refinement_steps`` LM iterations from the (differentiable)
        hypothesis (RGB) or by weighted Kabsch (RGB-D), with autograd. Computed in the dtype of
        ``scene_coordinates`` (except the minimal solvers).

        Returns:
            :class:`~maploc_dsac.solvers.results.DSACExpectation`; ``expected_loss`` back-propagates to
            ``scene_coordinates`` (and ``points_cam``).
        """
        sc, obs, valid = self._prepare(scene_coordinates, pixels, K, points_cam, mask)
        n_input = sc.shape[1]
        if n_input == 0:  # no correspondences: one dummy, masked out, keeps every shape valid
            B = sc.shape[0]
            sc = torch.zeros(B, 1, 3, dtype=sc.dtype, device=sc.device)
            valid = torch.zeros(B, 1, dtype=torch.bool, device=sc.device)
            obs = Observations(torch.zeros(B, 1, obs.target.shape[-1], dtype=sc.dtype, device=sc.device), obs.K)
            minimal_sets = None
        R, t, hyp_valid, sets, _, _ = self._hypotheses(sc, obs, valid, seed, minimal_sets, self.num_hypotheses)
        errors = self._errors_obs(R, t, sc, obs)
        counts, logits = self._score(errors, valid, hyp_valid)
        has_any = hyp_valid.any(-1)
        logits_safe = torch.where(has_any[:, None], logits, torch.zeros_like(logits))
        probs = torch.softmax(logits_safe, dim=-1) * (hyp_valid & has_any[:, None])
        with torch.no_grad():
            # Every hypothesis' final inlier set, by the test-time refinement on all B * H of them
            # (the same re-fits as refine_on_inliers with the model's fit_fn, in the compute dtype).
            B, H = hyp_valid.shape
            cd = compute_dtype(sc)

            def flat(x: Tensor) -> Tensor:
                return x.detach()[:, None].expand(B, H, *x.shape[1:]).reshape(B * H, *x.shape[1:])

            obs_f = Observations(flat(obs.target), None if obs.K is None else flat(obs.K)).to(cd)
            mask = flat(valid) & hyp_valid.reshape(B * H, 1)
            _, _, _, inliers = self._refine_winner(
                R.detach().reshape(B * H, 3, 3).to(cd), t.detach().reshape(B * H, 3).to(cd), flat(sc).to(cd), obs_f,
                mask, mask,
            )
            inliers = inliers.reshape(B, H, -1)
        R_ref, t_ref = self.model.refine_differentiable(
            R, t, sc, obs, inliers, self.train_refinement_steps, self.max_error
        )
        R_c2w, t_c2w = invert(R_ref, t_ref)
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

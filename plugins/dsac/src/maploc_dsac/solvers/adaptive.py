"""The adaptive stop of the DSAC* RANSAC at test time (a deviation from DSAC*; off by default).

DSAC* (Brachmann and Rother, TPAMI 2021, Sec. 3) always scores ``H`` hypotheses. With
``DSACRansac(adaptive_confidence=p)``, each image first gets ``min_hypotheses`` hypotheses (the same
candidate search, stopped at that many self-consistent minimal sets) and their soft inlier counts.
From the best soft inlier ratio ``eps`` among them, classical RANSAC's bound
``k = log(1 - p) / log(1 - eps^m)`` (M. Fischler and R. Bolles, "Random Sample Consensus", CACM 1981;
``m`` the minimal-set size) is the number of minimal sets that draw an all-inlier one with probability
``p``. An image that has drawn at least ``k`` (or its whole budget of
``candidates_per_hypothesis * H``) stops there. The others continue the same candidate sequence
where they stopped, for the remaining ``H - min_hypotheses`` hypotheses: their hypotheses are then
those of the search without the stop (the first ``H`` self-consistent candidates), except that
when the budget runs out the slots left are filled from the second round's candidates only.
Never used in training.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from maploc_dsac.solvers.models import Observations
from maploc_dsac.solvers.sampling import image_seeds

if TYPE_CHECKING:
    from maploc_dsac.solvers.ransac import DSACRansac

__all__ = ["adaptive_hypotheses", "required_minimal_sets"]


def required_minimal_sets(inlier_ratio: Tensor, set_size: int, confidence: float) -> Tensor:
    """Minimal sets needed to draw one all-inlier set with probability ``confidence``:
    ``log(1 - p) / log(1 - eps^m)`` (Fischler and Bolles 1981).

    Args:
        inlier_ratio: ``(B,)`` inlier ratios ``eps`` in ``[0, 1]`` (clamped).
        set_size: ``m``, correspondences per minimal set.
        confidence: ``p`` in ``(0, 1)``.

    Returns:
        ``(B,)`` float64, at least 1; ``inf`` where ``eps = 0``.
    """
    p_clean = inlier_ratio.double().clamp(0.0, 1.0) ** set_size
    need = math.log1p(-confidence) / torch.log1p(-p_clean.clamp_max(1.0 - 1e-12))
    return torch.where(p_clean > 0, need.clamp_min(1.0), torch.full_like(need, math.inf))


def adaptive_hypotheses(
    solver: DSACRansac, sc: Tensor, obs: Observations, valid: Tensor, seed: Tensor | int | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The hypotheses of the adaptive stop and their soft inlier counts (no autograd):
    ``(R_world2cam (B, H', 3, 3), t_world2cam (B, H', 3), valid (B, H'), counts (B, H'), drawn (B,))``,
    ``H'`` the most hypotheses any image kept (the padding slots are invalid: zero pose, zero count),
    ``drawn`` the minimal sets each image drew over both rounds."""
    assert solver.adaptive_confidence is not None
    B = sc.shape[0]
    H = solver.num_hypotheses
    H0 = min(solver.min_hypotheses, H)
    seeds = image_seeds(seed, B, sc.device)
    budget = H * solver.candidates_per_hypothesis
    # Round 1: stop at H0 self-consistent candidates; use the self-consistent ones found (all kept
    # ones when the budget ran out, as the search without the stop).
    R, t, has, _, drawn, cons = solver._hypotheses(sc, obs, valid, seeds, None, H0, keep=H)
    n_cons = cons.sum(-1)
    exhausted = drawn >= budget
    has = has & (cons | exhausted[:, None])
    width = max(1, int(has.sum(-1).max()))
    R, t, has = R[:, :width], t[:, :width], has[:, :width]
    counts = solver._soft_counts_obs(R, t, sc, obs, valid)
    n = valid.sum(-1).clamp_min(1).to(counts.dtype)
    eps = torch.where(has, counts, torch.zeros_like(counts)).amax(-1) / n
    need = required_minimal_sets(eps, solver.set_size, solver.adaptive_confidence)
    done = (drawn.double() >= need) | exhausted | (n_cons >= H)
    again = (~done).nonzero()[:, 0]
    if again.numel() == 0:
        return R, t, has, counts, drawn
    # Round 2: the others continue the same candidate sequence where they stopped, for H - n_cons
    # more self-consistent ones (grouped by where they stopped and how many they have).
    parts = []
    for stop, have in torch.stack([drawn[again], n_cons[again]], 1).unique(dim=0).tolist():
        group = again[(drawn[again] == stop) & (n_cons[again] == have)]
        sc_g, obs_g, valid_g = sc[group], obs.rows(group), valid[group]
        R2, t2, has2, _, drawn2, _ = solver._hypotheses(sc_g, obs_g, valid_g, seeds[group], None, H - have, stop)
        parts.append((group, have, R2, t2, has2, solver._soft_counts_obs(R2, t2, sc_g, obs_g, valid_g), drawn2))
    width = max(width, *(p[1] + p[2].shape[1] for p in parts))

    def pad(x: Tensor) -> Tensor:
        if x.shape[1] == width:
            return x
        return torch.cat([x, x.new_zeros((x.shape[0], width - x.shape[1], *x.shape[2:]))], 1)

    R, t, has, counts, drawn = pad(R), pad(t), pad(has), pad(counts), drawn.clone()
    for group, have, *more, drawn2 in parts:
        for buf, val in zip((R, t, has, counts), more, strict=True):
            buf[group, have:] = 0
            buf[group, have : have + val.shape[1]] = val
        drawn[group] = drawn2
    return R, t, has, counts, drawn

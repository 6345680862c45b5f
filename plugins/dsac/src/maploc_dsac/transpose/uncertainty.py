"""Per-cell uncertainty of scene coordinates: the KFNet-style likelihood, calibration, and its use in RANSAC.

The network's optional head (:class:`maploc_dsac.network.RegressionHead`, ``uncertainty=True``)
predicts one log-variance ``s = log sigma^2`` per output cell. Here:

* :func:`gaussian_nll_loss`: the isotropic Gaussian negative log-likelihood of the ground-truth
  scene coordinate, KFNet's uncertainty loss (L. Zhou et al., "KFNet: Learning Temporal Camera
  Relocalization using Kalman Filtering", CVPR 2020, Sec. 3.2 "The measurement system", Eq. 2:
  each cell's scene coordinate is ``N(y*, sigma^2 I_3)``, trained by minimising
  ``3 log sigma + |y - y*|^2 / (2 sigma^2)``, constants dropped).
* :func:`uncertainty_exclusion_mask`: the cells kept for hypothesis sampling and scoring when the
  highest-uncertainty fraction of each image is excluded (TransPose's use of the uncertainty).
* :func:`calibration`: predicted sigma against the actual scene-coordinate error: Spearman rank
  correlation and a binned reliability table.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["gaussian_nll_loss", "sigma_from_log_variance", "uncertainty_exclusion_mask", "calibration", "EXPECTED_RMS_FACTOR"]

#: Under the isotropic model ``e ~ N(0, sigma^2 I_3)``, ``E|e|^2 = 3 sigma^2``: the root mean square
#: of the 3-D error is ``sqrt(3) sigma``.
EXPECTED_RMS_FACTOR = math.sqrt(3.0)


def gaussian_nll_loss(
    pred: Tensor, target: Tensor, valid: Tensor, log_variance: Tensor, min_log_variance: float = -16.0
) -> Tensor:
    """KFNet's isotropic Gaussian NLL on scene coordinates (Zhou et al., CVPR 2020, Sec. 3.2, Eq. 2).

    Per valid cell, with ``s = log sigma^2`` and ``e = pred - target``:
    ``l = 1.5 s + |e|^2 exp(-s) / 2`` (``= 3 log sigma + |e|^2 / (2 sigma^2)``), minimised at
    ``sigma^2 = |e|^2 / 3``. Reduction as DSAC*'s losses: sum over the valid cells divided by their number.

    Args:
        pred: ``(B, 3, h, w)`` predicted scene coordinates, metres, world frame.
        target: ``(B, 3, h, w)`` ground truth, metres.
        valid: ``(B, h, w)`` bool, cells with ground truth (holes of a render are invalid).
        log_variance: ``(B, 1, h, w)`` predicted ``log sigma^2`` (``sigma`` in metres).
        min_log_variance: ``s`` is clamped from below (a lower bound on sigma, ``exp(-8)`` m ~ 0.3 mm
            by default) so that a perfect fit cannot drive the loss to minus infinity.

    Returns:
        Scalar (0 when no cell is valid, still connected to the inputs).

    Raises:
        ValueError: if the shapes disagree.
    """
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"pred and target must be (B, 3, h, w) of one shape, got {tuple(pred.shape)}, {tuple(target.shape)}")
    B, _, h, w = pred.shape
    if log_variance.shape != (B, 1, h, w) or valid.shape != (B, h, w):
        raise ValueError(f"log_variance must be {(B, 1, h, w)} and valid {(B, h, w)}, got "
                         f"{tuple(log_variance.shape)}, {tuple(valid.shape)}")
    s = log_variance[:, 0].clamp_min(min_log_variance)
    sq = ((pred - target) ** 2).sum(1)
    per_cell = 1.5 * s + 0.5 * sq * torch.exp(-s)
    mask = valid.to(per_cell.dtype)
    return (per_cell * mask).sum() / mask.sum().clamp_min(1.0)


def sigma_from_log_variance(log_variance: Tensor) -> Tensor:
    """``sigma = exp(s / 2)`` (metres, per axis), same shape as ``log_variance``."""
    return torch.exp(0.5 * log_variance)


def uncertainty_exclusion_mask(log_variance: Tensor, exclude_fraction: float, valid: Tensor | None = None) -> Tensor:
    """The cells that hypothesis sampling and scoring may use when each image's most uncertain
    cells are excluded.

    Per image, the ``ceil(exclude_fraction * n)`` valid cells with the largest predicted variance
    are dropped (``n`` = its valid cells; ties broken by cell index); at least the
    ``n - ceil(...)`` others are kept. ``exclude_fraction = 0`` keeps every cell (a no-op).

    Args:
        log_variance: ``(B, N)`` or ``(B, 1, h, w)`` predicted ``log sigma^2``.
        exclude_fraction: in ``[0, 1)``.
        valid: optional ``(B, N)`` / ``(B, h, w)`` bool, the cells that count (others stay excluded).

    Returns:
        ``(B, N)`` bool (``N = h w`` for map input), ``True`` = kept.

    Raises:
        ValueError: if ``exclude_fraction`` is outside ``[0, 1)``.
    """
    if not 0.0 <= exclude_fraction < 1.0:
        raise ValueError(f"exclude_fraction must be in [0, 1), got {exclude_fraction}")
    s = log_variance.reshape(log_variance.shape[0], -1)
    B, N = s.shape
    ok = torch.ones_like(s, dtype=torch.bool) if valid is None else valid.reshape(B, N).to(torch.bool)
    ok = ok & torch.isfinite(s)
    if exclude_fraction == 0.0:
        return ok
    keyed = torch.where(ok, s, torch.full_like(s, -math.inf))
    order = torch.argsort(keyed, dim=1, descending=True, stable=True)  # most uncertain first
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=s.device).expand(B, N))
    n_valid = ok.sum(1, keepdim=True)
    n_drop = torch.ceil(n_valid.to(torch.float64) * exclude_fraction - 1e-6).to(torch.int64)  # 1e-6: float round-off
    return ok & (rank >= n_drop)


def calibration(sigma: np.ndarray, error: np.ndarray, bins: int = 10) -> dict[str, object]:
    """Predicted sigma against the actual 3-D scene-coordinate error of the same cells.

    Args:
        sigma: ``(M,)`` predicted sigma, metres.
        error: ``(M,)`` actual error ``|pred - gt|``, metres.
        bins: equal-count bins of ``sigma`` for the reliability table.

    Returns:
        ``spearman`` (rank correlation of sigma and error; ``nan`` for fewer than 3 cells),
        ``cells`` (M), ``bins``: a list of ``(mean sigma, rms error, predicted rms = sqrt(3) mean
        sigma, cells)`` per bin, in metres.
    """
    sigma = np.asarray(sigma, dtype=np.float64).ravel()
    error = np.asarray(error, dtype=np.float64).ravel()
    keep = np.isfinite(sigma) & np.isfinite(error)
    sigma, error = sigma[keep], error[keep]
    m = int(sigma.size)
    out: dict[str, object] = {"cells": m, "spearman": math.nan, "bins": []}
    if m < 3:
        return out
    from scipy.stats import spearmanr

    out["spearman"] = float(spearmanr(sigma, error).statistic)
    order = np.argsort(sigma, kind="stable")
    rows = []
    for chunk in np.array_split(order, min(bins, m)):
        if chunk.size == 0:
            continue
        s, e = sigma[chunk], error[chunk]
        rows.append((float(s.mean()), float(np.sqrt((e**2).mean())), float(EXPECTED_RMS_FACTOR * s.mean()), int(chunk.size)))
    out["bins"] = rows
    return out

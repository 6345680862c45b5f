"""Reference rows the core computes beside every method: chance levels, the prior, the map coverage.

A recall means little without the level that needs no method at all. These pure functions compute,
from the ground truth only (never by sampling):

* :func:`random_ranking_recall`: retrieval and sequence matching: the exact expected recall@N of a
  ranking drawn uniformly at random from the map (per query ``1 - C(M - h, N) / C(M, N)`` with
  ``h`` true matches among ``M`` map samples), for every ``N``.
* :func:`uniform_region_recall`: SE(2): the expected recall of a position drawn uniformly over the
  region the prior admits (a disk of radius ``R`` around the prior, or a square of half-side
  ``a``), by exact area ratios (Gauss-Legendre quadrature of the disk-square intersection), and
  the median of that error distribution; the yaw of a uniform guess is within ``d`` degrees with
  probability ``d / 180``.
* :func:`coverage_errors` / :func:`coverage_metrics`: 6-DoF: for each query the distance to its
  nearest mapping camera, the smallest angle to any mapping camera, and whether some mapping camera
  lies within each pair of thresholds: what pose retrieval could reach at best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["random_ranking_recall", "random_match_precision", "uniform_region_recall", "uniform_region_median",
           "yaw_chance_recall", "coverage_errors", "coverage_metrics"]


def random_ranking_recall(hit_counts: Sequence[int] | np.ndarray, num_map: int, ns: Sequence[int]) -> np.ndarray:
    """Expected recall@N (percent of all queries) of a uniformly random ranking of the map.

    For a query with ``h`` true matches among ``M`` map samples, the chance that none of ``N``
    distinct samples drawn without replacement is a match is ``C(M - h, N) / C(M, N) =
    prod_{k < N} (M - h - k) / (M - k)``.

    Args:
        hit_counts: ``(Q,)`` int, the number of true map matches of each query.
        num_map: ``M``, the number of map samples.
        ns: the ``N`` (each ``>= 1``).

    Returns:
        ``(len(ns),)`` float64 percent (``0`` without queries).

    Raises:
        ValueError: a count outside ``0..M`` or an ``N < 1``.
    """
    h = np.asarray(hit_counts, dtype=np.float64).reshape(-1)
    if h.size and (h.min() < 0 or h.max() > num_map):
        raise ValueError(f"hit counts must lie in 0..{num_map}")
    out = np.zeros(len(ns))
    if h.size == 0 or num_map == 0:
        return out
    for a, n in enumerate(ns):
        if n < 1:
            raise ValueError(f"N must be >= 1, got {n}")
        none = np.ones_like(h)
        for k in range(min(int(n), num_map)):
            none *= np.clip((num_map - h - k) / (num_map - k), 0.0, 1.0)
        out[a] = 100.0 * float(np.mean(1.0 - none))
    return out


def random_match_precision(hit_counts: Sequence[int] | np.ndarray, num_map: int) -> float:
    """Expected share (percent) of correct matches of a random single match, over the queries that
    have a true match (the denominator of the ``sequence`` family's recalls): mean of ``h / M``."""
    h = np.asarray(hit_counts, dtype=np.float64).reshape(-1)
    h = h[h > 0]
    if h.size == 0 or num_map == 0:
        return 0.0
    return 100.0 * float(np.mean(h / num_map))


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(256)


def _disk_square_area(gx: float, gy: float, d: float, cx: float, cy: float, a: float) -> float:
    """Area of the disk (centre ``g``, radius ``d``) inside the square (centre ``c``, half-side ``a``)."""
    if d <= 0:
        return 0.0
    # x = gx + d sin(theta): the integrand d cos(theta) * (y overlap) is smooth in theta
    lo = max(-1.0, (cx - a - gx) / d)
    hi = min(1.0, (cx + a - gx) / d)
    if lo >= hi:
        return 0.0
    t0, t1 = math.asin(lo), math.asin(hi)
    theta = 0.5 * (t1 - t0) * _GL_NODES + 0.5 * (t1 + t0)
    half = d * np.cos(theta)
    y_lo = np.maximum(gy - half, cy - a)
    y_hi = np.minimum(gy + half, cy + a)
    overlap = np.clip(y_hi - y_lo, 0.0, None)
    return float(0.5 * (t1 - t0) * np.sum(_GL_WEIGHTS * overlap * d * np.cos(theta)))


def _disk_disk_area(dist: float, r1: float, r2: float) -> float:
    """Area of the intersection of two disks of radii ``r1``, ``r2`` whose centres are ``dist`` apart."""
    if r1 <= 0 or r2 <= 0:
        return 0.0
    if dist >= r1 + r2:
        return 0.0
    if dist <= abs(r1 - r2):
        return math.pi * min(r1, r2) ** 2
    a1 = r1 * r1 * math.acos(max(-1.0, min(1.0, (dist * dist + r1 * r1 - r2 * r2) / (2 * dist * r1))))
    a2 = r2 * r2 * math.acos(max(-1.0, min(1.0, (dist * dist + r2 * r2 - r1 * r1) / (2 * dist * r2))))
    k = 0.5 * math.sqrt(max(0.0, (-dist + r1 + r2) * (dist + r1 - r2) * (dist - r1 + r2) * (dist + r1 + r2)))
    return a1 + a2 - k


def _within_probability(gt: np.ndarray, prior: np.ndarray, size: np.ndarray, shape: str, d: float) -> np.ndarray:
    out = np.zeros(len(gt))
    for i in range(len(gt)):
        gx, gy = gt[i]
        px, py = prior[i]
        s = float(size[i])
        if shape == "disk":
            out[i] = _disk_disk_area(math.hypot(gx - px, gy - py), d, s) / (math.pi * s * s)
        else:
            out[i] = _disk_square_area(gx, gy, d, px, py, s) / (4.0 * s * s)
    return np.clip(out, 0.0, 1.0)


def _check_region(gt_xy: np.ndarray, prior_xy: np.ndarray, size_m: np.ndarray, shape: str) -> tuple[np.ndarray, ...]:
    gt = np.asarray(gt_xy, dtype=np.float64).reshape(-1, 2)
    prior = np.asarray(prior_xy, dtype=np.float64).reshape(-1, 2)
    size = np.asarray(size_m, dtype=np.float64).reshape(-1)
    if not (len(gt) == len(prior) == len(size)):
        raise ValueError(f"gt_xy, prior_xy and size_m must have one row per query, got {len(gt)}, {len(prior)}, {len(size)}")
    if shape not in ("disk", "square"):
        raise ValueError(f"shape must be 'disk' or 'square', got {shape!r}")
    if size.size and not (size > 0).all():
        raise ValueError("the admissible region's size must be positive")
    return gt, prior, size


def uniform_region_recall(
    gt_xy: np.ndarray, prior_xy: np.ndarray, size_m: np.ndarray, thresholds_m: Sequence[float], shape: str = "disk",
) -> np.ndarray:
    """Expected position recall (percent) of a guess drawn uniformly over the admissible region.

    Args:
        gt_xy: ``(Q, 2)`` true map positions, metres.
        prior_xy: ``(Q, 2)`` prior positions (centre of the admissible region), metres.
        size_m: ``(Q,)`` the region's radius (``disk``) or half-side (``square``, axis-aligned), metres.
        thresholds_m: the position thresholds, metres.
        shape: ``"disk"`` or ``"square"``.

    Returns:
        ``(len(thresholds_m),)`` float64 percent of all queries (the mean of each query's
        probability ``area(disk(gt, d) ∩ region) / area(region)``).

    Raises:
        ValueError: mismatched lengths, a non-positive size, an unknown shape.
    """
    gt, prior, size = _check_region(gt_xy, prior_xy, size_m, shape)
    if len(gt) == 0:
        return np.zeros(len(thresholds_m))
    return np.array([100.0 * float(np.mean(_within_probability(gt, prior, size, shape, float(d))))
                     for d in thresholds_m])


def uniform_region_median(gt_xy: np.ndarray, prior_xy: np.ndarray, size_m: np.ndarray, shape: str = "disk") -> float:
    """Median position error (metres) of the uniform guess over all queries: the ``d`` at which the
    mean probability of being within ``d`` reaches one half (bisection to 1 mm)."""
    gt, prior, size = _check_region(gt_xy, prior_xy, size_m, shape)
    if len(gt) == 0:
        return float("nan")
    reach = float(np.max(np.hypot(*(gt - prior).T) + size * math.sqrt(2.0))) + 1.0
    lo, hi = 0.0, reach
    while hi - lo > 1e-3:
        mid = 0.5 * (lo + hi)
        if float(np.mean(_within_probability(gt, prior, size, shape, mid))) >= 0.5:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def yaw_chance_recall(thresholds_deg: Sequence[float]) -> np.ndarray:
    """Percent of uniformly random headings within each threshold (degrees) of the truth: ``d / 180``."""
    return np.array([100.0 * min(1.0, max(0.0, float(d) / 180.0)) for d in thresholds_deg])


def coverage_errors(
    query_R: np.ndarray, query_t: np.ndarray, map_R: np.ndarray, map_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Translation and rotation from every query to every mapping camera.

    Args:
        query_R: ``(Q, 3, 3)`` rotations of ``T_cam2world`` of the queries.
        query_t: ``(Q, 3)`` camera centres of the queries, metres (world frame).
        map_R: ``(M, 3, 3)`` and map_t ``(M, 3)``: the same for the mapping cameras.

    Returns:
        ``(translation_m, rotation_deg)``, each ``(Q, M)`` float64: the distance between the camera
        centres and the angle of ``R_map^T R_query``.

    Raises:
        ValueError: an empty map.
    """
    qR = np.asarray(query_R, dtype=np.float64).reshape(-1, 3, 3)
    qt = np.asarray(query_t, dtype=np.float64).reshape(-1, 3)
    mR = np.asarray(map_R, dtype=np.float64).reshape(-1, 3, 3)
    mt = np.asarray(map_t, dtype=np.float64).reshape(-1, 3)
    if len(mt) == 0:
        raise ValueError("the map has no camera with a pose")
    trans = np.linalg.norm(qt[:, None, :] - mt[None, :, :], axis=2)
    rel = np.einsum("mji,qjk->qmik", mR, qR)
    cos = np.clip((np.trace(rel, axis1=2, axis2=3) - 1.0) / 2.0, -1.0, 1.0)
    return trans, np.degrees(np.arccos(cos))


def coverage_metrics(translation_m: np.ndarray, rotation_deg: np.ndarray,
                     thresholds: Sequence[tuple[str, float, float]]) -> dict[str, float]:
    """The 6-DoF map-coverage floor from :func:`coverage_errors`: what returning the pose of one
    mapping camera (pose retrieval) could reach at best.

    Returns:
        ``num_queries``; ``median_translation_cm``: median over queries of the distance to the nearest
        mapping camera; ``median_rotation_deg``: median of the smallest angle to any mapping camera;
        and per ``(name, t_max_m, r_max_deg)`` of ``thresholds`` the percent of queries for which
        some mapping camera lies within both thresholds.
    """
    t = np.asarray(translation_m, dtype=np.float64)
    r = np.asarray(rotation_deg, dtype=np.float64)
    q = t.shape[0]
    out: dict[str, float] = {"num_queries": int(q)}
    if q == 0:
        return out
    out["median_translation_cm"] = float(np.median(t.min(axis=1))) * 100.0
    out["median_rotation_deg"] = float(np.median(r.min(axis=1)))
    for name, t_max, r_max in thresholds:
        out[name] = 100.0 * float(np.mean(((t <= t_max) & (r <= r_max)).any(axis=1)))
    return out

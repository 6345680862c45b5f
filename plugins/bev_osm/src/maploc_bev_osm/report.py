"""The method-specific section of a ``bev_osm`` report: search and fusion settings, the spatial split and the
training views it left. The recall tables (method, ``fused``, baselines, ``prior:`` and ``chance:``, per condition)
are the core's (:mod:`maploc.evaluation.scoring`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["admissible_chance", "report_sections"]


def admissible_chance(method: Any, names: Sequence[str] | None = None) -> dict[str, float]:
    """The mean exact expected recalls (percent) of the ``admissible_random`` baseline over the given queries
    (default: those localized in the test blocks of the method's split, or all without a split):
    ``{"recall_<d>m": value, ..., "num_queries": n}``; empty when no query qualifies."""
    import numpy as np

    side = method._side
    if names is None:
        names = list(side)
        if method.split is not None and names:
            xy = np.array([side[n]["truth_xy"] for n in names], np.float64).reshape(-1, 2)
            names = [n for n, ok in zip(names, method.split.mask(xy, "test")) if ok]
    rows = [side[n]["admissible_recall"] for n in names if n in side]
    if not rows:
        return {}
    out = {f"recall_{d:g}m": float(np.mean([r[d] for r in rows])) for d in rows[0]}
    out["num_queries"] = float(len(rows))
    return out


def report_sections(method: Any, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
    """One ``(title, body)`` section: what the rows of the core's tables were computed from.

    Args:
        method: the :class:`~maploc_bev_osm.method.BEVOSMMethod` after the run (its ``split``, ``train_views``).
        metrics: the run's metrics (for the number of queries outside the test blocks).
    """
    cfg = method.config
    s = cfg.search
    lines = [
        f"Search: a {s.crop_m:g} m north-up crop around a position prior = truth + an offset in "
        f"[-{s.max_offset_m:g}, {s.max_offset_m:g}]^2 m (the truth lies in the square of half-side "
        f"{s.max_offset_m:g} m around the prior: the region of the chance row), {cfg.model.cell_m:g} m cells, "
        f"{s.num_yaws_eval} yaw bins.",
        f"Prior: one offset per query sequence plus a random walk along it ({s.prior_drift_m:g} m per frame, at "
        f"most {min(s.prior_drift_max_m, s.max_offset_m / 2):g} m from the sequence's offset): the fused frames "
        "share a correlated prior.",
        f"Fusion: {cfg.fusion.frames} frames, odometry noise {cfg.fusion.odometry_noise_m:g} m / "
        f"{cfg.fusion.odometry_noise_deg:g} deg per step, composed along the frames (drift); fused_prior and "
        "fused_road_snap use the same priors and odometry.",
    ]
    chance = admissible_chance(method)
    if chance:
        recalls = ", ".join(f"R@{k[len('recall_'):]} {v:.1f} %" for k, v in chance.items() if k.startswith("recall_"))
        lines.append(f"Admissible chance (exact expected recalls of admissible_random: uniform over the road cells in "
                     f"the prior's square), {int(chance['num_queries'])} queries: {recalls}.")
    if method.split is not None:
        lines.append(f"Split: {method.split.describe()}.")
        outside = metrics.get("num_queries_outside_test_region")
        if outside is not None:
            lines.append(f"Scored: the queries in test blocks ({int(outside)} outside them not scored).")
    else:
        lines.append("Split: none (split.held_out=false, or a checkpoint evaluated on a map it was not trained on): "
                     "every query is scored.")
    if method.train_candidates:
        held = "test and val blocks" if method.split is not None and method.split.counts().get("val") else "test blocks"
        lines.append(f"Training: {method.train_views} of {method.train_candidates} training views "
                     f"(those outside the guard bands of the {held}).")
    return [("bev_osm setup", "\n".join(lines))]

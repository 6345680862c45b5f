"""Metrics beside the baselines: single-frame, fused, learned-prior-only, road-snap (the prior moved to the nearest road),
position-prior (crop centre) and chance,
on the held-out test blocks per condition and over all queries."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from maploc.evaluation.metrics import se2_metrics

__all__ = ["baseline_metrics", "chance_recalls", "report_sections"]

_POS = (1, 3, 5)
_YAW = (1, 3, 5)
#: what the report compares: the method (single frame, fused) and the baselines from the same prior and map
_VARIANTS = ("single", "fused", "prior_only", "road_snap", "position_prior")
_POSITION_ONLY = ("prior_only", "road_snap", "position_prior")


def chance_recalls(crop_m: float) -> dict[str, float]:
    """Recall (percent) of a pose drawn uniformly over a ``crop_m`` square crop and over all yaws: ``pi r^2 /
    crop_m^2`` for position (an upper bound: part of the disk can fall outside the crop), ``2 d / 360`` for yaw."""
    out = {f"recall_{r}m": min(100.0, 100 * math.pi * r * r / crop_m**2) for r in _POS}
    out.update({f"recall_{d}deg": 100 * 2 * d / 360 for d in _YAW})
    return out


def _yaw_err_deg(a: float, b: float) -> float:
    d = (a - b + math.pi) % (2 * math.pi) - math.pi
    return abs(math.degrees(d))


def _variant_errors(queries: Sequence[Any], estimates: Sequence[Any], variant: str) -> tuple[np.ndarray, ...]:
    n = len(queries)
    p, y, ok, sec = np.full(n, np.inf), np.full(n, np.inf), np.zeros(n, bool), np.zeros(n)
    for i, (q, e) in enumerate(zip(queries, estimates)):
        sec[i] = e.seconds
        if not e.success or e.pose2 is None:
            continue
        gt = q.pose2
        if variant == "single":
            x, yy, yaw = e.pose2.x, e.pose2.y, e.pose2.yaw
        elif variant == "fused":
            x, yy, yaw = e.extras["fused"]
        elif variant == "prior_only":
            (x, yy), yaw = e.extras["prior_xy"], math.nan
        elif variant == "road_snap":
            (x, yy), yaw = e.extras["road_snap_xy"], math.nan
        else:  # position_prior: the crop centre
            (x, yy), yaw = e.extras["crop_centre"], math.nan
        ok[i] = True
        p[i] = math.hypot(x - gt.x, yy - gt.y)
        y[i] = _yaw_err_deg(yaw, gt.yaw) if math.isfinite(yaw) else np.inf
    return p, y, ok, sec


def baseline_metrics(config: Any, queries: Sequence[Any], estimates: Sequence[Any], train_views: int
                     ) -> dict[str, float]:  # fmt: skip
    """Flat metrics ``<scope>/<variant>/<metric>``: scope ``test_blocks`` (queries whose true position lies in a
    held-out block), ``test_blocks_<condition>``, ``all`` (every query) and ``all_<condition>``, variants ``single``, ``fused``, ``prior_only`` (argmax of
    the learned map log-prior: position only), ``road_snap`` (the prior moved to the nearest OSM road cell:
    position only) and ``position_prior`` (the crop centre: position only); plus
    ``chance/<metric>`` and ``train_views``."""
    split = config.split
    held = [i for i, q in enumerate(queries) if q.pose2 is not None and split.is_test(q.pose2.x, q.pose2.y)]
    every = list(range(len(queries)))
    scopes: dict[str, list[int]] = {"test_blocks": held, "all": every}
    conditions = sorted({_cond(q) for q in queries})
    for c in conditions:
        scopes[f"test_blocks_{c}"] = [i for i in held if _cond(queries[i]) == c]
        scopes[f"all_{c}"] = [i for i in every if _cond(queries[i]) == c]
    out: dict[str, float] = {"train_views": train_views, "test_block_queries": len(held)}
    for variant in _VARIANTS:
        p, y, ok, sec = _variant_errors(queries, estimates, variant)
        for scope, idx in scopes.items():
            if not idx:
                continue
            m = se2_metrics(p[idx], y[idx], ok[idx], sec[idx])
            for k, v in m.items():
                if variant in _POSITION_ONLY and "deg" in k:
                    continue
                if k == "time_per_query_ms" and variant != "single":
                    continue
                out[f"{scope}/{variant}/{k}"] = v
    for k, v in chance_recalls(config.search.crop_m).items():
        out[f"chance/{k}"] = v
    return out


def _cond(q: Any) -> str:
    seq = getattr(q, "sequence", None) or ""
    return seq.split("_", 1)[1] if "_" in seq else "all"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if math.isinf(v) else f"{v:.1f}"


def report_sections(config: Any, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
    """One table: rows = scope x variant, columns = recalls, medians, failures; chance level last."""
    cols = [f"recall_{r}m" for r in _POS] + [f"recall_{d}deg" for d in _YAW] + [
        "median_position_error_m", "median_yaw_error_deg", "num_queries", "num_failed"]
    head = ["scope", "variant", "R@1m", "R@3m", "R@5m", "R@1°", "R@3°", "R@5°", "med m", "med °", "N", "fail"]
    rows = [head]
    found = {k.split("/")[0] for k in metrics if k.startswith(("test_blocks", "all"))}
    scopes = sorted(s for s in found if s.startswith("test_blocks")) + sorted(s for s in found if s.startswith("all"))
    for scope in scopes:
        for variant in _VARIANTS:
            if f"{scope}/{variant}/num_queries" not in metrics:
                continue
            rows.append([scope, variant] + [_fmt(metrics.get(f"{scope}/{variant}/{c}")) for c in cols])
    rows.append(["crop", "chance"] + [_fmt(metrics.get(f"chance/{c}")) for c in cols[:6]] + ["-"] * 4)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    text = "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
    note = (
        f"test_blocks: queries whose true position lies in a held-out {config.split.block_m:.0f} m block (training "
        f"views keep their whole map footprint out of those blocks); all: every query (on the training map, places "
        f"whose other-traversal images were trained on); {int(metrics.get('train_views', 0))} training "
        f"views. Search: {config.search.crop_m:.0f} m crop around a prior offset by up to "
        f"{config.search.max_offset_m:.0f} m, {config.search.num_yaws_eval} yaw bins, {config.model.cell_m} m cells. "
        "prior_only = argmax of the learned map log-prior; road_snap = the prior moved to the nearest OSM road "
        "cell (no learning); position_prior = the crop centre; fused = "
        f"{config.fusion.frames} frames with odometry noise {config.fusion.odometry_noise_m} m / "
        f"{config.fusion.odometry_noise_deg} deg."
    )
    return [("bev_osm against baselines", text + "\n\n" + note)]

"""Per-condition recall tables of the retrieval methods, beside ``nn-retrieval`` on the same queries and map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from maploc.api import SampleMeta
from maploc.types import PoseEstimate

from .training import block_split, positions_of

__all__ = ["Breakdown", "retrieval_breakdown", "sections", "recall_curve", "NS"]

NS = (1, 5, 10, 20)


@attrs.frozen(kw_only=True, eq=False)
class Breakdown:
    """Everything the report and the plots need.

    Attributes:
        metrics: flat extra metrics (percent recalls, milliseconds).
        distances: ``(Q, M)`` float64 metres from each query to each map image (NaN without positions).
        truth: ``{threshold_m: (Q, M) bool}`` correct map images per threshold (the dataset's index ground truth,
            the same for every threshold, when it has one instead of positions).
        index_truth: whether ``truth`` comes from the dataset's frame-index ground truth.
        ranked: ``{"method": (Q, K) int, "nn-retrieval": (Q, K) int}`` map rows, best first (-1 = none).
        conditions: Q str. held_out: ``(Q,)`` bool (query in an evaluation block).
    """

    metrics: dict[str, float]
    distances: np.ndarray
    truth: dict[float, np.ndarray]
    index_truth: bool
    ranked: dict[str, np.ndarray]
    conditions: list[str]
    held_out: np.ndarray


def recall_curve(ranked: np.ndarray, truth: np.ndarray, max_n: int) -> np.ndarray:
    """Recall@N for N = 1..max_n in percent: a query counts when one of its first N map rows is correct.
    ``ranked``: ``(Q, K)`` int rows (-1 = none); ``truth``: ``(Q, M)`` bool."""
    q = len(ranked)
    if q == 0:
        return np.zeros(max_n)
    hits = np.zeros((q, max_n), dtype=bool)
    for i in range(q):
        r = ranked[i, :max_n]
        r = r[r >= 0]
        hits[i, : len(r)] = truth[i, r]
    return 100.0 * np.cumsum(hits, axis=1).clip(max=1).mean(axis=0)


def retrieval_breakdown(method: Any, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate]) -> Breakdown:
    """Recall@1/5/10/20 at both thresholds per condition for the method and the thumbnail baseline."""
    cfg = method.config
    name_to_row = {m.name: i for i, m in enumerate(method.map_meta)}
    log = {r["name"]: r for r in method.query_log}
    map_xyz = np.stack([positions_of(m) for m in method.map_meta])
    q_xyz = np.stack([positions_of(q) for q in queries]) if queries else np.zeros((0, 3))
    distances = np.linalg.norm(q_xyz[:, None] - map_xyz[None], axis=2)
    thresholds = (cfg.eval.distance_threshold_m, cfg.eval.fine_threshold_m)
    index_truth = _index_truth(method.map_meta, queries)
    if index_truth is not None:
        truth = dict.fromkeys(thresholds, index_truth)
    else:
        with np.errstate(invalid="ignore"):
            truth = {t: distances <= t for t in thresholds}
    k = max(NS)
    ranked = np.full((len(queries), k), -1, dtype=np.int64)
    for i, e in enumerate(estimates):
        if e.success:
            rows = [name_to_row[n] for n in e.extras.get("retrieved", ())][:k]
            ranked[i, : len(rows)] = rows
    # nn-retrieval baseline: the same queries against the same map, 32-px grayscale thumbnails (the core's default)
    base = np.full((len(queries), k), -1, dtype=np.int64)
    if method.map_thumbnails is not None and all(q.name in log for q in queries) and len(queries):
        import torch

        qt = torch.stack([log[q.name]["thumbnail"] for q in queries])
        sim = qt @ method.map_thumbnails.T
        base[:, : min(k, sim.shape[1])] = sim.topk(min(k, sim.shape[1]), dim=1).indices.numpy()
    conditions = [log[q.name]["condition"] if q.name in log else "all" for q in queries]
    if index_truth is None and np.isfinite(map_xyz).all() and np.isfinite(q_xyz).all():
        _, held_out = block_split(q_xyz, cfg.split.block_size_m, cfg.split.guard_m, map_xyz)
    else:
        held_out = np.ones(len(queries), dtype=bool)
    metrics: dict[str, float] = {}
    # With the block split on, the per-condition rows count only queries in evaluation blocks (places no training
    # image came near); "all_places" also counts the training blocks' places.
    split_on = cfg.split.block_size_m > 0 and index_truth is None
    scope = held_out if split_on else np.ones(len(queries), dtype=bool)
    groups: dict[str, np.ndarray] = {}
    for c in sorted(set(conditions)):
        groups[c] = scope & np.array([x == c for x in conditions], dtype=bool)
    if split_on:
        groups["held_out"] = held_out
        groups["all_places"] = np.ones(len(queries), dtype=bool)
    else:
        groups["all"] = np.ones(len(queries), dtype=bool)
    for label, rows in (("", ranked), ("nn_", base)):
        for group, mask in groups.items():
            metrics[f"{label}num_queries/{group}"] = int(mask.sum())
            for t in thresholds:
                curve = recall_curve(rows[mask], truth[t][mask], k)
                for n in NS:
                    metrics[f"{label}recall_at_{n}_{t:g}m/{group}"] = float(curve[n - 1]) if mask.any() else float("nan")
    timing = method.timing
    if timing["map_images"]:
        metrics["map_encode_ms_per_image"] = 1000.0 * timing["map_encode_s"] / timing["map_images"]
    if timing["queries"]:
        metrics["query_encode_ms_per_image"] = 1000.0 * timing["query_encode_s"] / timing["queries"]
        metrics["search_ms_per_query"] = 1000.0 * timing["search_s"] / timing["queries"]
    metrics["descriptor_dim"] = int(method.model.descriptor_dim) if method.model is not None else 0
    return Breakdown(metrics=metrics, distances=distances, truth=truth, index_truth=index_truth is not None, ranked={"method": ranked, "nn-retrieval": base},
                     conditions=conditions, held_out=held_out)


def _index_truth(map_meta: Sequence[Any], queries: Sequence[SampleMeta]) -> np.ndarray | None:
    """``(Q, M)`` bool from the map samples' ``matching_queries`` (index ground truth, e.g. ``two-pass``), or
    ``None`` when the dataset gives none."""
    if not any(getattr(m, "matching_queries", None) for m in map_meta):
        return None
    row = {q.name: i for i, q in enumerate(queries)}
    truth = np.zeros((len(queries), len(map_meta)), dtype=bool)
    for j, m in enumerate(map_meta):
        for name in getattr(m, "matching_queries", ()) or ():
            if name in row:
                truth[row[name], j] = True
    return truth


def _table(method_name: str, metrics: Mapping[str, float], groups: list[str], thresholds: Sequence[float]) -> str:
    head = ["condition", "method", "queries"] + [f"R@{n} {t:g}m" for t in thresholds for n in NS]
    rows = [head]
    for g in groups:
        for label, prefix in ((method_name, ""), ("nn-retrieval", "nn_")):
            cells = [g, label, str(int(metrics.get(f"{prefix}num_queries/{g}", 0)))]
            for t in thresholds:
                for n in NS:
                    v = metrics.get(f"{prefix}recall_at_{n}_{t:g}m/{g}", float("nan"))
                    cells.append(f"{v:.1f}")
            rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if j > 1 else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def sections(method: Any, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
    """The recall table per condition (percent, both thresholds) and the timing / training summary."""
    cfg = method.config
    groups = sorted({k.split("/", 1)[1] for k in metrics if k.startswith("num_queries/")},
                    key=lambda g: (g in ("all", "held_out", "all_places"), g))
    thresholds = (cfg.eval.distance_threshold_m, cfg.eval.fine_threshold_m)
    title = f"Recall@N per condition (percent), {method.name} vs nn-retrieval on the same queries and map"
    if cfg.split.block_size_m > 0 and not getattr(getattr(method, "breakdown", None), "index_truth", False):
        title += (f"; condition rows = queries in evaluation blocks ({cfg.split.block_size_m:g} m blocks), "
                  "all_places includes training places")
    if getattr(getattr(method, "breakdown", None), "index_truth", False):
        title += "; ground truth = the dataset's matching frame indices (both threshold columns use it)"
    out = [(title, _table(method.name, metrics, groups, thresholds))]
    lines = []
    for key, label in (("map_encode_ms_per_image", "encode time per map image"),
                       ("query_encode_ms_per_image", "encode time per query image"),
                       ("search_ms_per_query", f"faiss search time per query ({cfg.index.kind})")):
        if key in metrics:
            lines.append(f"{label}: {metrics[key]:.2f} ms")
    lines.append(f"descriptor dimension: {int(metrics.get('descriptor_dim', 0))}")
    for k, v in getattr(method, "fit_summary", {}).items():
        fmt = ".3f" if "cosine" in k else ".1f"
        lines.append(f"training {k}: {v:{fmt}}" if isinstance(v, float) else f"training {k}: {v}")
    folder = method._index_dir()
    if getattr(method, "reused_index", None) is not None:
        lines.append(f"map index reused from {method.reused_index} (the map was not encoded)")
    elif folder is not None:
        lines.append(f"map index saved in {folder}; `maploc eval --checkpoint {folder.parent}/checkpoints/last.ckpt` "
                     "reuses it")
    out.append(("Timing and training", "\n".join(lines)))
    return out

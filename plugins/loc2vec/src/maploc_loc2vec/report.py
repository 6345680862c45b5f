"""Loc2Vec's own metrics and report table (called by :meth:`~maploc_loc2vec.method.Loc2VecMethod.extra_metrics`
and :meth:`~maploc_loc2vec.method.Loc2VecMethod.report_sections`).

For every indexed method ``key`` (:data:`METHODS`: the learned embedding and the raw-tile baselines, see
:mod:`~maploc_loc2vec.index`), from the positions each query's estimate carries in
``extras["loc2vec"]["retrieved_xy"][key]``:

* ``{key}_recall_at_{1,5}_within_{10,25}m``: percent of all queries with a reference location within 10 m /
  25 m of the query's true position among the top 1 / top 5 (the primary ``learned`` method's are also written
  without the prefix, as ``recall_at_{r}_within_{d}m``);
* ``{key}_query_ms``: mean milliseconds per query (descriptor + search), ``{key}_index_bytes`` (float32 vectors),
  ``{key}_model_bytes`` (network weights / PCA matrix), ``{key}_dim``, ``{key}_headings``;

and ``triplet_accuracy`` (percent of the held-out triplets with ``d(a, p) < d(a, n)``), ``num_triplets``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["METHODS", "DISTANCES_M", "RANKS", "recalls", "loc2vec_metrics", "format_table"]

#: Distance thresholds (metres) and ranks of the recalls.
DISTANCES_M = (10, 25)
RANKS = (1, 5)
#: Method keys, in table order, with their labels.
METHODS: dict[str, str] = {
    "learned": "loc2vec, H headings",
    "learned_north_up": "loc2vec, north up only",
    "raw_pca": "raw tiles PCA, H headings",
    "raw": "raw tiles, H headings",
    "raw_north_up": "raw tiles, north up only",
}


def recalls(prefix: str, truth: Sequence[tuple[float, float] | None], retrieved: Sequence[Any]) -> dict[str, float]:
    """``{prefix}recall_at_{r}_within_{d}m`` (percent of ``len(truth)``) from ranked positions ``(x, y)`` per query
    (an empty list or a query without truth is a miss)."""
    n = len(truth)
    out = {}
    for d in DISTANCES_M:
        for r in RANKS:
            hits = 0
            for gt, xy in zip(truth, retrieved):
                if gt is None or not xy:
                    continue
                if any(math.hypot(x - gt[0], y - gt[1]) <= d for x, y in xy[:r]):
                    hits += 1
            out[f"{prefix}recall_at_{r}_within_{d}m"] = 100.0 * hits / n if n else 0.0
    return out


def loc2vec_metrics(
    queries: Sequence[Any], estimates: Sequence[Any], index_info: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, float]:
    """The metrics of the module docstring.

    Args:
        queries: queries with ``pose2`` (true tile centre, metres), e.g. :class:`maploc.api.SampleMeta`.
        estimates: their estimates; failed ones (or without ``extras["loc2vec"]``) count as misses.
        index_info: per method key, ``dim``, ``headings``, ``index_bytes``, ``model_bytes`` (copied as metrics).

    Returns:
        Flat ``name -> number``.
    """
    truth = [(q.pose2.x, q.pose2.y) if getattr(q, "pose2", None) is not None else None for q in queries]
    infos = [e.extras.get("loc2vec") if e.success else None for e in estimates]
    keys = [k for k in METHODS if any(i and k in i.get("retrieved_xy", {}) for i in infos)]
    metrics: dict[str, float] = {}
    for key in keys:
        retrieved = [list(i["retrieved_xy"].get(key, [])) if i else [] for i in infos]
        metrics.update(recalls(f"{key}_", truth, retrieved))
        seconds = [i["seconds"][key] for i in infos if i and key in i.get("seconds", {})]
        metrics[f"{key}_query_ms"] = 1000.0 * sum(seconds) / len(seconds) if seconds else float("nan")
        for name, value in (index_info or {}).get(key, {}).items():
            metrics[f"{key}_{name}"] = value
    if "learned" in keys:
        metrics.update({k[len("learned_"):]: v for k, v in metrics.items() if k.startswith("learned_recall_at_")})
    triplets = [bool(i["triplet_correct"]) for i in infos if i and i.get("triplet_correct") is not None]
    metrics["triplet_accuracy"] = 100.0 * sum(triplets) / len(triplets) if triplets else float("nan")
    metrics["num_triplets"] = len(triplets)
    return metrics


def format_table(metrics: Mapping[str, float]) -> str:
    """The learned-vs-baselines table: per method, dimension, headings, index size, query time, recalls."""
    cols = [(r, d) for d in DISTANCES_M for r in RANKS]
    header = (f"{'method':<27}{'dim':>6}{'H':>3}{'index MiB':>11}{'model MiB':>11}{'ms/query':>10}"
              + "".join(f"{f'R@{r} {d}m':>9}" for r, d in cols))
    rows = [header]
    for key, label in METHODS.items():
        if f"{key}_recall_at_1_within_10m" not in metrics:
            continue

        def get(name: str, key: str = key) -> float:
            return float(metrics.get(f"{key}_{name}", float("nan")))

        rows.append(
            f"{label:<27}{get('dim'):>6.0f}{get('headings'):>3.0f}{get('index_bytes') / 2**20:>11.2f}"
            f"{get('model_bytes') / 2**20:>11.2f}{get('query_ms'):>10.2f}"
            + "".join(f"{get(f'recall_at_{r}_within_{d}m'):>8.1f}%" for r, d in cols)
        )
    if "triplet_accuracy" in metrics:
        rows.append(f"triplet accuracy on held-out blocks: {metrics['triplet_accuracy']:.1f}% "
                    f"({int(metrics['num_triplets'])} triplets)")
    return "\n".join(rows)

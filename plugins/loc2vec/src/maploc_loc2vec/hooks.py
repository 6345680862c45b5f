"""maploc hooks of the Loc2Vec plugin (entry point ``maploc.hooks: maploc-loc2vec``).

* :func:`maploc_extra_metrics`: for ``retrieval`` runs whose estimates carry ``extras["loc2vec"]`` (written by
  :meth:`maploc_loc2vec.method.Loc2VecMethod.localize`), adds to ``metrics.json``:

  - ``recall_at_{1,5}_within_{10,25}m``: percent of all queries with a reference tile within 10 m / 25 m of
    the query's true position among the top 1 / top 5 retrieved by the learned embedding;
  - ``baseline_recall_at_{1,5}_within_{10,25}m``: the same for the non-learned baseline (nearest neighbour on
    downsampled raw tiles);
  - ``triplet_accuracy``: percent of the held-out (test-block) triplets carried by the queries with
    ``d(anchor, positive) < d(anchor, negative)`` in embedding space;
  - ``num_triplets``: how many triplets were scored.

* :func:`maploc_report_sections`: after a ``loc2vec`` run, a learned-vs-baseline table below the metrics.

This module is imported by every ``maploc`` command: it imports neither torch nor the method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from maploc.hookspecs import hookimpl

__all__ = ["maploc_extra_metrics", "maploc_report_sections", "loc2vec_metrics", "DISTANCES_M", "RANKS"]

#: Distance thresholds (metres) and ranks of the extra recalls.
DISTANCES_M = (10, 25)
RANKS = (1, 5)


def _recalls(prefix: str, truth: Sequence[tuple[float, float] | None], retrieved: Sequence[Any]) -> dict[str, float]:
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


def loc2vec_metrics(queries: Sequence[Any], estimates: Sequence[Any]) -> dict[str, float]:
    """The extra metrics (see the module docstring) from query samples and their estimates.

    Args:
        queries: samples with ``pose2`` (the true tile centre, metres).
        estimates: estimates; a failed one or one without ``extras["loc2vec"]`` counts as a miss.

    Returns:
        Flat ``name -> number`` (recalls and accuracy in percent).
    """
    truth = [(q.pose2.x, q.pose2.y) if getattr(q, "pose2", None) is not None else None for q in queries]
    learned, baseline, triplets = [], [], []
    for e in estimates:
        info = e.extras.get("loc2vec") if e.success else None
        learned.append(list(info["retrieved_xy"]) if info else [])
        baseline.append(list(info["baseline_retrieved_xy"]) if info else [])
        if info and info.get("triplet_correct") is not None:
            triplets.append(bool(info["triplet_correct"]))
    metrics = {**_recalls("", truth, learned), **_recalls("baseline_", truth, baseline)}
    metrics["triplet_accuracy"] = 100.0 * sum(triplets) / len(triplets) if triplets else float("nan")
    metrics["num_triplets"] = len(triplets)
    return metrics


@hookimpl
def maploc_extra_metrics(
    family: str, queries: Sequence[Any], estimates: Sequence[Any], metrics: Mapping[str, float]
) -> Mapping[str, float] | None:
    if family != "retrieval" or not any("loc2vec" in getattr(e, "extras", {}) for e in estimates):
        return None
    return loc2vec_metrics(queries, estimates)


@hookimpl
def maploc_report_sections(run_dir: Path, metrics: Mapping[str, float], method_name: str) -> list[tuple[str, str]] | None:
    if method_name != "loc2vec" or "baseline_recall_at_1_within_10m" not in metrics:
        return None
    cols = [(r, d) for d in DISTANCES_M for r in RANKS]
    header = f"{'':<22}" + "".join(f"{f'R@{r} {d} m':>11}" for r, d in cols)
    rows = [header]
    for label, prefix in (("loc2vec (learned)", ""), ("raw-tile baseline", "baseline_")):
        rows.append(f"{label:<22}" + "".join(f"{metrics[f'{prefix}recall_at_{r}_within_{d}m']:>10.1f}%" for r, d in cols))
    rows.append(f"triplet accuracy on held-out blocks: {metrics['triplet_accuracy']:.1f}% "
                f"({int(metrics['num_triplets'])} triplets)")
    return [("Loc2Vec: learned embedding vs raw-tile baseline (recall within distance)", "\n".join(rows))]

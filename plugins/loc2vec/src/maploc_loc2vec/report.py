"""Loc2Vec's own report sections (:meth:`~maploc_loc2vec.method.Loc2VecMethod.report_sections`): what the core's
recall table does not show. The recalls of the method, of its variants and baselines and the chance row are the
core's (scored from ``RUN/predictions/``); nothing here computes a recall.

* :func:`split_summary`: the spatial block split, where the reference grid and the queries lie, and whether
  ``split.json`` was saved;
* :func:`index_table`: per row of the core's table (``loc2vec`` = the ``learned`` index, and the variant keys),
  the descriptor dimension, the headings indexed, the index and model sizes and the query time;
* :func:`training_summary`: the held-out triplet accuracy of the query triplets and the validation figures of
  training (``val/val_triplet_accuracy``, ``val/val_loss`` from the run's ``metrics.jsonl``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["split_summary", "index_table", "training_summary", "read_validation"]


def split_summary(map_data: Any, split_saved: Path | None, metrics: Mapping[str, float]) -> str:
    """The split of an ``osm-tiles`` dataset, the evaluated region and the core's count of left-out queries.

    Args:
        map_data: the ``map`` split (:class:`~maploc_loc2vec.data.OsmTileDataset`: ``blocks``, ``eval_region``).
        split_saved: where ``split.json`` was written (``None``: not written).
        metrics: the core's metrics (``num_queries``, ``num_queries_outside_test_region`` when split.json exists).

    Returns:
        A few lines of text.
    """
    blocks = map_data.blocks
    region = getattr(map_data, "eval_region", "test")
    lines = [blocks.describe()]
    lines.append(f"reference grid: {len(map_data)} locations in the {region} blocks; queries drawn inside the "
                 f"{region} blocks")
    if split_saved is not None:
        outside = metrics.get("num_queries_outside_test_region")
        tail = "" if outside is None else f"; the core left {int(outside)} queries outside the test blocks unscored"
        lines.append(f"split saved as {split_saved.name}{tail}")
    elif region != "test":
        lines.append("development evaluation on the VAL blocks: no split.json (no query lies in a test block); "
                     "these figures are not the test result")
    return "\n".join(lines)


def index_table(index_info: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, float]) -> str:
    """One line per index: the core's row name, descriptor, dimension, headings, index MiB (float32 vectors),
    model MiB (network weights / PCA matrix) and the core's median milliseconds per query (descriptor + search).

    Args:
        index_info: per index key (``learned``, ``learned_north_up``, ``raw_pca``, ``raw``, ``raw_north_up``):
            ``label``, ``dim``, ``headings``, ``index_bytes``, ``model_bytes``.
        metrics: the core's metrics (``time_per_query_ms``, ``<variant>:time_per_query_ms``).
    """
    header = f"{'row':<18}{'descriptor':<30}{'dim':>6}{'H':>3}{'index MiB':>11}{'model MiB':>11}{'ms/query':>10}"
    rows = [header]
    for key, info in index_info.items():
        row = "loc2vec" if key == "learned" else key
        ms = metrics.get("time_per_query_ms" if key == "learned" else f"{key}:time_per_query_ms", math.nan)
        rows.append(f"{row:<18}{str(info.get('label', key))[:29]:<30}{int(info['dim']):>6}{int(info['headings']):>3}"
                    f"{info['index_bytes'] / 2**20:>11.2f}{info['model_bytes'] / 2**20:>11.2f}{float(ms):>10.2f}")
    return "\n".join(rows)


def read_validation(path: Path | None) -> list[dict[str, float]]:
    """The validation records (``{"step": ..., "val/...": ...}``) of a run's ``metrics.jsonl``, in order
    (``[]`` without a file; unreadable lines are skipped)."""
    if path is None or not Path(path).is_file():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and any(str(k).startswith("val/") for k in record):
            out.append(record)
    return out


def training_summary(triplet_correct: Mapping[str, bool], metrics_jsonl: Path | None) -> str:
    """The held-out triplet accuracy of the queries' triplets and the validation figures of training.

    Args:
        triplet_correct: query name -> whether ``d(a, p) < d(a, n)`` for its held-out triplet.
        metrics_jsonl: the training run's ``metrics.jsonl`` (``None``: no validation figures).
    """
    lines = []
    if triplet_correct:
        acc = 100.0 * sum(triplet_correct.values()) / len(triplet_correct)
        lines.append(f"held-out triplet accuracy of the query triplets: {acc:.1f}% ({len(triplet_correct)} triplets)")
    val = read_validation(metrics_jsonl)
    if val:
        cells = []
        for r in val:
            acc_v = r.get("val/val_triplet_accuracy")
            loss = r.get("val/val_loss")
            cells.append(f"step {int(r.get('step', 0))}: "
                         + ", ".join(x for x in (f"triplet accuracy {acc_v:.1f}%" if acc_v is not None else "",
                                                 f"loss {loss:.4g}" if loss is not None else "") if x))
        lines.append("validation (val blocks): " + "; ".join(cells))
    elif metrics_jsonl is None:
        lines.append("validation: no metrics.jsonl (no training in this run or its checkpoint's run)")
    return "\n".join(lines) if lines else "no triplets and no validation records"

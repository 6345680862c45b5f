"""What SeqSLAM and DeepSeqSLAM share: the evaluation config, ground truth for plots, per-condition
metrics (sequence and single-frame), the report table and the plots.

Estimates of both methods carry ``extras``: ``retrieved`` (map names, best first), ``condition``
(the query's condition: ``extras["condition"]`` of the sample, else its sequence), and
``single_frame`` (``{"retrieved": [...], "confidence": c}``, the same matcher with ``ds = 1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from maploc.config import at_least, greater_than

__all__ = ["EvalConfig", "condition_of", "truth_matrix", "condition_metrics", "results_table", "MODES"]

#: (metric prefix, extras key or None for the method's own matches, label in tables)
MODES: tuple[tuple[str, str | None, str], ...] = (("seq", None, "sequence"), ("single", "single_frame", "single-frame"))


@attrs.frozen(kw_only=True)
class EvalConfig:
    """Evaluation settings.

    Attributes:
        distance_threshold_m: a map frame within this distance (metres) of the query is a true
            match (datasets with poses; index ground truth is used where the dataset has it).
        plot_max_queries: the difference-matrix plot keeps at most this many query rows.
        plot_max_refs: ... and is skipped when the map has more frames than this.
        examples: matched query/reference pairs shown in the examples figure.
    """

    distance_threshold_m: float = attrs.field(default=10.0, validator=greater_than(0))
    plot_max_queries: int = attrs.field(default=600, validator=at_least(1))
    plot_max_refs: int = attrs.field(default=4000, validator=at_least(1))
    examples: int = attrs.field(default=4, validator=at_least(0))


def condition_of(sample: Any) -> str:
    """The query's condition: ``extras["condition"]`` when the dataset gives one, else its sequence."""
    extras = getattr(sample, "extras", None) or {}
    return str(extras.get("condition", getattr(sample, "sequence", "") or "query"))


def truth_matrix(queries: Sequence[Any], map_metas: Sequence[Any], distance_threshold_m: float) -> np.ndarray:
    """``(Q, M)`` bool: map frame ``j`` shows the place of query ``i`` (index ground truth of the
    two-pass readers, else camera centres within ``distance_threshold_m``)."""
    Q, M = len(queries), len(map_metas)
    truth = np.zeros((Q, M), dtype=bool)
    qi = {q.name: i for i, q in enumerate(queries)}
    for j, m in enumerate(map_metas):
        for name in getattr(m, "matching_queries", None) or ():
            if name in qi:
                truth[qi[name], j] = True
    for i, q in enumerate(queries):
        extras = getattr(q, "extras", None) or {}
        if "true_map_indices" in extras:
            truth[i, list(extras["true_map_indices"])] = True
    centres = np.full((M, 3), np.nan)
    for j, m in enumerate(map_metas):
        if m.T_cam2world is not None:
            centres[j] = m.T_cam2world.t.detach().cpu().double().numpy().reshape(3)
    for i, q in enumerate(queries):
        if q.T_cam2world is not None:
            c = q.T_cam2world.t.detach().cpu().double().numpy().reshape(3)
            d = np.linalg.norm(centres - c, axis=1)
            truth[i] |= np.nan_to_num(d, nan=np.inf) <= distance_threshold_m
    return truth


def _mode_estimates(estimates: Sequence[Any], key: str | None) -> list[Any]:
    if key is None:
        return list(estimates)
    out = []
    for e in estimates:
        alt = e.extras.get(key)
        out.append(e if alt is None else attrs.evolve(e, confidence=alt["confidence"],
                                                       extras={"retrieved": list(alt["retrieved"])}))
    return out


def condition_metrics(
    map_metas: Sequence[Any], queries: Sequence[Any], estimates: Sequence[Any], distance_threshold_m: float,
    recall_ns: Sequence[int] = (1, 5),
) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Per-condition and per-mode (sequence, single-frame) precision-recall metrics.

    Args:
        map_metas: the map samples' metadata (names, poses or ``matching_queries``).
        queries: the query samples (or metadata), in order.
        estimates: their estimates (extras as in the module docstring).
        distance_threshold_m: see :class:`EvalConfig`.
        recall_ns: ``N`` of ``recall@N`` (percent of the queries with a true match whose top-``N``
            retrieved frames hold one).

    Returns:
        ``(metrics, curves)``: metrics named ``<mode>_<condition>_<metric>``, ``<mode>_all_...`` and,
        for a condition made of several query sequences (traversals), ``<mode>_<sequence>_...``
        (``pr_auc``, ``recall_at_100_precision`` in percent, ``recall_at_<N>`` in percent,
        ``num_queries``); ``mode`` is ``seq`` or ``single``. ``curves[<mode>_<condition>]`` holds
        ``precision`` and ``recall``.
    """
    from maploc.evaluation import evaluate

    truth = truth_matrix(queries, map_metas, distance_threshold_m)
    index = {m.name: j for j, m in enumerate(map_metas)}
    conditions = [e.extras.get("condition", "query") for e in estimates]
    groups: dict[str, list[int]] = {"all": list(range(len(queries)))}
    for i, c in enumerate(conditions):
        groups.setdefault(c, []).append(i)
    # a condition made of several sequences (traversals) is also reported per sequence
    by_sequence: dict[str, dict[str, list[int]]] = {}
    sequence_groups: set[str] = set()
    for i, (c, q) in enumerate(zip(conditions, queries)):
        by_sequence.setdefault(c, {}).setdefault(str(q.sequence), []).append(i)
    for seqs in by_sequence.values():
        if len(seqs) > 1:
            for name, idx in seqs.items():
                if name and name not in groups:
                    groups[name] = idx
                    sequence_groups.add(name)
    metrics: dict[str, float] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    for prefix, key, _ in MODES:
        mode_est = _mode_estimates(estimates, key)
        if key is not None and all(key not in e.extras for e in estimates):
            continue
        for cond, idx in groups.items():
            if cond == "all" and len(set(conditions)) == 1 and len(groups) == 2:
                continue  # one condition of one sequence: "all" would repeat it
            qs = [_with_truth(queries[i], truth[i]) for i in idx]
            es = [mode_est[i] for i in idx]
            result = evaluate("sequence", qs, es, map_samples=[_plain(m) for m in map_metas],
                              distance_threshold_m=distance_threshold_m)
            name = f"{prefix}_{cond}"
            metrics[f"{name}_pr_auc"] = float(result.metrics["pr_auc"])
            metrics[f"{name}_recall_at_100_precision"] = float(result.metrics["recall_at_100_precision"])
            positives = max(1, int(truth[idx].any(axis=1).sum()))
            for n in recall_ns:
                hit = 0
                for i, e in zip(idx, es):
                    ranked = [index[r] for r in list(e.extras.get("retrieved", ()))[:n] if r in index]
                    hit += bool(ranked) and bool(truth[i, ranked].any())
                metrics[f"{name}_recall_at_{n}"] = 100.0 * hit / positives
            metrics[f"{name}_num_queries"] = len(idx)
            if cond not in sequence_groups:  # plots show conditions; sequences are in the table
                curves[name] = {"precision": result.curves["precision"], "recall": result.curves["recall"]}
    return metrics, curves


@attrs.frozen(kw_only=True, eq=False)
class _TruthQuery:
    name: str
    T_cam2world: Any = None
    pose2: Any = None
    sequence: str = ""
    timestamp: float = 0.0
    extras: Mapping[str, Any] = attrs.field(factory=dict)


def _with_truth(query: Any, truth_row: np.ndarray) -> _TruthQuery:
    # positions are dropped: the truth row (index or distance) is the whole ground truth
    return _TruthQuery(name=query.name, sequence=query.sequence, timestamp=query.timestamp,
                       extras={"true_map_indices": np.flatnonzero(truth_row).tolist()})


def _plain(meta: Any) -> _TruthQuery:
    return _TruthQuery(name=meta.name, sequence=meta.sequence, timestamp=meta.timestamp)


def results_table(metrics: Mapping[str, float], ds: int, ns: Sequence[int] = (1,)) -> str:
    """A text table: one row per condition and mode (sequence of ``ds`` frames, single frame)."""
    conds: list[str] = []
    for k in metrics:
        if k.startswith("seq_") and k.endswith("_pr_auc"):
            conds.append(k[len("seq_"):-len("_pr_auc")])
    head = f"{'condition':<14}{'matching':<16}{'PR AUC':>8}{'R@100%P %':>11}" + "".join(
        f"{f'R@{n} %':>9}" for n in ns) + f"{'queries':>9}"
    lines = [head, "-" * len(head)]
    for cond in conds:
        for prefix, _, label in MODES:
            key = f"{prefix}_{cond}"
            if f"{key}_pr_auc" not in metrics:
                continue
            what = f"{label} ds={ds}" if prefix == "seq" else f"{label} ds=1"
            row = f"{cond:<14}{what:<16}{metrics[f'{key}_pr_auc']:>8.3f}{metrics[f'{key}_recall_at_100_precision']:>11.1f}"
            row += "".join(f"{metrics.get(f'{key}_recall_at_{n}', math.nan):>9.1f}" for n in ns)
            row += f"{int(metrics[f'{key}_num_queries']):>9d}"
            lines.append(row)
    return "\n".join(lines)


def plot_pr_curves(run_dir: Path, curves: Mapping[str, Mapping[str, np.ndarray]], title: str) -> Path:
    """PR curves per condition (solid: sequence, dashed: single frame); writes ``pr_curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, c in curves.items():
        prefix, cond = name.split("_", 1)
        ax.plot(c["recall"], c["precision"], "-" if prefix == "seq" else "--",
                label=f"{cond} ({'sequence' if prefix == 'seq' else 'single frame'})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7)
    path = run_dir / "pr_curves.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_difference_matrix(
    run_dir: Path, raw: np.ndarray | None, enhanced: np.ndarray, truth: np.ndarray, matches: np.ndarray,
    title: str, filename: str = "difference_matrix.png",
) -> Path:
    """Difference matrix (queries x references) raw and enhanced, with the ground truth (outline)
    and the matches (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    panels = [("raw difference", raw), ("enhanced", enhanced)] if raw is not None else [("scores", enhanced)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    qi, rj = np.nonzero(truth)
    for ax, (label, data) in zip(axes[0], panels):
        ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.scatter(rj, qi, s=0.5, c="white", alpha=0.25, label="ground truth")
        ok = truth[np.arange(len(matches)), matches]
        ax.scatter(matches[ok], np.flatnonzero(ok), s=3, c="lime", label="match (correct)")
        ax.scatter(matches[~ok], np.flatnonzero(~ok), s=3, c="red", label="match (wrong)")
        ax.set_xlabel("reference frame")
        ax.set_ylabel("query frame")
        ax.set_title(f"{title}: {label}")
    axes[0][-1].legend(fontsize=6, loc="lower right")
    path = run_dir / filename
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_examples(run_dir: Path, pairs: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> Path | None:
    """Query / matched reference images side by side; ``pairs`` of ``(query (H, W, 3), ref, caption)``."""
    if not pairs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    fig, axes = plt.subplots(len(pairs), 2, figsize=(6, 2.2 * len(pairs)), squeeze=False)
    for row, (q, r, caption) in zip(axes, pairs):
        row[0].imshow(q)
        row[1].imshow(r)
        row[0].set_title(caption, fontsize=7, loc="left")
        for ax in row:
            ax.axis("off")
    path = run_dir / "examples.png"
    save_figure(fig, path)
    plt.close(fig)
    return path

"""Writing an evaluation: ``metrics.json``, ``results.csv``, a text table and plots.

Every file is written atomically with :func:`maploc.files.atomic_write` (re-exported here), so a
reader never sees a half-written file. Plots use matplotlib's non-interactive ``Agg`` backend,
imported only when a plot is drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maploc.files import atomic_write

if TYPE_CHECKING:
    from maploc.evaluation.evaluate import EvaluationResult

__all__ = [
    "atomic_write",
    "format_metrics_table",
    "plot_error_cdf",
    "plot_pr_curve",
    "plot_recall_at_n",
    "plot_se2_recall",
    "write_metrics_json",
    "write_report",
    "write_results_csv",
]


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def write_results_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Writes one CSV row per query (atomically).

    The columns are the keys of the rows, in order of first appearance; a missing value or ``None``
    is an empty cell, booleans are ``true`` / ``false``, floats are written in full precision
    (``inf`` / ``nan`` as such).

    Args:
        path: the ``.csv`` file to write.
        rows: one mapping per query (e.g. :attr:`EvaluationResult.rows`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return Path(path)


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def write_metrics_json(path: str | os.PathLike[str], metrics: Mapping[str, float]) -> Path:
    """Writes the flat metrics as a JSON object (atomically), keys in the given order.

    The file is strict JSON: a non-finite value (e.g. ``median_translation_cm`` when at least half
    of the queries failed, or a median of zero queries) is written as ``null``.

    Args:
        path: the ``.json`` file to write.
        metrics: flat ``name -> number``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    data = {str(k): _json_value(v) for k, v in metrics.items()}
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")
    return Path(path)


def _format_value(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.3f}"


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """A two-column text table of the metrics: names left-aligned, values right-aligned.

    Integers are printed as such, floats with three decimals (``inf`` / ``nan`` as such); units are
    in the metric names.

    Args:
        metrics: flat ``name -> number``.

    Returns:
        The table, one metric per line, no trailing newline (empty string for no metrics).
    """
    cells = [(str(k), _format_value(v)) for k, v in metrics.items()]
    if not cells:
        return ""
    wk = max(len(k) for k, _ in cells)
    wv = max(len(v) for _, v in cells)
    return "\n".join(f"{k:<{wk}}  {v:>{wv}}" for k, v in cells)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Writes a matplotlib figure as PNG (100 dpi, tight) atomically and closes it; returns the path."""
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())
    return Path(path)


_save = save_figure


#: Errors that span more than this ratio (largest / smallest positive finite error) get a log x axis.
LOG_AXIS_SPAN = 100.0


def _cdf_panel(ax: Any, errors: Any, xlabel: str, thresholds: Sequence[float] = ()) -> None:
    """Draws the percent of all queries with error <= x; failures (``inf``) lie beyond the axis.

    A linear x axis from 0, unless the finite positive errors span more than two decades
    (:data:`LOG_AXIS_SPAN`, e.g. centimetres to kilometres): then a log axis over all of them (errors of 0
    at its left end).
    """
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    n = errors.size
    finite = np.sort(errors[np.isfinite(errors)])
    failed = n - finite.size
    positive = finite[finite > 0]
    log_x = positive.size >= 2 and positive[-1] > LOG_AXIS_SPAN * positive[0]
    label = f"{n} queries ({failed} failed)"
    if log_x:
        xmin, xmax = positive[0] / 1.5, positive[-1] * 1.5
        y = 100.0 * np.arange(1, finite.size + 1) / n
        ax.step(np.r_[xmin, np.maximum(finite, xmin), xmax], np.r_[0.0, y, y[-1]], where="post", label=label)
        ax.set_xscale("log")
    elif finite.size:
        # The axis ends at the largest error, or at 3x the 90th percentile when a few outliers
        # would squash the curve; larger errors, like failures, lie beyond it.
        top = min(float(finite[-1]), 3.0 * float(np.percentile(finite, 90)))
        xmin, xmax = 0.0, top * 1.05 if top > 0 else 1.0
        y = 100.0 * np.arange(1, finite.size + 1) / n
        ax.step(np.r_[0.0, finite, xmax], np.r_[0.0, y, y[-1]], where="post", label=label)
    else:
        xmin, xmax = 0.0, 1.0
        ax.plot([0.0, xmax], [0.0, 0.0], label=label)
    for t in thresholds:
        if xmin <= t <= xmax:
            ax.axvline(t, color="0.7", linestyle=":", linewidth=1)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(0.0, 100.0)
    ax.set_xlabel(f"{xlabel}, log scale" if log_x else xlabel)
    ax.set_ylabel("queries within error (%)")
    ax.grid(True, alpha=0.3, which="both" if log_x else "major")
    ax.legend(loc="lower right")


def _two_cdfs(
    path: str | os.PathLike[str], panels: Sequence[tuple[Any, str, Sequence[float]]], title: str
) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (errors, xlabel, thresholds) in zip(np.atleast_1d(axes), panels):
        _cdf_panel(ax, errors, xlabel, thresholds)
    fig.suptitle(title)
    return _save(fig, path)


def plot_error_cdf(
    path: str | os.PathLike[str], translation_error_cm: Any, rotation_error_deg: Any, title: str = ""
) -> Path:
    """Two panels: cumulative distribution of the translation (cm) and rotation (deg) errors.

    The y axis is the percent of **all** queries; a failed query (error ``inf``) lies beyond the x
    axis, so a curve ends below 100 % by the share of failures. The x axis ends at the largest
    finite error, or at three times the 90th percentile when outliers lie further; where the errors span more
    than two decades (e.g. centimetres to kilometres) it is logarithmic and shows them all. The legend gives the
    number of queries and of failures.

    Args:
        path: the ``.png`` file to write (atomically).
        translation_error_cm: ``(Q,)`` translation errors in centimetres (``inf`` = failed).
        rotation_error_deg: ``(Q,)`` rotation errors in degrees (``inf`` = failed).
        title: the figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return _two_cdfs(
        path,
        [(translation_error_cm, "translation error (cm)", (1, 2, 5, 10, 25, 50)),
         (rotation_error_deg, "rotation error (deg)", (1, 2, 5, 10))],
        title,
    )


def plot_se2_recall(
    path: str | os.PathLike[str], position_error_m: Any, yaw_error_deg: Any, title: str = ""
) -> Path:
    """Two panels: recall (percent of all queries) against the position (m) and yaw (deg) error.

    Same drawing as :func:`plot_error_cdf`; dotted lines mark the ``se2`` thresholds (1, 3, 5).

    Args:
        path: the ``.png`` file to write (atomically).
        position_error_m: ``(Q,)`` position errors in metres (``inf`` = failed).
        yaw_error_deg: ``(Q,)`` yaw errors in degrees (``inf`` = failed).
        title: the figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return _two_cdfs(
        path,
        [(position_error_m, "position error (m)", (1, 3, 5)), (yaw_error_deg, "yaw error (deg)", (1, 3, 5))],
        title,
    )


def plot_pr_curve(path: str | os.PathLike[str], precision: Any, recall: Any, auc: float, title: str = "") -> Path:
    """The precision-recall curve (both as fractions), with the area in the legend.

    Args:
        path: the ``.png`` file to write (atomically).
        precision: ``(T,)`` precision, ordered by increasing recall.
        recall: ``(T,)`` recall.
        auc: the area under the curve (``pr_auc``) for the legend.
        title: the figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    plt = _pyplot()
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.r_[0.0, recall], np.r_[1.0 if precision.size else 0.0, precision], drawstyle="steps-pre",
            marker=".", label=f"AP = {auc:.3f}")
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title)
    return _save(fig, path)


def plot_recall_at_n(
    path: str | os.PathLike[str], ns: Any, recall_at_n: Any, title: str = "", chance: Any = None
) -> Path:
    """Recall@N (percent of all queries) against N, with the chance level of a random ranking.

    Args:
        path: the ``.png`` file to write (atomically).
        ns: ``(K,)`` the values of N.
        recall_at_n: ``(K,)`` recall@N in percent.
        title: the figure title.
        chance: ``(K,)`` the expected recall@N of a random ranking (percent), drawn dashed; ``None``: none.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.asarray(ns, dtype=np.float64), np.asarray(recall_at_n, dtype=np.float64), marker="o", label="method")
    if chance is not None:
        ax.plot(np.asarray(ns, dtype=np.float64), np.asarray(chance, dtype=np.float64), "--", color="grey",
                label="chance (random ranking)")
        ax.legend(loc="lower right")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0.0, 100.0)
    ax.set_xlabel("N (number of retrieved map images)")
    ax.set_ylabel("recall@N (%)")
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)


def write_report(
    run_dir: str | os.PathLike[str], result: EvaluationResult, family: str, title: str = ""
) -> list[Path]:
    """Writes ``metrics.json``, ``results.csv`` and the family's plot into ``run_dir``.

    Plots: ``error_cdf.png`` for ``pose6dof`` (:func:`plot_error_cdf`) and ``se2``
    (:func:`plot_se2_recall`), ``pr_curve.png`` for ``sequence`` (:func:`plot_pr_curve`) and
    ``recall_at_n.png`` for ``retrieval`` (:func:`plot_recall_at_n`).

    Args:
        run_dir: the run directory (created if missing).
        result: the output of :func:`~maploc.evaluation.evaluate`.
        family: the metric family that produced ``result``.
        title: the plot title (e.g. ``"dsac on 7scenes/chess"``).

    Returns:
        The written paths, in the order above.

    Raises:
        ValueError: for an unknown family.
    """
    from maploc.evaluation.evaluate import FAMILIES

    if family not in FAMILIES:
        raise ValueError(f"unknown metric family {family!r}; known families: {', '.join(FAMILIES)}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_metrics_json(run_dir / "metrics.json", result.metrics),
             write_results_csv(run_dir / "results.csv", result.rows)]
    c = result.curves
    if family == "pose6dof":
        paths.append(plot_error_cdf(run_dir / "error_cdf.png", c["translation_error_cm"], c["rotation_error_deg"], title))
    elif family == "se2":
        paths.append(plot_se2_recall(run_dir / "error_cdf.png", c["position_error_m"], c["yaw_error_deg"], title))
    elif family == "sequence":
        paths.append(plot_pr_curve(run_dir / "pr_curve.png", c["precision"], c["recall"],
                                   float(result.metrics["pr_auc"]), title))
    else:
        paths.append(plot_recall_at_n(run_dir / "recall_at_n.png", c["n"], c["recall_at_n"],
                                      f"{title}\nall scored queries", chance=c.get("chance_recall_at_n")))
    return paths

"""Metric families and plots shared by every method.

* :mod:`~maploc.evaluation.metrics`: pure numpy functions, one per family (``pose6dof``, ``se2``,
  ``retrieval``, ``sequence``) and the precision-recall curve.
* :mod:`~maploc.evaluation.evaluate`: :func:`evaluate`, from samples and estimates to an
  :class:`EvaluationResult` (metrics, per-query rows, curves).
* :mod:`~maploc.evaluation.report`: ``metrics.json``, ``results.csv``, a text table and plots.
* :mod:`~maploc.evaluation.predictions`: the predictions files (the field's formats) a run writes.
* :mod:`~maploc.evaluation.scoring`: scoring a run from its predictions files (method, variants,
  baselines, reference rows, per condition, on the test region), shared by ``maploc run`` and
  ``maploc evaluate``.
* :mod:`~maploc.evaluation.reference`: chance levels, the prior and the 6-DoF map coverage.

Importing this package imports neither torch nor matplotlib.
"""

from __future__ import annotations

from maploc.evaluation.evaluate import FAMILIES, EvaluationResult, evaluate, truth_matrix
from maploc.evaluation.metrics import (
    POSE6DOF_THRESHOLDS,
    RETRIEVAL_NS,
    SE2_POSITION_THRESHOLDS_M,
    SE2_YAW_THRESHOLDS_DEG,
    average_precision,
    common_metrics,
    failed_as_inf,
    pose6dof_metrics,
    precision_recall,
    recall_at_n_curve,
    retrieval_metrics,
    se2_metrics,
    sequence_metrics,
)
from maploc.evaluation.report import (
    atomic_write,
    format_metrics_table,
    plot_error_cdf,
    plot_pr_curve,
    plot_recall_at_n,
    plot_se2_recall,
    write_metrics_json,
    write_report,
    write_results_csv,
)

__all__ = [
    "FAMILIES",
    "POSE6DOF_THRESHOLDS",
    "RETRIEVAL_NS",
    "SE2_POSITION_THRESHOLDS_M",
    "SE2_YAW_THRESHOLDS_DEG",
    "EvaluationResult",
    "atomic_write",
    "average_precision",
    "common_metrics",
    "evaluate",
    "failed_as_inf",
    "format_metrics_table",
    "plot_error_cdf",
    "plot_pr_curve",
    "plot_recall_at_n",
    "plot_se2_recall",
    "pose6dof_metrics",
    "precision_recall",
    "recall_at_n_curve",
    "retrieval_metrics",
    "se2_metrics",
    "sequence_metrics",
    "truth_matrix",
    "write_metrics_json",
    "write_report",
    "write_results_csv",
]

"""The metric families shared by every method, as pure functions on numpy arrays.

Four families, named by :attr:`maploc.api.Method.metric_family`:

* ``pose6dof`` (:func:`pose6dof_metrics`): 6-DoF camera pose accuracy, as reported for 7-Scenes
  and Cambridge Landmarks (DSAC*, Brachmann & Rother, TPAMI 2021, Sec. 5).
* ``se2`` (:func:`se2_metrics`): map localization, position and yaw recall (OrienterNet, Sarlin
  et al., CVPR 2023, Sec. 5).
* ``retrieval`` (:func:`retrieval_metrics`): recall@N of place recognition (NetVLAD,
  Arandjelović et al., CVPR 2016, Sec. 5.1).
* ``sequence`` (:func:`sequence_metrics`): precision-recall of sequence place recognition
  (SeqSLAM, Milford & Wyeth, ICRA 2012, Sec. V).

Conventions, the same for every family:

* Every percentage is a percent of **all** queries (``num_queries``), failed ones included.
* A failed query (``success == False``) counts as infinitely wrong: its errors are ``+inf``, so it is
  never within any threshold, and the medians include it as ``+inf`` (a median is ``inf`` once at
  least half of the queries failed). A non-finite error (``nan``) of a successful query is also
  treated as ``+inf``; it is not counted in ``num_failed``.
* A query is within a threshold when its error is **less than or equal to** the threshold.
* Every family also reports ``num_queries``, ``num_failed`` and ``time_per_query_ms`` (the median
  over all queries of the per-query wall time, in milliseconds).
* Values are plain Python ``int`` / ``float`` in a flat ``dict`` (``metrics.json`` is flat). With no
  query, recalls are ``0.0`` and medians and times are ``nan``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "POSE6DOF_THRESHOLDS",
    "RETRIEVAL_NS",
    "SE2_POSITION_THRESHOLDS_M",
    "SE2_YAW_THRESHOLDS_DEG",
    "average_precision",
    "common_metrics",
    "failed_as_inf",
    "pose6dof_metrics",
    "precision_recall",
    "recall_at_n_curve",
    "retrieval_metrics",
    "se2_metrics",
    "sequence_metrics",
]

#: ``(metric name, translation threshold in metres, rotation threshold in degrees)`` of the
#: ``pose6dof`` recalls; a query counts when both errors are within their thresholds.
POSE6DOF_THRESHOLDS: tuple[tuple[str, float, float], ...] = (
    ("recall_1cm_1deg", 0.01, 1.0),
    ("recall_2cm_2deg", 0.02, 2.0),
    ("recall_5cm_1deg", 0.05, 1.0),
    ("recall_5cm_5deg", 0.05, 5.0),
    ("recall_10cm_10deg", 0.10, 10.0),
    ("recall_25cm_2deg", 0.25, 2.0),
    ("recall_50cm_5deg", 0.50, 5.0),
    ("recall_1m_5deg", 1.0, 5.0),
    ("recall_5m_10deg", 5.0, 10.0),
)

#: Position thresholds (metres) of the ``se2`` recalls ``recall_{d}m``.
SE2_POSITION_THRESHOLDS_M: tuple[float, ...] = (1.0, 3.0, 5.0)

#: Yaw thresholds (degrees) of the ``se2`` recalls ``recall_{d}deg``.
SE2_YAW_THRESHOLDS_DEG: tuple[float, ...] = (1.0, 3.0, 5.0)

#: The default ``N`` of the ``retrieval`` recalls ``recall_at_{N}``.
RETRIEVAL_NS: tuple[int, ...] = (1, 5, 10, 20)


def _as_1d(name: str, values: object, n: int | None = None, dtype: type = float) -> np.ndarray:
    if np.ndim(values) > 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {np.shape(values)}")
    array = np.asarray(values, dtype=dtype).reshape(-1)
    if n is not None and array.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries (one per query), got {array.shape[0]}")
    return array


def _percent(mask: np.ndarray, total: int) -> float:
    """Percent of ``total`` that ``mask`` marks (``0.0`` when ``total == 0``)."""
    return 100.0 * float(np.count_nonzero(mask)) / total if total > 0 else 0.0


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float("nan")


def _format_threshold(value: float) -> str:
    return f"{value:g}"


def failed_as_inf(errors: object, success: object) -> np.ndarray:
    """Replaces the errors of failed queries (and non-finite errors) by ``+inf``.

    Args:
        errors: ``(Q,)`` errors in any unit; the entries of failed queries are ignored (may be ``nan``).
        success: ``(Q,)`` bool, ``False`` for a query the method gave up on.

    Returns:
        ``(Q,)`` float64 copy of ``errors`` with ``+inf`` where ``success`` is ``False`` or the error is
        not finite.
    """
    success = _as_1d("success", success, dtype=bool)
    errors = _as_1d("errors", errors, success.shape[0]).copy()
    errors[~success | ~np.isfinite(errors)] = np.inf
    return errors


def common_metrics(success: object, seconds: object) -> dict[str, float]:
    """The metrics every family reports.

    Args:
        success: ``(Q,)`` bool, ``False`` for a failed query.
        seconds: ``(Q,)`` wall time per query in seconds.

    Returns:
        ``num_queries`` (int), ``num_failed`` (int) and ``time_per_query_ms`` (median of
        ``seconds`` times 1000, ``nan`` without queries).
    """
    success = _as_1d("success", success, dtype=bool)
    seconds = _as_1d("seconds", seconds, success.shape[0])
    return {
        "num_queries": int(success.shape[0]),
        "num_failed": int(np.count_nonzero(~success)),
        "time_per_query_ms": _median(seconds) * 1000.0,
    }


def pose6dof_metrics(
    rotation_error_deg: object, translation_error_m: object, success: object, seconds: object
) -> dict[str, float]:
    """The ``pose6dof`` family: median errors and recalls at joint translation/rotation thresholds.

    Args:
        rotation_error_deg: ``(Q,)`` angle of ``R_est^T R_gt`` in degrees.
        translation_error_m: ``(Q,)`` distance between estimated and true camera centres in metres.
        success: ``(Q,)`` bool; a failed query is infinitely wrong (see the module docstring).
        seconds: ``(Q,)`` wall time per query in seconds.

    Returns:
        ``num_queries``, ``num_failed``, ``median_translation_cm``, ``median_rotation_deg`` (medians
        over all queries, failures as ``+inf``), the percentages of all queries within
        each threshold pair of :data:`POSE6DOF_THRESHOLDS` (``recall_1cm_1deg`` ...
        ``recall_5m_10deg``), and ``time_per_query_ms``.

    Raises:
        ValueError: if the arrays are not one-dimensional of the same length.
    """
    common = common_metrics(success, seconds)
    n = common["num_queries"]
    r = failed_as_inf(_as_1d("rotation_error_deg", rotation_error_deg, n), success)
    t = failed_as_inf(_as_1d("translation_error_m", translation_error_m, n), success)
    out: dict[str, float] = {"num_queries": n, "num_failed": common["num_failed"]}
    out["median_translation_cm"] = _median(t) * 100.0
    out["median_rotation_deg"] = _median(r)
    for name, t_max, r_max in POSE6DOF_THRESHOLDS:
        out[name] = _percent((t <= t_max) & (r <= r_max), n)
    out["time_per_query_ms"] = common["time_per_query_ms"]
    return out


def se2_metrics(
    position_error_m: object, yaw_error_deg: object, success: object, seconds: object
) -> dict[str, float]:
    """The ``se2`` family: map-localization recalls of position and of yaw, each on its own.

    Args:
        position_error_m: ``(Q,)`` distance between estimated and true map positions in metres.
        yaw_error_deg: ``(Q,)`` absolute wrapped heading error in degrees, in ``[0, 180]``.
        success: ``(Q,)`` bool; a failed query is infinitely wrong.
        seconds: ``(Q,)`` wall time per query in seconds.

    Returns:
        ``num_queries``, ``num_failed``, ``recall_1m``, ``recall_3m``, ``recall_5m`` (percent of all
        queries with position error within the threshold), ``recall_1deg``, ``recall_3deg``,
        ``recall_5deg`` (yaw error within the threshold), ``median_position_error_m``,
        ``median_yaw_error_deg`` and ``time_per_query_ms``.

    Raises:
        ValueError: if the arrays are not one-dimensional of the same length.
    """
    common = common_metrics(success, seconds)
    n = common["num_queries"]
    p = failed_as_inf(_as_1d("position_error_m", position_error_m, n), success)
    y = failed_as_inf(_as_1d("yaw_error_deg", yaw_error_deg, n), success)
    out: dict[str, float] = {"num_queries": n, "num_failed": common["num_failed"]}
    for d in SE2_POSITION_THRESHOLDS_M:
        out[f"recall_{_format_threshold(d)}m"] = _percent(p <= d, n)
    for a in SE2_YAW_THRESHOLDS_DEG:
        out[f"recall_{_format_threshold(a)}deg"] = _percent(y <= a, n)
    out["median_position_error_m"] = _median(p)
    out["median_yaw_error_deg"] = _median(y)
    out["time_per_query_ms"] = common["time_per_query_ms"]
    return out


def recall_at_n_curve(ranked_hits: object, success: object, max_n: int) -> np.ndarray:
    """Recall@n for every ``n`` in ``1..max_n``.

    Args:
        ranked_hits: ``(Q, K)`` bool; ``ranked_hits[q, k]`` tells whether the ``k``-th retrieved map
            item (best first) of query ``q`` lies within the distance threshold. Pad short lists
            with ``False``. ``K`` may be smaller than ``max_n`` (larger ``n`` then see all ``K``).
        success: ``(Q,)`` bool; a failed query never counts.
        max_n: the largest ``n``.

    Returns:
        ``(max_n,)`` float64, entry ``n - 1`` the percent of all queries with a hit among their top
        ``n``.
    """
    success = _as_1d("success", success, dtype=bool)
    q = success.shape[0]
    hits = np.asarray(ranked_hits, dtype=bool)
    if hits.ndim == 1 and hits.size == 0:
        hits = hits.reshape(q, 0)
    if hits.ndim != 2 or hits.shape[0] != q:
        raise ValueError(f"ranked_hits must have shape ({q}, K), got {hits.shape}")
    if max_n < 1:
        raise ValueError(f"N must be at least 1, got {max_n}")
    hits = hits & success[:, None]
    if q == 0 or hits.shape[1] == 0:
        return np.zeros(max_n)
    # Rank (0-based) of the first hit of each query, +inf when there is none.
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), np.inf)
    within = first_hit[None, :] < np.arange(1, max_n + 1)[:, None]
    return 100.0 * within.sum(axis=1) / q


def retrieval_metrics(
    ranked_hits: object, success: object, seconds: object, ns: Sequence[int] = RETRIEVAL_NS
) -> dict[str, float]:
    """The ``retrieval`` family: recall@N of place recognition.

    Recall@N is the percent of all queries for which at least one of the top ``N`` retrieved map
    items lies within the distance threshold of the query (NetVLAD, Sec. 5.1).

    Args:
        ranked_hits: ``(Q, K)`` bool, see :func:`recall_at_n_curve`.
        success: ``(Q,)`` bool; a failed query never counts.
        seconds: ``(Q,)`` wall time per query in seconds.
        ns: the ``N`` to report, each ``>= 1``.

    Returns:
        ``num_queries``, ``num_failed``, ``recall_at_{N}`` for each ``N`` in ``ns`` (percent), and
        ``time_per_query_ms``.

    Raises:
        ValueError: on mismatched shapes or an ``N < 1``.
    """
    common = common_metrics(success, seconds)
    ns = [int(n) for n in ns]
    if not ns or min(ns) < 1:
        raise ValueError(f"ns must be positive integers, got {ns}")
    curve = recall_at_n_curve(ranked_hits, success, max(ns))
    out: dict[str, float] = {"num_queries": common["num_queries"], "num_failed": common["num_failed"]}
    for n in ns:
        out[f"recall_at_{n}"] = float(curve[n - 1])
    out["time_per_query_ms"] = common["time_per_query_ms"]
    return out


def precision_recall(
    scores: object, correct: object, num_positives: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve of matches ranked by score (higher is more confident).

    Sweeping a threshold ``s`` over the distinct scores, the matches with ``score >= s`` are
    accepted: ``precision = TP / accepted`` and ``recall = TP / num_positives`` with ``TP`` the
    accepted correct matches. As in place recognition (SeqSLAM, Sec. V), ``num_positives`` is the
    number of queries that have a true match in the map, so a wrong match is a false positive once
    accepted and a missed positive always; by default every query has one (``len(scores)``). Pass
    ``num_positives=correct.sum()`` for the classification convention of
    ``sklearn.metrics.precision_recall_curve``.

    Args:
        scores: ``(M,)`` float match scores of the queries that produced a match.
        correct: ``(M,)`` bool, whether each match is correct.
        num_positives: the recall denominator (``>= correct.sum()``); default ``M``.

    Returns:
        ``(precision, recall, thresholds)``, each ``(T,)`` float64 with ``T`` the number of distinct
        scores, ordered by decreasing threshold (increasing recall); precision and recall are
        fractions in ``[0, 1]``. Empty arrays when ``M == 0``.

    Raises:
        ValueError: on mismatched shapes, non-finite scores, or ``num_positives < correct.sum()``.
    """
    correct = _as_1d("correct", correct, dtype=bool)
    scores = _as_1d("scores", scores, correct.shape[0])
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    positives = correct.shape[0] if num_positives is None else int(num_positives)
    if positives < np.count_nonzero(correct):
        raise ValueError(f"num_positives={positives} is smaller than the {np.count_nonzero(correct)} correct matches")
    if scores.size == 0:
        empty = np.zeros(0)
        return empty, empty.copy(), empty.copy()
    order = np.argsort(-scores, kind="stable")
    s, c = scores[order], correct[order]
    tp = np.cumsum(c)
    accepted = np.arange(1, s.size + 1)
    # The last index of each group of equal scores: a threshold accepts ties together.
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    precision = tp[last] / accepted[last]
    recall = tp[last] / positives if positives > 0 else np.zeros(last.size)
    return precision.astype(np.float64), recall.astype(np.float64), s[last].astype(np.float64)


def average_precision(precision: object, recall: object) -> float:
    """Area under the precision-recall curve as average precision (no interpolation).

    ``AP = sum_k (R_k - R_{k-1}) P_k`` with ``R_0 = 0``, the step-wise integral of
    ``sklearn.metrics.average_precision_score``; unlike the trapezoid rule it does not
    interpolate linearly between operating points (which is optimistic).

    Args:
        precision: ``(T,)`` precision, ordered by increasing recall (as :func:`precision_recall`).
        recall: ``(T,)`` recall fractions, non-decreasing.

    Returns:
        The area in ``[0, 1]`` (``0.0`` for an empty curve).
    """
    precision = _as_1d("precision", precision)
    recall = _as_1d("recall", recall, precision.shape[0])
    if recall.size == 0:
        return 0.0
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def sequence_metrics(
    scores: object, correct: object, success: object, seconds: object, has_true_match: object | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The ``sequence`` family: precision-recall of the best match of each query.

    Args:
        scores: ``(Q,)`` float score of each query's best match (higher is more confident); the
            entries of failed queries are ignored (may be ``nan``).
        correct: ``(Q,)`` bool, whether the best match is within the distance threshold (or frame
            tolerance) of the query; ignored for failed queries.
        success: ``(Q,)`` bool; a failed query produced no match: never accepted, still a positive.
        seconds: ``(Q,)`` wall time per query in seconds.
        has_true_match: ``(Q,)`` bool, whether the map holds a true match of the query (the recall
            denominator); default: every query has one.

    Returns:
        ``(metrics, curves)``. ``metrics``: ``num_queries``, ``num_failed``, ``pr_auc`` (the average
        precision of :func:`average_precision`, a fraction in ``[0, 1]``),
        ``recall_at_100_precision`` (the largest recall, in percent, at a threshold whose precision
        is exactly 1; ``0.0`` if there is none), ``recall_at_1`` (percent of the queries with a true
        match whose best match is correct, every match accepted) and ``time_per_query_ms``. ``curves``:
        ``precision``, ``recall`` and ``thresholds`` of :func:`precision_recall`.

    Raises:
        ValueError: on mismatched shapes, or a non-finite score of a successful query.
    """
    common = common_metrics(success, seconds)
    n = common["num_queries"]
    ok = _as_1d("success", success, dtype=bool)
    scores = _as_1d("scores", scores, n)
    correct = _as_1d("correct", correct, n, dtype=bool)
    if has_true_match is None:
        positives = n
    else:
        positives = int(np.count_nonzero(_as_1d("has_true_match", has_true_match, n, dtype=bool)))
    precision, recall, thresholds = precision_recall(scores[ok], correct[ok], num_positives=positives)
    perfect = recall[precision >= 1.0]
    metrics: dict[str, float] = {
        "num_queries": n,
        "num_failed": common["num_failed"],
        "pr_auc": average_precision(precision, recall),
        "recall_at_100_precision": 100.0 * float(perfect.max()) if perfect.size else 0.0,
        "recall_at_1": 100.0 * float(np.count_nonzero(correct & ok)) / positives if positives else 0.0,
        "time_per_query_ms": common["time_per_query_ms"],
    }
    return metrics, {"precision": precision, "recall": recall, "thresholds": thresholds}

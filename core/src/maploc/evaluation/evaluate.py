"""Evaluation of a run: ground truth x estimates -> metrics, per-query rows and curves.

:func:`evaluate` turns the query :class:`~maploc.types.Sample` s and the method's
:class:`~maploc.types.PoseEstimate` s into the errors of a metric family and calls the pure
functions of :mod:`maploc.evaluation.metrics`; :mod:`maploc.evaluation.report` writes the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from maploc.evaluation import metrics as _m

if TYPE_CHECKING:
    from maploc.types import PoseEstimate, Sample

__all__ = ["FAMILIES", "EvaluationResult", "evaluate", "truth_matrix"]

#: The metric families :func:`evaluate` knows, as named by ``Method.metric_family``.
FAMILIES: tuple[str, ...] = ("pose6dof", "se2", "retrieval", "sequence")


@attrs.frozen(kw_only=True)
class EvaluationResult:
    """What :func:`evaluate` returns.

    Attributes:
        metrics: flat ``name -> number`` (plain ``int`` / ``float``), units in the names; what
            ``metrics.json`` holds.
        rows: one ``dict`` per query, in query order, for ``results.csv`` (columns per family, see
            :func:`evaluate`).
        curves: named 1-D float64 arrays for plots: ``pose6dof``: ``translation_error_cm`` and
            ``rotation_error_deg`` (per query, failures ``+inf``); ``se2``: ``position_error_m`` and
            ``yaw_error_deg`` (same); ``retrieval``: ``n`` (``1..max N``) and ``recall_at_n``
            (percent); ``sequence``: ``precision``, ``recall`` (fractions) and ``thresholds``.
    """

    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    curves: dict[str, np.ndarray] = attrs.field(eq=False)


def _np(x: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _ok(estimate: PoseEstimate) -> bool:
    return bool(estimate.success)


def _check_lengths(queries: Sequence[Any], estimates: Sequence[Any]) -> None:
    if len(queries) != len(estimates):
        raise ValueError(f"got {len(queries)} queries but {len(estimates)} estimates")


def _pose_columns(prefix: str, pose: Any) -> dict[str, float]:
    """``{prefix}_qw..qz`` (rotation of ``T_cam2world``, w x y z) and ``{prefix}_tx..tz`` (metres)."""
    keys = [f"{prefix}_q{c}" for c in "wxyz"] + [f"{prefix}_t{c}" for c in "xyz"]
    if pose is None:
        return dict.fromkeys(keys, math.nan)
    values = np.r_[_np(pose.quaternion()).reshape(4), _np(pose.t).reshape(3)]
    return {k: float(v) for k, v in zip(keys, values)}


def _evaluate_pose6dof(queries: Sequence[Sample], estimates: Sequence[PoseEstimate]) -> EvaluationResult:
    from maploc.geometry.errors import pose_error

    n = len(queries)
    success = np.zeros(n, dtype=bool)
    r_err = np.full(n, np.inf)
    t_err = np.full(n, np.inf)
    for i, (q, e) in enumerate(zip(queries, estimates)):
        if q.T_cam2world is None:
            raise ValueError(f"query {q.name!r} has no ground-truth pose (T_cam2world)")
        success[i] = _ok(e) and e.T_cam2world is not None
        if success[i]:
            est, gt = e.T_cam2world, q.T_cam2world
            re, te = pose_error(est.R.double().cpu(), est.t.double().cpu(), gt.R.double().cpu(), gt.t.double().cpu())
            r_err[i], t_err[i] = float(_np(re)), float(_np(te))
    seconds = np.array([float(e.seconds) for e in estimates])
    metrics = _m.pose6dof_metrics(r_err, t_err, success, seconds)
    r_err = _m.failed_as_inf(r_err, success)
    t_err = _m.failed_as_inf(t_err, success)
    rows = []
    for i, (q, e) in enumerate(zip(queries, estimates)):
        rows.append({
            "name": q.name,
            "success": bool(success[i]),
            **_pose_columns("est", e.T_cam2world if success[i] else None),
            **_pose_columns("gt", q.T_cam2world),
            "rotation_error_deg": float(r_err[i]),
            "translation_error_cm": float(t_err[i]) * 100.0,
            "num_inliers": e.num_inliers,
            "confidence": e.confidence,
            "seconds": float(e.seconds),
        })
    curves = {"translation_error_cm": t_err * 100.0, "rotation_error_deg": r_err}
    return EvaluationResult(metrics=metrics, rows=rows, curves=curves)


def _yaw_error_deg(yaw_est: float, yaw_gt: float) -> float:
    """Absolute heading difference in degrees, wrapped to ``[0, 180]``."""
    return abs(math.degrees(math.remainder(yaw_est - yaw_gt, 2 * math.pi)))


def _evaluate_se2(queries: Sequence[Sample], estimates: Sequence[PoseEstimate]) -> EvaluationResult:
    n = len(queries)
    success = np.zeros(n, dtype=bool)
    p_err = np.full(n, np.inf)
    y_err = np.full(n, np.inf)
    rows = []
    for i, (q, e) in enumerate(zip(queries, estimates)):
        gt = q.pose2
        if gt is None:
            raise ValueError(f"query {q.name!r} has no ground-truth map pose (pose2)")
        est = e.pose2 if _ok(e) else None
        success[i] = est is not None
        if est is not None:
            p_err[i] = math.hypot(est.x - gt.x, est.y - gt.y)
            y_err[i] = _yaw_error_deg(est.yaw, gt.yaw)
        p_err[i], y_err[i] = _m.failed_as_inf([p_err[i], y_err[i]], [success[i]] * 2)
        rows.append({
            "name": q.name,
            "success": bool(success[i]),
            "est_x": est.x if est is not None else math.nan,
            "est_y": est.y if est is not None else math.nan,
            "est_yaw_deg": math.degrees(est.yaw) if est is not None else math.nan,
            "gt_x": gt.x,
            "gt_y": gt.y,
            "gt_yaw_deg": math.degrees(gt.yaw),
            "position_error_m": float(p_err[i]),
            "yaw_error_deg": float(y_err[i]),
            "confidence": e.confidence,
            "seconds": float(e.seconds),
        })
    seconds = np.array([float(e.seconds) for e in estimates])
    metrics = _m.se2_metrics(p_err, y_err, success, seconds)
    return EvaluationResult(metrics=metrics, rows=rows, curves={"position_error_m": p_err, "yaw_error_deg": y_err})


class _Positions:
    """Positions of samples: the camera centre ``T_cam2world.t`` (3-D, metres) when known, else the
    map position ``pose2.(x, y)`` (2-D, metres). Two samples are compared in 3-D when both have
    ``T_cam2world``, else in 2-D when both have ``pose2``."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        m = len(samples)
        self.xyz = np.full((m, 3), np.nan)
        self.xy = np.full((m, 2), np.nan)
        for i, s in enumerate(samples):
            if s.T_cam2world is not None:
                self.xyz[i] = _np(s.T_cam2world.t).reshape(3)
            if s.pose2 is not None:
                self.xy[i] = (s.pose2.x, s.pose2.y)
        self.has_xyz = ~np.isnan(self.xyz).any(axis=1)
        self.has_xy = ~np.isnan(self.xy).any(axis=1)
        self.names = [s.name for s in samples]

    def distances(self, query: Sample, indices: np.ndarray | None = None, strict: bool = True) -> np.ndarray:
        """Distances in metres from ``query`` to the samples ``indices`` (all by default).

        Raises:
            ValueError: if ``strict`` and the query and one of the samples share no kind of position
                (when not ``strict``, such a distance is ``inf``).
        """
        idx = np.arange(len(self.names)) if indices is None else np.asarray(indices, dtype=int)
        out = np.full(idx.shape[0], np.nan)
        if query.T_cam2world is not None:
            use = self.has_xyz[idx]
            q = _np(query.T_cam2world.t).reshape(3)
            out[use] = np.linalg.norm(self.xyz[idx[use]] - q, axis=1)
        if query.pose2 is not None:
            use = np.isnan(out) & self.has_xy[idx]
            out[use] = np.hypot(self.xy[idx[use], 0] - query.pose2.x, self.xy[idx[use], 1] - query.pose2.y)
        if not strict:
            return np.where(np.isnan(out), np.inf, out)
        if query.T_cam2world is None and query.pose2 is None:
            raise ValueError(f"query {query.name!r} has no ground-truth position (T_cam2world or pose2)")
        if np.isnan(out).any():
            j = idx[np.flatnonzero(np.isnan(out))[0]]
            raise ValueError(f"query {query.name!r} and map sample {self.names[j]!r} share no ground-truth position")
        return out


def _map_index(map_samples: Sequence[Sample] | None, family: str) -> dict[str, int]:
    if map_samples is None:
        raise ValueError(f"the {family!r} family needs map_samples")
    index: dict[str, int] = {}
    for i, s in enumerate(map_samples):
        index.setdefault(s.name, i)
    return index


def _retrieved(estimate: PoseEstimate, m: int, query: Sample) -> list[int]:
    """The ranked map indices of a successful estimate's ``retrieval`` (``[]`` for a failure)."""
    r = estimate.retrieval if _ok(estimate) else None
    if r is None:
        return []
    bad = [j for j in r.indices if j >= m]
    if bad:
        raise ValueError(f"query {query.name!r} retrieved map index {bad[0]}, but the map has {m} samples")
    return list(r.indices)


def _index_truth(queries: Sequence[Any], map_samples: Sequence[Any]) -> np.ndarray | None:
    """Index-based ground truth of place-recognition sets without metric poses: ``(Q, M)`` bool,
    ``True`` where map sample ``j`` shows the place of query ``i``; ``None`` when neither source
    exists. Sources: a map sample's ``matching_queries`` (query names, as
    :class:`maploc.data.two_pass.PlaceMeta` has) and a query's ``extras["true_map_indices"]``."""
    truth = np.zeros((len(queries), len(map_samples)), dtype=bool)
    found = False
    query_index = {q.name: i for i, q in enumerate(queries)}
    for j, s in enumerate(map_samples):
        names = getattr(s, "matching_queries", None)
        if names is not None:
            found = True
            for name in names:
                if name in query_index:
                    truth[query_index[name], j] = True
    for i, q in enumerate(queries):
        extras = getattr(q, "extras", None) or {}
        if "true_map_indices" in extras:
            found = True
            idx = np.asarray(list(extras["true_map_indices"]), dtype=int)
            if idx.size and (idx.min() < 0 or idx.max() >= len(map_samples)):
                raise ValueError(f"query {q.name!r}: true_map_indices outside 0..{len(map_samples) - 1}")
            truth[i, idx] = True
    return truth if found else None


def truth_matrix(queries: Sequence[Any], map_samples: Sequence[Any], distance_threshold_m: float) -> np.ndarray:
    """``(Q, M)`` bool: map sample ``j`` shows the place of query ``i``.

    True where the two positions (camera centres in 3-D when both have ``T_cam2world``, else map
    positions ``pose2`` in 2-D) are within ``distance_threshold_m`` metres, or where the dataset's
    index ground truth says so (``matching_queries`` of a map sample, ``extras["true_map_indices"]``
    of a query). A pair without a shared kind of position is not a match. This is the ground truth
    of the ``retrieval`` and ``sequence`` families and of their chance rows.
    """
    positions = _Positions(map_samples)
    truth = np.zeros((len(queries), len(map_samples)), dtype=bool)
    for i, q in enumerate(queries):
        if q.T_cam2world is not None or q.pose2 is not None:
            truth[i] = positions.distances(q, strict=False) <= distance_threshold_m
    index_truth = _index_truth(queries, map_samples)
    if index_truth is not None:
        truth |= index_truth
    return truth


def _evaluate_retrieval(
    queries: Sequence[Sample], estimates: Sequence[PoseEstimate], map_samples: Sequence[Sample] | None,
    distance_threshold_m: float, ns: Sequence[int],
) -> EvaluationResult:
    _map_index(map_samples, "retrieval")
    positions = _Positions(map_samples)  # type: ignore[arg-type]
    index_truth = _index_truth(queries, map_samples)  # type: ignore[arg-type]
    n = len(queries)
    retrieved = [_retrieved(e, len(map_samples), q) for q, e in zip(queries, estimates)]  # type: ignore[arg-type]
    success = np.array([_ok(e) and len(r) > 0 for e, r in zip(estimates, retrieved)], dtype=bool)
    k = max((len(r) for r in retrieved), default=0)
    hits = np.zeros((n, k), dtype=bool)
    rows = []
    for i, (q, e, r) in enumerate(zip(queries, estimates, retrieved)):
        if q.T_cam2world is None and q.pose2 is None and index_truth is None:
            raise ValueError(f"query {q.name!r} has no ground-truth position (T_cam2world or pose2)")
        d = positions.distances(q, np.asarray(r, dtype=int), strict=index_truth is None) if r else np.zeros(0)
        hits[i, : len(r)] = d <= distance_threshold_m
        if index_truth is not None and r:
            hits[i, : len(r)] |= index_truth[i, np.asarray(r, dtype=int)]
        first = np.flatnonzero(hits[i])
        rows.append({
            "name": q.name,
            "success": bool(success[i]),
            "top1": positions.names[r[0]] if r else "",
            "top1_distance_m": float(d[0]) if r else math.nan,
            "first_hit_rank": int(first[0]) + 1 if first.size else None,
            "confidence": e.confidence,
            "seconds": float(e.seconds),
        })
    seconds = np.array([float(e.seconds) for e in estimates])
    metrics = _m.retrieval_metrics(hits, success, seconds, ns=ns)
    max_n = max(int(x) for x in ns)
    curves = {"n": np.arange(1, max_n + 1, dtype=np.float64), "recall_at_n": _m.recall_at_n_curve(hits, success, max_n)}
    return EvaluationResult(metrics=metrics, rows=rows, curves=curves)


def _evaluate_sequence(
    queries: Sequence[Sample], estimates: Sequence[PoseEstimate], map_samples: Sequence[Sample] | None,
    distance_threshold_m: float, frame_tolerance: int | None, query_indices: Sequence[int] | None = None,
) -> EvaluationResult:
    _map_index(map_samples, "sequence")
    m = len(map_samples)  # type: ignore[arg-type]
    positions = _Positions(map_samples)  # type: ignore[arg-type]
    index_truth = _index_truth(queries, map_samples)  # type: ignore[arg-type]
    n = len(queries)
    success = np.zeros(n, dtype=bool)
    scores = np.full(n, np.nan)
    correct = np.zeros(n, dtype=bool)
    has_true = np.zeros(n, dtype=bool)
    rows = []
    for i, (q, e) in enumerate(zip(queries, estimates)):
        near_frame = (
            np.abs(np.arange(m) - (i if query_indices is None else int(query_indices[i]))) <= frame_tolerance
            if frame_tolerance is not None else np.zeros(m, dtype=bool)
        )
        # With a frame tolerance, a pair without positions is only matched by its frame index.
        distances = positions.distances(q, strict=frame_tolerance is None and index_truth is None)
        true = near_frame | (distances <= distance_threshold_m)
        if index_truth is not None:
            true = true | index_truth[i]
        has_true[i] = bool(true.any())
        r = _retrieved(e, m, q)
        if r:
            if e.confidence is None or not math.isfinite(float(e.confidence)):
                raise ValueError(f"query {q.name!r}: sequence evaluation needs a finite estimate.confidence")
            success[i] = True
            scores[i] = float(e.confidence)
            correct[i] = bool(true[r[0]])
        rows.append({
            "name": q.name,
            "success": bool(success[i]),
            "match": positions.names[r[0]] if r else "",
            "match_distance_m": float(distances[r[0]]) if r else math.nan,
            "correct": bool(correct[i]),
            "has_true_match": bool(has_true[i]),
            "confidence": e.confidence,
            "seconds": float(e.seconds),
        })
    seconds = np.array([float(e.seconds) for e in estimates])
    metrics, curves = _m.sequence_metrics(scores, correct, success, seconds, has_true_match=has_true)
    return EvaluationResult(metrics=metrics, rows=rows, curves=curves)


def evaluate(
    family: str,
    queries: Sequence[Sample],
    estimates: Sequence[PoseEstimate],
    *,
    map_samples: Sequence[Sample] | None = None,
    distance_threshold_m: float = 25.0,
    frame_tolerance: int | None = None,
    query_indices: Sequence[int] | None = None,
    recall_ns: Sequence[int] = _m.RETRIEVAL_NS,
) -> EvaluationResult:
    """Scores the estimates of a run against the queries' ground truth.

    Families (see :mod:`maploc.evaluation.metrics` for the metrics and the conventions):

    * ``pose6dof``: errors of ``estimate.T_cam2world`` against ``query.T_cam2world`` by
      :func:`maploc.geometry.errors.pose_error`. Rows: ``name``, ``success``, ``est_qw, est_qx,
      est_qy, est_qz, est_tx, est_ty, est_tz`` and the same with ``gt_`` (rotation of
      ``T_cam2world`` as a quaternion ``w, x, y, z``; camera position in metres; ``nan`` for a
      failed query), ``rotation_error_deg``, ``translation_error_cm`` (``inf`` when failed),
      ``num_inliers``, ``confidence``, ``seconds``.
    * ``se2``: ``estimate.pose2`` against ``query.pose2``: Euclidean position error (metres) and
      absolute wrapped yaw error (degrees). Rows: ``name``, ``success``, ``est_x, est_y,
      est_yaw_deg, gt_x, gt_y, gt_yaw_deg``, ``position_error_m``, ``yaw_error_deg``,
      ``confidence``, ``seconds``.
    * ``retrieval``: ``estimate.retrieval`` (map sample indices, best first); a retrieved
      item is a hit when within ``distance_threshold_m`` of the query. Rows: ``name``,
      ``success``, ``top1``, ``top1_distance_m``, ``first_hit_rank`` (1-based, empty without a
      hit), ``confidence``, ``seconds``.
    * ``sequence``: the best match ``estimate.retrieval.indices[0]`` with score ``estimate.confidence``;
      the match is correct when within ``distance_threshold_m`` of the query or, when
      ``frame_tolerance`` is given, when its index in ``map_samples`` is within
      ``frame_tolerance`` of the query's index in ``queries`` (traversals aligned frame by frame,
      as Nordland). The recall denominator is the number of queries with a true match in the map.
      Rows: ``name``, ``success``, ``match``, ``match_distance_m``, ``correct``,
      ``has_true_match``, ``confidence``, ``seconds``.

    Index-based ground truth (``retrieval``, ``sequence``; place-recognition sets without metric
    poses such as :mod:`maploc.data.two_pass`): a map sample whose metadata has
    ``matching_queries`` (query names) or a query with ``extras["true_map_indices"]`` also counts
    as a hit / true match; positions are then optional (a missing one never matches).

    Positions (``retrieval``, ``sequence``) are camera centres ``T_cam2world.t`` (3-D) when both
    samples have one, else map positions ``pose2.(x, y)`` (2-D). A query whose estimate has
    ``success=False`` (or, for ``pose6dof`` / ``se2``, no estimated pose; for ``retrieval`` /
    ``sequence``, no ``retrieval``) is a failure.

    Args:
        family: one of :data:`FAMILIES`.
        queries: the query samples with ground truth, in the order of ``estimates``.
        estimates: one estimate per query.
        map_samples: the reference samples (needed by ``retrieval`` and ``sequence``); their
            images are not used.
        distance_threshold_m: the distance in metres within which a map sample matches a query.
        frame_tolerance: ``sequence`` only: frames of index difference counted as a true match.
        query_indices: ``sequence`` with ``frame_tolerance``: each query's index in its whole query
            split (default ``0 .. Q-1``), so that a subset (one condition) is aligned as the whole.
        recall_ns: ``retrieval`` only: the ``N`` of ``recall_at_{N}``.

    Returns:
        The :class:`EvaluationResult`.

    Raises:
        ValueError: for an unknown family (listing the known ones), a query without the ground
            truth the family needs (naming it), a retrieved name that is not a map sample,
            missing ``map_samples``, or a different number of queries and estimates.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown metric family {family!r}; known families: {', '.join(FAMILIES)}")
    _check_lengths(queries, estimates)
    if family == "pose6dof":
        return _evaluate_pose6dof(queries, estimates)
    if family == "se2":
        return _evaluate_se2(queries, estimates)
    if family == "retrieval":
        return _evaluate_retrieval(queries, estimates, map_samples, distance_threshold_m, recall_ns)
    if query_indices is not None and len(query_indices) != len(queries):
        raise ValueError(f"got {len(queries)} queries but {len(query_indices)} query_indices")
    return _evaluate_sequence(queries, estimates, map_samples, distance_threshold_m, frame_tolerance, query_indices)

"""Scoring a run from its predictions files: the method, its variants and baselines, the reference
rows, per condition, on the run's test region. ``maploc run`` and ``maploc evaluate`` share it.

A run's ``predictions/`` folder holds ``manifest.json`` (:class:`Manifest`) and one
``<variant>.txt`` + ``<variant>.csv`` pair per variant (:mod:`maploc.evaluation.predictions`).
When the run folder holds ``split.json`` (a :class:`maploc.data.split.SpatialSplit` a method saved),
only the queries inside its test blocks are scored (position: ``pose2`` when the query has one,
else the ``x, y`` of its camera centre).

Metric names in ``metrics.json`` (flat):

* ``<metric>``: the method's own estimates over all scored queries (``recall_at_1``,
  ``median_translation_cm``, ...);
* ``<condition>/<metric>``: the same per query condition, when the queries have more than one;
* ``<row>:<metric>`` and ``<row>:<condition>/<metric>``: every other row: a variant or baseline the
  method contributed (``fused:``, ``road_snap:``, ``single_frame:``), and the reference rows the
  core computes from the ground truth: ``chance:`` (retrieval, sequence, SE(2)), ``prior:``
  (SE(2), when the method wrote its prior) and ``coverage:`` (6-DoF: distance to the nearest mapping
  camera, smallest angle to one, and the share of queries with a mapping camera within each pair of
  thresholds: the best pose retrieval could do), and ``admissible_chance:`` (SE(2)): when one of the
  run's predictions files (the method's or a variant's) carries, for every query, the exact expected
  recall of a uniform draw over the places a camera may be (e.g. road cells inside the prior region)
  as ``expected_recall_<d>m`` columns (percent) for every SE(2) distance threshold, their mean over the
  scored queries; its yaw recalls are those of a uniform yaw.
* retrieval with a second distance threshold: ``recall_at_<N>_within_<d>m`` beside ``recall_at_<N>``
  (which is within the primary threshold).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from maploc.errors import ConfigError, DataError
from maploc.evaluation import metrics as _m
from maploc.evaluation import reference as _ref
from maploc.evaluation.evaluate import EvaluationResult, evaluate, truth_matrix
from maploc.evaluation.predictions import PredictionsError, read_predictions, write_predictions
from maploc.files import atomic_write_text

__all__ = ["Manifest", "ScoreResult", "MANIFEST", "REFERENCE_ROWS", "SCORED_REGIONS", "write_run_predictions",
           "load_manifest", "score_run", "score_file", "format_tables", "query_xy", "load_split_file"]

#: the regions of a spatial split a run can be scored on: ``test`` (published figures) and ``val`` (choosing defaults).
SCORED_REGIONS = ("test", "val")

#: The manifest's file name inside ``RUN/predictions/``.
MANIFEST = "manifest.json"
#: Row names the core computes; a method's variant may not use them.
REFERENCE_ROWS = ("chance", "admissible_chance", "prior", "coverage")

#: The columns of the report tables, per family.
HEADLINE: dict[str, tuple[str, ...]] = {
    "pose6dof": ("num_queries", "num_failed", "median_translation_cm", "median_rotation_deg", "recall_5cm_1deg",
                 "recall_5cm_5deg", "recall_25cm_2deg", "recall_50cm_5deg", "recall_1m_5deg", "recall_5m_10deg"),
    "se2": ("num_queries", "median_position_error_m", "recall_1m", "recall_3m", "recall_5m", "median_yaw_error_deg",
            "recall_1deg", "recall_5deg"),
    "retrieval": ("num_queries", "recall_at_1", "recall_at_5", "recall_at_10", "recall_at_20"),
    "sequence": ("num_queries", "recall_at_1", "pr_auc", "recall_at_100_precision"),
}


@attrs.frozen(kw_only=True)
class Manifest:
    """What ``RUN/predictions/manifest.json`` records.

    Attributes:
        family: the metric family.
        method: the method's name (its own predictions are ``<method>.txt``).
        dataset: the dataset's entry-point name.
        num_queries: the run evaluated the first ``num_queries`` samples of the query split.
        distance_thresholds_m: retrieval / sequence: a map sample within the first threshold of a
            query matches it; further thresholds add ``recall_at_<N>_within_<d>m`` (retrieval).
        frame_tolerance: sequence only: frames of index difference counted as a match, or ``None``.
        variants: ``name -> {"baseline": bool, "description": str}`` of the further predictions.
    """

    family: str
    method: str
    dataset: str
    num_queries: int
    distance_thresholds_m: tuple[float, ...] = attrs.field(default=(25.0,), converter=lambda v: tuple(float(x) for x in v))
    frame_tolerance: int | None = None
    variants: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), indent=2) + "\n"


@attrs.frozen(kw_only=True)
class ScoreResult:
    """Everything scoring produced.

    Attributes:
        metrics: flat, as in the module docstring.
        rows: one row per scored query of the method's own predictions (``results.csv``), with the
            predictions CSV's extra columns.
        curves: the method's curves (see :class:`~maploc.evaluation.EvaluationResult`), plus
            ``chance_recall_at_n`` for retrieval.
        tables: the report text: one table per condition, rows = method, variants, baselines,
            reference rows.
    """

    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    curves: dict[str, np.ndarray] = attrs.field(eq=False)
    tables: str

    def evaluation_result(self) -> EvaluationResult:
        return EvaluationResult(metrics=self.metrics, rows=self.rows, curves=self.curves)


def load_manifest(pred_dir: str | os.PathLike[str]) -> Manifest:
    """Reads ``pred_dir/manifest.json``.

    Raises:
        PredictionsError: missing or malformed.
    """
    path = Path(pred_dir) / MANIFEST
    if not path.is_file():
        raise PredictionsError(f"{path} not found: is {Path(pred_dir).parent} a maploc run folder written by this version?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(**data)
    except (ValueError, TypeError) as e:
        raise PredictionsError(f"{path}: not a predictions manifest ({e})") from None


def write_run_predictions(
    pred_dir: str | os.PathLike[str], manifest: Manifest, query_names: Sequence[str], map_names: Sequence[str],
    estimates: Sequence[Any], variants: Mapping[str, Any], extra_columns: Sequence[Mapping[str, Any]] | None = None,
) -> Manifest:
    """Writes the method's predictions, its variants' and the manifest into ``pred_dir``.

    Args:
        pred_dir: ``RUN/predictions``.
        manifest: the manifest (its ``variants`` are filled in here).
        query_names: ``(Q,)`` evaluated queries in order.
        map_names: the map split's names.
        estimates: ``(Q,)`` the method's estimates.
        variants: ``name -> maploc.api.Variant``.
        extra_columns: ``(Q,)`` further CSV columns of the method's own predictions.

    Raises:
        ValueError: a variant named like the method or a reference row, a name that is not
            ``[a-z0-9_]``, or a variant with another number of estimates.
    """
    pred_dir = Path(pred_dir)
    pred_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(pred_dir / f"{manifest.method}.txt", manifest.family, query_names, estimates,
                      map_names=map_names, extra_columns=extra_columns)
    record: dict[str, dict[str, Any]] = {}
    for name, v in variants.items():
        if name == manifest.method or name in REFERENCE_ROWS or not name or not all(
                c.isascii() and (c.isalnum() or c == "_") for c in name) or name != name.lower():
            raise ValueError(f"variant name {name!r} must be [a-z0-9_] and not {manifest.method!r} or one of "
                             f"{', '.join(REFERENCE_ROWS)}")
        if len(v.estimates) != len(query_names):
            raise ValueError(f"variant {name!r} has {len(v.estimates)} estimates for {len(query_names)} queries")
        write_predictions(pred_dir / f"{name}.txt", manifest.family, query_names, v.estimates, map_names=map_names)
        record[name] = {"baseline": bool(v.baseline), "description": str(v.description)}
    manifest = attrs.evolve(manifest, variants=record)
    atomic_write_text(pred_dir / MANIFEST, manifest.to_json())
    return manifest


def query_xy(meta: Any) -> tuple[float, float]:
    """The map position of a sample for a spatial split: ``pose2`` (x, y) when known, else the x, y of
    its camera centre; ``(nan, nan)`` without either."""
    if getattr(meta, "pose2", None) is not None:
        return float(meta.pose2.x), float(meta.pose2.y)
    if getattr(meta, "T_cam2world", None) is not None:
        t = meta.T_cam2world.t.detach().cpu().double().reshape(3)
        return float(t[0]), float(t[1])
    return math.nan, math.nan


def _load_split(run_dir: Path | None) -> Any:
    from maploc.data.run_split import load_split

    return load_split(run_dir)


def load_split_file(path: str | os.PathLike[str]) -> Any:
    """The :class:`~maploc.data.split.SpatialSplit` saved in ``path`` (a run's ``split.json``):
    :func:`maploc.data.run_split.load_split_file`.

    Raises:
        DataError: the file is missing or is not a saved split (one line naming the file).
    """
    from maploc.data.run_split import load_split_file as load

    return load(path)


def _prefixed(row: str, condition: str | None, metrics: Mapping[str, float]) -> dict[str, float]:
    head = "" if row == "" else f"{row}:"
    mid = "" if condition is None else f"{condition}/"
    return {f"{head}{mid}{k}": v for k, v in metrics.items()}


def _score(family: str, queries: Sequence[Any], estimates: Sequence[Any], map_metas: Sequence[Any] | None,
           manifest: Manifest, indices: Sequence[int]) -> tuple[EvaluationResult, dict[str, float]]:
    thresholds = manifest.distance_thresholds_m
    result = evaluate(family, queries, estimates, map_samples=map_metas, distance_threshold_m=thresholds[0],
                      frame_tolerance=manifest.frame_tolerance,
                      query_indices=indices if family == "sequence" else None)
    metrics = dict(result.metrics)
    if family == "retrieval":
        for d in thresholds[1:]:
            extra = evaluate(family, queries, estimates, map_samples=map_metas, distance_threshold_m=d).metrics
            for n in _m.RETRIEVAL_NS:
                metrics[f"recall_at_{n}_within_{d:g}m"] = extra[f"recall_at_{n}"]
    elif family == "sequence":
        for d in thresholds[1:]:
            extra = evaluate(family, queries, estimates, map_samples=map_metas, distance_threshold_m=d,
                             frame_tolerance=manifest.frame_tolerance, query_indices=indices).metrics
            metrics[f"recall_at_1_within_{d:g}m"] = extra["recall_at_1"]
    return result, metrics


def _reference_rows(family: str, queries: Sequence[Any], map_metas: Sequence[Any] | None, manifest: Manifest,
                    csv_rows: Sequence[Mapping[str, str]], indices: Sequence[int]) -> dict[str, dict[str, float]]:
    """``row -> metrics`` of the reference rows for these queries (see the module docstring)."""
    out: dict[str, dict[str, float]] = {}
    n = len(queries)
    if n == 0:
        return out
    if family in ("retrieval", "sequence") and map_metas:
        m = len(map_metas)
        chance: dict[str, float] = {"num_queries": n}
        for k, d in enumerate(manifest.distance_thresholds_m):
            truth = truth_matrix(queries, map_metas, d)
            if family == "sequence" and manifest.frame_tolerance is not None:
                qi = np.asarray(indices, dtype=np.int64)[:, None]  # positions in the whole query split
                truth |= np.abs(np.arange(m)[None, :] - qi) <= manifest.frame_tolerance
            hits = truth.sum(axis=1)
            if family == "retrieval":
                values = _ref.random_ranking_recall(hits, m, _m.RETRIEVAL_NS)
                suffix = "" if k == 0 else f"_within_{d:g}m"
                for nn, v in zip(_m.RETRIEVAL_NS, values):
                    chance[f"recall_at_{nn}{suffix}"] = float(v)
            elif k == 0:
                p = _ref.random_match_precision(hits, m)
                chance["recall_at_1"] = p
                chance["pr_auc"] = p / 100.0
            else:
                chance[f"recall_at_1_within_{d:g}m"] = _ref.random_match_precision(hits, m)
        out["chance"] = chance
    elif family == "se2":
        prior = _prior_columns(csv_rows)
        if prior is not None:
            pxy, size, shape = prior
            gt = np.array([[q.pose2.x, q.pose2.y] for q in queries], dtype=np.float64)
            err = np.hypot(*(pxy - gt).T)
            row: dict[str, float] = {"num_queries": n}
            for d in _m.SE2_POSITION_THRESHOLDS_M:
                row[f"recall_{d:g}m"] = 100.0 * float(np.mean(err <= d))
            row["median_position_error_m"] = float(np.median(err))
            out["prior"] = row
            rec = _ref.uniform_region_recall(gt, pxy, size, _m.SE2_POSITION_THRESHOLDS_M, shape=shape)
            chance = {"num_queries": n}
            for d, v in zip(_m.SE2_POSITION_THRESHOLDS_M, rec):
                chance[f"recall_{d:g}m"] = float(v)
            chance["median_position_error_m"] = _ref.uniform_region_median(gt, pxy, size, shape=shape)
            for d, v in zip(_m.SE2_YAW_THRESHOLDS_DEG, _ref.yaw_chance_recall(_m.SE2_YAW_THRESHOLDS_DEG)):
                chance[f"recall_{d:g}deg"] = float(v)
            chance["median_yaw_error_deg"] = 90.0
            out["chance"] = chance
    elif family == "pose6dof" and map_metas:
        posed = [s for s in map_metas if s.T_cam2world is not None]
        if posed and all(q.T_cam2world is not None for q in queries):
            def arrays(samples: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
                R = np.stack([s.T_cam2world.R.detach().cpu().double().numpy().reshape(3, 3) for s in samples])
                t = np.stack([s.T_cam2world.t.detach().cpu().double().numpy().reshape(3) for s in samples])
                return R, t
            qR, qt = arrays(queries)
            mR, mt = arrays(posed)
            trans, rot = _ref.coverage_errors(qR, qt, mR, mt)
            # a map entry of the query's own name is the query itself (leave-one-out splits): never coverage
            same = np.array([[q.name == m.name for m in posed] for q in queries], dtype=bool)
            trans[same], rot[same] = np.inf, np.inf
            out["coverage"] = _ref.coverage_metrics(trans, rot, _m.POSE6DOF_THRESHOLDS)
    return out


def _admissible_chance(rows: Sequence[Mapping[str, str]]) -> dict[str, float]:
    """The ``admissible_chance`` row: the mean of the per-query exact expected recalls a method wrote
    (``expected_recall_<d>m``, percent) and the recalls of a uniform yaw."""
    row: dict[str, float] = {"num_queries": len(rows)}
    for d in _m.SE2_POSITION_THRESHOLDS_M:
        row[f"recall_{d:g}m"] = float(np.mean([float(r[f"expected_recall_{d:g}m"]) for r in rows]))
    for d, v in zip(_m.SE2_YAW_THRESHOLDS_DEG, _ref.yaw_chance_recall(_m.SE2_YAW_THRESHOLDS_DEG)):
        row[f"recall_{d:g}deg"] = float(v)
    row["median_yaw_error_deg"] = 90.0
    return row


def _prior_columns(rows: Sequence[Mapping[str, str]]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The SE(2) prior of every query from the predictions CSV, or ``None`` when the method wrote none."""
    if not rows or not all(r.get("prior_x_m") not in (None, "") for r in rows):
        return None
    shape = "disk" if all(r.get("prior_radius_m") not in (None, "") for r in rows) else "square"
    key = "prior_radius_m" if shape == "disk" else "prior_halfwidth_m"
    if not all(r.get(key) not in (None, "") for r in rows):
        return None
    pxy = np.array([[float(r["prior_x_m"]), float(r["prior_y_m"])] for r in rows])
    size = np.array([float(r[key]) for r in rows])
    return pxy, size, shape


def score_run(
    pred_dir: str | os.PathLike[str], query_metas: Sequence[Any], map_metas: Sequence[Any] | None, *,
    manifest: Manifest | None = None, run_dir: str | os.PathLike[str] | None = None,
    split: Any = None, distance_thresholds_m: Sequence[float] | None = None, region: str = "test",
) -> ScoreResult:
    """Scores every predictions file of a run.

    Args:
        pred_dir: ``RUN/predictions``.
        query_metas: the query split's metadata (at least ``manifest.num_queries`` entries; the
            first ``num_queries`` are the run's queries).
        map_metas: the map split's metadata (``retrieval``, ``sequence``, ``pose6dof`` coverage).
        manifest: default: read from ``pred_dir``.
        run_dir: where ``split.json`` may be (default: ``pred_dir``'s parent).
        split: score on this :class:`~maploc.data.split.SpatialSplit` (or the path of a saved one)
            instead of the run's own ``split.json`` (``maploc bench`` scores every run of a dataset on
            the same test blocks; ``maploc evaluate RUN --split FILE``).
        distance_thresholds_m: retrieval / sequence: replace the manifest's thresholds (metres; the
            first is the primary one), so that runs of different methods are scored alike.
        region: ``test`` (the figures to publish) or ``val``: score the queries in the split's
            validation blocks instead (never trained on either; the figures to choose defaults on,
            leaving the test blocks for the final ones). Without a split every query is scored.

    Returns:
        The :class:`ScoreResult` (``num_queries_outside_<region>_region`` in its metrics when a split
        applies).

    Raises:
        PredictionsError: a file that cannot be scored (names the file and line).
        DataError: fewer queries than the run evaluated, a broken ``split.json``, or no query in the
            region's blocks.
        ConfigError: ``region`` is neither ``test`` nor ``val``.
    """
    if region not in SCORED_REGIONS:
        raise ConfigError(f"region must be one of {', '.join(SCORED_REGIONS)}, got {region!r}")
    pred_dir = Path(pred_dir)
    manifest = manifest or load_manifest(pred_dir)
    if distance_thresholds_m is not None:
        thresholds = tuple(float(d) for d in distance_thresholds_m)
        if not thresholds or not all(math.isfinite(d) and d > 0 for d in thresholds):
            raise DataError(f"distance thresholds must be positive metres, got {list(distance_thresholds_m)}")
        manifest = attrs.evolve(manifest, distance_thresholds_m=thresholds)
    run_dir = Path(run_dir) if run_dir is not None else pred_dir.parent
    if len(query_metas) < manifest.num_queries:
        raise DataError(f"the run scored {manifest.num_queries} queries but the dataset has {len(query_metas)}: "
                        "is it the same dataset, data root and options as the run's?")
    queries_all = list(query_metas)[: manifest.num_queries]
    names = [q.name for q in queries_all]
    map_names = [m.name for m in map_metas] if map_metas is not None else None
    family = manifest.family
    if split is None:
        split = _load_split(run_dir)
    elif isinstance(split, (str, os.PathLike)):
        split = load_split_file(split)
    keep = np.ones(len(queries_all), dtype=bool)
    extra_metrics: dict[str, float] = {}
    if split is not None:
        xy = np.array([query_xy(q) for q in queries_all], dtype=np.float64).reshape(-1, 2)
        keep = np.asarray(split.mask(xy, region, guarded=region == "test"), dtype=bool)  # every val-block query
        extra_metrics[f"num_queries_outside_{region}_region"] = int(np.count_nonzero(~keep))
        if not keep.any():
            raise DataError(f"none of the {len(queries_all)} queries lies in a {region} block of "
                            f"{run_dir / 'split.json'}")
    idx = np.flatnonzero(keep)
    queries = [queries_all[i] for i in idx]
    conditions = sorted({q.condition for q in queries})
    groups: list[tuple[str | None, list[int]]] = [(None, list(range(len(queries))))]
    if len(conditions) > 1:
        groups += [(c, [k for k, q in enumerate(queries) if q.condition == c]) for c in conditions]

    order = [(manifest.method, "")] + [(v, v) for v in manifest.variants]
    metrics: dict[str, float] = {}
    main_result: EvaluationResult | None = None
    main_csv: list[dict[str, str]] = []
    expected_csv: list[dict[str, str]] | None = None  # the rows carrying expected_recall_<d>m (SE(2))
    table_rows: list[tuple[str, str]] = []  # (row label, metric prefix)
    for file_name, row in order:
        estimates_all, csv_rows = read_predictions(pred_dir / f"{file_name}.txt", family, names, map_names=map_names)
        estimates = [estimates_all[i] for i in idx]
        rows_kept = [csv_rows[i] for i in idx]
        if family == "se2" and expected_csv is None and rows_kept and all(
                r.get(f"expected_recall_{d:g}m") not in (None, "") for r in rows_kept
                for d in _m.SE2_POSITION_THRESHOLDS_M):
            expected_csv = rows_kept
        for condition, members in groups:
            result, values = _score(family, [queries[k] for k in members], [estimates[k] for k in members],
                                    map_metas, manifest, [int(idx[k]) for k in members])
            metrics.update(_prefixed(row, condition, values))
            if row == "" and condition is None:
                main_result = result
                main_csv = rows_kept
        kind = " (baseline)" if row and manifest.variants[row].get("baseline") else ""
        table_rows.append((f"{row or manifest.method}{kind}", row))
    assert main_result is not None
    for condition, members in groups:
        refs = _reference_rows(family, [queries[k] for k in members], map_metas, manifest,
                               [main_csv[k] for k in members], [int(idx[k]) for k in members])
        for ref_row, values in refs.items():
            metrics.update(_prefixed(ref_row, condition, values))
        if expected_csv is not None and members:
            metrics.update(_prefixed("admissible_chance", condition,
                                     _admissible_chance([expected_csv[k] for k in members])))
    for ref_row in REFERENCE_ROWS:
        if any(k.startswith(f"{ref_row}:") for k in metrics):
            table_rows.append((f"{ref_row} (reference)", ref_row))
    metrics.update(extra_metrics)

    rows = []
    for r, extra in zip(main_result.rows, main_csv):
        merged = dict(r)
        merged.update({k: v for k, v in extra.items() if k not in merged})
        rows.append(merged)
    curves = dict(main_result.curves)
    if family == "retrieval" and map_metas:
        truth = truth_matrix(queries, map_metas, manifest.distance_thresholds_m[0])
        max_n = len(curves["n"])
        curves["chance_recall_at_n"] = _ref.random_ranking_recall(truth.sum(axis=1), len(map_metas),
                                                                  list(range(1, max_n + 1)))
    tables = format_tables(family, metrics, table_rows, [c for c, _ in groups], manifest)
    return ScoreResult(metrics=metrics, rows=rows, curves=curves, tables=tables)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def format_tables(family: str, metrics: Mapping[str, float], table_rows: Sequence[tuple[str, str]],
                  conditions: Sequence[str | None], manifest: Manifest) -> str:
    """One text table per condition (``all`` first): rows = method, variants, baselines, reference
    rows; columns = the family's headline metrics (units in the names)."""
    columns = list(HEADLINE[family])
    if family == "retrieval":
        columns += [f"recall_at_{n}_within_{d:g}m" for d in manifest.distance_thresholds_m[1:] for n in (1, 5)]
    elif family == "sequence":
        columns += [f"recall_at_1_within_{d:g}m" for d in manifest.distance_thresholds_m[1:]]
    out = []
    for condition in conditions:
        mid = "" if condition is None else f"{condition}/"
        body = [["row", *columns]]
        for label, row in table_rows:
            head = "" if row == "" else f"{row}:"
            cells = [_cell(metrics.get(f"{head}{mid}{c}")) for c in columns]
            if any(c != "-" for c in cells[1:]):
                body.append([label, *cells])
        widths = [max(len(r[k]) for r in body) for k in range(len(columns) + 1)]
        lines = ["  ".join(c.ljust(widths[k]) if k == 0 else c.rjust(widths[k]) for k, c in enumerate(r)) for r in body]
        title = "all scored queries" if condition is None else f"condition {condition}"
        out.append(f"-- {title} --\n" + "\n".join(lines))
    unit = {"retrieval": "recall in percent of queries",
            "sequence": "recall in percent of queries with a true match; pr_auc a fraction",
            "se2": "recall in percent", "pose6dof": "recall in percent"}[family]
    head = f"{family}: {unit}"
    if family in ("retrieval", "sequence"):
        head += f"; a match is a map sample within {manifest.distance_thresholds_m[0]:g} m"
    for region in SCORED_REGIONS:
        if f"num_queries_outside_{region}_region" in metrics:
            what = "test" if region == "test" else "validation (for choosing defaults, not for publishing)"
            head += (f"; scored: the queries in the {what} blocks of the spatial split "
                     f"({int(metrics[f'num_queries_outside_{region}_region'])} queries outside them not scored)")
    return head + "\n" + "\n\n".join(out)


def score_file(
    path: str | os.PathLike[str], family: str, query_metas: Sequence[Any], map_metas: Sequence[Any] | None, *,
    distance_thresholds_m: Sequence[float] = (25.0,), frame_tolerance: int | None = None, split: Any = None,
    region: str = "test",
) -> ScoreResult:
    """Scores a single predictions file (``maploc evaluate --predictions FILE``) over every query of
    the split: a manifest is made up for it (the file's stem as the method name)."""
    path = Path(path)
    manifest = Manifest(family=family, method=path.stem, dataset="", num_queries=len(query_metas),
                        distance_thresholds_m=tuple(distance_thresholds_m), frame_tolerance=frame_tolerance)
    return score_run(path.parent, query_metas, map_metas, manifest=manifest, run_dir=path.parent, split=split,
                     region=region)

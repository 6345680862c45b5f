"""Predictions files: what a method estimated, in the field's formats, and the only input of scoring.

``maploc run`` / ``maploc eval`` write every method's estimates to ``RUN/predictions/`` and then
score those files (:mod:`maploc.evaluation.scoring`); ``maploc evaluate RUN`` scores them again
without the method's plugin. One variant (the method's own output, a fused output or a baseline)
is one pair of files:

``<variant>.txt`` (one format per metric family; ``#`` lines and blank lines are ignored)

* ``pose6dof``: ``name qw qx qy qz tx ty tz`` per localized query: the **world-to-camera** pose
  (``R_world2cam`` as a unit quaternion, w first; ``t_world2cam`` in metres), the format of hloc and
  of the Long-Term Visual Localization benchmark (Sattler et al., CVPR 2018). A failed query has no
  line.
* ``retrieval`` and ``sequence``: ``query_name map_name score`` per retrieved map sample, ranked
  best first within each query (hloc's pairs format plus the score; higher is better). For
  ``sequence`` the first line of a query is its match and its score the match confidence.
* ``se2``: ``name x_m y_m yaw_deg`` per localized query, in the map frame (x east, y north, yaw
  counter-clockwise from x).

``<variant>.csv`` beside it (optional for files from other tools): one row per evaluated query,
columns ``name``, ``success`` (``true`` / ``false``), ``seconds``, ``confidence``,
``num_inliers`` and any further scalar columns (a method's ``PoseEstimate.extras``; for SE(2)
also ``prior_x_m``, ``prior_y_m``, ``prior_radius_m`` when the method had a position prior). A
query without a line in the ``.txt`` counts as a failure only when the CSV says ``success=false``;
otherwise it is an error.

Floats are written with ``repr`` (shortest round-trip form), so that reading a file back gives the
very numbers that were written and re-scoring reproduces ``metrics.json`` exactly.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maploc.errors import DataError
from maploc.files import atomic_write

if TYPE_CHECKING:
    from maploc.types import PoseEstimate

__all__ = [
    "COLUMNS", "PredictionsError", "infer_family", "read_predictions", "write_predictions",
    "QUATERNION_TOLERANCE",
]

#: Columns of a ``.txt`` line per metric family.
COLUMNS: dict[str, tuple[str, ...]] = {
    "pose6dof": ("name", "qw", "qx", "qy", "qz", "tx", "ty", "tz"),
    "retrieval": ("query_name", "map_name", "score"),
    "sequence": ("query_name", "map_name", "score"),
    "se2": ("name", "x_m", "y_m", "yaw_deg"),
}

#: A quaternion whose norm differs from 1 by more than this is an error (it is normalised otherwise).
QUATERNION_TOLERANCE = 1e-3

#: CSV columns the core reads back (the rest are informative).
_CORE_CSV = ("name", "success", "seconds", "confidence", "num_inliers")


class PredictionsError(DataError):
    """A predictions file that cannot be scored; the message names the file and the line."""


def _fmt(value: float) -> str:
    return repr(float(value))


def _scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str)) and not isinstance(value, bytes)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


def write_predictions(
    path: str | os.PathLike[str], family: str, query_names: Sequence[str], estimates: Sequence[PoseEstimate],
    *, map_names: Sequence[str] | None = None, extra_columns: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[Path, Path]:
    """Writes ``<path>`` (the ``.txt`` of the family's format) and the ``.csv`` beside it, atomically.

    Args:
        path: the ``.txt`` file.
        family: ``pose6dof``, ``retrieval``, ``sequence`` or ``se2``.
        query_names: ``(Q,)`` the query names, in the order of ``estimates``.
        estimates: ``(Q,)`` one estimate each: ``T_cam2world`` (``pose6dof``), ``pose2`` (``se2``) or
            ``retrieval`` (map indices and scores; ``retrieval`` / ``sequence``).
        map_names: the map split's sample names (``retrieval`` / ``sequence``: indices -> names).
        extra_columns: ``(Q,)`` further CSV columns per query (e.g. the SE(2) prior).

    Returns:
        The ``.txt`` and ``.csv`` paths.

    Raises:
        ValueError: an unknown family, lengths that differ, a retrieval index outside the map, or
            a successful estimate without the output its family needs.
    """
    if family not in COLUMNS:
        raise ValueError(f"unknown metric family {family!r}; known: {', '.join(COLUMNS)}")
    if len(query_names) != len(estimates):
        raise ValueError(f"{len(query_names)} query names but {len(estimates)} estimates")
    if extra_columns is not None and len(extra_columns) != len(estimates):
        raise ValueError(f"{len(extra_columns)} extra-column rows but {len(estimates)} estimates")
    txt = Path(path)
    lines: list[str] = []
    rows: list[dict[str, Any]] = []
    for i, (name, e) in enumerate(zip(query_names, estimates)):
        if any(c.isspace() for c in name) or not name:
            raise ValueError(f"query name {name!r} is empty or holds whitespace; it cannot be written in a predictions file")
        ok = bool(e.success)
        if ok and family == "pose6dof":
            if e.T_cam2world is None:
                ok = False
            else:
                T = e.T_cam2world.inverse()  # world -> camera
                q = T.quaternion().detach().cpu().double().reshape(4).tolist()
                t = T.t.detach().cpu().double().reshape(3).tolist()
                lines.append(" ".join([name, *(_fmt(v) for v in q), *(_fmt(v) for v in t)]))
        elif ok and family == "se2":
            if e.pose2 is None:
                ok = False
            else:
                lines.append(f"{name} {_fmt(e.pose2.x)} {_fmt(e.pose2.y)} {_fmt(math.degrees(e.pose2.yaw))}")
        elif ok:  # retrieval, sequence
            r = e.retrieval
            if r is None or len(r) == 0:
                ok = False
            else:
                if map_names is None:
                    raise ValueError(f"family {family!r} needs map_names to write retrieved map samples")
                scores = r.scores or (0.0,) * len(r)
                for j, s in zip(r.indices, scores):
                    if j >= len(map_names):
                        raise ValueError(f"query {name!r} retrieved map index {j}, but the map has {len(map_names)} samples")
                    lines.append(f"{name} {map_names[j]} {_fmt(s)}")
        row: dict[str, Any] = {
            "name": name, "success": ok, "seconds": float(e.seconds),
            "confidence": None if e.confidence is None else float(e.confidence),
            "num_inliers": e.num_inliers,
        }
        for k, v in (e.extras or {}).items():
            if _scalar(v) and k not in row:
                row[k] = v
        if extra_columns is not None:
            for k, v in extra_columns[i].items():
                row[k] = v
        rows.append(row)
    with atomic_write(txt, "w") as f:
        f.write(f"# maploc predictions ({family}): {' '.join(COLUMNS[family])}\n")
        f.write("\n".join(lines) + ("\n" if lines else ""))
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    csv_path = txt.with_suffix(".csv")
    with atomic_write(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return txt, csv_path


def infer_family(path: str | os.PathLike[str]) -> str:
    """The metric family of a ``.txt`` predictions file: from maploc's header line, else from the
    column count of its first line (8: ``pose6dof``, 4: ``se2``, 3: ``retrieval``).

    Raises:
        PredictionsError: an unreadable file, or a first line of another column count.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                text = line.strip()
                if text.startswith("# maploc predictions (") and ")" in text:
                    family = text[len("# maploc predictions ("):text.index(")")]
                    if family in COLUMNS:
                        return family
                if not text or text.startswith("#"):
                    continue
                n = len(text.split())
                family = {8: "pose6dof", 4: "se2", 3: "retrieval"}.get(n)
                if family is None:
                    raise PredictionsError(
                        f"{path}:{number}: {n} columns; expected 8 (pose6dof: name qw qx qy qz tx ty tz), "
                        "4 (se2: name x_m y_m yaw_deg) or 3 (retrieval: query_name map_name score)")
                return family
    except (OSError, UnicodeDecodeError) as e:
        raise PredictionsError(f"{path}: cannot be read ({e})") from None
    raise PredictionsError(f"{path}: holds no prediction line; cannot tell its format (pass --family)")


def _float(path: Path, number: int, text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PredictionsError(f"{path}:{number}: column {column!r} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise PredictionsError(f"{path}:{number}: column {column!r} is {text}; predictions must be finite")
    return value


def _read_csv(path: Path, known: Mapping[str, int]) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "name" not in reader.fieldnames or "success" not in reader.fieldnames:
                raise PredictionsError(f"{path}:1: the header must have the columns 'name' and 'success'")
            out: dict[str, dict[str, str]] = {}
            for number, row in enumerate(reader, 2):
                name = row.get("name") or ""
                if name not in known:
                    raise PredictionsError(f"{path}:{number}: query {name!r} is not a query of this dataset")
                if name in out:
                    raise PredictionsError(f"{path}:{number}: query {name!r} appears twice")
                if row.get("success") not in ("true", "false"):
                    raise PredictionsError(f"{path}:{number}: success is {row.get('success')!r}; write true or false")
                out[name] = row
            return out
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PredictionsError(f"{path}: cannot be read ({e})") from None


def _optional_float(row: Mapping[str, str], key: str) -> float | None:
    v = row.get(key, "")
    if v in ("", None):
        return None
    try:
        return float(v)
    except ValueError:
        return None


def read_predictions(
    path: str | os.PathLike[str], family: str, query_names: Sequence[str], *,
    map_names: Sequence[str] | None = None,
) -> tuple[list[PoseEstimate], list[dict[str, str]]]:
    """Reads a predictions file (and its CSV) back into one estimate per expected query.

    Args:
        path: the ``.txt`` file.
        family: its metric family.
        query_names: ``(Q,)`` the queries to score, in order (every one must have a line, or a CSV
            row with ``success=false``).
        map_names: the map split's names (``retrieval`` / ``sequence``).

    Returns:
        ``(estimates, csv_rows)``: estimates in the order of ``query_names`` (a missing query
        written as failed is ``PoseEstimate.failed``); the CSV rows in the same order (``{}``
        where the CSV has none or there is no CSV).

    Raises:
        PredictionsError: naming the file and the line: a wrong column count, a query or map name the
            dataset does not have, a query twice (pose/SE(2)), a non-number or non-finite value, a
            quaternion whose norm is off by more than :data:`QUATERNION_TOLERANCE`, a CSV that says
            ``success=false`` for a query with a line, or a query with neither a line nor a failed
            CSV row.
    """
    import torch

    from maploc.types import Pose, Pose2, PoseEstimate, Retrieval

    if family not in COLUMNS:
        raise PredictionsError(f"unknown metric family {family!r}; known: {', '.join(COLUMNS)}")
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path}: predictions file not found")
    known = {n: i for i, n in enumerate(query_names)}
    map_index = {n: j for j, n in enumerate(map_names or ())}
    ncol = len(COLUMNS[family])
    parsed: dict[str, Any] = {}
    line_of: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PredictionsError(f"{path}: cannot be read ({e})") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split()
        if len(cols) != ncol:
            raise PredictionsError(
                f"{path}:{number}: {len(cols)} columns, expected {ncol} for {family} ({' '.join(COLUMNS[family])})")
        name = cols[0]
        if name not in known:
            raise PredictionsError(f"{path}:{number}: query {name!r} is not a query of this dataset (or of this run's query set)")
        if family in ("retrieval", "sequence"):
            if cols[1] not in map_index:
                raise PredictionsError(f"{path}:{number}: map sample {cols[1]!r} is not in the dataset's map split")
            entry = parsed.setdefault(name, ([], []))
            entry[0].append(map_index[cols[1]])
            entry[1].append(_float(path, number, cols[2], "score"))
            line_of.setdefault(name, number)
            continue
        if name in parsed:
            raise PredictionsError(f"{path}:{number}: query {name!r} appears twice (first on line {line_of[name]})")
        values = [_float(path, number, c, COLUMNS[family][k + 1]) for k, c in enumerate(cols[1:])]
        if family == "pose6dof":
            norm = math.sqrt(sum(v * v for v in values[:4]))
            if abs(norm - 1.0) > QUATERNION_TOLERANCE:
                raise PredictionsError(
                    f"{path}:{number}: quaternion norm {norm:.6g} is not 1 (tolerance {QUATERNION_TOLERANCE:g}); "
                    "write a unit quaternion qw qx qy qz")
            q = torch.tensor(values[:4], dtype=torch.float64) / norm
            t = torch.tensor(values[4:], dtype=torch.float64)
            parsed[name] = Pose.from_quaternion(q, t).inverse()  # world->camera file, camera->world inside
        else:
            parsed[name] = Pose2(x=values[0], y=values[1], yaw=math.radians(values[2]))
        line_of[name] = number
    csv_path = path.with_suffix(".csv")
    rows = _read_csv(csv_path, known)
    estimates: list[PoseEstimate] = []
    out_rows: list[dict[str, str]] = []
    for name in query_names:
        row = rows.get(name, {})
        success_csv = row.get("success")
        seconds = _optional_float(row, "seconds") or 0.0
        confidence = _optional_float(row, "confidence")
        inliers = _optional_float(row, "num_inliers")
        num_inliers = None if inliers is None else int(inliers)
        if name in parsed:
            if success_csv == "false":
                raise PredictionsError(
                    f"{csv_path}: query {name!r} is written as failed but {path.name} line {line_of[name]} holds a prediction")
            value = parsed[name]
            if family == "pose6dof":
                e = PoseEstimate(T_cam2world=value, seconds=seconds, confidence=confidence, num_inliers=num_inliers)
            elif family == "se2":
                e = PoseEstimate(pose2=value, seconds=seconds, confidence=confidence, num_inliers=num_inliers)
            else:
                idx, scores = value
                conf = confidence if confidence is not None else scores[0]
                e = PoseEstimate(retrieval=Retrieval(indices=idx, scores=scores), seconds=seconds, confidence=conf,
                                 num_inliers=num_inliers)
        elif success_csv == "false":
            e = PoseEstimate.failed(seconds)
        else:
            where = f"{csv_path.name} says success=true" if success_csv == "true" else "it has no row in a CSV beside it"
            raise PredictionsError(
                f"{path}: query {name!r} has no prediction line and {where}; a method writes a failed query as "
                "success=false in the CSV")
        estimates.append(e)
        out_rows.append(dict(row))
    return estimates, out_rows

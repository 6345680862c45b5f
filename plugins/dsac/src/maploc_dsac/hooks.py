"""maploc hooks of the DSAC* plugin (entry point ``maploc.hooks: maploc-dsac``).

* :func:`maploc_report_sections`: after a ``dsac`` run, prints the per-stage training summary
  (``training_stages.json``), the classical reference's metrics (``classical_metrics.json``) and
  DSAC*'s metrics on its own mapping frames (``map_views_metrics.json``), all written by
  :meth:`maploc_dsac.method.DSACMethod.plots`, below the DSAC* table.
* :func:`maploc_engine_callbacks`: for a ``dsac`` run, a callback that writes
  ``training_stages.json`` when training ends (also for ``maploc train``, which makes no plots).

This module is imported by every ``maploc`` command: it imports neither torch nor the method.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maploc.hookspecs import hookimpl

__all__ = ["maploc_report_sections", "maploc_engine_callbacks", "StageInfoWriter", "METHOD_NAMES"]

#: Methods of this plugin whose runs get the sections below.
METHOD_NAMES = ("dsac",)


class StageInfoWriter:
    """Engine callback: writes ``<run_dir>/training_stages.json`` (``method.stage_summary()``) on rank 0
    when training ends."""

    def __init__(self, run_dir: Path, method: Any) -> None:
        self.run_dir = Path(run_dir)
        self.method = method

    def on_train_end(self, engine: Any, step: int) -> None:
        if not engine.is_global_zero or not hasattr(self.method, "stage_summary"):
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "training_stages.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.method.stage_summary(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


@hookimpl
def maploc_engine_callbacks(run_dir: Path, method: Any, args: Any) -> list[Any] | None:
    if getattr(method, "name", None) in METHOD_NAMES:
        return [StageInfoWriter(run_dir, method)]
    return None


def _stage_lines(data: Mapping[str, Any]) -> str:
    lines = []
    for stage, info in data.get("stages", {}).items():
        lines.append(
            f"{stage:<13} steps {info['first_step']}-{info['last_step']} ({info['steps']}), lr {info['lr']:.3g}, "
            f"loss {info['loss_first']:.4g} -> {info['loss_last']:.4g}, {info['images']} images, "
            f"{info.get('wall_seconds', 0.0):.1f} s ({info['seconds']:.1f} s in forward+loss)"
        )
    return "\n".join(lines)


def _from_json(values: Mapping[str, Any]) -> dict[str, float]:
    """Undoes ``write_metrics_json``'s ``null`` for non-finite values: a median is ``inf`` when there
    were queries (at least half of them failed), ``nan`` otherwise; any other ``null`` is ``nan``."""
    n = values.get("num_queries") or 0
    out = {}
    for k, v in values.items():
        out[k] = (math.inf if k.startswith("median_") and n > 0 else math.nan) if v is None else v
    return out


@hookimpl
def maploc_report_sections(run_dir: Path, metrics: Mapping[str, float], method_name: str) -> list[tuple[str, str]] | None:
    if method_name not in METHOD_NAMES:
        return None
    run_dir = Path(run_dir)
    sections: list[tuple[str, str]] = []
    stages = run_dir / "training_stages.json"
    if stages.is_file():
        try:
            text = _stage_lines(json.loads(stages.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            text = ""
        if text:
            sections.append(("DSAC* training stages", text))
    titles = {
        "classical_metrics.json": "Classical reference (SIFT to the mapping frames + depth, cv2.solvePnPRansac) "
        "on the same queries",
        "map_views_metrics.json": "DSAC* on the mapping frames (its own training views: a sanity check, not a result)",
    }
    for name, title in titles.items():
        path = run_dir / name
        if path.is_file():
            from maploc.evaluation.report import format_metrics_table

            values = _from_json(json.loads(path.read_text(encoding="utf-8")))
            sections.append((title, format_metrics_table(values)))
    return sections

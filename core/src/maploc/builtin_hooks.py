"""The core's own hook implementations, registered through the core's ``maploc.hooks`` entry point
(``maploc-builtins``) exactly like a third-party plugin's."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maploc.hookspecs import hookimpl


class JsonlLogger:
    """Engine callback: appends training/validation scalars to ``<run_dir>/metrics.jsonl`` (rank 0)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _write(self, engine: Any, record: dict[str, Any]) -> None:
        if not engine.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_batch_end(
        self, engine: Any, step: int, epoch: int, loss: float, scalars: Mapping[str, float] | None = None
    ) -> None:
        record = {"step": step, "epoch": epoch, "train/loss": loss}
        record.update({f"train/{k}": v for k, v in (scalars or {}).items()})
        self._write(engine, record)

    def on_validation_end(self, engine: Any, step: int, metrics: Mapping[str, float]) -> None:
        self._write(engine, {"step": step, **{f"val/{k}": v for k, v in metrics.items()}})


@hookimpl
def maploc_addoption(parser: argparse.ArgumentParser, command: str) -> None:
    if command in ("run", "train"):
        group = parser.add_argument_group("logging (maploc-builtins)")
        group.add_argument(
            "--no-tensorboard", action="store_true", help="do not write TensorBoard event files (metrics.jsonl is kept)"
        )


@hookimpl
def maploc_engine_callbacks(run_dir: Path, method: Any, context: Any) -> list[Any]:
    return [JsonlLogger(Path(run_dir) / "metrics.jsonl")]


@hookimpl
def maploc_report_sections(run_dir: Path, metrics: Mapping[str, float], method_name: str) -> list[tuple[str, str]]:
    files = sorted({p.name for p in Path(run_dir).iterdir()} | {"report.txt"}) if Path(run_dir).is_dir() else []
    return [("Run directory", f"{run_dir}\n" + "  ".join(files))]

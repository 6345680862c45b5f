"""Running a suite: resolve and check every job, run each through the core's runner (or reuse a finished
run with the same resolved config), score every run from its predictions files, write the reports.

Run folders: ``BENCH/runs/<dataset>/<method>/seed-<N>`` (a normal ``maploc run`` folder: ``maploc
evaluate`` and ``maploc eval`` work on it); the method's own output: ``BENCH/logs/<same>.log``;
the scores: ``BENCH/scores/<same>/`` (what ``maploc evaluate RUN --out`` writes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from maploc.bench.report import Record, write_reports
from maploc.bench.suite import Job, Suite, plan_jobs
from maploc.errors import DataError, MaplocError

__all__ = ["resolve_job", "is_reusable", "run_suite", "BenchResult"]

#: The keys of a run's ``config.yaml`` that must equal the job's for the run to be reused.
_COMPARED = ("method", "preset", "dataset", "data_root", "config")


@attrs.frozen
class BenchResult:
    """``records``: the scored runs; ``skipped``: jobs left out (and why); ``failed``: jobs that raised."""

    records: list[Record]
    skipped: list[str]
    failed: list[str]


def resolve_job(job: Job) -> dict[str, Any]:
    """What the run's ``config.yaml`` will hold (the keys compared for reuse, and ``seed``), computed as
    :func:`maploc.engine.runner.execute` does, without running anything.

    Raises:
        PluginError: an uninstalled method or dataset (naming the installed ones), a plugin that cannot run here.
        ConfigError: an unknown preset, override key or dataset option (naming the valid ones), a bad value.
        DataError: a data root that does not exist or is not laid out as the dataset expects, or a dataset
            without a sample and no data root.
    """
    from maploc.config import (
        DataConfig,
        dump_yaml,
        resolve_config,
        structure_dataset_options,
        unstructure,
        with_dataset_defaults,
    )
    from maploc.plugins import check_runtime, find_entry_point, load_component

    entry = find_entry_point("methods", job.method)
    method_cls = entry.load()
    check_runtime(entry, method_cls)
    config = resolve_config(method_cls.Config, method_cls.presets_package, job.preset, list(job.overrides))
    dataset_cls = load_component("datasets", job.dataset)
    config = with_dataset_defaults(config, getattr(method_cls, "dataset_defaults", {}), job.dataset)
    data_cfg = getattr(config, "data", None) or DataConfig()
    options = structure_dataset_options(dataset_cls, data_cfg.options)
    if job.data_root is not None:
        if not job.data_root.exists():
            raise DataError(f"data root {job.data_root} of dataset {job.dataset_label!r} does not exist")
        _open_dataset(dataset_cls, job.data_root, data_cfg.image_height, options)
    if job.data_root is None and getattr(dataset_cls, "needs_root", True) and not getattr(
            dataset_cls, "default_sample", None):
        raise DataError(f"dataset {job.dataset!r} has no default sample; give data_root in the suite")
    saved = {"method": job.method, "preset": job.preset, "dataset": job.dataset,
             "data_root": str(job.data_root) if job.data_root else None, "config": unstructure(config)}
    normalised = yaml.safe_load(dump_yaml(saved))  # as config.yaml will read back (tuples -> lists)
    normalised["seed"] = job.seed
    return normalised


_opened: dict[tuple[Any, ...], None] = {}


def _open_dataset(dataset_cls: Any, root: Path, image_height: Any, options: Any) -> None:
    """Opens the query split of a dataset on disk (its layout is checked; no image is read), once per
    dataset, root, image height and options.

    Raises:
        DataError: a folder that is not laid out as the dataset expects.
    """
    key = (dataset_cls, str(root), image_height, repr(options))
    if key not in _opened:
        dataset_cls(root, "query", image_height=image_height, options=options)
        _opened[key] = None


def is_reusable(run_dir: Path, expected: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds a finished run (scores and predictions written) whose saved
    ``config.yaml`` equals ``expected`` (:func:`resolve_job`) in method, preset, dataset, data root,
    the whole method config and the seed."""
    cfg = run_dir / "config.yaml"
    if not (cfg.is_file() and (run_dir / "metrics.json").is_file() and (run_dir / "predictions" / "manifest.json").is_file()):
        return False
    try:
        saved = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    if not isinstance(saved, dict):
        return False
    if any(saved.get(k) != expected.get(k) for k in _COMPARED):
        return False
    return (saved.get("engine") or {}).get("seed") == expected["seed"]


def _headline(metrics: dict[str, float], family: str) -> str:
    from maploc.evaluation.scoring import HEADLINE

    for key in HEADLINE.get(family, ())[1:]:
        if key.startswith("num_"):
            continue
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            return f"{key} {value:.4g}"
    return ""


def run_suite(
    suite: Suite, out: Path, *, seeds: Sequence[int] | None = None, skip_missing: bool = False,
    device: str = "cpu", say: Callable[[str], None] = print,
) -> BenchResult:
    """Checks every job (before any run), runs or reuses each, scores each from its predictions files,
    and writes ``out/results.csv``, ``out/report.md`` and ``out/index.html``.

    A run that raises is reported (one line) and the others go on; Ctrl-C stops after writing the
    reports of the runs finished so far (they are reused by the next call) and re-raises.

    Raises:
        ConfigError, PluginError, DataError: a bad job, before any run (unless ``skip_missing``).
        KeyboardInterrupt: after the reports of the finished runs were written.
    """
    import shutil

    from maploc.engine import EngineConfig
    from maploc.engine.runner import RunSpec, check_run_dir, evaluate_predictions, execute
    from maploc.evaluation.scoring import load_manifest

    planned, skipped = plan_jobs(suite, seeds=seeds, skip_missing=skip_missing, resolve=resolve_job)
    check_run_dir(out)
    for line in skipped:
        say(f"skipped: {line}")
    records: list[Record] = []
    failed: list[str] = []
    total = len(planned)
    try:
        for i, (job, expected) in enumerate(planned, 1):
            run_dir = out / "runs" / job.key
            log_path = out / "logs" / f"{job.key}.log"
            t0 = time.perf_counter()
            what = f"[{i}/{total}] {job.method_label} on {job.dataset_label}, seed {job.seed}"
            if is_reusable(run_dir, expected):
                status = "reused"
            else:
                if run_dir.exists():
                    shutil.rmtree(run_dir)  # unfinished, or another config: run it again
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(log_path, "w", encoding="utf-8") as log:
                    def tee(s: str, log: Any = log) -> None:
                        log.write(s + "\n")
                        log.flush()

                    try:
                        execute(RunSpec(method=job.method, dataset=job.dataset, data_root=job.data_root,
                                        preset=job.preset, overrides=job.overrides, out=run_dir,
                                        engine=EngineConfig(accelerator=device, seed=job.seed, progress=False)),
                                say=tee)
                    except Exception as e:  # noqa: BLE001 - one failed run must not stop the suite
                        from maploc.engine.engine import TrainingInterrupted

                        if isinstance(e, TrainingInterrupted):  # Ctrl-C while training
                            raise KeyboardInterrupt from e
                        line = str(e).splitlines()[0] if str(e) else type(e).__name__
                        tee(f"FAILED: {type(e).__name__}: {line}")
                        failed.append(f"{job.key}: {type(e).__name__}: {line} (log: {log_path})")
                        say(f"{what}: FAILED after {time.perf_counter() - t0:.1f} s: {type(e).__name__}: {line}")
                        continue
                status = "ran"
            try:
                scored = evaluate_predictions(run_dir=run_dir, out=out / "scores" / job.key, say=lambda s: None)
                manifest = load_manifest(run_dir / "predictions")
            except MaplocError as e:
                failed.append(f"{job.key}: scoring failed: {e}")
                say(f"{what}: {status}, but scoring its predictions failed: {e}")
                continue
            records.append(Record(job=job, family=manifest.family, metrics=dict(scored.metrics),
                                  variants=dict(manifest.variants), run_dir=run_dir))
            say(f"{what}: {status} in {time.perf_counter() - t0:.1f} s; {_headline(scored.metrics, manifest.family)}")
    finally:
        write_reports(suite, out, records, skipped=skipped, failed=failed)
    return BenchResult(records=records, skipped=skipped, failed=failed)

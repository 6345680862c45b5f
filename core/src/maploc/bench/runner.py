"""Running a suite: resolve and check every job, run each through the core's runner (or reuse a finished
run with the same resolved config), score every run from its predictions files, write the reports.

Run folders: ``BENCH/runs/<dataset>/<method>/seed-<N>`` (a normal ``maploc run`` folder: ``maploc
evaluate`` and ``maploc eval`` work on it); the method's own output: ``BENCH/logs/<same>.log``;
the scores: ``BENCH/scores/<same>/`` (what ``maploc evaluate RUN --out`` writes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from maploc.bench.report import Record, write_reports
from maploc.bench.suite import Job, Suite, plan_jobs
from maploc.errors import DataError, MaplocError

__all__ = ["resolve_job", "is_reusable", "run_suite", "shared_splits", "BenchResult"]

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


def _is_finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run: its scores and its predictions' manifest are written."""
    return (run_dir / "metrics.json").is_file() and (run_dir / "predictions" / "manifest.json").is_file()


def is_reusable(run_dir: Path, expected: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds a finished run (scores and predictions written) whose saved
    ``config.yaml`` equals ``expected`` (:func:`resolve_job`) in method, preset, dataset, data root,
    the whole method config and the seed."""
    cfg = run_dir / "config.yaml"
    if not (cfg.is_file() and _is_finished(run_dir)):
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
    device: str = "cpu", say: Callable[[str], None] = print, region: str = "test", score_only: bool = False,
) -> BenchResult:
    """Checks every job (before any run), runs or reuses each, scores each from its predictions files,
    and writes ``out/results.csv``, ``out/report.md`` and ``out/index.html``.

    Scoring comes after every run: on a dataset whose runs saved a spatial split (``split.json``: the
    learned methods hold test blocks out of training), every run of that dataset, the untrained ones
    included, is scored on the test blocks of that one split, so that every row counts the same
    queries (suite key ``shared_split``, default on). Runs that saved different splits are not
    comparable: each is then scored on its own, and the report lists the dataset under the failures.

    ``region="val"`` scores the same runs on the validation blocks of those splits instead, into
    ``out/val/`` (``results.csv``, ``report.md``, ``index.html``, ``scores/``): the figures to choose
    defaults on, so that the test blocks are scored once for the figures that are published.

    ``score_only`` runs nothing: it scores the finished runs already in ``out/runs`` (even where the
    suite's resolved config has changed since, which the log says) and lists the missing ones as skipped.

    A run that raises is reported (one line) and the others go on; Ctrl-C stops the runs, scores and
    reports the ones finished so far (they are reused by the next call) and re-raises.

    Raises:
        ConfigError, PluginError, DataError: a bad job, before any run (unless ``skip_missing``).
        KeyboardInterrupt: after the reports of the finished runs were written.
    """
    from maploc.bench.suite import dataset_scoring

    planned, skipped = plan_jobs(suite, seeds=seeds, skip_missing=skip_missing, resolve=resolve_job)
    from maploc.engine.runner import check_run_dir

    check_run_dir(out)
    for line in skipped:
        say(f"skipped: {line}")
    finished: list[tuple[Job, Path, str]] = []
    failed: list[str] = []
    records: list[Record] = []
    try:
        if score_only:
            skipped = [*skipped, *_finished_jobs(planned, out, say, finished)]
        else:
            _run_jobs(planned, out, device, say, finished, failed)
    finally:
        target = out if region == "test" else out / region
        records = _score_jobs(finished, target, dataset_scoring(suite), say, failed, region=region)
        write_reports(suite, target, records, skipped=skipped, failed=failed, region=region)
    return BenchResult(records=records, skipped=skipped, failed=failed)


def _finished_jobs(planned: Sequence[tuple[Job, Any]], out: Path, say: Callable[[str], None],
                   finished: list[tuple[Job, Path, str]]) -> list[str]:
    """``--score-only``: appends the finished runs of ``planned`` to ``finished`` (``"kept"``); returns a
    line per job without a finished run."""
    missing = []
    for job, expected in planned:
        run_dir = out / "runs" / job.key
        if not _is_finished(run_dir):
            missing.append(f"{job.key}: no finished run in {run_dir} (--score-only runs nothing)")
            continue
        if not is_reusable(run_dir, expected):
            say(f"{job.key}: its config.yaml differs from the suite's resolved config now; scored as it ran")
        finished.append((job, run_dir, "kept"))
    return missing


def _run_jobs(planned: Sequence[tuple[Job, Any]], out: Path, device: str, say: Callable[[str], None],
              finished: list[tuple[Job, Path, str]], failed: list[str]) -> None:
    """Runs (or reuses) every job, appending ``(job, run_dir, "ran"|"reused")`` to ``finished``."""
    import json
    import shutil

    from maploc.engine import EngineConfig
    from maploc.engine.runner import RunSpec, execute

    total = len(planned)
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
        finished.append((job, run_dir, status))
        try:
            own = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
            family = json.loads((run_dir / "predictions" / "manifest.json").read_text(encoding="utf-8"))["family"]
            headline = _headline(own, family)
        except (OSError, ValueError, KeyError, TypeError):
            headline = ""
        note = " (on its own split.json)" if (run_dir / "split.json").is_file() else ""
        say(f"{what}: {status} in {time.perf_counter() - t0:.1f} s" + (f"; {headline}{note}" if headline else ""))


def _split_dict(run_dir: Path) -> dict[str, Any] | None:
    import json

    path = run_dir / "split.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def shared_splits(finished: Sequence[tuple[Job, Path, str]], scoring: Mapping[str, Any]) -> tuple[
        dict[str, Path], list[str]]:
    """``(dataset label -> the split.json every run of it is scored on, problems)``: for each dataset with
    ``shared_split``, the split its runs saved when they all saved the same one (compared as saved);
    a dataset whose runs saved different splits is left out and named in ``problems``."""
    by_dataset: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for job, run_dir, _ in finished:
        rule = scoring.get(job.dataset_label)
        if rule is not None and not rule.shared_split:
            continue
        saved = _split_dict(run_dir)
        if saved is not None:
            by_dataset.setdefault(job.dataset_label, []).append((run_dir / "split.json", saved))
    shared: dict[str, Path] = {}
    problems: list[str] = []
    for label, found in by_dataset.items():
        first_path, first = found[0]
        other = next(((p, d) for p, d in found[1:] if d != first), None)
        if other is None:
            shared[label] = first_path
        else:
            problems.append(f"{label}: the runs saved different spatial splits ({first_path} and {other[0]}), so "
                            "their rows count different queries; each run was scored on its own split (give the "
                            "methods the same split options, or set shared_split: false to accept this)")
    return shared, problems


def _score_jobs(finished: Sequence[tuple[Job, Path, str]], out: Path, scoring: Mapping[str, Any],
                say: Callable[[str], None], failed: list[str], region: str = "test") -> list[Record]:
    """Scores every finished run from its predictions files (on its dataset's shared split and radii, on the
    split's ``region`` blocks)."""
    from maploc.engine.runner import evaluate_predictions
    from maploc.evaluation.scoring import load_manifest

    shared, problems = shared_splits(finished, scoring)
    failed.extend(problems)
    for label, path in shared.items():
        say(f"scoring every run on {label} on the {region} blocks of {path}")
    records = []
    for job, run_dir, _ in finished:
        rule = scoring.get(job.dataset_label)
        try:
            scored = evaluate_predictions(
                run_dir=run_dir, out=out / "scores" / job.key, say=lambda s: None,
                split=shared.get(job.dataset_label), region=region,
                distance_thresholds_m=rule.distance_thresholds_m if rule is not None else None)
            manifest = load_manifest(run_dir / "predictions")
        except MaplocError as e:
            failed.append(f"{job.key}: scoring failed: {e}")
            say(f"{job.key}: scoring its predictions failed: {e}")
            continue
        records.append(Record(job=job, family=manifest.family, metrics=dict(scored.metrics),
                              variants=dict(manifest.variants), run_dir=run_dir))
    return records

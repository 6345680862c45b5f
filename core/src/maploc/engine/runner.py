"""One run of any method: resolve the config, get the data, train, build the map, localize, evaluate.

This is what ``maploc run`` / ``train`` / ``eval`` call; it can be used from Python as well::

    from maploc.engine.runner import RunSpec, execute
    result = execute(RunSpec(method="nn-retrieval", dataset="synthetic-room", out=Path("runs/x")))
    print(result.metrics["median_translation_cm"])

A run directory holds ``config.yaml`` (enough to repeat the run with ``maploc run --config``),
``metrics.json``, ``results.csv``, plots, ``report.txt``, ``metrics.jsonl`` (training scalars),
``tensorboard/`` and ``checkpoints/``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from maploc.config import DataConfig, apply_overrides, dump_yaml, resolve_config, structure, unstructure
from maploc.engine.engine import Engine, EngineConfig, FitResult
from maploc.errors import ConfigError, DataError, MaplocError
from maploc.plugins import get_plugin_manager, load_component

__all__ = ["RunSpec", "RunResult", "execute", "load_run_config", "default_run_dir", "RUN_DIR_ENV"]

log = logging.getLogger(__name__)

#: Set by the first process so that DDP worker processes (started later by Fabric's launcher with
#: the same command line) write into the same run directory.
RUN_DIR_ENV = "MAPLOC_RUN_DIR"

STAGES = ("fit", "map", "localize")


@attrs.frozen(kw_only=True)
class RunSpec:
    """Everything that defines a run (what ``config.yaml`` stores, plus where to write).

    Attributes:
        method: method entry-point name.
        dataset: dataset entry-point name (``None``: the method's ``default_dataset``).
        data_root: dataset folder (``None``: fetch the dataset's default sample).
        preset: config preset name.
        overrides: ``key=value`` overrides applied on top of the preset (or of ``base_config``).
        base_config: a full method config (plain mapping) to start from instead of the preset,
            e.g. the ``config`` section of a saved ``config.yaml``.
        out: the run directory (``None``: ``runs/<method>-<timestamp>``).
        engine: devices / precision / seed.
        resume: a checkpoint to continue training from.
        checkpoint: weights to evaluate (``maploc eval``); training is skipped.
        stages: which of ``fit``, ``map``, ``localize`` to run (``localize`` includes evaluation).
    """

    method: str
    dataset: str | None = None
    data_root: Path | None = None
    preset: str = "default"
    overrides: tuple[str, ...] = ()
    base_config: Mapping[str, Any] | None = None
    out: Path | None = None
    engine: EngineConfig = EngineConfig()
    resume: Path | None = None
    checkpoint: Path | None = None
    stages: tuple[str, ...] = STAGES


@attrs.frozen
class RunResult:
    run_dir: Path
    metrics: dict[str, float]
    fit: FitResult | None
    report: str


def default_run_dir(method: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{method}-{stamp}"


def load_run_config(path: Path) -> dict[str, Any]:
    """Reads a run's ``config.yaml``.

    Raises:
        ConfigError: missing or malformed file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"run config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or "method" not in data:
        raise ConfigError(f"{path} is not a maploc run config (no 'method' key)")
    return data


def _resolve_data_root(dataset_cls: Any, data_root: Path | None, say: Callable[[str], None]) -> Path:
    if data_root is None and not getattr(dataset_cls, "needs_root", True):
        return Path(".")
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.exists():
            raise DataError(f"data root {root} does not exist (check --data-root)")
        return root
    sample = getattr(dataset_cls, "default_sample", None)
    if not sample:
        raise DataError(
            f"dataset {dataset_cls.name!r} has no default sample; pass --data-root PATH to your copy of it"
        )
    from maploc.data.fetch import fetch, is_fetched

    if not is_fetched(sample):
        say(f"Fetching the sample data {sample!r} (first use only) ...")
    return fetch(sample, progress=say)


def _make_dataset(dataset_cls: Any, root: Path, split: str, data_cfg: DataConfig) -> Any:
    return dataset_cls(root, split, image_height=data_cfg.image_height)


def execute(
    spec: RunSpec, *, args: Any = None, say: Callable[[str], None] = print, extra_plugins: Sequence[Any] = ()
) -> RunResult:
    """Runs the stages of ``spec`` and writes the run directory.

    With ``engine.devices > 1`` and ``strategy='ddp'`` Fabric starts the other processes by
    re-running the same command; only rank 0 maps, localizes, evaluates and writes reports.

    Raises:
        PluginError: unknown method or dataset, or one that fails to import.
        ConfigError: bad preset, override, engine option.
        DataError: missing or malformed data.
        CheckpointError: unreadable checkpoint.
        TrainingError: a non-finite loss.
    """
    pm = get_plugin_manager(extra_plugins=extra_plugins)
    method_cls = load_component("methods", spec.method)
    if spec.base_config is not None:
        config = structure(method_cls.Config, spec.base_config)
        config = apply_overrides(config, list(spec.overrides)) if spec.overrides else config
    else:
        config = resolve_config(method_cls.Config, method_cls.presets_package, spec.preset, list(spec.overrides))
    dataset_name = spec.dataset or method_cls.default_dataset
    dataset_cls = load_component("datasets", dataset_name)

    env_dir = os.environ.get(RUN_DIR_ENV)
    run_dir = Path(spec.out) if spec.out else Path(env_dir) if env_dir else default_run_dir(spec.method)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by DDP processes started below
    first_process = "LOCAL_RANK" not in os.environ or os.environ.get("LOCAL_RANK") == "0"
    root = _resolve_data_root(dataset_cls, spec.data_root, say if first_process else (lambda s: None))

    method = method_cls(config)
    callbacks: list[Any] = []
    for group in pm.hook.maploc_engine_callbacks(run_dir=run_dir, method=method, args=args):
        callbacks.extend(group or [])
    loggers: list[Any] = []
    if not getattr(args, "no_tensorboard", False):
        from lightning_fabric.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version=""))
    engine = Engine(spec.engine, run_dir, callbacks=callbacks, loggers=loggers)
    engine.launch()

    if engine.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        saved = {
            "maploc_version": __import__("maploc").__version__,
            "method": spec.method,
            "preset": spec.preset,
            "dataset": dataset_name,
            "data_root": str(spec.data_root) if spec.data_root else None,
            "engine": unstructure(spec.engine),
            "config": unstructure(config),
        }
        _atomic_write(run_dir / "config.yaml", dump_yaml(saved))
    engine.barrier()

    data_cfg = getattr(config, "data", None) or DataConfig()
    method.model = method.configure_model()
    if spec.checkpoint is not None:
        from maploc.engine.checkpoint import load_checkpoint
        from maploc.errors import CheckpointError

        ckpt = load_checkpoint(spec.checkpoint)
        if ckpt.get("method") != spec.method:
            raise CheckpointError(f"{spec.checkpoint} holds method {ckpt.get('method')!r}, not {spec.method!r}")
        if method.model is None:
            raise CheckpointError(f"method {spec.method!r} has no model to load {spec.checkpoint} into")
        try:
            method.model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{spec.checkpoint} does not fit this model: {str(e).splitlines()[0]}") from None

    # Open every split this run needs before training: a broken map or query split (a missing
    # calibration file, a count mismatch) is reported at once, not after the training time.
    training = "fit" in spec.stages and spec.checkpoint is None and method.trains
    mapping = "map" in spec.stages or "localize" in spec.stages
    train_data = _make_dataset(dataset_cls, root, "train", data_cfg) if training else None
    map_data = _make_dataset(dataset_cls, root, "map", data_cfg) if mapping else None
    query_data = _make_dataset(dataset_cls, root, "query", data_cfg) if "localize" in spec.stages else None

    fit_result = None
    if training:
        engine.resume_from = spec.resume
        fit_result = method.fit(engine, train_data, None)
        if engine.is_global_zero and fit_result is not None:
            say(
                f"Trained {fit_result.steps} steps in {fit_result.seconds:.1f} s "
                f"({fit_result.samples_per_second:.1f} samples/s), final loss {fit_result.last_loss:.4g}; "
                f"checkpoint {fit_result.checkpoint}"
            )
    if not engine.is_global_zero:
        return RunResult(run_dir=run_dir, metrics={}, fit=fit_result, report="")

    metrics: dict[str, float] = {}
    report = ""
    if method.model is not None:
        method.model = method.model.to(engine.device).eval()
    if map_data is not None:
        t0 = time.perf_counter()
        method.build_map(map_data)
        say(f"Built the map from {len(map_data)} images in {time.perf_counter() - t0:.1f} s")
    if query_data is not None:
        assert map_data is not None
        metrics, report = _localize_and_evaluate(
            method, map_data, query_data, data_cfg, run_dir, pm, engine.config.progress
        )
        say(report)
    return RunResult(run_dir=run_dir, metrics=metrics, fit=fit_result, report=report)


def _localize_and_evaluate(
    method: Any, map_data: Any, query_data: Any, data_cfg: DataConfig, run_dir: Path, pm: Any, progress: bool
) -> tuple[dict[str, float], str]:
    from tqdm.auto import tqdm

    from maploc.evaluation import evaluate, format_metrics_table, write_report

    n = len(query_data)
    if data_cfg.max_queries is not None:
        n = min(n, data_cfg.max_queries)
    if n == 0:
        raise DataError(f"the query split of {query_data!r} is empty")
    queries = [query_data[i] for i in range(n)]
    estimates: list[Any] = []
    batch_size = max(1, int(method.localize_batch_size))
    bar = tqdm(total=n, desc=f"localize {method.name}", unit="query", disable=not progress, dynamic_ncols=True)
    for start in range(0, n, batch_size):
        batch = queries[start : start + batch_size]
        t0 = time.perf_counter()
        out = method.localize(batch)
        elapsed = (time.perf_counter() - t0) / len(batch)
        if len(out) != len(batch):
            raise MaplocError(f"{method.name}.localize returned {len(out)} estimates for {len(batch)} queries")
        estimates.extend(e if e.seconds > 0 else attrs.evolve(e, seconds=elapsed) for e in out)
        bar.update(len(batch))
    bar.close()

    distance = getattr(getattr(method.config, "eval", None), "distance_threshold_m", 25.0)
    map_samples = None
    if method.metric_family in ("retrieval", "sequence"):
        map_samples = [map_data[i] for i in range(len(map_data))]
    result = evaluate(method.metric_family, queries, estimates, map_samples=map_samples, distance_threshold_m=distance)
    metrics = dict(result.metrics)
    for extra in pm.hook.maploc_extra_metrics(
        family=method.metric_family, queries=queries, estimates=estimates, metrics=dict(metrics)
    ):
        for k, v in (extra or {}).items():
            if k in metrics:
                raise MaplocError(f"a maploc.hooks plugin contributes metric {k!r}, which already exists")
            metrics[k] = v
    result = attrs.evolve(result, metrics=metrics)
    write_report(run_dir, result, method.metric_family, f"{method.name} on {type(query_data).__name__}")
    method.plots(run_dir, query_data, estimates)
    sections = [("Metrics", format_metrics_table(metrics))]
    for group in pm.hook.maploc_report_sections(run_dir=run_dir, metrics=metrics, method_name=method.name):
        sections.extend(group or [])
    report = "\n\n".join(f"== {title} ==\n{body}" for title, body in sections)
    _atomic_write(run_dir / "report.txt", report + "\n")
    return metrics, report


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

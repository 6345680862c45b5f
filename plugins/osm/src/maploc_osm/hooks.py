"""maploc-osm's hook module (entry point ``maploc.hooks: maploc-osm``): adds ``maploc data show``.

Cheap to import: the OSM reader, OpenCV and matplotlib are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maploc.commands import Command
from maploc.hookspecs import hookimpl

__all__ = ["maploc_commands"]


def _add_show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "map",
        metavar="MAP",
        help="a sample name (e.g. helsinki-osm, fetched on first use) or the path of an .osm.pbf / .osm / "
        ".osm.bz2 file (or of a folder holding one)",
    )
    parser.add_argument("--out", type=Path, default=Path("map.png"), help="the PNG to write (default: map.png)")
    parser.add_argument(
        "--resolution", type=float, default=0.5, metavar="M", help="metres per pixel of the raster (default: 0.5)"
    )


def _run_show(args: argparse.Namespace) -> int:
    import math

    from maploc.errors import ConfigError, DataError

    if not (math.isfinite(args.resolution) and args.resolution > 0):
        raise ConfigError(f"--resolution must be a positive number of metres, got {args.resolution}")
    out = Path(args.out)
    _check_writable(out)
    from .render import show_sample_map

    try:
        written = show_sample_map(args.map, out=out, resolution_m=args.resolution)
    except OSError as exc:  # the picture could not be written after all (disk full, permissions changed)
        raise DataError(f"{out}: cannot write the picture: {exc.strerror or exc}") from None
    except ValueError as exc:  # a raster larger than MAX_PIXELS at this resolution
        raise ConfigError(str(exc)) from None
    print(f"wrote {written}  (map data © OpenStreetMap contributors, ODbL 1.0)")
    return 0


def _check_writable(out: Path) -> None:
    """Fails before any work when ``out`` cannot be written (a folder, a parent that is a file, no permission)."""
    import os

    from maploc.errors import ConfigError

    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the path of a .png file")
    parent = out.parent if str(out.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: folder {existing} is not writable")


@hookimpl
def maploc_commands() -> list[Command]:
    return [
        Command(
            path=("data", "show"),
            help="draw an OSM map (sample name or .osm.pbf/.osm/.osm.bz2 path) as a class raster PNG",
            description="Parse an OpenStreetMap map, rasterize its classes (areas, ways, points) and save a picture "
            "with axes in metres, a legend and the OpenStreetMap attribution.",
            add_arguments=_add_show_arguments,
            run=_run_show,
        )
    ]

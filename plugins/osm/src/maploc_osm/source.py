"""Finding the OSM file of a map given by the user: a file path, a folder holding one, or a sample name."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from maploc.errors import DataError

__all__ = ["OSM_SUFFIXES", "is_osm_path", "resolve_map"]

#: File name endings read by :func:`~.parser.parse_osm` (pyosmium chooses the format by the suffix).
OSM_SUFFIXES: tuple[str, ...] = (".osm.pbf", ".osm", ".osm.bz2", ".osm.gz", ".pbf")


def is_osm_path(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` looks like a file path rather than a sample name (an OSM suffix or a path separator)."""
    text = os.fspath(name)
    return text.lower().endswith(OSM_SUFFIXES) or os.sep in text or "/" in text


def resolve_map(
    map_name: str | os.PathLike[str], *, progress: bool | Callable[[str], None] | None = False
) -> Path:
    """The OSM file of a map: a path to an OSM file, a folder holding one, or a sample name (fetched on first use).

    Args:
        map_name: ``.osm.pbf`` / ``.osm`` / ``.osm.bz2`` path, a folder, or a ``maploc.samples`` name such as
            ``helsinki-osm``.
        progress: only when a sample is downloaded: ``True`` lets the fetch print what it does, pip's progress
            and the map's licence, as ``maploc data fetch`` does; a callable receives those lines instead;
            ``False`` / ``None``: silent.

    Returns:
        The path of the OSM file (it exists; its content is not checked here: :func:`~.parser.parse_osm` does).

    Raises:
        DataError: a missing file, an unknown sample name (listing the known ones), or a folder / sample holding
            no OSM file or several.
    """
    path = Path(map_name).expanduser()
    if not path.exists():
        if is_osm_path(map_name):
            raise DataError(f"{path}: OSM file not found")
        from maploc.data.fetch import fetch

        path = fetch(os.fspath(map_name), progress=print if progress is True else (progress or None))
    if path.is_file():
        return path
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(OSM_SUFFIXES))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DataError(f"{path}: expected one OSM file (.osm.pbf, .osm, .osm.bz2) in this folder, found {listed}")
    return found[0]

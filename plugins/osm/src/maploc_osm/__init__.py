"""maploc-osm: OpenStreetMap reading and semantic rasterization (OrienterNet-style map tiles) for maploc.

* :func:`parse_osm`: ``.osm.pbf`` / ``.osm`` / ``.osm.bz2`` -> :class:`OSMMap` (areas with holes and their tags,
  ways, points, road graph) in a local metric frame (x east, y north, metres), with a :class:`GeoReference`.
* :func:`resolve_map`: a sample name (``helsinki-osm``, :mod:`maploc_osm.samples`), a folder or a path -> the file.
* :func:`rasterize` / :func:`load_map_raster` (disk-cached) -> :class:`MapRaster`: one binary channel per class,
  grouped areas / ways / points, with oriented crops (:meth:`MapRaster.crop`).
* :func:`render_map_png`, :func:`show_sample_map`: pictures with the OSM attribution (``maploc data show``).
* :mod:`maploc_osm.classes`: the classes and the one tag -> class table (after OrienterNet).

Frames and pixel conventions are stated once, in :mod:`maploc_osm.geo`; drawing rules in
:mod:`maploc_osm.raster`. OSM data is © OpenStreetMap contributors, ODbL 1.0.
"""
# The names below are imported on first use (PEP 562), so that importing a submodule such as
# ``maploc_osm.hooks`` (the CLI's hook module) does not import the heavy dependencies.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .classes import AREA_CLASSES, CLASS_NAMES, GROUPS, POINT_CLASSES, TAG_TABLE, WAY_CLASSES, classify
    from .geo import GeoReference
    from .model import MapArea, MapPoint, MapWay, OSMMap, RoadGraph
    from .parser import file_sha256, parse_osm
    from .raster import MapRaster, default_cache_dir, load_map_raster, rasterize, unpack_labels
    from .render import ATTRIBUTION, render_map_png, show_sample_map
    from .source import OSM_SUFFIXES, is_osm_path, resolve_map

#: public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "AREA_CLASSES": "classes",
    "ATTRIBUTION": "render",
    "CLASS_NAMES": "classes",
    "GROUPS": "classes",
    "GeoReference": "geo",
    "MapArea": "model",
    "MapPoint": "model",
    "MapRaster": "raster",
    "MapWay": "model",
    "OSMMap": "model",
    "OSM_SUFFIXES": "source",
    "POINT_CLASSES": "classes",
    "RoadGraph": "model",
    "TAG_TABLE": "classes",
    "WAY_CLASSES": "classes",
    "classify": "classes",
    "default_cache_dir": "raster",
    "file_sha256": "parser",
    "is_osm_path": "source",
    "load_map_raster": "raster",
    "parse_osm": "parser",
    "rasterize": "raster",
    "render_map_png": "render",
    "resolve_map": "source",
    "show_sample_map": "render",
    "unpack_labels": "raster",
}

__all__ = [
    "AREA_CLASSES",
    "ATTRIBUTION",
    "CLASS_NAMES",
    "GROUPS",
    "OSM_SUFFIXES",
    "POINT_CLASSES",
    "TAG_TABLE",
    "WAY_CLASSES",
    "GeoReference",
    "MapArea",
    "MapPoint",
    "MapRaster",
    "MapWay",
    "OSMMap",
    "RoadGraph",
    "classify",
    "default_cache_dir",
    "file_sha256",
    "is_osm_path",
    "load_map_raster",
    "parse_osm",
    "rasterize",
    "render_map_png",
    "resolve_map",
    "show_sample_map",
    "unpack_labels",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

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

from .classes import AREA_CLASSES, CLASS_NAMES, GROUPS, POINT_CLASSES, TAG_TABLE, WAY_CLASSES, classify
from .geo import GeoReference
from .model import MapArea, MapPoint, MapWay, OSMMap, RoadGraph
from .parser import file_sha256, parse_osm
from .raster import MapRaster, default_cache_dir, load_map_raster, rasterize, unpack_labels
from .render import ATTRIBUTION, render_map_png, show_sample_map
from .source import OSM_SUFFIXES, is_osm_path, resolve_map

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

"""Reading OpenStreetMap files (``.osm.pbf``, ``.osm`` XML, ``.osm.bz2``) into an :class:`~.model.OSMMap`."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import osmium

from maploc.errors import DataError

from .classes import WAY_CLASSES, classify, has_area_tags, is_above_ground
from .geo import GeoReference
from .model import MapArea, MapPoint, MapWay, OSMMap, RoadGraph

__all__ = ["ROAD_GRAPH_CLASSES", "file_sha256", "parse_osm"]

logger = logging.getLogger(__name__)

#: Way classes whose centrelines form :attr:`OSMMap.road_graph`.
ROAD_GRAPH_CLASSES: tuple[str, ...] = ("road", "busway", "cycleway", "path")
_WAY_INDEX = {name: k for k, name in enumerate(WAY_CLASSES)}
#: osmium raises these (RuntimeError mostly) for unreadable, truncated or malformed input.
_READ_ERRORS = (RuntimeError, ValueError, OSError)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks); part of raster and render cache keys.

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_sha256 = file_sha256


class _Collector:
    """Accumulates features with lat/lon vertices in flat lists; projected all at once at the end."""

    def __init__(self, bbox: tuple[float, float, float, float] | None) -> None:
        self.bbox = bbox
        self.lat: list[float] = []
        self.lon: list[float] = []
        # (class, start, end, holes [(start, end)], osm_type, osm_id, tags)
        self.areas: list[tuple[str, int, int, list[tuple[int, int]], str, int, dict[str, str]]] = []
        self.ways: list[tuple[str, int, int, int]] = []  # (class, start, end, osm_id)
        self.points: list[tuple[str, int, int]] = []  # (class, coordinate index, osm_id)
        self.counts = dict.fromkeys(
            ("file_nodes", "file_ways", "file_relations", "missing_node_refs", "underground"), 0
        )
        self.node_box = [math.inf, math.inf, -math.inf, -math.inf]  # min lat, min lon, max lat, max lon
        self.expected_way_areas: set[int] = set()
        self.expected_relation_areas: set[int] = set()
        self.produced_way_areas: set[int] = set()
        self.produced_relation_areas: set[int] = set()
        self.unclosed: list[int] = []
        self.multipolygon_members: set[int] = set()
        self.graph_nodes: dict[int, tuple[float, float]] = {}  # OSM node id -> (lat, lon)
        self.graph_edges: list[tuple[int, int, int, int]] = []  # node a, node b, way id, class index

    # ---- helpers ------------------------------------------------------------------------------------------
    def _in_bbox(self, start: int, end: int) -> bool:
        if self.bbox is None:
            return True
        min_lat, min_lon, max_lat, max_lon = self.bbox
        lat, lon = self.lat[start:end], self.lon[start:end]
        return min(lat) <= max_lat and max(lat) >= min_lat and min(lon) <= max_lon and max(lon) >= min_lon

    def _add_ring(self, ring: osmium.osm.types.OuterRing | osmium.osm.types.InnerRing) -> tuple[int, int]:
        start = len(self.lat)
        for ref in ring:
            self.lat.append(ref.lat)
            self.lon.append(ref.lon)
        return start, len(self.lat)

    # ---- OSM objects -------------------------------------------------------------------------------------
    def add(self, obj: osmium.osm.OSMObject) -> None:
        if obj.is_node():
            self._node(obj)
        elif obj.is_way():
            self._way(obj)
        elif obj.is_relation():
            self._relation(obj)
        elif obj.is_area():
            self._area(obj)

    def _node(self, node: osmium.osm.Node) -> None:
        self.counts["file_nodes"] += 1
        location = node.location
        if not location.valid():
            return
        lat, lon = location.lat, location.lon
        box = self.node_box
        box[0] = min(box[0], lat)
        box[1] = min(box[1], lon)
        box[2] = max(box[2], lat)
        box[3] = max(box[3], lon)
        if not node.tags:
            return
        tags = dict(node.tags)
        name = classify("points", tags)
        if name is None:
            return
        if not is_above_ground(tags):
            self.counts["underground"] += 1
            return
        if self.bbox is not None and not (self.bbox[0] <= lat <= self.bbox[2] and self.bbox[1] <= lon <= self.bbox[3]):
            return
        self.lat.append(lat)
        self.lon.append(lon)
        self.points.append((name, len(self.lat) - 1, node.id))

    def _way(self, way: osmium.osm.Way) -> None:
        self.counts["file_ways"] += 1
        refs = way.nodes
        if not way.tags:
            self.counts["missing_node_refs"] += sum(1 for ref in refs if not ref.location.valid())
            return
        tags = dict(way.tags)
        closed = len(refs) >= 2 and refs[0].ref == refs[-1].ref
        area_tags = has_area_tags(tags)
        if not is_above_ground(tags):
            self.counts["missing_node_refs"] += sum(1 for ref in refs if not ref.location.valid())
            if area_tags or classify("ways", tags) is not None:
                self.counts["underground"] += 1
            return
        if closed and area_tags:
            self.counts["missing_node_refs"] += sum(1 for ref in refs if not ref.location.valid())
            if classify("areas", tags) is not None:
                self.expected_way_areas.add(way.id)  # its geometry comes as an osmium Area
            return
        name = classify("ways", tags)
        if name is None:
            self.counts["missing_node_refs"] += sum(1 for ref in refs if not ref.location.valid())
            if area_tags and (classify("areas", tags) is not None or tags.get("area") == "yes"):
                self.unclosed.append(way.id)
            return
        # Runs of consecutive nodes present in the file (an extract cuts ways at its border).
        runs: list[tuple[int, int]] = []
        graph_class = _WAY_INDEX[name] if name in ROAD_GRAPH_CLASSES else -1
        start = len(self.lat)
        previous: int | None = None
        edges: list[tuple[int, int, int, int]] = []
        for ref in refs:
            location = ref.location
            if not location.valid():
                self.counts["missing_node_refs"] += 1
                if len(self.lat) - start >= 2:
                    runs.append((start, len(self.lat)))
                else:
                    del self.lat[start:], self.lon[start:]
                start = len(self.lat)
                previous = None
                continue
            lat, lon = location.lat, location.lon
            self.lat.append(lat)
            self.lon.append(lon)
            if graph_class >= 0:
                self.graph_nodes[ref.ref] = (lat, lon)
                if previous is not None and previous != ref.ref:
                    edges.append((previous, ref.ref, way.id, graph_class))
                previous = ref.ref
        if len(self.lat) - start >= 2:
            runs.append((start, len(self.lat)))
        else:
            del self.lat[start:], self.lon[start:]
        kept = [(s, e) for s, e in runs if self._in_bbox(s, e)]
        for s, e in kept:
            self.ways.append((name, s, e, way.id))
        if kept:  # a way outside the requested box gives no road-graph edges either
            self.graph_edges.extend(edges)

    def _relation(self, relation: osmium.osm.Relation) -> None:
        self.counts["file_relations"] += 1
        kind = relation.tags.get("type")
        if kind not in ("multipolygon", "boundary"):
            return
        if kind == "multipolygon":
            self.multipolygon_members.update(m.ref for m in relation.members if m.type == "w")
        tags = dict(relation.tags)
        if classify("areas", tags) is None:
            return
        if not is_above_ground(tags):
            self.counts["underground"] += 1
            return
        self.expected_relation_areas.add(relation.id)

    def _area(self, area: osmium.osm.Area) -> None:
        tags = dict(area.tags)
        from_way = area.from_way()
        if from_way and not has_area_tags(tags):
            return  # a closed line (roundabout, footway loop), handled as a way
        name = classify("areas", tags)
        if name is None or not is_above_ground(tags):
            return
        osm_id = area.orig_id()
        (self.produced_way_areas if from_way else self.produced_relation_areas).add(osm_id)
        for outer in area.outer_rings():
            start, end = self._add_ring(outer)
            holes = [self._add_ring(inner) for inner in area.inner_rings(outer)]
            if self._in_bbox(start, end):
                self.areas.append((name, start, end, holes, "way" if from_way else "relation", osm_id, tags))
            else:
                del self.lat[start:], self.lon[start:]


def _check_box(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    if len(bbox) != 4:
        raise ValueError(f"bbox must be (min_lat, min_lon, max_lat, max_lon), got {bbox!r}")
    min_lat, min_lon, max_lat, max_lon = (float(v) for v in bbox)
    if not (-90 <= min_lat < max_lat <= 90 and -180 <= min_lon < max_lon <= 180):
        raise ValueError(f"bbox must be (min_lat, min_lon, max_lat, max_lon) in degrees, got {bbox!r}")
    return min_lat, min_lon, max_lat, max_lon


def _projected_extent(georef: GeoReference, box: tuple[float, float, float, float]) -> tuple[float, ...]:
    """Metric bounding box of a lat/lon box (its edges sampled: they are curves in the map frame)."""
    min_lat, min_lon, max_lat, max_lon = box
    t = np.linspace(0.0, 1.0, 65)
    lats = np.concatenate([min_lat + (max_lat - min_lat) * t, np.full(65, max_lat), max_lat - (max_lat - min_lat) * t,
                           np.full(65, min_lat)])  # fmt: skip
    lons = np.concatenate([np.full(65, min_lon), min_lon + (max_lon - min_lon) * t, np.full(65, max_lon),
                           max_lon - (max_lon - min_lon) * t])  # fmt: skip
    xy = georef.latlon_to_xy(np.stack([lats, lons], axis=-1))
    return (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))


def parse_osm(
    path: str | os.PathLike[str],
    *,
    origin: tuple[float, float] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
) -> OSMMap:
    """Read an OpenStreetMap file into semantic areas, ways and points in a local metric frame.

    Reads ``.osm.pbf``, ``.osm`` XML and compressed XML (``.osm.bz2``, ``.osm.gz``) with pyosmium, the format
    chosen by the file suffix. Multipolygon relations and closed area ways are assembled into polygons with
    holes by osmium's area assembler (``FileProcessor(...).with_areas()``). Tags are mapped to classes by
    :data:`~.classes.TAG_TABLE` (OrienterNet's classes; unknown tags are ignored); every area keeps all the tags of
    its way or relation in :attr:`~.model.MapArea.tags` (heights, levels, colours, roof shape). Coordinates are projected
    to the map frame of :mod:`.geo` (x east, y north, metres; azimuthal equidistant at ``origin``).

    Dropped, and counted in :attr:`OSMMap.counts`: area-tagged ways that are not closed and are not members of
    a multipolygon (one summary warning on this module's logger), areas osmium cannot assemble, underground
    elements, and way nodes missing from the file (ways are split there, as an extract cuts them).

    Args:
        path: the OSM file.
        origin: ``(lat, lon)`` degrees of the map-frame origin. Default: the centre of ``bbox`` if given, else
            of the file's header bounding box, else of the extent of all its nodes.
        bbox: ``(min_lat, min_lon, max_lat, max_lon)`` degrees (south, west, north, east). If given, only
            features whose lat/lon bounding box intersects it are kept (whole), and it sets
            :attr:`OSMMap.extent`.

    Returns:
        The map; see :class:`~.model.OSMMap`.

    Raises:
        DataError: the file is missing, unreadable, truncated or malformed (the message names the file and,
            for XML, the line), or contains no node with coordinates (so no default origin).
        ValueError: ``origin`` or ``bbox`` is not a valid latitude/longitude pair/box.
    """
    path = Path(path)
    box = _check_box(bbox) if bbox is not None else None
    requested_origin = None
    if origin is not None:
        if len(origin) != 2:
            raise ValueError(f"origin must be (lat, lon), got {origin!r}")
        requested_origin = (float(origin[0]), float(origin[1]))
        GeoReference.from_origin(*requested_origin)  # validates
    if not path.is_file():
        raise DataError(f"{path}: OSM file not found")
    sha256 = _sha256(path)
    collector = _Collector(box)
    try:
        processor = osmium.FileProcessor(str(path)).with_locations().with_areas()
        header_box = processor.header.box()
        iterator = iter(processor)
        while True:
            try:
                obj = next(iterator)
            except StopIteration:
                break
            except _READ_ERRORS as exc:
                raise DataError(f"{path}: cannot read OSM data: {exc}") from exc
            collector.add(obj)
    except _READ_ERRORS as exc:  # opening the file / reading its header
        raise DataError(f"{path}: cannot read OSM data: {exc}") from exc

    header = None
    if header_box.valid():
        bl, tr = header_box.bottom_left, header_box.top_right
        header = (bl.lat, bl.lon, tr.lat, tr.lon)
    nodes = tuple(collector.node_box) if math.isfinite(collector.node_box[0]) else None
    frame_box = box or header or nodes
    if frame_box is None:
        raise DataError(f"{path}: the file contains no node with coordinates")
    if requested_origin is None:
        georef = GeoReference.from_origin((frame_box[0] + frame_box[2]) / 2, (frame_box[1] + frame_box[3]) / 2)
    else:
        georef = GeoReference.from_origin(*requested_origin)
    extent = _projected_extent(georef, frame_box)  # a degenerate box (one node) gives a zero-size extent

    if collector.lat:
        xy = georef.latlon_to_xy(np.stack([np.asarray(collector.lat), np.asarray(collector.lon)], axis=-1))
    else:
        xy = np.zeros((0, 2))
    areas = tuple(
        MapArea(
            class_name=name,
            exterior=xy[s:e].copy(),
            holes=tuple(xy[hs:he].copy() for hs, he in holes),
            osm_type=osm_type,
            osm_id=osm_id,
            tags=tags,
        )
        for name, s, e, holes, osm_type, osm_id, tags in collector.areas
    )
    ways = tuple(MapWay(class_name=n, xy=xy[s:e].copy(), osm_id=i) for n, s, e, i in collector.ways)
    points = tuple(
        MapPoint(class_name=n, xy=(float(xy[k, 0]), float(xy[k, 1])), osm_id=i) for n, k, i in collector.points
    )
    road_graph = _road_graph(collector, georef)

    unclosed = sorted(set(collector.unclosed) - collector.multipolygon_members)
    if unclosed:
        logger.warning(
            "%s: dropped %d area way(s) that are not closed rings (way ids %s%s)",
            path,
            len(unclosed),
            ", ".join(str(i) for i in unclosed[:10]),
            ", ..." if len(unclosed) > 10 else "",
        )
    counts = dict(collector.counts)
    counts.update(
        areas=len(areas),
        ways=len(ways),
        points=len(points),
        unclosed_area_ways=len(unclosed),
        failed_areas=len(collector.expected_way_areas - collector.produced_way_areas)
        + len(collector.expected_relation_areas - collector.produced_relation_areas),
    )
    class_counts: dict[str, int] = {}
    for feature in (*areas, *ways, *points):
        class_counts[feature.class_name] = class_counts.get(feature.class_name, 0) + 1
    return OSMMap(
        areas=areas,
        ways=ways,
        points=points,
        road_graph=road_graph,
        georef=georef,
        extent=extent,
        counts=counts,
        class_counts=dict(sorted(class_counts.items())),
        source=str(path),
        source_sha256=sha256,
        parse_origin=requested_origin,
        parse_bbox=box,
    )


def _road_graph(collector: _Collector, georef: GeoReference) -> RoadGraph:
    edges = collector.graph_edges
    used = sorted({a for a, _, _, _ in edges} | {b for _, b, _, _ in edges})
    node_ids = np.asarray(used, dtype=np.int64)
    node_xy = georef.latlon_to_xy([collector.graph_nodes[i] for i in used]) if used else np.zeros((0, 2))
    if edges:
        ends = np.asarray([(a, b) for a, b, _, _ in edges], dtype=np.int64)
        edge_index = np.searchsorted(node_ids, ends)
    else:
        edge_index = np.zeros((0, 2), dtype=np.int64)
    return RoadGraph(
        node_ids=node_ids,
        xy=np.asarray(node_xy, dtype=np.float64),
        edges=edge_index.astype(np.int64),
        edge_way_ids=np.asarray([w for _, _, w, _ in edges], dtype=np.int64),
        edge_classes=np.asarray([c for _, _, _, c in edges], dtype=np.int64),
    )

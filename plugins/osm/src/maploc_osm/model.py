"""Value types of a parsed OpenStreetMap map (map frame: x east, y north, metres; see :mod:`.geo`)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import attrs
import numpy as np

from .geo import GeoReference

__all__ = ["MapArea", "MapPoint", "MapWay", "OSMMap", "RoadGraph"]


def _arrays_equal(a: object, b: object) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _array_tuples_equal(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _frozen_tags(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in dict(value).items()})


def _mappings_equal(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    return dict(a) == dict(b)


def _xy_array(min_points: int):  # attrs validator factory
    def check(instance: object, attribute: attrs.Attribute, value: np.ndarray) -> None:
        if value.ndim != 2 or value.shape[1] != 2 or value.shape[0] < min_points or value.dtype != np.float64:
            raise ValueError(
                f"{attribute.name} must be a float64 (N >= {min_points}, 2) array, got {value.dtype} {value.shape}"
            )

    return check


@attrs.frozen(kw_only=True)
class MapArea:
    """One polygon of an area: an exterior ring and its holes.

    A multipolygon with several outer rings gives one :class:`MapArea` per outer ring, all with the same
    ``osm_id``.

    Attributes:
        class_name: an area class, or a way class for areas such as pedestrian squares (filled into that way
            channel); see :mod:`.classes`.
        exterior: ``(N, 2)`` float64 closed ring (first vertex repeated last), map frame, metres.
        holes: inner rings, each ``(M, 2)`` float64 closed, metres.
        osm_type: ``"way"`` or ``"relation"`` (the OSM element the area comes from).
        osm_id: the OSM id of that way or relation.
        tags: every OSM tag of that element, read-only (``building``, ``height``, ``min_height``,
            ``building:levels``, ``building:min_level``, ``building:colour`` / ``colour``, ``roof:shape``,
            ``roof:colour``, ``landuse``, ``name`` ...), so that consumers such as the sim-city scene never read the
            file again. Values are the raw strings of the file (units, if any, included).
    """

    class_name: str
    exterior: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=_arrays_equal), validator=_xy_array(4))
    holes: tuple[np.ndarray, ...] = attrs.field(default=(), eq=attrs.cmp_using(eq=_array_tuples_equal))
    osm_type: str
    osm_id: int
    tags: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_tags, eq=attrs.cmp_using(eq=_mappings_equal), hash=False
    )


@attrs.frozen(kw_only=True)
class MapWay:
    """A polyline of a way class.

    A way whose nodes are partly missing from the file (cut at the extract's border) gives one
    :class:`MapWay` per run of consecutive present nodes.

    Attributes:
        class_name: a way class (:data:`~.classes.WAY_CLASSES`).
        xy: ``(N, 2)`` float64 vertices, N >= 2, map frame, metres.
        osm_id: the OSM way id.
    """

    class_name: str
    xy: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=_arrays_equal), validator=_xy_array(2))
    osm_id: int


@attrs.frozen(kw_only=True)
class MapPoint:
    """A point feature (an OSM node).

    Attributes:
        class_name: a point class (:data:`~.classes.POINT_CLASSES`).
        xy: ``(x, y)`` map frame, metres.
        osm_id: the OSM node id.
    """

    class_name: str
    xy: tuple[float, float]
    osm_id: int


@attrs.frozen(kw_only=True)
class RoadGraph:
    """The graph of highway centrelines (ways of classes road, path, cycleway, busway).

    Nodes are OSM nodes (shared nodes connect ways); an edge joins two consecutive nodes of a way. Edges that
    touch a node missing from the file are left out.

    Attributes:
        node_ids: ``(M,)`` int64 OSM node ids, sorted ascending.
        xy: ``(M, 2)`` float64 node positions, map frame, metres.
        edges: ``(E, 2)`` int64 indices into ``node_ids`` (undirected; order as in the way).
        edge_way_ids: ``(E,)`` int64 OSM way id of each edge.
        edge_classes: ``(E,)`` int64 index of each edge's class in :data:`~.classes.WAY_CLASSES`.
    """

    node_ids: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=_arrays_equal))
    xy: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=_arrays_equal))
    edges: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=_arrays_equal))
    edge_way_ids: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=_arrays_equal))
    edge_classes: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=_arrays_equal))

    @property
    def num_nodes(self) -> int:
        """M, the number of nodes."""
        return int(self.node_ids.shape[0])

    @property
    def num_edges(self) -> int:
        """E, the number of edges."""
        return int(self.edges.shape[0])


@attrs.frozen(kw_only=True)
class OSMMap:
    """An OpenStreetMap file parsed into semantic features in a local metric frame (see :func:`parse_osm`).

    Attributes:
        areas: every area polygon (areas group, and way-class areas such as squares).
        ways: every way polyline.
        points: every point feature.
        road_graph: highway centreline graph (for trajectories).
        georef: the map frame (origin, projection); no raster fields.
        extent: ``(x_min, y_min, x_max, y_max)`` metres of the requested ``bbox``, else of the file's header
            bounding box, else of all its nodes; :func:`rasterize` covers it by default.
        counts: numbers of elements. ``file_nodes``, ``file_ways``, ``file_relations``: elements in the file;
            ``areas``, ``ways``, ``points``: features kept; ``unclosed_area_ways``: area-tagged ways that are
            not closed (dropped, one warning); ``failed_areas``: classified closed ways or multipolygons that
            could not be assembled (missing nodes or members, invalid rings); ``missing_node_refs``: way node
            references without a node in the file; ``underground``: elements skipped as underground.
        class_counts: features per class name (polygons for areas, polylines for ways).
        source: the parsed file, or None.
        source_sha256: hex SHA-256 of the file's bytes, or None (part of raster cache keys).
        parse_origin: the ``origin`` argument of :func:`parse_osm` (None = default).
        parse_bbox: the ``bbox`` argument of :func:`parse_osm` (None = whole file).
    """

    areas: tuple[MapArea, ...]
    ways: tuple[MapWay, ...]
    points: tuple[MapPoint, ...]
    road_graph: RoadGraph
    georef: GeoReference
    extent: tuple[float, float, float, float]
    counts: Mapping[str, int]
    class_counts: Mapping[str, int]
    source: str | None = None
    source_sha256: str | None = None
    parse_origin: tuple[float, float] | None = None
    parse_bbox: tuple[float, float, float, float] | None = None

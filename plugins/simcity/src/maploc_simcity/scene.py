"""A 3-D city built from a parsed OpenStreetMap map: ground, buildings, trees, street lamps, furniture.

World frame: the OSM map frame (x east, y north, metres) with z up and the ground at ``z = 0``.

What is built (:func:`build_scene`):

* **Ground**: one quad at ``z = 0`` whose material comes from a label grid: the OSM raster
  (:func:`maploc_osm.rasterize`, ``ground_resolution_m`` per pixel) reduced to one ground class per pixel by
  :func:`.labels.ground_labels` (roads, busways, cycleways, footways, kerbs, railways, parking, playgrounds,
  water, grass, parks, forests, else unmapped ground). A second channel holds the distance to the nearest
  building (for the darkening along walls). Yellow dashed centre lines along roads and zebra crossings at
  ``crossing`` points are paint meshes 1.5 cm above the ground, labelled ``road``.
* **Buildings**: every ``building`` area extruded from its footprint with holes (shapely polygons, repaired with
  ``make_valid``; roofs triangulated by trimesh with mapbox-earcut). Height: the ``height`` tag, else
  ``building:levels`` x 3 m, else a draw in 8-25 m seeded by the seed and the OSM id; ``min_height`` lifts the
  base. Colours: ``building:colour`` / ``roof:colour`` when they parse, else seeded draws from a palette. Each
  wall carries a window grid (floor height, column width) that the facade shader draws.
* **Trees** (trunk and crown) at ``tree`` points, every 8 m along ``tree_row`` ways, and scattered in parks and
  forests. **Street lamps** (post, arm, glowing head; a lamp lighting the scene at night) at ``lamp`` points;
  lamps within ``clearance_m`` of a road centreline hang above the street (Helsinki's catenary lamps).
  **Poles, traffic signals, signs, bus stops, bollards, benches, hydrants ...** at their points; those standing
  on a road centreline are moved to the kerb side, the others within ``clearance_m`` of one are left out.
* **Barriers**: walls, fences and hedges along their ways (double-sided ribbons).

Each mesh vertex carries the label of its object (:mod:`.labels`). Meshes are grouped in square tiles so the
renderer draws only the tiles in the view frustum.

Modules: :mod:`.tags` (heights and colours from the parsed map's tags), :mod:`.meshes` (vertex layout, buffer,
templates, geometry helpers), :mod:`.objects` (buildings, trees, lamps, furniture, barriers, paint) and this one
(the ground grid and the assembly, :func:`build_scene`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

import attrs
import cv2
import numpy as np
from shapely.geometry import LineString

from maploc_osm import GeoReference, OSMMap, rasterize

from .gl import RenderParameterError
from .labels import GROUND_LABEL, ground_labels, label_id
from .meshes import (
    FLOATS_PER_VERTEX,
    KINDS,
    LAYERS,
    VERTEX_ATTRIBUTES,
    VERTEX_FORMAT,
    VertexBuffer,
    line_segments,
    nearest_on_segments,
    place_instances,
    unit_box,
    unit_cylinder,
    valid_polygons,
)
from .objects import (
    FACADE_PALETTE,
    FURNITURE,
    ROOF_PALETTE,
    add_building,
    add_lamps,
    add_paint,
    add_ribbons,
    add_trees,
    scatter_in_mask,
)
from .tags import building_height, facade_colour, roof_colour

__all__ = [
    "FLOATS_PER_VERTEX",
    "KINDS",
    "LAYERS",
    "VERTEX_ATTRIBUTES",
    "VERTEX_FORMAT",
    "Scene",
    "building_height",
    "build_scene",
]

logger = logging.getLogger(__name__)

#: Default metres per texel of the ground label grid, and the grid's size limits (the default is coarsened to fit).
DEFAULT_GROUND_RESOLUTION_M = 0.25
MAX_GROUND_TEXELS = 40_000_000
MAX_GROUND_SIDE = 16_000

#: Classes of the road centrelines that cameras travel along and that furniture keeps clear of.
ROUTE_CLASSES: tuple[str, ...] = ("road",)


# ---- value type ----------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True, eq=False)
class Scene:
    """Everything the renderer draws, as arrays.

    Attributes:
        vertices: ``(N, 17)`` float32 triangle soup (3 consecutive rows per triangle), layout :data:`VERTEX_FORMAT`,
            positions in the world frame (metres), sorted by tile.
        tile_ranges: ``(T, 3)`` int64 ``(first vertex, vertex count, layer index)`` of each tile of each layer
            (:data:`LAYERS`).
        tile_spheres: ``(T, 4)`` float64 bounding sphere ``(x, y, z, radius)`` of each tile, metres.
        ground: ``(H, W, 3)`` uint8 on the grid of ``ground_georef`` (row 0 north): label value of the ground
            (:mod:`.labels`, the OSM raster's class by :data:`.labels.GROUND_PRIORITY`), distance to the nearest
            building in decimetres (255 = 25.5 m or more), and the membership of the texel in its class
            (x 255, see :meth:`ground_label_at`).
        ground_georef: the map frame with the raster grid of ``ground``.
        ground_extent: ``(x_min, y_min, x_max, y_max)`` metres of the ground quad (the map extent plus a margin).
        lamps: ``(L, 3)`` float64 positions of the lamp light sources, metres.
        georef: the map frame.
        extent: ``(x_min, y_min, x_max, y_max)`` of the map, metres.
        buildings: ``(B, 6)`` float64 rows ``(osm_id, base z, top z, centroid x, centroid y, footprint m2)``.
        route_lines: road centrelines (of :data:`ROUTE_CLASSES`) as ``(N_k, 2)`` float64 polylines, metres.
        source: the OSM file, or None.
        source_sha256: its SHA-256, or None.
        seed: the seed of the random draws.
        stats: counts and timings (``buildings``, ``trees``, ``lamps``, ``triangles``, ``seconds`` ...).
    """

    vertices: np.ndarray
    tile_ranges: np.ndarray
    tile_spheres: np.ndarray
    ground: np.ndarray
    ground_georef: GeoReference
    ground_extent: tuple[float, float, float, float]
    lamps: np.ndarray
    georef: GeoReference
    extent: tuple[float, float, float, float]
    buildings: np.ndarray
    route_lines: tuple[np.ndarray, ...]
    source: str | None
    source_sha256: str | None
    seed: int
    stats: Mapping[str, float]

    @property
    def num_triangles(self) -> int:
        """Number of object triangles (the ground quad and the sky excluded)."""
        return int(self.vertices.shape[0] // 3)

    def ground_label_at(self, xy: np.ndarray) -> np.ndarray:
        """Ground label values at map-frame points, by the renderer's rule.

        The rule: for each label ``c`` among the 4 grid texels around the point (their centres bound it), the
        bilinear interpolation of its membership ``m_k(c)`` (texel ``k``'s own label: the blurred indicator
        ``ground[..., 2] / 255``; another label: one minus it); the label with the largest value wins (ties: the
        first in the order top-left, top-right, bottom-left, bottom-right). Texels outside the grid are
        :data:`.labels.GROUND_LABEL` with membership 1. Inside a class this is the label of the texel containing
        the point (the OSM raster's rule); class borders become smooth curves within about a texel of the raster's
        staircase.

        Args:
            xy: ``(..., 2)`` metres.

        Returns:
            ``(...)`` uint8 label values.
        """
        g = self.ground_georef
        xy = np.asarray(xy, dtype=np.float64)
        gx = (xy[..., 0] - g.x_min) / g.resolution_m - 0.5
        gy = (g.y_max - xy[..., 1]) / g.resolution_m - 0.5
        c0, r0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        fx, fy = gx - c0, gy - r0
        H, W = self.ground.shape[:2]
        labels, members, weights = [], [], []
        for dc, dr, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            c, r = c0 + dc, r0 + dr
            inside = (c >= 0) & (r >= 0) & (c < W) & (r < H)
            value = np.full(xy.shape[:-1], GROUND_LABEL, np.int64)
            member = np.ones(xy.shape[:-1])
            value[inside] = self.ground[r[inside], c[inside], 0]
            member[inside] = self.ground[r[inside], c[inside], 2] / 255.0
            labels.append(value)
            members.append(member)
            weights.append(w)
        best = np.full(xy.shape[:-1], -1.0)
        out = np.full(xy.shape[:-1], GROUND_LABEL, np.int64)
        for k in range(4):
            total = sum(weights[m] * np.where(labels[m] == labels[k], members[m], 1.0 - members[m]) for m in range(4))
            better = total > best + 1e-6
            best = np.where(better, total, best)
            out = np.where(better, labels[k], out)
        return out.astype(np.uint8)


#: Standard deviation (texels) of the blur that smooths the borders between ground classes (see _membership).
_BORDER_SIGMA_TEXELS = 1.8


def _membership(labels: np.ndarray, sigma: float) -> np.ndarray:
    """Per texel, the Gaussian-blurred indicator of its own label, ``(H, W)`` uint8 (255 = 1).

    Blurred indicators of the classes sum to one, so where two classes meet, the other class's value at a texel is
    one minus this; the ground's label rule (:meth:`Scene.ground_label_at`) interpolates them to draw smooth
    borders instead of the staircase of the texel grid.
    """
    out = np.full(labels.shape, 255, np.uint8)
    for value in np.unique(labels):
        mask = labels == value
        if mask.all():
            continue
        blurred = cv2.GaussianBlur(mask.astype(np.uint8) * np.uint8(255), (0, 0), sigma)
        out[mask] = blurred[mask]
    return out


def build_scene(
    osm_map: OSMMap,
    *,
    seed: int = 0,
    ground_resolution_m: float | None = None,
    margin_m: float = 600.0,
    tile_size_m: float = 64.0,
    clearance_m: float = 2.5,
    building_tags: Mapping[tuple[str, int], Mapping[str, str]] | None = None,
    park_tree_density: float = 1.0 / 250.0,
    forest_tree_density: float = 1.0 / 40.0,
) -> Scene:
    """Builds the 3-D scene of an OSM map (see the module docstring).

    Args:
        osm_map: the parsed map (:func:`maploc_osm.parse_osm`).
        seed: seed of every random draw (building heights without tags, colours, trees); the same seed gives the
            same scene.
        ground_resolution_m: metres per texel of the ground label grid (the OSM raster resolution); default 0.25 m,
            coarsened for large maps so that the grid has at most :data:`MAX_GROUND_TEXELS` texels and
            :data:`MAX_GROUND_SIDE` texels a side.
        margin_m: how far the ground quad extends beyond the map extent, metres.
        tile_size_m: side of the culling tiles, metres.
        clearance_m: furniture, trees and barriers keep this far from road centrelines (lamps hang above the road
            instead); metres.
        building_tags: ``{(osm_type, osm_id): tags}`` of buildings, replacing the tags the parsed map keeps
            (:attr:`maploc_osm.MapArea.tags`; :func:`.tags.building_tags` lists them); default: the map's own.
            The file is never read again.
        park_tree_density, forest_tree_density: trees per square metre scattered in parks and forests.

    Returns:
        The scene.

    Raises:
        RenderParameterError: a parameter is out of range (named).
        DataError: the map has no feature inside its extent (from :func:`maploc_osm.rasterize`).
    """
    x0, y0, x1, y1 = osm_map.extent
    if ground_resolution_m is None:
        span_x, span_y = x1 - x0 + 2.0, y1 - y0 + 2.0
        needed = max(span_x / MAX_GROUND_SIDE, span_y / MAX_GROUND_SIDE, math.sqrt(span_x * span_y / MAX_GROUND_TEXELS))
        ground_resolution_m = max(DEFAULT_GROUND_RESOLUTION_M, math.ceil(needed * 100.0) / 100.0)
        if ground_resolution_m > DEFAULT_GROUND_RESOLUTION_M:
            logger.info("a %.0f m x %.0f m map: ground grid at %.2f m per texel", span_x, span_y, ground_resolution_m)
    for name, value in (("ground_resolution_m", ground_resolution_m), ("tile_size_m", tile_size_m)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise RenderParameterError(f"{name} must be a positive number of metres, got {value!r}")
    for name, value in (("margin_m", margin_m), ("clearance_m", clearance_m)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise RenderParameterError(f"{name} must be a non-negative number of metres, got {value!r}")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    # ---- ground grid from the OSM raster ----
    t = time.perf_counter()
    pad = 2.0 * ground_resolution_m
    raster = rasterize(osm_map, ground_resolution_m, bbox=(x0 - pad, y0 - pad, x1 + pad, y1 + pad))
    ground_label = ground_labels(raster)
    building_mask = raster.mask("building")
    del raster
    free = (~building_mask).astype(np.uint8)
    dist_px = (
        cv2.distanceTransform(free, cv2.DIST_L2, 3) if building_mask.any() else np.full(free.shape, 1e9, np.float32)
    )
    building_dm = np.clip(dist_px * (ground_resolution_m * 10.0), 0, 255).astype(np.uint8)
    del dist_px, free
    ground = np.empty((*ground_label.shape, 3), np.uint8)
    ground[..., 0] = ground_label
    ground[..., 1] = building_dm
    ground[..., 2] = _membership(ground_label, _BORDER_SIGMA_TEXELS)
    grid = osm_map.georef.with_raster(
        resolution_m=ground_resolution_m, x_min=x0 - pad, y_max=y1 + pad, height=ground.shape[0], width=ground.shape[1]
    )
    timings["ground_s"] = time.perf_counter() - t

    t = time.perf_counter()
    buf = VertexBuffer(tile_size_m, (x0, y0))
    route_lines = tuple(w.xy for w in osm_map.ways if w.class_name in ROUTE_CLASSES)
    seg = line_segments(route_lines)

    def clear_of_roads(xy: np.ndarray, distance: float = clearance_m) -> np.ndarray:
        dist, _, _ = nearest_on_segments(xy, *seg)
        return dist >= distance

    def in_building(xy: np.ndarray) -> np.ndarray:
        i = np.floor((grid.y_max - xy[:, 1]) / ground_resolution_m).astype(np.int64)
        j = np.floor((xy[:, 0] - grid.x_min) / ground_resolution_m).astype(np.int64)
        inside = (i >= 0) & (j >= 0) & (i < building_mask.shape[0]) & (j < building_mask.shape[1])
        out = np.zeros(len(xy), bool)
        out[inside] = building_mask[i[inside], j[inside]]
        return out

    # ---- buildings ----
    rows = []
    for area in osm_map.areas:
        if area.class_name != "building":
            continue
        tags = area.tags if building_tags is None else building_tags.get((area.osm_type, area.osm_id), {})
        rng = np.random.default_rng([seed, area.osm_id & 0xFFFFFFFF, 1 if area.osm_type == "way" else 2])
        base, top = building_height(tags, rng)
        facade = facade_colour(tags)
        roof = roof_colour(tags)
        facade_draw = FACADE_PALETTE[rng.integers(len(FACADE_PALETTE))] * rng.uniform(0.9, 1.05)
        roof_draw = ROOF_PALETTE[rng.integers(len(ROOF_PALETTE))] * rng.uniform(0.9, 1.1)
        facade = np.asarray(facade if facade is not None else facade_draw)
        roof = np.asarray(roof if roof is not None else roof_draw)
        building_seed = float(rng.random())
        for polygon in valid_polygons(area.exterior, area.holes):
            add_building(buf, polygon, base, top, facade, roof, building_seed, rng)
            centroid = polygon.centroid
            rows.append((area.osm_id, base, top, centroid.x, centroid.y, polygon.area))
    buildings = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    timings["buildings_s"] = time.perf_counter() - t

    # ---- trees ----
    t = time.perf_counter()
    rng = np.random.default_rng([seed, 7])
    tree_xy = [np.asarray([p.xy for p in osm_map.points if p.class_name == "tree"], dtype=np.float64).reshape(-1, 2)]
    for way in osm_map.ways:
        if way.class_name == "tree_row":
            line = LineString(way.xy)
            steps = np.arange(0.0, line.length + 1e-9, 8.0)
            tree_xy.append(np.asarray([line.interpolate(s).coords[0] for s in steps]).reshape(-1, 2))
    trees = np.concatenate(tree_xy)
    for name, density in (("park", park_tree_density), ("forest", forest_tree_density)):
        mask = ground_label == label_id(name)
        if mask.any() and density > 0:
            trees = np.concatenate([trees, scatter_in_mask(mask, grid, density, rng, 4.0)])
    trees = trees[clear_of_roads(trees) & ~in_building(trees)] if len(trees) else trees
    add_trees(buf, trees, rng)
    timings["trees_s"] = time.perf_counter() - t

    # ---- lamps and furniture ----
    t = time.perf_counter()
    lamp_xy = np.asarray([p.xy for p in osm_map.points if p.class_name == "lamp"], dtype=np.float64).reshape(-1, 2)
    lamp_xy = lamp_xy[~in_building(lamp_xy)] if len(lamp_xy) else lamp_xy
    dist, nearest, _ = nearest_on_segments(lamp_xy, *seg)
    hanging = dist < clearance_m
    toward = nearest - lamp_xy
    norm = np.linalg.norm(toward, axis=1, keepdims=True)
    toward = np.where(norm > 1e-6, toward / np.maximum(norm, 1e-9), np.array([1.0, 0.0]))
    lights = add_lamps(buf, lamp_xy, hanging, toward)
    shapes = {"cyl": unit_cylinder(6), "box": unit_box()}
    furniture = 0
    for name, (rule, parts) in FURNITURE.items():
        xy = np.asarray([p.xy for p in osm_map.points if p.class_name == name], dtype=np.float64).reshape(-1, 2)
        if len(xy) == 0:
            continue
        xy = xy[~in_building(xy)]
        dist, nearest, direction = nearest_on_segments(xy, *seg)
        near = dist < clearance_m
        if rule == "push" and near.any():
            side = np.c_[direction[:, 1], -direction[:, 0]]  # the right-hand side of the segment
            xy = np.where(near[:, None], nearest + side * (clearance_m + 0.5), xy)
            near = ~clear_of_roads(xy, clearance_m - 0.01) & near
        xy, direction = xy[~near], direction[~near]
        if len(xy) == 0:
            continue
        yaw = np.arctan2(direction[:, 1], direction[:, 0])
        for shape, scale, offset, colour, kind in parts:
            pos, nrm = place_instances(shapes[shape], np.c_[xy, np.zeros(len(xy))], scale, yaw, offset)
            buf.add(pos, nrm, color=colour, kind=kind, label=name, anchor=xy, layer="small")
        furniture += len(xy)
    timings["furniture_s"] = time.perf_counter() - t

    # ---- barriers and paint ----
    t = time.perf_counter()

    def keep(mid: np.ndarray) -> np.ndarray:
        return clear_of_roads(mid, 1.5)

    for name, height, colour, kind in (
        ("wall", 1.4, (0.55, 0.52, 0.48), "barrier"),
        ("fence", 1.2, (0.30, 0.28, 0.25), "barrier"),
        ("hedge", 1.3, (0.2, 0.35, 0.12), "hedge"),
    ):
        add_ribbons(buf, [w.xy for w in osm_map.ways if w.class_name == name], height, colour, kind, name, keep)
    crossings = np.asarray([p.xy for p in osm_map.points if p.class_name == "crossing"], dtype=np.float64)
    crossings = crossings.reshape(-1, 2)
    if len(crossings):
        crossings = crossings[~clear_of_roads(crossings, 1.0)]
    dashes = add_paint(buf, route_lines, crossings, seg)
    timings["paint_s"] = time.perf_counter() - t

    t = time.perf_counter()
    vertices, ranges, spheres = buf.finish()
    timings["tiles_s"] = time.perf_counter() - t
    stats = {
        "buildings": len(buildings),
        "trees": len(trees),
        "lamps": len(lamp_xy),
        "hanging_lamps": int(hanging.sum()),
        "furniture": furniture,
        "dashes": dashes,
        "crossings": len(crossings),
        "triangles": int(len(vertices) // 3),
        "tiles": len(ranges),
        "ground_texels": int(ground.shape[0] * ground.shape[1]),
        **timings,
        "seconds": time.perf_counter() - t0,
    }
    logger.info(
        "scene: %s", ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())
    )
    return Scene(
        vertices=vertices,
        tile_ranges=ranges,
        tile_spheres=spheres,
        ground=ground,
        ground_georef=grid,
        ground_extent=(x0 - margin_m, y0 - margin_m, x1 + margin_m, y1 + margin_m),
        lamps=lights,
        georef=osm_map.georef,
        extent=osm_map.extent,
        buildings=buildings,
        route_lines=route_lines,
        source=osm_map.source,
        source_sha256=osm_map.source_sha256,
        seed=seed,
        stats=stats,
    )

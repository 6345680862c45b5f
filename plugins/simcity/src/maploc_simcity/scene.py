"""A 3-D city built from a parsed OpenStreetMap map: ground, buildings, trees, street lamps, furniture.

World frame: the OSM map frame (x east, y north, metres) with z up and the ground at ``z = 0``.

What is built (:func:`build_scene`):

* **Ground**: one quad at ``z = 0`` whose material comes from a label grid: the OSM raster
  (:func:`maploc.data.osm.rasterize`, ``ground_resolution_m`` per pixel) reduced to one ground class per pixel by
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
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import cv2
import numpy as np
import shapely
import trimesh
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from maploc.data.osm import GeoReference, OSMMap, rasterize

from .gl import RenderParameterError
from .labels import GROUND_LABEL, ground_labels, label_id

__all__ = [
    "FLOATS_PER_VERTEX",
    "KINDS",
    "Scene",
    "building_height",
    "build_scene",
    "read_building_tags",
]

logger = logging.getLogger(__name__)

#: Interleaved vertex layout: position (3), normal (3), uv (2), colour (3), params (kind, label, a, b), extra (c, d).
VERTEX_FORMAT = "3f 3f 2f 3f 4f 2f"
VERTEX_ATTRIBUTES = ("in_pos", "in_normal", "in_uv", "in_color", "in_params", "in_extra")
FLOATS_PER_VERTEX = 17

#: Material kinds understood by the object shader.
KINDS: Mapping[str, int] = {
    "wall": 0, "roof": 1, "trunk": 2, "crown": 3, "metal": 4, "lamp": 5, "paint": 6, "plain": 7, "hedge": 8,
    "barrier": 9,
}  # fmt: skip

_FACADE_PALETTE = np.array([
    (0.80, 0.65, 0.42), (0.90, 0.82, 0.58), (0.88, 0.85, 0.76), (0.76, 0.75, 0.72), (0.62, 0.34, 0.26),
    (0.85, 0.62, 0.52), (0.70, 0.77, 0.66), (0.90, 0.89, 0.86), (0.48, 0.48, 0.50), (0.70, 0.77, 0.84),
    (0.82, 0.72, 0.60), (0.66, 0.52, 0.40),
])  # fmt: skip
_ROOF_PALETTE = np.array([
    (0.25, 0.26, 0.28), (0.16, 0.16, 0.17), (0.42, 0.60, 0.52), (0.45, 0.23, 0.18), (0.52, 0.54, 0.57),
])  # fmt: skip
_NAMED_COLOURS = {
    "white": (0.92, 0.92, 0.90), "black": (0.12, 0.12, 0.12), "grey": (0.55, 0.55, 0.55), "gray": (0.55, 0.55, 0.55),
    "red": (0.65, 0.20, 0.15), "brown": (0.45, 0.30, 0.20), "yellow": (0.90, 0.80, 0.40), "green": (0.35, 0.55, 0.35),
    "blue": (0.35, 0.45, 0.65), "beige": (0.85, 0.78, 0.62), "orange": (0.90, 0.55, 0.25), "pink": (0.90, 0.65, 0.65),
    "silver": (0.75, 0.75, 0.78), "maroon": (0.45, 0.15, 0.15), "tan": (0.82, 0.70, 0.55), "cream": (0.92, 0.88, 0.75),
}  # fmt: skip

#: Draw layers: name -> (min, max) distance in metres from the camera to a tile's centre at which the renderer
#: draws the layer's meshes in that tile (small things are left out far away; trees have two levels of detail).
LAYERS: Mapping[str, tuple[float, float]] = {
    "static": (0.0, math.inf),
    "trees_near": (0.0, 110.0),
    "trees_far": (110.0, 450.0),
    "lamps": (0.0, 260.0),
    "small": (0.0, 160.0),
    "paint": (0.0, 130.0),
}
_LAYER_INDEX = {name: k for k, name in enumerate(LAYERS)}

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


# ---- OSM tags the map model does not keep -------------------------------------------------------------------
def read_building_tags(path: str | os.PathLike[str]) -> dict[tuple[str, int], dict[str, str]]:
    """The tags that shape buildings (``height``, ``min_height``, ``building:levels``, colours) of an OSM file.

    :class:`maploc.data.osm.OSMMap` keeps no tags, so they are read again here with pyosmium (ways and
    relations tagged ``building`` only).

    Args:
        path: the ``.osm.pbf`` / ``.osm`` / ``.osm.bz2`` file the map was parsed from.

    Returns:
        ``{(osm_type, osm_id): {key: value}}`` with ``osm_type`` ``"way"`` or ``"relation"``; an unreadable file gives
        an empty dict (heights then fall back to seeded draws) and a warning.
    """
    import osmium

    keys = ("height", "min_height", "building:levels", "building:min_level", "building:colour", "roof:colour")
    tags: dict[tuple[str, int], dict[str, str]] = {}
    try:
        for obj in osmium.FileProcessor(str(path), osmium.osm.WAY | osmium.osm.RELATION):
            if "building" not in obj.tags:
                continue
            found = {k: obj.tags[k] for k in keys if k in obj.tags}
            if found:
                tags[("way" if obj.is_way() else "relation", obj.id)] = found
    except (RuntimeError, ValueError, OSError) as exc:
        logger.warning("%s: cannot read building tags (%s); building heights are drawn at random", path, exc)
        return {}
    return tags


_NUMBER = re.compile(r"^\s*([0-9]+(?:[.,][0-9]+)?)\s*(m|meters|metres|ft|')?\s*$", re.IGNORECASE)


def _parse_length(value: str | None) -> float | None:
    if not value:
        return None
    match = _NUMBER.match(value)
    if match is None:
        return None
    number = float(match.group(1).replace(",", "."))
    if match.group(2) and match.group(2).lower() in ("ft", "'"):
        number *= 0.3048
    return number if math.isfinite(number) else None


def building_height(tags: Mapping[str, str], rng: np.random.Generator) -> tuple[float, float]:
    """Base and top height of a building, metres.

    Top: the ``height`` tag (metres, or feet with ``ft`` / ``'``), else ``building:levels`` x 3 m, else a uniform
    draw in 8-25 m from ``rng``. Base: ``min_height``, else ``building:min_level`` x 3 m, else 0. The top is at least
    the base + 2.5 m.

    Returns:
        ``(base, top)`` metres.
    """
    top = _parse_length(tags.get("height"))
    if top is None or top <= 0:
        levels = _parse_length(tags.get("building:levels"))
        top = 3.0 * levels if levels is not None and levels > 0 else None
    draw = float(rng.uniform(8.0, 25.0))  # drawn always, so the stream does not depend on the tags
    if top is None:
        top = draw
    base = _parse_length(tags.get("min_height"))
    if base is None:
        min_level = _parse_length(tags.get("building:min_level"))
        base = 3.0 * min_level if min_level is not None else 0.0
    top = min(top, 400.0)
    base = min(max(base, 0.0), 300.0)
    return base, max(top, base + 2.5)


def _parse_colour(value: str | None) -> tuple[float, float, float] | None:
    if not value:
        return None
    value = value.strip().lower()
    if value in _NAMED_COLOURS:
        return _NAMED_COLOURS[value]
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return tuple(int(value[k : k + 2], 16) / 255.0 for k in (1, 3, 5))  # type: ignore[return-value]
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        return tuple(int(c * 2, 16) / 255.0 for c in value[1:])  # type: ignore[return-value]
    return None


# ---- vertex assembly ----------------------------------------------------------------------------------------
class _Buffer:
    """Collects triangle-soup chunks with a (layer, tile) key per vertex."""

    def __init__(self, tile_size: float, origin: tuple[float, float]) -> None:
        self.tile_size = tile_size
        self.origin = origin
        self.chunks: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []

    def tile_of(self, xy: np.ndarray, layer: int = 0) -> np.ndarray:
        ij = np.floor((np.asarray(xy, dtype=np.float64) - self.origin) / self.tile_size).astype(np.int64)
        ij = np.clip(ij, -(1 << 19), 1 << 19)
        return ((layer * (1 << 21) + ij[..., 1] + (1 << 20)) * (1 << 21)) + (ij[..., 0] + (1 << 20))

    def add(
        self,
        pos: np.ndarray,
        normal: np.ndarray,
        *,
        uv: np.ndarray | float = 0.0,
        color: np.ndarray | Sequence[float],
        kind: str,
        label: str,
        a: np.ndarray | float = 0.0,
        b: np.ndarray | float = 0.0,
        c: np.ndarray | float = 0.0,
        d: np.ndarray | float = 0.0,
        anchor: np.ndarray | None = None,
        layer: str = "static",
    ) -> None:
        """Adds vertices ``(..., V, 3)``: attributes broadcast over the leading object dims; tile by ``anchor``
        ``(..., 2)`` (default: each vertex's own position); ``layer`` names a row of :data:`LAYERS`."""
        pos = np.asarray(pos, dtype=np.float64)
        if pos.size == 0:
            return
        shape = pos.shape[:-1]
        out = np.empty((*shape, FLOATS_PER_VERTEX), np.float32)
        out[..., 0:3] = pos
        out[..., 3:6] = normal
        out[..., 6:8] = uv
        out[..., 8:11] = color
        out[..., 11] = KINDS[kind]
        out[..., 12] = label_id(label)
        out[..., 13] = a
        out[..., 14] = b
        out[..., 15] = c
        out[..., 16] = d
        layer_index = _LAYER_INDEX[layer]
        if anchor is None:
            keys = self.tile_of(pos[..., :2], layer_index)
        else:
            keys = self.tile_of(anchor, layer_index)
            keys = np.broadcast_to(keys.reshape(keys.shape + (1,) * (len(shape) - keys.ndim)), shape)
        self.chunks.append(out.reshape(-1, FLOATS_PER_VERTEX))
        self.keys.append(np.asarray(keys).reshape(-1))

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vertices sorted by key, ``(T, 3)`` ranges ``(first, count, layer)`` and ``(T, 4)`` bounding spheres."""
        if not self.chunks:
            return np.zeros((0, FLOATS_PER_VERTEX), np.float32), np.zeros((0, 3), np.int64), np.zeros((0, 4))
        vertices = np.concatenate(self.chunks)
        keys = np.concatenate(self.keys)
        # One key per triangle (its first vertex's), so a triangle never straddles two ranges.
        tri_keys = keys[0::3]
        order = np.argsort(tri_keys, kind="stable")
        vertices = vertices.reshape(-1, 3, FLOATS_PER_VERTEX)[order].reshape(-1, FLOATS_PER_VERTEX)
        tri_keys = tri_keys[order]
        starts = np.flatnonzero(np.r_[True, tri_keys[1:] != tri_keys[:-1]])
        counts = np.diff(np.r_[starts, len(tri_keys)])
        layers = tri_keys[starts] // (1 << 42)
        ranges = np.stack([starts * 3, counts * 3, layers], axis=1).astype(np.int64)
        pos = vertices[:, :3].astype(np.float64)
        lo = np.minimum.reduceat(pos, starts * 3, axis=0)
        hi = np.maximum.reduceat(pos, starts * 3, axis=0)
        spheres = np.concatenate([(lo + hi) / 2, np.linalg.norm(hi - lo, axis=1, keepdims=True) / 2], axis=1)
        return vertices, ranges, spheres


def _template(mesh: trimesh.Trimesh, smooth: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Triangle soup ``(3F, 3)`` positions and normals of a trimesh (face or vertex normals)."""
    pos = mesh.vertices[mesh.faces].reshape(-1, 3)
    if smooth:
        normals = mesh.vertex_normals[mesh.faces].reshape(-1, 3)
    else:
        normals = np.repeat(mesh.face_normals, 3, axis=0)
    return pos.astype(np.float64), normals.astype(np.float64)


def _cylinder(sections: int = 6, top: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Unit cylinder: radius 1, z from 0 to 1, no bottom cap (it stands on the ground), top cap if asked."""
    mesh = trimesh.creation.cylinder(radius=1.0, height=1.0, sections=sections)
    mesh.apply_translation((0.0, 0.0, 0.5))
    nz = mesh.face_normals[:, 2]
    mesh.update_faces((nz > -0.5) & ((nz < 0.5) | top))
    return _template(mesh)


def _box(bottom: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Unit box: x, y in [-0.5, 0.5], z in [0, 1] (bottom face only if asked)."""
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    mesh.apply_translation((0.0, 0.0, 0.5))
    if not bottom:
        mesh.update_faces(mesh.face_normals[:, 2] > -0.5)
    return _template(mesh)


def _place(
    template: tuple[np.ndarray, np.ndarray],
    positions: np.ndarray,
    scale: np.ndarray | Sequence[float],
    yaw: np.ndarray | float = 0.0,
    offset: np.ndarray | Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Instances of a template: scaled (per axis), shifted by ``offset`` (in the object frame), turned by ``yaw``
    about z, translated to ``positions`` ``(N, 3)``. Returns ``(N, V, 3)`` positions and normals."""
    pos_t, nrm_t = template
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n = len(positions)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n, 3))
    yaw = np.broadcast_to(np.asarray(yaw, dtype=np.float64), (n,))
    local = pos_t[None] * scale[:, None, :] + np.asarray(offset, dtype=np.float64)
    normals = nrm_t[None] / np.maximum(scale[:, None, :], 1e-9)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]

    def turn(v: np.ndarray) -> np.ndarray:
        return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1], v[..., 2]], axis=-1)

    return turn(local) + positions[:, None, :], turn(normals)


# ---- geometry helpers ---------------------------------------------------------------------------------------
def _segments(lines: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if not lines:
        return np.zeros((0, 2)), np.zeros((0, 2))
    a = np.concatenate([line[:-1] for line in lines])
    b = np.concatenate([line[1:] for line in lines])
    keep = np.linalg.norm(b - a, axis=1) > 1e-6
    return a[keep], b[keep]


def nearest_on_segments(
    points: np.ndarray, seg_a: np.ndarray, seg_b: np.ndarray, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest point on a set of segments, for each query point.

    Args:
        points: ``(N, 2)`` metres.
        seg_a, seg_b: ``(M, 2)`` segment ends, metres.

    Returns:
        ``(N,)`` distances (``inf`` without segments), ``(N, 2)`` nearest points and ``(N, 2)`` unit directions of
        the nearest segments.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(points)
    dist = np.full(n, np.inf)
    nearest = points.copy()
    direction = np.tile([1.0, 0.0], (n, 1))
    if len(seg_a) == 0 or n == 0:
        return dist, nearest, direction
    d = seg_b - seg_a
    length2 = np.maximum((d**2).sum(1), 1e-12)
    for start in range(0, n, chunk):
        p = points[start : start + chunk]
        t = np.clip(((p[:, None, :] - seg_a[None]) * d[None]).sum(-1) / length2[None], 0.0, 1.0)
        q = seg_a[None] + t[..., None] * d[None]
        dd = ((p[:, None, :] - q) ** 2).sum(-1)
        k = dd.argmin(1)
        rows = np.arange(len(p))
        dist[start : start + chunk] = np.sqrt(dd[rows, k])
        nearest[start : start + chunk] = q[rows, k]
        direction[start : start + chunk] = d[k] / np.sqrt(length2[k])[:, None]
    return dist, nearest, direction


def _polygons(exterior: np.ndarray, holes: Sequence[np.ndarray]) -> list[Polygon]:
    """Valid, oriented (exterior CCW, holes CW) polygons of a ring set; invalid rings are repaired."""
    try:
        polygon = Polygon(exterior, [h for h in holes if len(h) >= 4])
    except (ValueError, shapely.errors.GEOSException):
        return []
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
    parts: list[Polygon] = []
    stack = [polygon]
    while stack:
        geom = stack.pop()
        if isinstance(geom, Polygon):
            if geom.area > 1.0:
                parts.append(orient(geom, 1.0))
        elif isinstance(geom, MultiPolygon) or hasattr(geom, "geoms"):
            stack.extend(geom.geoms)
    return parts


# ---- builders -----------------------------------------------------------------------------------------------
def _add_building(buf: _Buffer, polygon: Polygon, base: float, top: float, facade, roof, seed: float,
                  rng: np.random.Generator) -> None:  # fmt: skip
    floor_h = float(rng.uniform(2.9, 3.6))
    n_floors = max(1, round((top - base) / floor_h))
    floor_h = (top - base) / n_floors
    spacing = float(rng.uniform(2.2, 3.6))
    anchor = np.asarray(polygon.representative_point().coords[0])
    rings = [np.asarray(polygon.exterior.coords)] + [np.asarray(r.coords) for r in polygon.interiors]
    wall_index = 0.0
    for ring in rings:
        a, b = ring[:-1], ring[1:]
        edge = b - a
        length = np.linalg.norm(edge, axis=1)
        keep = length > 1e-3
        a, b, edge, length = a[keep], b[keep], edge[keep], length[keep]
        if len(a) == 0:
            continue
        normal = np.stack([edge[:, 1], -edge[:, 0], np.zeros(len(a))], axis=1) / length[:, None]
        z0, z1 = base, top
        quad = np.stack([
            np.c_[a, np.full(len(a), z0)], np.c_[b, np.full(len(a), z0)], np.c_[b, np.full(len(a), z1)],
            np.c_[a, np.full(len(a), z0)], np.c_[b, np.full(len(a), z1)], np.c_[a, np.full(len(a), z1)],
        ], axis=1)  # fmt: skip
        u = np.stack([np.zeros(len(a)), length, length, np.zeros(len(a)), length, np.zeros(len(a))], axis=1)
        v = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0]) * (z1 - z0)
        uv = np.stack([u, np.broadcast_to(v, u.shape)], axis=-1)
        columns = np.maximum(np.round(length / spacing), 1.0)
        col_w = np.where(length >= 1.8, length / columns, 0.0)
        index = wall_index + np.arange(len(a), dtype=np.float64)
        wall_index += len(a)
        buf.add(quad, np.broadcast_to(normal[:, None, :], quad.shape), uv=uv, color=facade, kind="wall",
                label="building", a=floor_h, b=col_w[:, None], c=seed, d=index[:, None],
                anchor=np.broadcast_to(anchor, (len(a), 2)))  # fmt: skip
    verts, faces = trimesh.creation.triangulate_polygon(polygon, engine="earcut")
    if len(faces) == 0:
        return
    tri = verts[faces].reshape(-1, 2)
    for z, nz in ((top, 1.0), (base, -1.0)) if base > 0.05 else ((top, 1.0),):
        pos = np.c_[tri, np.full(len(tri), z)]
        buf.add(pos, np.array([0.0, 0.0, nz]), uv=tri, color=roof, kind="roof", label="building", c=seed,
                anchor=np.broadcast_to(anchor, (len(pos), 2)))  # fmt: skip


def _add_trees(buf: _Buffer, xy: np.ndarray, rng: np.random.Generator) -> None:
    """Trees (trunk and crown) in two levels of detail: near (layer ``trees_near``) and far (``trees_far``)."""
    n = len(xy)
    if n == 0:
        return
    trunk_h = rng.uniform(2.0, 3.2, n)
    radius = rng.uniform(1.8, 3.4, n)
    trunk_r = 0.10 + 0.05 * radius
    pos0 = np.c_[xy, np.zeros(n)]
    bark = np.c_[0.33 + 0.05 * rng.random(n), 0.25 + 0.04 * rng.random(n), 0.18 + 0.03 * rng.random(n)]
    stretch = np.c_[radius, radius, radius * rng.uniform(0.8, 1.1, n)]
    centre = np.c_[xy, trunk_h + 0.8 * stretch[:, 2]]
    seed = rng.random(n)
    fine = trimesh.creation.icosphere(subdivisions=1)
    # The coarse crown is the icosahedron whose 12 vertices are the first 12 of the fine one: same jitter.
    coarse = trimesh.creation.icosphere(subdivisions=0)
    jitter = rng.uniform(0.82, 1.18, (n, len(fine.vertices), 1))
    for layer, sphere, sections in (("trees_near", fine, 6), ("trees_far", coarse, 4)):
        trunk = _place(_cylinder(sections, top=False), pos0, np.c_[trunk_r, trunk_r, trunk_h + radius * 0.5])
        buf.add(trunk[0], trunk[1], color=bark[:, None, :], kind="trunk", label="tree", anchor=xy, layer=layer)
        verts = np.asarray(sphere.vertices)
        vertices = verts[None] * jitter[:, : len(verts)] * stretch[:, None, :] + centre[:, None, :]
        tri = vertices[:, sphere.faces.reshape(-1), :]
        normals = np.broadcast_to(sphere.vertex_normals[sphere.faces.reshape(-1)], tri.shape)
        buf.add(tri, normals, color=(0.3, 0.45, 0.2), kind="crown", label="tree", c=seed[:, None], anchor=xy,
                layer=layer)  # fmt: skip


def _scatter_in(mask: np.ndarray, georef: GeoReference, density_per_m2: float, rng: np.random.Generator,
                min_distance_m: float) -> np.ndarray:  # fmt: skip
    """Seeded points inside a raster mask with a given density, thinned to a minimum distance."""
    res = georef.resolution_m
    area = float(mask.sum()) * res * res
    n = rng.poisson(area * density_per_m2)
    if n == 0:
        return np.zeros((0, 2))
    rows, cols = np.nonzero(mask)
    pick = rng.integers(0, len(rows), n)
    jitter = rng.random((n, 2))
    x = georef.x_min + (cols[pick] + jitter[:, 0]) * res
    y = georef.y_max - (rows[pick] + jitter[:, 1]) * res
    points = np.c_[x, y]
    keep: list[int] = []
    cell: dict[tuple[int, int], list[int]] = {}
    for k, (px, py) in enumerate(points):
        key = (int(px // min_distance_m), int(py // min_distance_m))
        near = [m for dx in (-1, 0, 1) for dy in (-1, 0, 1) for m in cell.get((key[0] + dx, key[1] + dy), ())]
        if all((points[m, 0] - px) ** 2 + (points[m, 1] - py) ** 2 >= min_distance_m**2 for m in near):
            keep.append(k)
            cell.setdefault(key, []).append(k)
    return points[keep]


def _add_lamps(buf: _Buffer, xy: np.ndarray, hanging: np.ndarray, toward: np.ndarray) -> np.ndarray:
    """Lamp posts with an arm pointing ``toward`` (unit, ``(N, 2)``) and hanging lamp heads; returns light
    positions ``(N, 3)``."""
    lights = np.zeros((len(xy), 3))
    post = ~hanging
    if post.any():
        p, d = xy[post], toward[post]
        yaw = np.arctan2(d[:, 1], d[:, 0])
        n = len(p)
        pole = _place(_cylinder(5, top=False), np.c_[p, np.zeros(n)], (0.07, 0.07, 6.0))
        buf.add(pole[0], pole[1], color=(0.35, 0.37, 0.38), kind="metal", label="lamp", anchor=p, layer="lamps")
        arm = _place(_box(), np.c_[p, np.full(n, 5.85)], (1.2, 0.06, 0.06), yaw, offset=(0.6, 0.0, 0.0))
        buf.add(arm[0], arm[1], color=(0.35, 0.37, 0.38), kind="metal", label="lamp", anchor=p, layer="lamps")
        head = _place(_box(True), np.c_[p, np.full(n, 5.7)], (0.6, 0.3, 0.18), yaw, offset=(1.2, 0.0, 0.0))
        buf.add(head[0], head[1], color=(0.6, 0.6, 0.6), kind="lamp", label="lamp", anchor=p, layer="lamps")
        lights[post] = np.c_[p + 1.2 * d, np.full(n, 5.5)]
    if hanging.any():
        p = xy[hanging]
        n = len(p)
        yaw = np.arctan2(toward[hanging, 1], toward[hanging, 0])
        head = _place(_box(True), np.c_[p, np.full(n, 7.0)], (0.7, 0.5, 0.25), yaw)
        buf.add(head[0], head[1], color=(0.6, 0.6, 0.6), kind="lamp", label="lamp", anchor=p, layer="lamps")
        lights[hanging] = np.c_[p, np.full(n, 6.8)]
    return lights


#: Furniture at OSM points: class -> list of (part, scale, offset, colour, kind), and the rule near road
#: centrelines ("push" to the kerb side or "skip").
_FURNITURE: dict[str, tuple[str, list[tuple[str, tuple, tuple, tuple, str]]]] = {
    "traffic_signal": ("push", [("cyl", (0.06, 0.06, 3.3), (0, 0, 0), (0.2, 0.2, 0.2), "metal"),
                                ("box", (0.3, 0.3, 1.0), (0.0, 0.0, 2.3), (0.12, 0.12, 0.1), "plain")]),
    "stop_sign": ("push", [("cyl", (0.04, 0.04, 2.3), (0, 0, 0), (0.5, 0.5, 0.5), "metal"),
                           ("box", (0.05, 0.7, 0.7), (0.0, 0.0, 1.9), (0.75, 0.1, 0.1), "plain")]),
    "give_way": ("push", [("cyl", (0.04, 0.04, 2.3), (0, 0, 0), (0.5, 0.5, 0.5), "metal"),
                          ("box", (0.05, 0.8, 0.7), (0.0, 0.0, 1.9), (0.9, 0.85, 0.3), "plain")]),
    "bus_stop": ("push", [("cyl", (0.05, 0.05, 2.6), (0, 0, 0), (0.5, 0.5, 0.5), "metal"),
                          ("box", (0.05, 0.5, 0.35), (0.0, 0.0, 2.2), (0.15, 0.35, 0.7), "plain")]),
    "pole": ("push", [("cyl", (0.12, 0.12, 8.0), (0, 0, 0), (0.42, 0.36, 0.30), "metal")]),
    "clock": ("push", [("cyl", (0.08, 0.08, 3.6), (0, 0, 0), (0.2, 0.25, 0.2), "metal"),
                       ("box", (0.5, 0.5, 0.6), (0.0, 0.0, 3.3), (0.85, 0.85, 0.8), "plain")]),
    "bollard": ("skip", [("cyl", (0.09, 0.09, 0.9), (0, 0, 0), (0.3, 0.3, 0.32), "metal")]),
    "bench": ("skip", [("box", (0.5, 1.6, 0.45), (0, 0, 0), (0.50, 0.35, 0.22), "plain")]),
    "waste_basket": ("skip", [("cyl", (0.25, 0.25, 0.9), (0, 0, 0), (0.25, 0.35, 0.25), "metal")]),
    "fire_hydrant": ("skip", [("cyl", (0.13, 0.13, 0.75), (0, 0, 0), (0.75, 0.15, 0.1), "metal")]),
    "post_box": ("skip", [("box", (0.35, 0.45, 1.1), (0, 0, 0), (0.95, 0.6, 0.1), "plain")]),
    "street_cabinet": ("skip", [("box", (0.4, 0.9, 1.25), (0, 0, 0), (0.55, 0.57, 0.55), "plain")]),
    "stone": ("skip", [("box", (0.9, 0.8, 0.6), (0, 0, 0), (0.5, 0.5, 0.48), "plain")]),
    "bicycle_parking": ("skip", [("box", (0.6, 2.4, 0.8), (0, 0, 0), (0.45, 0.47, 0.5), "metal")]),
    "charging_station": ("skip", [("box", (0.3, 0.5, 1.6), (0, 0, 0), (0.3, 0.5, 0.35), "plain")]),
    "artwork": ("skip", [("box", (1.0, 1.0, 2.6), (0, 0, 0), (0.45, 0.35, 0.25), "plain")]),
    "fountain": ("skip", [("cyl", (1.6, 1.6, 0.6), (0, 0, 0), (0.6, 0.6, 0.58), "plain")]),
}  # fmt: skip


def _add_paint(buf: _Buffer, road_lines: Sequence[np.ndarray], crossings: np.ndarray,
               seg: tuple[np.ndarray, np.ndarray]) -> int:  # fmt: skip
    """Yellow dashed centre lines (3 m dash, 6 m gap) and zebra crossings; returns the number of dashes."""
    z = 0.015
    quads: list[np.ndarray] = []
    for line in road_lines:
        s = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
        if s[-1] < 12.0:
            continue
        starts = np.arange(4.0, s[-1] - 3.0, 9.0)
        for s0 in starts:
            s1 = s0 + 3.0
            # cut the dash at the polyline's vertices
            knots = np.r_[s0, s[(s > s0) & (s < s1)], s1]
            pts = np.c_[np.interp(knots, s, line[:, 0]), np.interp(knots, s, line[:, 1])]
            for p, q in zip(pts[:-1], pts[1:]):
                d = q - p
                length = np.linalg.norm(d)
                if length < 1e-3:
                    continue
                n = np.array([-d[1], d[0]]) / length * 0.06
                quads.append(np.array([p - n, q - n, q + n, p + n]))
    count = len(quads)
    if len(crossings):
        _, centre, direction = nearest_on_segments(crossings, *seg)
        normal = np.c_[-direction[:, 1], direction[:, 0]]
        for c, d, n in zip(centre, direction, normal):
            for k in range(-2, 3):
                m = c + n * (0.85 * k)
                quads.append(np.array([m - 1.25 * d - 0.25 * n, m + 1.25 * d - 0.25 * n,
                                       m + 1.25 * d + 0.25 * n, m - 1.25 * d + 0.25 * n]))  # fmt: skip
    if not quads:
        return 0
    q = np.asarray(quads)
    tri = q[:, [0, 1, 2, 0, 2, 3], :]
    pos = np.concatenate([tri, np.full((*tri.shape[:2], 1), z)], axis=-1)
    color = np.where(np.arange(len(q))[:, None, None] < count, np.array([0.85, 0.70, 0.15]), np.array([0.9, 0.9, 0.88]))
    buf.add(pos, np.array([0.0, 0.0, 1.0]), color=color, kind="paint", label="road", anchor=q.mean(1), layer="paint")
    return count


def _add_ribbons(buf: _Buffer, lines: Sequence[np.ndarray], height: float, color, kind: str, label: str,
                 keep_segment) -> None:  # fmt: skip
    a, b = _segments(lines)
    if len(a) == 0:
        return
    keep = keep_segment((a + b) / 2)
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return
    d = b - a
    length = np.linalg.norm(d, axis=1)
    normal = np.c_[d[:, 1], -d[:, 0], np.zeros(len(a))] / length[:, None]
    z0, z1 = np.zeros(len(a)), np.full(len(a), height)
    quad = np.stack([np.c_[a, z0], np.c_[b, z0], np.c_[b, z1], np.c_[a, z0], np.c_[b, z1], np.c_[a, z1]], axis=1)
    u = np.stack([np.zeros(len(a)), length, length, np.zeros(len(a)), length, np.zeros(len(a))], axis=1)
    v = np.broadcast_to(np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0]) * height, u.shape)
    buf.add(quad, np.broadcast_to(normal[:, None, :], quad.shape), uv=np.stack([u, v], -1), color=color, kind=kind,
            label=label, anchor=(a + b) / 2)  # fmt: skip


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
        osm_map: the parsed map (:func:`maploc.data.osm.parse_osm`).
        seed: seed of every random draw (building heights without tags, colours, trees); the same seed gives the
            same scene.
        ground_resolution_m: metres per texel of the ground label grid (the OSM raster resolution); default 0.25 m,
            coarsened for large maps so that the grid has at most :data:`MAX_GROUND_TEXELS` texels and
            :data:`MAX_GROUND_SIDE` texels a side.
        margin_m: how far the ground quad extends beyond the map extent, metres.
        tile_size_m: side of the culling tiles, metres.
        clearance_m: furniture, trees and barriers keep this far from road centrelines (lamps hang above the road
            instead); metres.
        building_tags: ``{(osm_type, osm_id): tags}`` of buildings; default: read from ``osm_map.source`` with
            :func:`read_building_tags` (empty if the map has no source file).
        park_tree_density, forest_tree_density: trees per square metre scattered in parks and forests.

    Returns:
        The scene.

    Raises:
        RenderParameterError: a parameter is out of range (named).
        DataError: the map has no feature inside its extent (from :func:`maploc.data.osm.rasterize`).
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
    if building_tags is None:
        building_tags = read_building_tags(osm_map.source) if osm_map.source and Path(osm_map.source).is_file() else {}
    timings["tags_s"] = time.perf_counter() - t0

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
    buf = _Buffer(tile_size_m, (x0, y0))
    route_lines = tuple(w.xy for w in osm_map.ways if w.class_name in ROUTE_CLASSES)
    seg = _segments(route_lines)

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
        tags = building_tags.get((area.osm_type, area.osm_id), {})
        rng = np.random.default_rng([seed, area.osm_id & 0xFFFFFFFF, 1 if area.osm_type == "way" else 2])
        base, top = building_height(tags, rng)
        facade = _parse_colour(tags.get("building:colour"))
        roof = _parse_colour(tags.get("roof:colour"))
        facade_draw = _FACADE_PALETTE[rng.integers(len(_FACADE_PALETTE))] * rng.uniform(0.9, 1.05)
        roof_draw = _ROOF_PALETTE[rng.integers(len(_ROOF_PALETTE))] * rng.uniform(0.9, 1.1)
        facade = np.asarray(facade if facade is not None else facade_draw)
        roof = np.asarray(roof if roof is not None else roof_draw)
        building_seed = float(rng.random())
        for polygon in _polygons(area.exterior, area.holes):
            _add_building(buf, polygon, base, top, facade, roof, building_seed, rng)
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
            trees = np.concatenate([trees, _scatter_in(mask, grid, density, rng, 4.0)])
    trees = trees[clear_of_roads(trees) & ~in_building(trees)] if len(trees) else trees
    _add_trees(buf, trees, rng)
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
    lights = _add_lamps(buf, lamp_xy, hanging, toward)
    shapes = {"cyl": _cylinder(6), "box": _box()}
    furniture = 0
    for name, (rule, parts) in _FURNITURE.items():
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
            pos, nrm = _place(shapes[shape], np.c_[xy, np.zeros(len(xy))], scale, yaw, offset)
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
        _add_ribbons(buf, [w.xy for w in osm_map.ways if w.class_name == name], height, colour, kind, name, keep)
    crossings = np.asarray([p.xy for p in osm_map.points if p.class_name == "crossing"], dtype=np.float64)
    crossings = crossings.reshape(-1, 2)
    if len(crossings):
        crossings = crossings[~clear_of_roads(crossings, 1.0)]
    dashes = _add_paint(buf, route_lines, crossings, seg)
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

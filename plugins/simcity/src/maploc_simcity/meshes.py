"""Triangle-soup meshes for the scene: the interleaved vertex layout, the tiled vertex buffer, unit templates,
instancing, and 2-D geometry helpers (segments, nearest points, valid polygons).

Positions are in the world frame (map frame x east, y north, metres; z up, ground at ``z = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import shapely
import trimesh
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from .labels import label_id

__all__ = [
    "FLOATS_PER_VERTEX", "KINDS", "LAYERS", "LAYER_INDEX", "VERTEX_ATTRIBUTES", "VERTEX_FORMAT", "VertexBuffer",
    "line_segments", "mesh_soup", "nearest_on_segments", "place_instances", "unit_box", "unit_cylinder",
    "valid_polygons",
]  # fmt: skip

#: Interleaved vertex layout: position (3), normal (3), uv (2), colour (3), params (kind, label, a, b), extra (c, d).
VERTEX_FORMAT = "3f 3f 2f 3f 4f 2f"
VERTEX_ATTRIBUTES = ("in_pos", "in_normal", "in_uv", "in_color", "in_params", "in_extra")
FLOATS_PER_VERTEX = 17

#: Material kinds understood by the object shader.
KINDS: Mapping[str, int] = {
    "wall": 0, "roof": 1, "trunk": 2, "crown": 3, "metal": 4, "lamp": 5, "paint": 6, "plain": 7, "hedge": 8,
    "barrier": 9,
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
LAYER_INDEX = {name: k for k, name in enumerate(LAYERS)}

# ---- vertex assembly ----------------------------------------------------------------------------------------
class VertexBuffer:
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
        layer_index = LAYER_INDEX[layer]
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


def mesh_soup(mesh: trimesh.Trimesh, smooth: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Triangle soup ``(3F, 3)`` positions and normals of a trimesh (face or vertex normals)."""
    pos = mesh.vertices[mesh.faces].reshape(-1, 3)
    if smooth:
        normals = mesh.vertex_normals[mesh.faces].reshape(-1, 3)
    else:
        normals = np.repeat(mesh.face_normals, 3, axis=0)
    return pos.astype(np.float64), normals.astype(np.float64)


def unit_cylinder(sections: int = 6, top: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Unit cylinder: radius 1, z from 0 to 1, no bottom cap (it stands on the ground), top cap if asked."""
    mesh = trimesh.creation.cylinder(radius=1.0, height=1.0, sections=sections)
    mesh.apply_translation((0.0, 0.0, 0.5))
    nz = mesh.face_normals[:, 2]
    mesh.update_faces((nz > -0.5) & ((nz < 0.5) | top))
    return mesh_soup(mesh)


def unit_box(bottom: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Unit box: x, y in [-0.5, 0.5], z in [0, 1] (bottom face only if asked)."""
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    mesh.apply_translation((0.0, 0.0, 0.5))
    if not bottom:
        mesh.update_faces(mesh.face_normals[:, 2] > -0.5)
    return mesh_soup(mesh)


def place_instances(
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
def line_segments(lines: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
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


def valid_polygons(exterior: np.ndarray, holes: Sequence[np.ndarray]) -> list[Polygon]:
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



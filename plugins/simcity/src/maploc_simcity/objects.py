"""The objects of the city, added to a :class:`~.meshes.VertexBuffer`: extruded buildings, trees, street lamps,
street furniture, barrier ribbons and road paint. Each vertex carries its object's label (:mod:`.labels`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import trimesh
from shapely.geometry import Polygon

from maploc_osm import GeoReference

from .meshes import VertexBuffer, line_segments, nearest_on_segments, place_instances, unit_box, unit_cylinder

__all__ = [
    "FACADE_PALETTE", "FURNITURE", "ROOF_PALETTE", "add_building", "add_lamps", "add_paint", "add_ribbons",
    "add_trees", "scatter_in_mask",
]  # fmt: skip

FACADE_PALETTE = np.array([
    (0.80, 0.65, 0.42), (0.90, 0.82, 0.58), (0.88, 0.85, 0.76), (0.76, 0.75, 0.72), (0.62, 0.34, 0.26),
    (0.85, 0.62, 0.52), (0.70, 0.77, 0.66), (0.90, 0.89, 0.86), (0.48, 0.48, 0.50), (0.70, 0.77, 0.84),
    (0.82, 0.72, 0.60), (0.66, 0.52, 0.40),
])  # fmt: skip
ROOF_PALETTE = np.array([
    (0.25, 0.26, 0.28), (0.16, 0.16, 0.17), (0.42, 0.60, 0.52), (0.45, 0.23, 0.18), (0.52, 0.54, 0.57),
])  # fmt: skip

def add_building(buf: VertexBuffer, polygon: Polygon, base: float, top: float, facade, roof, seed: float,
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


def add_trees(buf: VertexBuffer, xy: np.ndarray, rng: np.random.Generator) -> None:
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
        trunk = place_instances(unit_cylinder(sections, top=False), pos0, np.c_[trunk_r, trunk_r, trunk_h + radius * 0.5])
        buf.add(trunk[0], trunk[1], color=bark[:, None, :], kind="trunk", label="tree", anchor=xy, layer=layer)
        verts = np.asarray(sphere.vertices)
        vertices = verts[None] * jitter[:, : len(verts)] * stretch[:, None, :] + centre[:, None, :]
        tri = vertices[:, sphere.faces.reshape(-1), :]
        normals = np.broadcast_to(sphere.vertex_normals[sphere.faces.reshape(-1)], tri.shape)
        buf.add(tri, normals, color=(0.3, 0.45, 0.2), kind="crown", label="tree", c=seed[:, None], anchor=xy,
                layer=layer)  # fmt: skip


def scatter_in_mask(mask: np.ndarray, georef: GeoReference, density_per_m2: float, rng: np.random.Generator,
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


def add_lamps(buf: VertexBuffer, xy: np.ndarray, hanging: np.ndarray, toward: np.ndarray) -> np.ndarray:
    """Lamp posts with an arm pointing ``toward`` (unit, ``(N, 2)``) and hanging lamp heads; returns light
    positions ``(N, 3)``."""
    lights = np.zeros((len(xy), 3))
    post = ~hanging
    if post.any():
        p, d = xy[post], toward[post]
        yaw = np.arctan2(d[:, 1], d[:, 0])
        n = len(p)
        pole = place_instances(unit_cylinder(5, top=False), np.c_[p, np.zeros(n)], (0.07, 0.07, 6.0))
        buf.add(pole[0], pole[1], color=(0.35, 0.37, 0.38), kind="metal", label="lamp", anchor=p, layer="lamps")
        arm = place_instances(unit_box(), np.c_[p, np.full(n, 5.85)], (1.2, 0.06, 0.06), yaw, offset=(0.6, 0.0, 0.0))
        buf.add(arm[0], arm[1], color=(0.35, 0.37, 0.38), kind="metal", label="lamp", anchor=p, layer="lamps")
        head = place_instances(unit_box(True), np.c_[p, np.full(n, 5.7)], (0.6, 0.3, 0.18), yaw, offset=(1.2, 0.0, 0.0))
        buf.add(head[0], head[1], color=(0.6, 0.6, 0.6), kind="lamp", label="lamp", anchor=p, layer="lamps")
        lights[post] = np.c_[p + 1.2 * d, np.full(n, 5.5)]
    if hanging.any():
        p = xy[hanging]
        n = len(p)
        yaw = np.arctan2(toward[hanging, 1], toward[hanging, 0])
        head = place_instances(unit_box(True), np.c_[p, np.full(n, 7.0)], (0.7, 0.5, 0.25), yaw)
        buf.add(head[0], head[1], color=(0.6, 0.6, 0.6), kind="lamp", label="lamp", anchor=p, layer="lamps")
        lights[hanging] = np.c_[p, np.full(n, 6.8)]
    return lights


#: Furniture at OSM points: class -> list of (part, scale, offset, colour, kind), and the rule near road
#: centrelines ("push" to the kerb side or "skip").
FURNITURE: dict[str, tuple[str, list[tuple[str, tuple, tuple, tuple, str]]]] = {
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


def add_paint(buf: VertexBuffer, road_lines: Sequence[np.ndarray], crossings: np.ndarray,
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


def add_ribbons(buf: VertexBuffer, lines: Sequence[np.ndarray], height: float, color, kind: str, label: str,
                 keep_segment) -> None:  # fmt: skip
    a, b = line_segments(lines)
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



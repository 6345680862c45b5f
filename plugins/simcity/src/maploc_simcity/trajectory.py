"""Camera trajectories along the OSM road graph: one route, several traversals of it, frames aligned by place.

A **route** is a seeded walk along connected road centrelines (:attr:`maploc_osm.OSMMap.road_graph`, edges of
the classes in ``classes``): at every junction it prefers to go straight on and avoids streets it already took;
at a dead end it turns back. Edges within ``building_clearance_m`` of a building footprint (passages through
buildings) or within ``margin_m`` of the map's border are not used.

A **traversal** places one camera every ``spacing_m`` metres of the route: frame ``i`` of every traversal lies at
the same arc length ``s_i`` (aligned by place, as in Gardens Point or Nordland), at the traversal's lateral offset
from the centreline (metres, positive to the left of the direction of travel) and at 1.5-2 m height, looking along
the road (the heading of the route smoothed over +-``heading_window_m``) with seeded yaw jitter and small pitch
and roll noise. Everything is a function of the seed.

With the **varying speed profile** (:data:`SPEED_PROFILES`, :func:`frame_arc_lengths`) every traversal but the
map traversal 0 drives at a smoothly varying speed instead: its frames are no longer at the map's places (frame
``i`` of traversal ``k >= 1`` is near, not at, frame ``i`` of traversal 0), as in a real revisit of a route.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np
from shapely import STRtree, points
from shapely.geometry import Polygon

from maploc.errors import DataError
from maploc.types import Pose2
from maploc_osm import OSMMap
from maploc_osm.classes import WAY_CLASSES

from .camera import camera_pose
from .gl import RenderParameterError

__all__ = [
    "SPEED_AMPLITUDE",
    "SPEED_PERIOD_M",
    "SPEED_PROFILES",
    "Route",
    "ViewPose",
    "frame_arc_lengths",
    "plan_route",
    "traversal_offsets",
    "traversal_poses",
]

#: Speed profiles of :func:`frame_arc_lengths`: ``constant`` (every traversal at the map's places) or ``varying``.
SPEED_PROFILES: tuple[str, ...] = ("constant", "varying")
#: Relative amplitude ``A`` of the varying speed profile: frame spacing in ``spacing_m * [1 - A, 1 + A]``.
SPEED_AMPLITUDE = 0.35
#: Target period ``L`` of the varying speed profile along the route, metres (rounded to whole cycles per traversal).
SPEED_PERIOD_M = 200.0


@attrs.frozen(kw_only=True, eq=False)
class Route:
    """A polyline along road centrelines.

    Attributes:
        xy: ``(N, 2)`` float64 vertices (road-graph nodes in walking order), map frame, metres.
        s: ``(N,)`` float64 arc length at each vertex, metres (``s[0] = 0``).
        node_ids: ``(N,)`` int64 OSM node ids of the vertices.
    """

    xy: np.ndarray
    s: np.ndarray
    node_ids: np.ndarray

    @property
    def length(self) -> float:
        """Total length, metres."""
        return float(self.s[-1])

    def point(self, s: np.ndarray | float) -> np.ndarray:
        """Points at arc lengths ``s`` (clamped to the route), ``(..., 2)`` metres."""
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length)
        return np.stack([np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1])], axis=-1)

    def heading(self, s: np.ndarray | float, window_m: float = 4.0) -> np.ndarray:
        """Direction of travel at ``s``: the chord from ``s - window`` to ``s + window`` (radians, CCW from east);
        where it is shorter than 0.5 m (a U-turn), the direction of the segment at ``s``."""
        s = np.asarray(s, dtype=np.float64)
        chord = self.point(s + window_m) - self.point(s - window_m)
        local = self.point(s + 0.05) - self.point(s - 0.05)
        use = (np.linalg.norm(chord, axis=-1) < 0.5)[..., None]
        d = np.where(use, local, chord)
        return np.arctan2(d[..., 1], d[..., 0])


@attrs.frozen(kw_only=True, eq=False)
class ViewPose:
    """The pose of one frame of one traversal.

    Attributes:
        T_cam2world: ``(4, 4)`` float64 camera-to-world, OpenCV camera frame, world = map frame with z up, metres.
        pose2: map-frame pose: camera position ``(x, y)`` metres and heading of the optical axis (radians).
        traversal: traversal index.
        index: frame index (the same place in every traversal).
        arc_length_m: position along the route, metres.
        lateral_offset_m: offset from the centreline, metres, positive to the left.
        height_m: camera height above the ground, metres.
    """

    T_cam2world: np.ndarray
    pose2: Pose2
    traversal: int
    index: int
    arc_length_m: float
    lateral_offset_m: float
    height_m: float


def _usable_edges(osm_map: OSMMap, classes: Sequence[str], margin_m: float, building_clearance_m: float) -> np.ndarray:
    graph = osm_map.road_graph
    unknown = [c for c in classes if c not in WAY_CLASSES]
    if unknown:
        raise RenderParameterError(f"unknown road classes {unknown}; way classes: {', '.join(WAY_CLASSES)}")
    wanted = np.asarray([WAY_CLASSES.index(c) for c in classes], dtype=np.int64)
    keep = np.isin(graph.edge_classes, wanted)
    if not keep.any():
        return np.zeros(0, np.int64)
    a, b = graph.xy[graph.edges[:, 0]], graph.xy[graph.edges[:, 1]]
    x0, y0, x1, y1 = osm_map.extent
    for end in (a, b):
        keep &= (end[:, 0] > x0 + margin_m) & (end[:, 0] < x1 - margin_m)
        keep &= (end[:, 1] > y0 + margin_m) & (end[:, 1] < y1 - margin_m)
    keep &= np.linalg.norm(b - a, axis=1) > 1e-3
    footprints = [
        Polygon(area.exterior, [h for h in area.holes if len(h) >= 4]).buffer(0)
        for area in osm_map.areas
        if area.class_name == "building"
    ]
    footprints = [f for f in footprints if not f.is_empty]
    index = np.flatnonzero(keep)
    if footprints and len(index):
        tree = STRtree(footprints)
        t = np.linspace(0.0, 1.0, 5)
        samples = a[index, None, :] + t[None, :, None] * (b[index] - a[index])[:, None, :]
        hits, _ = tree.query(points(samples.reshape(-1, 2)), predicate="dwithin", distance=building_clearance_m)
        blocked = np.zeros(len(index) * len(t), bool)
        blocked[hits] = True
        index = index[~blocked.reshape(len(index), len(t)).any(axis=1)]
    return index


def plan_route(
    osm_map: OSMMap,
    length_m: float,
    *,
    seed: int = 0,
    classes: Sequence[str] = ("road",),
    margin_m: float = 30.0,
    building_clearance_m: float = 1.5,
    stream: int = 0,
) -> Route:
    """A seeded walk of at least ``length_m`` metres along connected road centrelines (see the module docstring).

    Args:
        osm_map: the parsed map.
        length_m: the least route length, metres (> 0).
        seed: the walk's seed.
        classes: way classes of the road graph to walk on (default: roads for cars).
        margin_m: edges with an end closer than this to the map border are not used, metres.
        building_clearance_m: edges passing closer than this to a building footprint are not used, metres.
        stream: the walk's random stream under ``seed`` (>= 0): stream 0 is the route every traversal follows,
            streams ``1, 2, ...`` are the independent extra training routes of ``render_command(train_routes=...)``
            (each starts at its own place and heading).

    Returns:
        The route, starting in the largest connected part of the usable road graph.

    Raises:
        DataError: the map has no usable road (the message says which classes were looked for and how many edges
            the road graph has).
        RenderParameterError: ``length_m`` is not positive, ``stream`` is negative, or a class is unknown.
    """
    if not (isinstance(length_m, (int, float)) and math.isfinite(length_m) and length_m > 0):
        raise RenderParameterError(f"length_m must be a positive number of metres, got {length_m!r}")
    graph = osm_map.road_graph
    edges_index = _usable_edges(osm_map, classes, margin_m, building_clearance_m)
    if len(edges_index) == 0:
        source = osm_map.source or "the OSM map"
        raise DataError(
            f"{source}: no road to place cameras on: trajectories follow road centrelines of the classes "
            f"{', '.join(classes)} (OSM highway=* ways), farther than {margin_m:g} m from the map border and "
            f"{building_clearance_m:g} m from buildings; the map's road graph has {graph.num_edges} edges, none usable"
        )
    edges = graph.edges[edges_index]
    xy = graph.xy
    lengths = np.linalg.norm(xy[edges[:, 1]] - xy[edges[:, 0]], axis=1)
    adjacency: dict[int, list[tuple[int, int]]] = {}
    for k, (u, v) in enumerate(edges):
        adjacency.setdefault(int(u), []).append((k, int(v)))
        adjacency.setdefault(int(v), []).append((k, int(u)))
    # largest connected part, by length
    component_of: dict[int, int] = {}
    sizes: list[float] = []
    for node in sorted(adjacency):
        if node in component_of:
            continue
        label = len(sizes)
        stack, total = [node], 0.0
        component_of[node] = label
        while stack:
            current = stack.pop()
            for k, other in adjacency[current]:
                if other not in component_of:
                    component_of[other] = label
                    stack.append(other)
                total += lengths[k] / 2
        sizes.append(total)
    best = int(np.argmax(sizes))
    nodes = np.asarray(sorted(n for n, c in component_of.items() if c == best), dtype=np.int64)
    if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)) or stream < 0:
        raise RenderParameterError(f"stream must be a non-negative integer, got {stream!r}")
    rng = np.random.default_rng([seed, 11] if stream == 0 else [seed, 11, int(stream)])
    middle = nodes[[len(adjacency[int(n)]) == 2 for n in nodes]]
    current = int(rng.choice(middle if len(middle) else nodes))
    k, other = adjacency[current][int(rng.integers(len(adjacency[current])))]
    visits = np.zeros(len(edges), np.int64)
    path = [current, other]
    came_by, total = k, float(lengths[k])
    visits[k] += 1
    current = other
    for _ in range(1_000_000):
        if total >= length_m:
            break
        options = [(e, o) for e, o in adjacency[current] if e != came_by] or adjacency[current]
        heading = xy[current] - xy[path[-2]]
        heading /= max(np.linalg.norm(heading), 1e-9)
        weights = []
        for e, o in options:
            d = xy[o] - xy[current]
            d /= max(np.linalg.norm(d), 1e-9)
            turn = math.acos(float(np.clip(d @ heading, -1.0, 1.0)))
            weights.append(math.exp(-((turn / 0.6) ** 2)) * 0.1 ** visits[e] + 1e-9)
        w = np.asarray(weights)
        e, o = options[int(rng.choice(len(options), p=w / w.sum()))]
        path.append(o)
        visits[e] += 1
        total += float(lengths[e])
        came_by, current = e, o
    route_xy = xy[np.asarray(path)]
    s = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(route_xy, axis=0), axis=1))]
    return Route(xy=route_xy, s=s, node_ids=graph.node_ids[np.asarray(path)])


def traversal_offsets(traversals: int, max_offset_m: float = 1.2) -> np.ndarray:
    """Lateral offsets (metres, positive left) of ``traversals`` traversals: 0 for one, else evenly spread over
    ``[-max_offset_m, max_offset_m]`` (two traversals: right and left of the centreline)."""
    if traversals < 1:
        raise RenderParameterError(f"traversals must be at least 1, got {traversals}")
    return np.zeros(1) if traversals == 1 else np.linspace(-max_offset_m, max_offset_m, traversals)


def frame_arc_lengths(
    frames: int,
    *,
    spacing_m: float = 4.0,
    start_m: float = 5.0,
    speed_profile: str = "constant",
    traversal: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Arc lengths of the ``frames`` frames of one traversal along its route, metres.

    ``constant`` (and traversal 0, the map traversal, under either profile): ``s_i = start_m + i * spacing_m``.

    ``varying``, traversal ``k >= 1``: the traversal covers the same stretch of road as traversal 0, from
    ``start_m`` to ``start_m + D`` with ``D = (frames - 1) * spacing_m``, at a speed that varies smoothly with time.
    With ``u_i = i / (frames - 1)`` (frame time, 0 to 1), ``P = max(1, round(D / SPEED_PERIOD_M))`` whole speed
    cycles per traversal, ``A = SPEED_AMPLITUDE = 0.35`` and a phase ``phi_k`` uniform in ``[0, 2 pi)`` drawn from
    ``numpy.random.default_rng([seed, 307, k])``::

        s_i = start_m + D * (u_i - A / (2 pi P) * (cos(2 pi P u_i + phi_k) - cos(phi_k)))

    i.e. the speed (the derivative of ``s`` in frames) is ``spacing_m * (1 + A * sin(2 pi P u + phi_k))``, a sine
    of period ``D / P`` metres along the route (about ``SPEED_PERIOD_M`` = 200 m; 198 m for the dataset's default
    100 frames at 4 m). The spacing between consecutive frames, the mean speed over their interval, therefore stays
    within ``[(1 - A) spacing_m, (1 + A) spacing_m]`` = ``[0.65, 1.35] * spacing_m`` (2.6 to 5.4 m at 4 m); frames
    stay in order. Because ``P`` is whole, the last frame lands exactly where traversal 0's does: no traversal runs
    past the map traversal's end (nor needs a longer route than today's). Frame ``i`` is at most
    ``A D / (pi P)`` metres (about 22 m, 5-6 frames, at the default period) along the road from map frame ``i``.
    With one frame, ``s_0 = start_m``; with two, the spacing is ``spacing_m`` (one whole cycle averages out).

    Args:
        frames: number of frames (>= 1).
        spacing_m: the mean distance between consecutive frames, metres (> 0).
        start_m: arc length of frame 0, metres.
        speed_profile: one of :data:`SPEED_PROFILES`.
        traversal: the traversal's index (>= 0); 0 keeps the constant spacing.
        seed: the dataset's seed (with ``traversal``, the phase ``phi_k``).

    Returns:
        ``(frames,)`` float64 arc lengths, increasing, metres.

    Raises:
        RenderParameterError: an unknown ``speed_profile``, or ``frames`` / ``spacing_m`` / ``traversal`` out of range.
    """
    if speed_profile not in SPEED_PROFILES:
        raise RenderParameterError(f"speed_profile must be one of {', '.join(SPEED_PROFILES)}, got {speed_profile!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise RenderParameterError(f"frames must be a positive integer, got {frames!r}")
    if not (isinstance(spacing_m, (int, float)) and math.isfinite(spacing_m) and spacing_m > 0):
        raise RenderParameterError(f"spacing_m must be a positive number of metres, got {spacing_m!r}")
    if isinstance(traversal, bool) or not isinstance(traversal, (int, np.integer)) or traversal < 0:
        raise RenderParameterError(f"traversal must be a non-negative integer, got {traversal!r}")
    if speed_profile == "constant" or traversal == 0 or frames == 1:
        return start_m + spacing_m * np.arange(frames)
    span = (frames - 1) * spacing_m
    cycles = max(1, round(span / SPEED_PERIOD_M))
    phase = float(np.random.default_rng([seed, 307, int(traversal)]).uniform(0.0, 2.0 * math.pi))
    u = np.arange(frames) / (frames - 1)
    a = SPEED_AMPLITUDE / (2.0 * math.pi * cycles)
    g = u - a * (np.cos(2.0 * math.pi * cycles * u + phase) - math.cos(phase))
    g[-1] = 1.0  # exactly traversal 0's last place (the formula gives 1 up to rounding)
    return start_m + span * g


def traversal_poses(
    route: Route,
    frames: int,
    *,
    spacing_m: float = 4.0,
    traversal: int = 0,
    traversals: int = 1,
    seed: int = 0,
    start_m: float = 5.0,
    height_range_m: tuple[float, float] = (1.5, 2.0),
    max_offset_m: float = 1.2,
    yaw_jitter_deg: float = 4.0,
    pitch_std_deg: float = 1.5,
    roll_std_deg: float = 1.0,
    heading_window_m: float = 4.0,
    stream: int = 0,
    speed_profile: str = "constant",
) -> list[ViewPose]:
    """The camera poses of one traversal of a route (see the module docstring).

    Args:
        route: the route (:func:`plan_route`), at least ``start_m + (frames - 1) * spacing_m`` metres long.
        frames: number of frames (>= 1).
        spacing_m: distance between consecutive frames along the route, metres (> 0).
        traversal: index of this traversal, in ``[0, traversals)``.
        traversals: number of traversals (sets the lateral offsets, :func:`traversal_offsets`).
        seed: seed of the noise (with ``traversal``).
        start_m: arc length of frame 0, metres.
        height_range_m: camera heights are drawn in this range, metres.
        max_offset_m: largest lateral offset, metres.
        yaw_jitter_deg, pitch_std_deg, roll_std_deg: standard deviations of the per-frame noise, degrees
            (clipped at 2.5 sigma).
        heading_window_m: half length of the chord that smooths the heading, metres.
        stream: the noise's random stream (0 for the main route; the extra training route's index for the others,
            so that they do not repeat the main route's noise).
        speed_profile: ``constant`` or ``varying``: where the frames lie along the route (:func:`frame_arc_lengths`;
            ``varying`` moves the frames of traversals ``>= 1`` only). Poses are at the frames' true places.

    Returns:
        ``frames`` poses, frame ``i`` at arc length ``start_m + i * spacing_m`` (``constant``) or at
        :func:`frame_arc_lengths`' ``s_i`` (``varying``).

    Raises:
        RenderParameterError: a parameter is out of range (named), or the route is too short.
    """
    if not (isinstance(frames, (int, np.integer)) and frames >= 1):
        raise RenderParameterError(f"frames must be a positive integer, got {frames!r}")
    if not (math.isfinite(spacing_m) and spacing_m > 0):
        raise RenderParameterError(f"spacing_m must be a positive number of metres, got {spacing_m!r}")
    if not 0 <= traversal < traversals:
        raise RenderParameterError(f"traversal must be in [0, {traversals}), got {traversal}")
    lo, hi = height_range_m
    if not (0 < lo <= hi):
        raise RenderParameterError(
            f"height_range_m must be (low, high) metres with 0 < low <= high, got {height_range_m}"
        )
    needed = start_m + (frames - 1) * spacing_m
    if route.length + 1e-6 < needed:
        raise RenderParameterError(
            f"the route is {route.length:.1f} m long but {frames} frames every {spacing_m} m need {needed:.1f} m"
        )
    rng = np.random.default_rng([seed, 101, traversal] if stream == 0 else [seed, 101, traversal, int(stream)])
    s = frame_arc_lengths(frames, spacing_m=spacing_m, start_m=start_m, speed_profile=speed_profile,
                          traversal=traversal, seed=seed)  # fmt: skip
    base_height = rng.uniform(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo))
    height = np.clip(base_height + rng.normal(0.0, 0.02, frames), lo, hi)
    offset = traversal_offsets(traversals, max_offset_m)[traversal] + np.clip(rng.normal(0.0, 0.08, frames), -0.2, 0.2)

    def noise(std_deg: float) -> np.ndarray:
        return np.radians(np.clip(rng.normal(0.0, std_deg, frames), -2.5 * std_deg, 2.5 * std_deg))

    yaw_noise, pitch, roll = noise(yaw_jitter_deg), noise(pitch_std_deg), noise(roll_std_deg)
    heading = route.heading(s, heading_window_m)
    centre = route.point(s)
    left = np.stack([-np.sin(heading), np.cos(heading)], axis=1)
    xy = centre + offset[:, None] * left
    poses = []
    for i in range(frames):
        yaw = float(heading[i] + yaw_noise[i])
        T = camera_pose(xy[i, 0], xy[i, 1], float(height[i]), yaw, float(pitch[i]), float(roll[i]))
        poses.append(
            ViewPose(
                T_cam2world=T,
                pose2=Pose2(x=xy[i, 0], y=xy[i, 1], yaw=yaw),
                traversal=traversal,
                index=i,
                arc_length_m=float(s[i]),
                lateral_offset_m=float(offset[i]),
                height_m=float(height[i]),
            )
        )
    return poses

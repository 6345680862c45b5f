"""``maploc data render``: render traversals of an OSM map under several conditions into the dataset layouts."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from maploc.errors import DataError
from maploc_osm.source import resolve_map

from .camera import make_camera
from .conditions import CONDITIONS, Condition, get_condition
from .gl import RenderParameterError
from .labels import LABEL_NAMES
from .renderer import Renderer
from .sampler import DISTRIBUTIONS, sample_conditions
from .scene import build_scene
from .trajectory import SPEED_PROFILES, plan_route, traversal_poses
from .writers import (
    DEPTH_SCALE_M,
    DSACWriter,
    FrameRecord,
    MGLWriter,
    TraversalsWriter,
    _json,
    colorize_depth,
    colorize_labels,
    contact_sheet,
    sequence_name,
)

__all__ = ["FORMAT_VERSION", "LAYOUTS", "render_command", "resolve_map"]

logger = logging.getLogger(__name__)

#: Layouts :func:`render_command` can write (``traversals`` always is: the others link its images).
LAYOUTS: tuple[str, ...] = ("traversals", "dsac", "mgl")
#: Resolution of the OSM raster written into the map-localization layout, metres per pixel.
MGL_RASTER_RESOLUTION_M = 0.5
#: Version of the output format (``render.json`` ``format``); part of the SimCity cache key.
FORMAT_VERSION = 1
#: ``train_conditions`` value: draw the training routes' conditions from :func:`.sampler.sample_conditions`.
RANDOM = "random"


def _condition_names(names: Sequence[str], option: str) -> list[str]:
    """``names`` stripped, each a known condition, none repeated (else :class:`RenderParameterError` naming ``option``)."""
    names = [str(c).strip() for c in names]
    for c in names:
        get_condition(c)
    if len(set(names)) != len(names):
        raise RenderParameterError(f"{option} must not repeat, got {names}")
    return names


def _check_options(frames: Any, conditions: Sequence[str], traversals: Any, spacing_m: Any,
                   layouts: Sequence[str], lateral_offset_m: Any = 0.0, train_routes: Any = 0,
                   train_conditions: Sequence[str] = ()) -> list[str]:  # fmt: skip
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise RenderParameterError(f"frames must be a positive integer, got {frames!r}")
    if isinstance(traversals, bool) or not isinstance(traversals, (int, np.integer)) or traversals < 1:
        raise RenderParameterError(f"traversals must be a positive integer, got {traversals!r}")
    if isinstance(train_routes, bool) or not isinstance(train_routes, (int, np.integer)) or not 0 <= train_routes <= 1000:
        raise RenderParameterError(f"train_routes must be an integer in [0, 1000], got {train_routes!r}")
    if not isinstance(spacing_m, (int, float)) or not math.isfinite(spacing_m) or spacing_m <= 0:
        raise RenderParameterError(f"spacing_m must be a positive number of metres, got {spacing_m!r}")
    if not isinstance(lateral_offset_m, (int, float)) or not 0 <= lateral_offset_m <= 10:
        raise RenderParameterError(f"lateral_offset_m must be in [0, 10] metres, got {lateral_offset_m!r}")
    conditions = _condition_names(conditions, "conditions")
    if not conditions:
        raise RenderParameterError(f"conditions must name at least one of {', '.join(CONDITIONS)}")
    if train_conditions and not train_routes:
        raise RenderParameterError("train_conditions applies to the extra training routes: set train_routes >= 1 too")
    if RANDOM in train_conditions:
        if len(train_conditions) > 1:
            raise RenderParameterError(f"train_conditions {RANDOM!r} draws every condition; name it alone, got "
                                       f"{list(train_conditions)}")  # fmt: skip
    else:
        _condition_names(train_conditions, "train_conditions")
    unknown = [layout for layout in layouts if layout not in LAYOUTS]
    if unknown:
        raise RenderParameterError(f"unknown layouts {unknown}; known: {', '.join(LAYOUTS)}")
    return conditions


def render_command(
    map_name: str,
    frames: int,
    conditions: list[str],
    out: Path,
    seed: int = 0,
    traversals: int = 1,
    width: int = 320,
    height: int = 240,
    fov_deg: float = 70.0,
    *,
    spacing_m: float = 4.0,
    lateral_offset_m: float = 1.2,
    train_routes: int = 0,
    train_conditions: Sequence[str] = (),
    condition_distribution: str = "day-to-night",
    condition_seed: int = 0,
    random_per: str = "view",
    speed_profile: str = "constant",
    layouts: Sequence[str] = LAYOUTS,
    progress: bool | None = True,
    sheet_columns: int = 6,
) -> Path:
    """Renders ``traversals`` traversals of one route of a map under each condition, into ``out``.

    The route is a seeded walk along the map's roads (:func:`.trajectory.plan_route`); traversal ``t`` has its own
    lateral offset and noise (:func:`.trajectory.traversal_poses`), and every condition renders the same poses.
    ``train_routes`` extra routes (independent walks from their own starts, so that streets are seen in both
    directions and from more places) are rendered as sequences ``r1_<c>, r2_<c>, ...`` under the first condition
    ``c`` (or, with ``train_conditions``, route ``k`` under ``train_conditions[(k - 1) % n]``), one traversal
    each (lateral offset of traversal ``k mod traversals``): training data for methods that learn from many
    places (``sim-city``'s ``train`` split), never queries.
    ``out`` receives the layouts of :mod:`.writers` (``traversals/`` always, ``dsac/`` and ``mgl/`` if asked),
    ``contact_sheet.png`` (one row per traversal and condition at the same places, plus labels and depth of the
    first) and, last, ``render.json`` (every option, the map reference, the camera, scene statistics, timings).

    Args:
        map_name: a sample name (``helsinki-osm``, fetched on first use), or the path of an OSM file.
        frames: frames per traversal and condition.
        conditions: names from :data:`.conditions.CONDITIONS` (``day``, ``overcast``, ``dusk``, ``night``,
            ``autumn``, the held-out ``smog``).
        out: the output folder (created; existing files of the same names are replaced).
        seed: seed of the scene's random draws, the route and the camera noise.
        traversals: traversals of the route (lateral offsets spread over +-``lateral_offset_m``).
        width, height: image size in pixels.
        fov_deg: horizontal field of view in degrees.
        spacing_m: metres between consecutive frames along the route.
        lateral_offset_m: the largest lateral offset of a traversal from the road centreline, metres: traversals
            are spread evenly over ``[-lateral_offset_m, +lateral_offset_m]`` (one traversal: on the centreline).
        train_routes: extra training routes of ``frames`` frames each (see above), in [0, 1000].
        train_conditions: the conditions the training routes cycle through (see above); empty = the first of
            ``conditions``; ``["random"]``: every view of the training routes (or every route, ``random_per``) under
            its own condition drawn by :func:`.sampler.sample_conditions` (sequences ``r<k>_random``, each with a
            ``conditions.json`` of the parameters of its frames).
        condition_distribution: the sampler's distribution (:data:`.sampler.DISTRIBUTIONS`), with ``random``.
        condition_seed: the sampler's seed, with ``random``: view ``i`` of route ``k`` takes draw
            ``(k - 1) * frames + i`` (``random_per="view"``) or route ``k`` draw ``k - 1`` (``"route"``).
        random_per: ``view`` or ``route``, with ``random``.
        speed_profile: ``constant`` (frame ``i`` of every traversal at the same place) or ``varying``: traversals
            ``>= 1`` of the route at a smoothly varying speed, frames 0.65 to 1.35 times ``spacing_m`` apart over
            the same stretch of road (:func:`.trajectory.frame_arc_lengths`); traversal 0 and the training routes
            keep the constant spacing. ``render.json`` records it under ``options`` only when ``varying``.
        layouts: which of :data:`LAYOUTS` to write besides ``traversals``.
        progress: show a tqdm progress bar (on stderr); ``None``: only when stderr is a terminal.
        sheet_columns: frames per row of the contact sheet.

    Returns:
        ``out``.

    Raises:
        RenderParameterError: an option is out of range (named), e.g. ``fov_deg``, ``width``, ``frames``, or an unknown
            condition.
        DataError: the map cannot be found or read, or has no road for the cameras.
        RenderError: no usable OpenGL (names the missing library and how to install it).
    """
    from tqdm.auto import tqdm

    from maploc_osm import ATTRIBUTION, parse_osm, rasterize

    t_start = time.perf_counter()
    train_conditions = [str(c).strip() for c in train_conditions]
    conditions = _check_options(frames, conditions, traversals, spacing_m, layouts, lateral_offset_m, train_routes,
                                train_conditions)  # fmt: skip
    if condition_distribution not in DISTRIBUTIONS:
        raise RenderParameterError(f"unknown condition_distribution {condition_distribution!r}; known: "
                                   f"{', '.join(DISTRIBUTIONS)}")  # fmt: skip
    if speed_profile not in SPEED_PROFILES:
        raise RenderParameterError(f"speed_profile must be one of {', '.join(SPEED_PROFILES)}, got {speed_profile!r}")
    if random_per not in ("view", "route"):
        raise RenderParameterError(f"random_per must be 'view' or 'route', got {random_per!r}")
    if isinstance(condition_seed, bool) or not isinstance(condition_seed, (int, np.integer)) or condition_seed < 0:
        raise RenderParameterError(f"condition_seed must be a non-negative integer, got {condition_seed!r}")
    cycle = train_conditions or conditions[:1]  # route k renders under cycle[(k - 1) % len(cycle)]
    route_conditions = [cycle[(k - 1) % len(cycle)] for k in range(1, train_routes + 1)]
    sampled = _sampled_conditions(train_conditions, train_routes, frames, condition_distribution, condition_seed,
                                  random_per)  # fmt: skip
    camera = make_camera(width, height, fov_deg)
    out = Path(out)
    osm_path = resolve_map(map_name)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    osm_map = parse_osm(osm_path)
    timings["parse_s"] = time.perf_counter() - t
    t = time.perf_counter()
    scene = build_scene(osm_map, seed=seed)
    timings["scene_s"] = time.perf_counter() - t
    x0, y0, x1, y1 = osm_map.extent
    margin = min(30.0, 0.1 * min(x1 - x0, y1 - y0))
    start_m = 5.0
    route_length = start_m + (frames - 1) * spacing_m + 5.0
    route = plan_route(osm_map, route_length, seed=seed, margin_m=margin)
    extra_routes = [plan_route(osm_map, route_length, seed=seed, margin_m=margin, stream=k)
                    for k in range(1, train_routes + 1)]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)

    K = camera.K.double().numpy()
    meta = {
        "format": FORMAT_VERSION,
        "map": {
            "name": str(map_name),
            "source": osm_path.name,
            "sha256": osm_map.source_sha256,
            "georef": osm_map.georef.to_dict(),
            "extent": list(osm_map.extent),
            "attribution": ATTRIBUTION,
        },
        "options": {
            "frames": int(frames),
            "conditions": conditions,
            "traversals": int(traversals),
            "seed": int(seed),
            "width": int(width),
            "height": int(height),
            "fov_deg": float(fov_deg),
            "spacing_m": float(spacing_m),
            "lateral_offset_m": float(lateral_offset_m),
            "train_routes": int(train_routes),
            "train_conditions": train_conditions,
            "condition_distribution": condition_distribution,
            "condition_seed": int(condition_seed),
            "random_per": random_per,
            "layouts": ["traversals", *[layout for layout in LAYOUTS[1:] if layout in layouts]],
            # recorded only when not constant: constant renders keep the render.json they had before the option
            **({"speed_profile": speed_profile} if speed_profile != "constant" else {}),
        },
        "camera": {"K": K.tolist(), "width": camera.width, "height": camera.height, "model": "PINHOLE"},
        "label_names": list(LABEL_NAMES),
        "depth": {"traversals_png_unit_m": DEPTH_SCALE_M, "dsac_png_unit_m": 0.001, "invalid": 0},
        "frames": {
            "world": "map frame (x east, y north) + z up, metres",
            "camera": "OpenCV (x right, y down, z forward)",
        },
    }
    trav = TraversalsWriter(out / "traversals", meta)
    dsac = DSACWriter(out / "dsac", traversals, conditions) if "dsac" in layouts else None
    mgl = None
    if "mgl" in layouts:
        # The map raster beside the images (OrienterNet's dump ships its map tiles too): the OSM raster at 0.5 m.
        raster_file = "map_raster_0.5m.npz"
        rasterize(osm_map, MGL_RASTER_RESOLUTION_M).save_npz(out / "mgl" / raster_file)
        map_info = dict(meta["map"], raster=raster_file, raster_resolution_m=MGL_RASTER_RESOLUTION_M)
        mgl = MGLWriter(out / "mgl", map_info, osm_map.georef)
    sheet_index = sorted(
        {round(k * (frames - 1) / max(sheet_columns - 1, 1)) for k in range(min(sheet_columns, frames))}
    )
    sheet_rows: list[tuple[str, list[np.ndarray]]] = []
    extra_rows: list[tuple[str, list[np.ndarray]]] = []
    t = time.perf_counter()
    render_seconds = 0.0
    total = (traversals * len(conditions) + train_routes) * frames
    with (
        Renderer(scene, camera) as renderer,
        tqdm(total=total, desc="rendering", unit="frame", disable=None if progress is None else not progress) as bar,
    ):
        for traversal in range(traversals):
            poses = traversal_poses(route, frames, spacing_m=spacing_m, traversal=traversal, traversals=traversals,
                                    seed=seed, start_m=start_m, max_offset_m=lateral_offset_m,
                                    speed_profile=speed_profile)  # fmt: skip
            for condition in conditions:
                row: list[np.ndarray] = []
                labels_row: list[np.ndarray] = []
                depth_row: list[np.ndarray] = []
                for view in poses:
                    r0 = time.perf_counter()
                    frame = renderer.render(view.T_cam2world, condition)
                    render_seconds += time.perf_counter() - r0
                    record = FrameRecord(frame=frame, view=view, traversal=traversal, condition=condition)
                    rgb_path = trav.write(record)
                    if dsac is not None:
                        dsac.write(record, rgb_path)
                    if mgl is not None:
                        mgl.write(record, rgb_path)
                    if view.index in sheet_index:
                        row.append(frame.rgb)
                        labels_row.append(colorize_labels(frame.labels))
                        depth_row.append(colorize_depth(frame.depth))
                    bar.update(1)
                sheet_rows.append((sequence_name(traversal, condition), row))
                if not extra_rows:
                    extra_rows = [("labels", labels_row), ("depth", depth_row)]
        for k, extra in enumerate(extra_routes, start=1):
            traversal = (k - 1) % traversals
            poses = traversal_poses(extra, frames, spacing_m=spacing_m, traversal=traversal, traversals=traversals,
                                    seed=seed, start_m=start_m, max_offset_m=lateral_offset_m, stream=k)  # fmt: skip
            for view in poses:
                r0 = time.perf_counter()
                condition = sampled[k - 1][view.index] if sampled else route_conditions[k - 1]
                frame = renderer.render(view.T_cam2world, condition)
                render_seconds += time.perf_counter() - r0
                record = FrameRecord(frame=frame, view=view, traversal=traversal, condition=route_conditions[k - 1],
                                     route=k)  # fmt: skip
                rgb_path = trav.write(record)
                if mgl is not None:
                    mgl.write(record, rgb_path)
                bar.update(1)
            if sampled:
                _json(out / "traversals" / sequence_name(0, RANDOM, k) / "conditions.json",
                      {"distribution": DISTRIBUTIONS[condition_distribution].to_dict(), "seed": int(condition_seed),
                       "per": random_per, "frames": [attrs.asdict(c) for c in sampled[k - 1]]})  # fmt: skip
    timings["render_s"] = render_seconds
    timings["render_fps"] = total / max(render_seconds, 1e-9)
    timings["write_s"] = time.perf_counter() - t - render_seconds
    trav.finish()
    if mgl is not None:
        mgl.finish()
    max_rows = 10
    contact_sheet(
        sheet_rows[:max_rows] + extra_rows,
        out / "contact_sheet.png",
        footer=f"maploc sim-city: {osm_path.name}, seed {seed}, frames {', '.join(str(i) for i in sheet_index)}. "
        "Map data (c) OpenStreetMap contributors (ODbL)",
    )
    timings["total_s"] = time.perf_counter() - t_start
    summary = dict(
        meta,
        sequences=[sequence_name(t, c) for t in range(traversals) for c in conditions]
        + [sequence_name(0, route_conditions[k - 1], k) for k in range(1, train_routes + 1)],
        route={"length_m": route.length, "start_m": start_m, "nodes": len(route.node_ids)},
        train_routes=[{"length_m": r.length, "nodes": len(r.node_ids)} for r in extra_routes],
        scene={k: v for k, v in scene.stats.items()},
        timings=timings,
    )
    _json(out / "render.json", summary)  # written last: its presence marks a complete render
    logger.info("rendered %d frames in %.1f s (%.1f fps): %s", total, timings["total_s"], timings["render_fps"], out)
    return out


def _sampled_conditions(train_conditions: Sequence[str], train_routes: int, frames: int, distribution: str,
                        seed: int, per: str) -> list[list[Condition]]:
    """Per training route, the condition of each frame (``[]`` unless ``train_conditions`` is ``random``)."""
    if list(train_conditions) != [RANDOM]:
        return []
    if per == "route":
        drawn = sample_conditions(train_routes, seed, distribution)
        return [[c] * frames for c in drawn]
    drawn = sample_conditions(train_routes * frames, seed, distribution)
    return [drawn[k * frames : (k + 1) * frames] for k in range(train_routes)]


def read_render_json(folder: Path) -> dict[str, Any]:
    """The ``render.json`` of a rendered folder.

    Raises:
        DataError: missing or not a maploc render summary.
    """
    path = Path(folder) / "render.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a maploc render (run `maploc data render --out {folder}`): {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION or "sequences" not in data:
        raise DataError(f"{path}: not a maploc render summary of format {FORMAT_VERSION}")
    return data

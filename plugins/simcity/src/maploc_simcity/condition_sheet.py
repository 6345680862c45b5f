"""A contact sheet of sampled training conditions: one pose rendered under ``n`` draws of the condition sampler."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .camera import make_camera
from .conditions import Condition
from .sampler import get_distribution, sample_conditions, sun_elevation_deg

__all__ = ["caption", "sampled_conditions_sheet"]


def caption(condition: Condition) -> list[str]:
    """Three short lines of ``condition``'s key parameters: sun elevation (degrees) and cloud cover; fog (per km)
    and exposure; street lamps, lit windows and foliage (0 summer, 1 autumn)."""
    return [
        f"sun {sun_elevation_deg(condition):+.0f}deg cloud {condition.clouds:.2f}",
        f"fog {condition.fog_density * 1000:.1f}/km exp {condition.exposure:.2f}",
        f"lamp {condition.lamp_intensity:.1f} win {condition.window_lit_fraction:.2f} fol {condition.foliage:.1f}",
    ]


def sampled_conditions_sheet(
    map_name: str,
    out: Path,
    *,
    n: int = 16,
    columns: int = 4,
    seed: int = 0,
    distribution: str = "day-to-night",
    scene_seed: int = 0,
    width: int = 256,
    height: int = 192,
    fov_deg: float = 70.0,
) -> Path:
    """Renders one pose under ``sample_conditions(n, seed, distribution)`` into a ``columns``-wide PNG grid, each
    image captioned with :func:`caption` (the draw's index first).

    The pose is the middle frame of 8 (4 m apart) on the route that ``maploc data render --seed scene_seed`` walks.

    Args:
        map_name: a sample name (``helsinki-osm``) or an OSM file path.
        out: the PNG file (its folder is created).
        n: how many conditions (>= 1); columns: images per row (>= 1).
        seed, distribution: the sampler's seed and distribution (:data:`.sampler.DISTRIBUTIONS`).
        scene_seed: seed of the scene and the route.
        width, height, fov_deg: each image's size in pixels and horizontal field of view in degrees.

    Returns:
        ``out``.

    Raises:
        ValueError: ``n`` or ``columns`` below 1, an unknown distribution, a bad camera parameter.
        DataError: the map cannot be found or read, or has no road.
        RenderError: no usable OpenGL.
    """
    import cv2

    from maploc.errors import DataError
    from maploc.files import atomic_write_bytes
    from maploc_osm import ATTRIBUTION, parse_osm
    from maploc_osm.source import resolve_map

    from .renderer import Renderer
    from .scene import build_scene
    from .trajectory import plan_route, traversal_poses

    if (
        isinstance(n, bool)
        or int(n) != n
        or n < 1
        or isinstance(columns, bool)
        or int(columns) != columns
        or columns < 1
    ):
        raise ValueError(f"n and columns must be positive integers, got n={n!r}, columns={columns!r}")
    dist = get_distribution(distribution)
    camera = make_camera(width, height, fov_deg)
    conditions = sample_conditions(n, seed, dist)
    osm_path = resolve_map(map_name)
    osm_map = parse_osm(osm_path)
    scene = build_scene(osm_map, seed=scene_seed)
    x0, y0, x1, y1 = osm_map.extent
    route = plan_route(osm_map, 40.0, seed=scene_seed, margin_m=min(30.0, 0.1 * min(x1 - x0, y1 - y0)))
    view = traversal_poses(route, 8, spacing_m=4.0, seed=scene_seed, start_m=5.0)[4]
    with Renderer(scene, camera) as renderer:
        images = [renderer.render(view.T_cam2world, c).rgb for c in conditions]
    pad, band, line = 4, 46, 14
    font = min(0.4, width / 620)
    rows = math.ceil(n / columns)
    sheet = np.full((rows * (height + band + pad) + pad + 20, columns * (width + pad) + pad, 3), 255, np.uint8)
    for i, (image, condition) in enumerate(zip(images, conditions)):
        r, c = divmod(i, columns)
        y, x = pad + r * (height + band + pad), pad + c * (width + pad)
        sheet[y : y + height, x : x + width] = image
        lines = caption(condition)
        lines[0] = f"#{i} " + lines[0]
        for j, text in enumerate(lines):
            cv2.putText(sheet, text, (x + 2, y + height + 12 + j * line), cv2.FONT_HERSHEY_SIMPLEX, font,
                        (20, 20, 20), 1, cv2.LINE_AA)  # fmt: skip
    footer = (f"maploc sim-city: {n} draws of sample_conditions(seed={seed}, '{dist.name}') at one pose of "
              f"{osm_path.name}. Map data {ATTRIBUTION}")  # fmt: skip
    cv2.putText(sheet, footer, (pad + 2, sheet.shape[0] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (40, 40, 40), 1,
                cv2.LINE_AA)  # fmt: skip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", sheet[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:  # pragma: no cover - OpenCV encodes every uint8 array
        raise DataError(f"{out}: could not encode the PNG")
    return atomic_write_bytes(out, encoded.tobytes())

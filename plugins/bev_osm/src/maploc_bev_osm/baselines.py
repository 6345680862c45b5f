"""Non-learned baselines of ``bev_osm``: what the position prior and the OSM raster give without the image.

All work on a north-up class crop ``(C, S, S)`` centred at the prior (:func:`.data.north_up_crop`, maploc-osm's
class order; row 0 is north, column 0 west; cell ``(r, c)`` has its centre at :func:`.data.xy_of`). Yaw is in
radians counter-clockwise from east (map frame: x east, y north), as ``Pose2.yaw``.

The admissible cells are the OSM ``road`` cells (:data:`ADMISSIBLE_CLASSES`): the cells ``road_snap`` snaps to,
where a street-level camera on a car can be.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from .data import xy_of

__all__ = ["ADMISSIBLE_CLASSES", "ROAD_DIRECTION_RADIUS_M", "admissible_cells", "admissible_draw", "admissible_recall", "road_direction_yaw",
           "road_snap"]  # fmt: skip

#: Radius of the road neighbourhood whose principal axis is the road direction, metres.
ROAD_DIRECTION_RADIUS_M = 10.0
#: OSM classes whose cells are admissible camera positions.
ADMISSIBLE_CLASSES: tuple[str, ...] = ("road",)


def _road_mask(crop: np.ndarray) -> np.ndarray:
    from maploc_osm import CLASS_NAMES

    if crop.ndim != 3 or crop.shape[0] != len(CLASS_NAMES):
        raise ValueError(f"expected a (C={len(CLASS_NAMES)}, S, S) class crop, got shape {tuple(crop.shape)}")
    return np.logical_or.reduce([crop[CLASS_NAMES.index(k)] > 0 for k in ADMISSIBLE_CLASSES])


def _nearest_road_cell(crop: np.ndarray) -> tuple[int, int] | None:
    rows, cols = np.nonzero(_road_mask(crop))
    if not len(rows):
        return None
    mid = crop.shape[-1] / 2 - 0.5
    k = int(np.argmin((rows - mid) ** 2 + (cols - mid) ** 2))
    return int(rows[k]), int(cols[k])


def road_snap(crop: np.ndarray, centre_x: float, centre_y: float, cell_m: float) -> tuple[float, float]:
    """The prior (the crop centre) moved to the nearest OSM ``road`` cell of the crop, map-frame ``(x, y)`` metres
    (the centre itself when the crop has no road): what a map-matching GPS filter gives from the same prior and map.

    Args:
        crop: ``(C, S, S)`` north-up class raster.
        centre_x, centre_y: the crop centre, metres.
        cell_m: cell size, metres.

    Raises:
        ValueError: ``crop`` is not a ``(C, S, S)`` class raster.
    """
    cell = _nearest_road_cell(crop)
    if cell is None:
        return centre_x, centre_y
    return xy_of(float(cell[0]), float(cell[1]), centre_x, centre_y, crop.shape[-1], cell_m)


def road_direction_yaw(crop: np.ndarray, radius_cells: float = 10.0) -> float | None:
    """The heading of the road at the road cell nearest the crop centre (the ``road_direction`` baseline).

    The direction is the principal axis (largest-eigenvalue eigenvector of the 2x2 scatter matrix) of the road
    cells within ``radius_cells`` of that cell. A road has two directions; the one returned always points east of
    north-south: yaw in ``(-pi/2, pi/2]`` (``pi/2``, north, for a north-south road). On a street grid a heading
    chosen this way is right or 180 degrees off without looking at the image.

    Args:
        crop: ``(C, S, S)`` north-up class raster.
        radius_cells: radius of the neighbourhood, cells (the method passes :data:`ROAD_DIRECTION_RADIUS_M` in
            cells).

    Returns:
        Yaw in radians, or ``None`` when the crop has no road cell, or the neighbourhood has no direction (a
        single cell or a round blob).

    Raises:
        ValueError: ``crop`` is not a ``(C, S, S)`` class raster.
    """
    cell = _nearest_road_cell(crop)
    if cell is None:
        return None
    rows, cols = np.nonzero(_road_mask(crop))
    near = (rows - cell[0]) ** 2 + (cols - cell[1]) ** 2 <= radius_cells**2
    # map axes: x east = column, y north = -row
    pts = np.stack([cols[near], -rows[near]], axis=1).astype(np.float64)
    if len(pts) < 2:
        return None
    pts -= pts.mean(axis=0)
    w, v = np.linalg.eigh(pts.T @ pts)
    if w[1] - w[0] <= 1e-9 * max(w[1], 1.0):
        return None
    dx, dy = v[:, 1]
    if abs(dx) < 1e-12:
        dx, dy = 0.0, abs(dy)
    elif dx < 0:
        dx, dy = -dx, -dy
    return math.atan2(dy, dx)


def admissible_cells(crop: np.ndarray, halfwidth_m: float, cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of the admissible cells whose centres lie in the axis-aligned square of half-side
    ``halfwidth_m`` around the crop centre (the prior's region); every cell of that square when none is a road
    (the draw is then uniform over the square, as the core's ``chance:`` row). Empty when no cell centre lies in
    the square (a half-side under half a cell: the prior is then taken as exact)."""
    size = crop.shape[-1]
    mid = size / 2 - 0.5
    r, c = np.mgrid[0:size, 0:size]
    inside = (np.abs(r - mid) * cell_m <= halfwidth_m + 1e-9) & (np.abs(c - mid) * cell_m <= halfwidth_m + 1e-9)
    road = inside & _road_mask(crop)
    rows, cols = np.nonzero(road if road.any() else inside)
    return rows, cols


def _rng(name: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"admissible:{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def admissible_draw(crop: np.ndarray, centre_x: float, centre_y: float, cell_m: float, halfwidth_m: float,
                    name: str, seed: int = 0) -> tuple[float, float, float]:  # fmt: skip
    """The ``admissible_random`` baseline: a cell centre drawn uniformly among :func:`admissible_cells` (the crop
    centre when there is none) and a yaw uniform in ``[-pi, pi)``, reproducible from ``(seed, name)``.

    Returns:
        ``(x, y, yaw)``: map-frame metres and radians.
    """
    rows, cols = admissible_cells(crop, halfwidth_m, cell_m)
    rng = _rng(name, seed)
    yaw = float(rng.uniform(-math.pi, math.pi))
    if not len(rows):
        return centre_x, centre_y, yaw
    k = int(rng.integers(len(rows)))
    x, y = xy_of(float(rows[k]), float(cols[k]), centre_x, centre_y, crop.shape[-1], cell_m)
    return x, y, yaw


def admissible_recall(crop: np.ndarray, centre_x: float, centre_y: float, cell_m: float, halfwidth_m: float,
                      truth_xy: tuple[float, float], thresholds_m: Sequence[float]) -> list[float]:  # fmt: skip
    """The exact expected position recall (percent) of :func:`admissible_draw` for one query: the share of the
    admissible cells whose centres lie within each threshold of the true position ``truth_xy`` (metres)."""
    rows, cols = admissible_cells(crop, halfwidth_m, cell_m)
    if not len(rows):
        d0 = math.hypot(centre_x - truth_xy[0], centre_y - truth_xy[1])
        return [100.0 * float(d0 <= t) for t in thresholds_m]
    x, y = xy_of(rows.astype(np.float64), cols.astype(np.float64), centre_x, centre_y, crop.shape[-1], cell_m)
    d = np.hypot(np.asarray(x) - truth_xy[0], np.asarray(y) - truth_xy[1])
    return [100.0 * float(np.mean(d <= t)) for t in thresholds_m]

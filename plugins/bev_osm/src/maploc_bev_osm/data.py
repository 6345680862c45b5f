"""Map rasters of datasets, north-up crops around a position prior, and the spatial block split.

Frames and cell layout: :mod:`maploc_bev_osm.matching`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import attrs
import numpy as np

from maploc.config import at_least, greater_than
from maploc.errors import DataError

__all__ = ["BlockSplit", "CropError", "cell_of", "north_up_crop", "prior_offset", "raster_of"]


class CropError(ValueError):
    """The map crop cannot be used: outside the raster, or without any OSM feature (a counted failure)."""


def raster_of(dataset: Any, cell_m: float) -> Any:
    """The OSM class raster (:class:`maploc_osm.MapRaster`) of a dataset's map, at ``cell_m`` metres per cell.

    A dataset with a ``map_raster(cell_m)`` method gives it directly (synthetic and MGL datasets); a ``sim-city``
    dataset (it has ``summary``, its ``render.json``) is rasterized from the OSM file it was rendered from, in
    the same map frame (origin of its georeference), through maploc-osm's raster cache.

    Raises:
        DataError: the dataset has no map, or the OSM file is gone.
    """
    if hasattr(dataset, "map_raster"):
        return dataset.map_raster(cell_m)
    summary = getattr(dataset, "summary", None)
    if summary is None or "map" not in summary:
        raise DataError(f"{dataset!r} has no OSM map (bev_osm needs the sim-city or an MGL dataset)")
    from maploc_osm import load_map_raster

    info = summary["map"]
    georef = info["georef"]
    return load_map_raster(info["name"], cell_m, origin=(georef["origin_lat"], georef["origin_lon"]))


def prior_offset(name: str, max_offset_m: float, seed: int = 0) -> tuple[float, float]:
    """A reproducible position-prior offset (east, north metres), uniform in ``[-max, max]^2``, from the query
    name (as a GPS prior would be off); independent of the order queries come in."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    u = np.frombuffer(digest[:8], dtype=np.uint32).astype(np.float64) / 2**32
    return float((2 * u[0] - 1) * max_offset_m), float((2 * u[1] - 1) * max_offset_m)


def north_up_crop(raster: Any, x: float, y: float, size: int, *, require_features: bool = True) -> np.ndarray:
    """``(C, size, size)`` uint8 north-up crop centred at map-frame ``(x, y)`` metres.

    Raises:
        CropError: the centre is outside the raster, or (``require_features``) the crop holds no OSM feature.
    """
    x0, x1, y0, y1 = _extent(raster)
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        raise CropError(f"position ({x:.1f}, {y:.1f}) m is outside the map raster [{x0:.0f}, {x1:.0f}] x "
                        f"[{y0:.0f}, {y1:.0f}] m")  # fmt: skip
    crop = raster.crop(x, y, math.pi / 2, size)
    if require_features and not crop.any():
        raise CropError(f"the map crop at ({x:.1f}, {y:.1f}) m holds no OSM feature")
    return np.ascontiguousarray(crop)


def _extent(raster: Any) -> tuple[float, float, float, float]:
    g = raster.georef
    h, w = raster.packed.shape[:2]
    return g.x_min, g.x_min + w * g.resolution_m, g.y_max - h * g.resolution_m, g.y_max


def cell_of(x: float, y: float, centre_x: float, centre_y: float, size: int, cell_m: float) -> tuple[float, float]:
    """Continuous ``(row, column)`` of map-frame ``(x, y)`` in a north-up crop of ``size`` cells centred at
    ``(centre_x, centre_y)`` (integers at cell centres)."""
    return size / 2 - 0.5 - (y - centre_y) / cell_m, size / 2 - 0.5 + (x - centre_x) / cell_m


def xy_of(row: float, col: float, centre_x: float, centre_y: float, size: int, cell_m: float) -> tuple[float, float]:
    """Inverse of :func:`cell_of`."""
    return centre_x + (col + 0.5 - size / 2) * cell_m, centre_y + (size / 2 - 0.5 - row) * cell_m


@attrs.frozen(kw_only=True)
class BlockSplit:
    """Spatial split of the map frame into square blocks; every ``test_every``-th block (by a fixed pattern) is a
    test block. A training view is kept only when its whole training map footprint stays ``guard_m`` away from
    every test block (no training crop reaches a test block).

    Attributes:
        block_m: block side, metres.
        test_every: one block in this many is a test block (pattern ``(3 bx + by) % test_every == 0``).
        guard_m: guard band, metres (0 = automatic: the training crop's half-diagonal plus its offset).
        held_out: False = no test block (every view trains): for a run whose test views come from another map
            (``maploc eval --checkpoint ... --data-root`` on a render of another OSM file).
    """

    block_m: float = attrs.field(default=120.0, validator=greater_than(0))
    test_every: int = attrs.field(default=4, validator=at_least(2))
    guard_m: float = attrs.field(default=0.0, validator=at_least(0))
    held_out: bool = True

    def is_test(self, x: float, y: float) -> bool:
        if not self.held_out:
            return False
        bx, by = math.floor(x / self.block_m), math.floor(y / self.block_m)
        return (3 * bx + by) % self.test_every == 0

    def distance_to_test_m(self, x: float, y: float) -> float:
        """Distance from ``(x, y)`` to the nearest test block (0 inside one, infinite without test blocks), metres."""
        if not self.held_out:
            return math.inf
        bx, by = math.floor(x / self.block_m), math.floor(y / self.block_m)
        best = math.inf
        reach = 3
        for i in range(bx - reach, bx + reach + 1):
            for j in range(by - reach, by + reach + 1):
                if (3 * i + j) % self.test_every:
                    continue
                dx = max(i * self.block_m - x, 0.0, x - (i + 1) * self.block_m)
                dy = max(j * self.block_m - y, 0.0, y - (j + 1) * self.block_m)
                best = min(best, math.hypot(dx, dy))
        return best

    def trainable(self, x: float, y: float, footprint_m: float) -> bool:
        guard = self.guard_m or footprint_m
        return self.distance_to_test_m(x, y) >= guard

"""Sampling tile locations inside one split of the core's spatial block split.

The split itself is :class:`maploc.data.split.SpatialSplit` (see its module for the rules); loc2vec builds it in
:class:`~maploc_loc2vec.data.OsmTileDataset` with (all in map-frame metres, x east, y north; ``r = tile_px *
res / sqrt(2)`` the tile half-diagonal, 90.5 m for 128 px at 1 m: a tile of any rotation lies in the disk of
radius ``r`` around its centre):

* ``margin_m = r``: tile centres lie in the raster extent shrunk by ``r``, so a tile of any rotation is inside
  the map; ``footprint_m = r``; ``success_radius_m = 25 m`` (the largest radius loc2vec's evaluation counts a
  retrieval as correct within: recall within 25 m);
* the grid of ``rows x cols`` blocks of about ``block_size_m`` and the seeded, spread assignment of the core
  (10 % val and 10 % test blocks by default);
* **guard against test blocks** ``max(2 r + 1 m, 25 m + r)`` (default): every training and val tile centre
  keeps this far from every test block. Query and reference tiles have their centres inside test blocks, so the
  centres of a training tile and of any test tile are more than ``2 r`` apart: **no training tile, at any
  rotation, overlaps any query or reference tile, at any rotation** (tested with exact rotated footprints), and
  no training tile comes within 25 m of a test query (the core's rule);
* **guard against val blocks** ``r + 1 m`` (default; the core's ``val_guard_m``): no training tile overlaps a
  val block (val tiles themselves may reach into the band around their block, where training tiles also reach;
  validation only steers training, it is not the reported result).

The guard band costs training area around every held-out block, so blocks should be large compared with the
tile (default 250 m for 128 m tiles); a map too small to hold a training area, a test block and a negative
distance raises :class:`~maploc.errors.DataError`.
"""

from __future__ import annotations

import math

import numpy as np

from maploc.data.split import SPLIT_CODES, SpatialSplit
from maploc.errors import DataError

__all__ = ["SPLIT_CODES", "LocationSampler"]


class LocationSampler:
    """Draws tile centres, positives and negatives inside one split (deterministic given a generator).

    Centres are drawn uniformly from a 1 m grid of allowed points
    (:meth:`~maploc.data.split.SpatialSplit.candidates`) with a uniform jitter of one cell, re-drawn until
    :meth:`~maploc.data.split.SpatialSplit.allowed` holds.

    Args:
        blocks: the spatial split (:class:`maploc.data.split.SpatialSplit`).
        split: ``train``, ``val`` or ``test``.
        cell_m: grid cell of the candidate points in metres.

    Raises:
        DataError: the split has no room for a tile centre.
    """

    def __init__(self, blocks: SpatialSplit, split: str, cell_m: float = 1.0) -> None:
        self.blocks = blocks
        self.split = split
        self.cell_m = float(cell_m)
        self.points = blocks.candidates(split, self.cell_m)
        if len(self.points) == 0:
            raise DataError(
                f"no room for a {split} tile centre: {blocks.describe()}; the guard bands ({blocks.guard_m:.0f} m "
                f"around test blocks, {blocks.val_guard_m:.0f} m around val blocks) leave no room. Use a larger map, "
                f"larger blocks or smaller tiles"
            )

    def extent_m(self) -> float:
        """The diagonal (metres) of the bounding box of the allowed points (an upper bound on distances)."""
        lo, hi = self.points.min(0), self.points.max(0)
        return float(np.hypot(*(hi - lo)))

    def sample(self, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """``(n, 2)`` float64 allowed centres (metres)."""
        out = np.empty((n, 2))
        for k in range(n):
            for _ in range(1000):
                p = self.points[rng.integers(len(self.points))] + (rng.random(2) - 0.5) * self.cell_m
                if self.blocks.allowed(p[None], self.split)[0]:
                    break
            else:  # pragma: no cover - the grid points themselves are allowed
                p = self.points[rng.integers(len(self.points))]
            out[k] = p
        return out

    def sample_near(self, rng: np.random.Generator, center: np.ndarray, radius_m: float, tries: int = 50) -> np.ndarray:
        """``(2,)`` an allowed point uniformly in the disk of ``radius_m`` around ``center`` (``center`` itself
        when ``tries`` draws all fail)."""
        for _ in range(tries):
            r = radius_m * math.sqrt(rng.random())
            a = 2 * math.pi * rng.random()
            p = np.asarray(center, np.float64) + r * np.array([math.cos(a), math.sin(a)])
            if self.blocks.allowed(p[None], self.split)[0]:
                return p
        return np.asarray(center, np.float64).copy()

    def sample_far(self, rng: np.random.Generator, center: np.ndarray, min_distance_m: float) -> np.ndarray:
        """``(2,)`` an allowed point at least ``min_distance_m`` from ``center``.

        Raises:
            DataError: none found (the split is smaller than ``min_distance_m``).
        """
        center = np.asarray(center, np.float64)
        for _ in range(64):  # most of a large split is far: plain rejection first
            p = self.points[rng.integers(len(self.points))] + (rng.random(2) - 0.5) * self.cell_m
            if np.hypot(*(p - center)) >= min_distance_m and self.blocks.allowed(p[None], self.split)[0]:
                return p
        far = self.points[np.hypot(*(self.points - center).T) >= min_distance_m + self.cell_m]
        if len(far) == 0:
            raise DataError(
                f"the {self.split} area has no point {min_distance_m:g} m from ({center[0]:.0f}, {center[1]:.0f}); "
                f"the split is too small for the negative distance"
            )
        return far[rng.integers(len(far))].copy()

"""Map rasters of datasets, north-up crops around a position prior, and the spatial split of a map.

Frames and cell layout: :mod:`maploc_bev_osm.matching`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import attrs
import numpy as np

from maploc.config import at_least, greater_than, in_range
from maploc.errors import DataError

__all__ = ["CropError", "SplitConfig", "cell_of", "map_extent", "north_up_crop", "prior_offset", "raster_of",
           "sequence_prior_offset", "spatial_split", "training_footprint_m"]


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


def _uniform_pair(key: str) -> tuple[float, float]:
    """Two reproducible uniforms in ``[0, 1)`` from a string."""
    digest = hashlib.sha256(key.encode()).digest()
    u = np.frombuffer(digest[:8], dtype=np.uint32).astype(np.float64) / 2**32
    return float(u[0]), float(u[1])


def prior_offset(name: str, max_offset_m: float, seed: int = 0) -> tuple[float, float]:
    """An independent position-prior offset per query (east, north metres), uniform in ``[-max, max]^2``, from the
    query name. Not the evaluation prior any more (:func:`sequence_prior_offset` is): kept for callers that want
    one independent draw per name."""
    u0, u1 = _uniform_pair(f"{seed}:{name}")
    return float((2 * u0 - 1) * max_offset_m), float((2 * u1 - 1) * max_offset_m)


#: Frame indices of one sequence wrap at this value (a timestamp in seconds since an epoch would otherwise need a
#: random walk of a billion steps); sim-city, the synthetic set and MGL give frame indices far below it.
WALK_PERIOD = 2**16


def _fold(v: np.ndarray, bound: float) -> np.ndarray:
    """Reflects values into ``[-bound, bound]`` (a random walk between two mirrors)."""
    if bound <= 0:
        return np.zeros_like(v)
    return bound - np.abs(np.mod(v + bound, 4 * bound) - 2 * bound)


def sequence_prior_offset(sequence: str, index: float, max_offset_m: float, *, drift_step_m: float = 0.5,
                          drift_max_m: float = 4.0, seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """The position-prior offset (east, north metres) of frame ``index`` of a sequence: a GPS-like error that is
    shared by the frames of a sequence and drifts slowly along it.

    ``offset(i) = base + walk(i)``: ``base`` is one uniform draw per sequence in ``[-(max - b), max - b]^2`` and
    ``walk`` a Gaussian random walk (step standard deviation ``drift_step_m`` per frame, each axis, starting at 0 at
    frame 0) reflected into ``[-b, b]^2``, with ``b = min(drift_max_m, max_offset_m / 2)``. Hence every offset lies
    in ``[-max_offset_m, max_offset_m]^2`` (the truth is inside the prior's square region), consecutive frames'
    offsets differ by about ``drift_step_m`` per axis, and different sequences have independent offsets. Both draws
    are reproducible from ``(seed, sequence)`` alone, whatever order the queries come in.

    Args:
        sequence: the sequence name (a query without one passes its own name: an independent offset per query).
        index: the frame index (``Sample.timestamp``; rounded, negative values count as 0, wraps at
            :data:`WALK_PERIOD`).
        max_offset_m: half-side of the square region around the prior that holds the truth, metres.
        drift_step_m: per-frame step of the walk, metres (0 = a constant offset per sequence).
        drift_max_m: largest excursion of the walk from the sequence's base offset, metres.
        seed: seed.
    """
    bound = min(drift_max_m, max_offset_m / 2) if drift_step_m > 0 else 0.0
    u0, u1 = _uniform_pair(f"prior-base:{seed}:{sequence}")
    half = max_offset_m - bound
    base = np.array([(2 * u0 - 1) * half, (2 * u1 - 1) * half])
    n = int(max(0, round(index))) % WALK_PERIOD
    walk = np.zeros(2)
    if bound > 0 and n > 0:
        digest = hashlib.sha256(f"prior-walk:{seed}:{sequence}".encode()).digest()
        steps = np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0.0, drift_step_m, (n, 2))
        walk = _fold(steps.sum(axis=0), bound)
    off = np.clip(base + walk, -max_offset_m, max_offset_m)
    return float(off[0]), float(off[1])


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
class SplitConfig:
    """The spatial train / val / test split of the map (:class:`maploc.data.split.SpatialSplit`, built over the
    extent of the map raster by :func:`spatial_split`).

    Attributes:
        block_m: block side, metres.
        test_fraction: share of the blocks held out for testing (the core scores only queries inside them).
        val_fraction: share of the blocks held out for validation (no training view reaches them either).
        seed: seed of the block assignment (not the run's ``--seed``: every seed of a method trains and tests on
            the same blocks). The default 11 was chosen by counts alone, before any run: on the default sim-city
            render (Helsinki) it is the first seed whose test and val blocks both hold queries (190 test and 255
            val queries of 500, 115 of the latter 72.9 m from every test block) while keeping about as many training views (310) as the former split (329).
        held_out: ``False`` = no split (every view trains, every query is scored): for a run whose test views
            come from another map (``maploc eval --checkpoint ... --data-root`` on a render of another OSM file).
    """

    block_m: float = attrs.field(default=150.0, validator=greater_than(0))
    test_fraction: float = attrs.field(default=0.2, validator=in_range(0.0, 1.0))
    val_fraction: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0))
    seed: int = attrs.field(default=11, validator=at_least(0))
    held_out: bool = True


def map_extent(raster: Any) -> tuple[float, float, float, float]:
    """``(x_min, y_min, x_max, y_max)`` metres of a :class:`maploc_osm.MapRaster` in its map frame."""
    x0, x1, y0, y1 = _extent(raster)
    return x0, y0, x1, y1


def training_footprint_m(crop_m: float, max_offset_m: float) -> float:
    """How far (metres) the map content of a training sample reaches from its position: the half-diagonal of the
    north-up training crop (``crop_m`` square; a quarter turn keeps it in the same square) plus the largest
    offset of its centre (uniform in ``[-max_offset_m, max_offset_m]^2``): ``(crop_m / 2 + max_offset_m) sqrt 2``."""
    return (crop_m / 2 + max_offset_m) * math.sqrt(2)


def spatial_split(raster: Any, config: SplitConfig, *, success_radius_m: float, footprint_m: float) -> Any:
    """The :class:`maploc.data.split.SpatialSplit` of a map: ``config.block_m`` blocks over the raster's extent.

    It depends on the map (its raster's extent) and the config alone, so training and ``maploc eval --checkpoint``
    on any render of the same map build the same split.

    Args:
        raster: the map's :class:`maploc_osm.MapRaster`.
        config: the split settings.
        success_radius_m: the largest position threshold the evaluation reports, metres.
        footprint_m: how far a training sample's map content reaches (:func:`training_footprint_m`), metres.

    Returns:
        The split (guard ``success_radius_m + footprint_m`` against test and val blocks).

    Raises:
        maploc.errors.DataError: the map holds too few blocks for a train, val and test split.
        maploc.errors.ConfigError: fractions out of range.
    """
    from maploc.data.split import SpatialSplit

    return SpatialSplit.build(map_extent(raster), block_size_m=config.block_m, success_radius_m=success_radius_m,
                              footprint_m=footprint_m, val_fraction=config.val_fraction,
                              test_fraction=config.test_fraction, seed=config.seed)  # fmt: skip

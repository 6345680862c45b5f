"""Tile channels: which OSM classes of :data:`maploc_osm.CLASS_NAMES` make up each channel of a tile.

A *channel set* maps every raster class to at most one tile channel (a channel is the OR of its classes).
Three sets are defined:

* ``loc2vec12`` (default): 12 channels in the spirit of the Loc2Vec reference, which renders 12 thematic
  layers of the OSM map (roads, buildings, land use, water, ...): building, parking, green, water, road, path,
  railway, barrier, tree, traffic, amenity and street_furniture. ``building_outline`` is left out (its pixels
  are the edges of the ``building`` areas).
* ``groups``: 3 channels, the OSM group of OrienterNet (any area class, any way class, any point class).
* ``classes``: the 51 raster classes unchanged (one channel each).

Tile pixels are binary: ``1`` where the pixel centre holds any class of the channel (see the drawing rules of
:mod:`maploc_osm.raster`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    import torch

    from maploc_osm import MapRaster

__all__ = [
    "CHANNEL_SETS",
    "CHANNEL_COLORS",
    "channel_names",
    "channel_classes",
    "to_channel_raster",
    "render_rgb",
    "dominant_channel",
    "channel_palette",
    "pack_tiles",
    "unpack_tiles",
]

#: Channel set name -> ordered ``(channel name, (class, ...))``. Classes of the raster not listed are dropped.
CHANNEL_SETS: Final[Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]]] = {
    "loc2vec12": (
        ("building", ("building",)),
        ("parking", ("parking", "parking_entrance")),
        ("green", ("grass", "park", "forest", "playground")),
        ("water", ("water", "fountain")),
        ("road", ("road", "busway")),
        ("path", ("path", "cycleway")),
        ("railway", ("railway",)),
        ("barrier", ("fence", "wall", "hedge", "kerb")),
        ("tree", ("tree", "tree_row")),
        ("traffic", ("crossing", "traffic_signal", "stop_sign", "give_way", "junction", "bus_stop",
                     "bus_stop_position")),
        ("amenity", ("shop", "restaurant", "bar", "pharmacy", "fuel", "atm", "toilets", "vending_machine",
                     "charging_station", "bicycle_parking")),
        ("street_furniture", ("lamp", "bench", "waste_basket", "bollard", "gate", "pole", "post_box",
                              "street_cabinet", "fire_hydrant", "clock", "artwork", "stone", "recycling")),
    ),
}

#: Display colours (``#rrggbb``) of the ``loc2vec12`` channels; other sets use the class colours of the core.
CHANNEL_COLORS: Final[Mapping[str, str]] = {
    "building": "#c9a08f",
    "parking": "#b9b9cf",
    "green": "#8ccf86",
    "water": "#7fb2e5",
    "road": "#3b3b3b",
    "path": "#d9534f",
    "railway": "#8c564b",
    "barrier": "#595959",
    "tree": "#1a7f1a",
    "traffic": "#f2c500",
    "amenity": "#e7298a",
    "street_furniture": "#ff9900",
}

_BACKGROUND: Final = (247, 247, 242)


def _sets() -> dict[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    from maploc_osm import CLASS_NAMES, GROUPS

    sets = dict(CHANNEL_SETS)
    sets["groups"] = tuple((g, tuple(CLASS_NAMES[a:b])) for g, (a, b) in GROUPS.items())
    sets["classes"] = tuple((c, (c,)) for c in CLASS_NAMES)
    return sets


def channel_classes(channel_set: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``((channel name, (class, ...)), ...)`` of a channel set.

    Raises:
        ValueError: unknown channel set (the message lists the known ones).
    """
    sets = _sets()
    if channel_set not in sets:
        raise ValueError(f"unknown channel set {channel_set!r}; known sets: {', '.join(sets)}")
    return sets[channel_set]


def channel_names(channel_set: str) -> tuple[str, ...]:
    """The channel names of a channel set, in tile channel order."""
    return tuple(name for name, _ in channel_classes(channel_set))


def _class_masks(class_names: tuple[str, ...], channel_set: str) -> np.ndarray:
    """``(K,)`` uint64 bit masks over the raster's class bits, one per channel."""
    if len(class_names) > 64:
        raise ValueError(f"at most 64 raster classes are supported, got {len(class_names)}")
    index = {c: i for i, c in enumerate(class_names)}
    masks = []
    for name, classes in channel_classes(channel_set):
        unknown = [c for c in classes if c not in index and c not in _known_classes()]
        if unknown:
            raise ValueError(f"channel {name!r} names unknown classes {unknown}")
        bits = 0
        for c in classes:
            if c in index:
                bits |= 1 << index[c]
        masks.append(bits)
    return np.array(masks, dtype=np.uint64)


@functools.lru_cache(maxsize=1)
def _known_classes() -> frozenset[str]:
    from maploc_osm import CLASS_NAMES

    return frozenset(CLASS_NAMES)


def to_channel_raster(raster: MapRaster, channel_set: str = "loc2vec12", *, rows_per_chunk: int = 256) -> MapRaster:
    """Re-packs a class raster into a raster whose channels are those of ``channel_set``.

    The result is a :class:`~maploc_osm.MapRaster` with the same georeference, whose ``class_names`` are
    the channel names, so :meth:`~maploc_osm.MapRaster.crop_many` cuts tiles of the channel set directly
    (``ceil(K / 8)`` bytes per pixel: 2 for ``loc2vec12``).

    Args:
        raster: a raster of :func:`maploc_osm.rasterize` (at most 64 classes).
        channel_set: a name of :func:`channel_classes`.
        rows_per_chunk: raster rows converted at once (bounds the temporary memory).

    Returns:
        The channel raster.

    Raises:
        ValueError: unknown channel set, or a channel naming an unknown class.
    """
    from maploc_osm import MapRaster

    masks = _class_masks(tuple(raster.class_names), channel_set)
    names = channel_names(channel_set)
    height, width, nbytes = raster.packed.shape
    out = np.zeros((height, width, (len(names) + 7) // 8), np.uint8)
    for r0 in range(0, height, rows_per_chunk):
        chunk = raster.packed[r0 : r0 + rows_per_chunk]
        wide = np.zeros((*chunk.shape[:2], 8), np.uint8)
        wide[..., :nbytes] = chunk
        value = wide.view("<u8")[..., 0]  # bit c = class c (little bit order of np.packbits)
        bits = (value[..., None] & masks) != 0  # (rows, W, K)
        out[r0 : r0 + rows_per_chunk] = np.packbits(bits, axis=-1, bitorder="little")
    return MapRaster(georef=raster.georef, packed=out, class_names=names, source=raster.source)


def channel_palette(names: tuple[str, ...]) -> np.ndarray:
    """``(K, 3)`` float32 RGB in [0, 1]: the display colour of each channel name."""
    from maploc_osm.classes import CLASS_INFO

    colors = []
    for n in names:
        hexcolor = CHANNEL_COLORS.get(n) or (CLASS_INFO[n].color if n in CLASS_INFO else "#808080")
        colors.append([int(hexcolor[i : i + 2], 16) for i in (1, 3, 5)])
    return np.asarray(colors, np.float32) / 255.0


def render_rgb(tiles: torch.Tensor | np.ndarray, names: tuple[str, ...], size_px: int | None = None) -> torch.Tensor:
    """Colour pictures of tiles: channels painted in order (later channels on top) over a light background.

    Args:
        tiles: ``(..., K, H, W)`` binary tiles (any dtype; non-zero = set).
        names: the ``K`` channel names (for the colours, :data:`CHANNEL_COLORS` or the class colours).
        size_px: if given (a divisor of ``H`` and ``W``), the pictures are reduced to ``size_px x size_px`` by
            averaging the colours of ``H / size_px`` square pixel blocks.

    Returns:
        ``(..., 3, H, W)`` (or ``(..., 3, size_px, size_px)``) float32 RGB in ``[0, 1]``.

    Raises:
        ValueError: the channel count differs from ``len(names)``, or ``size_px`` does not divide the size.
    """
    import torch

    array = np.asarray(tiles)
    if array.ndim < 3 or array.shape[-3] != len(names):
        raise ValueError(f"tiles must be (..., {len(names)}, H, W), got {tuple(array.shape)}")
    lead, (height, width) = array.shape[:-3], array.shape[-2:]
    palette = np.concatenate([np.asarray(_BACKGROUND, np.float32)[None] / 255.0, channel_palette(tuple(names))])
    index = np.zeros((*lead, height, width), np.uint8)
    for k in range(len(names)):
        index[array[..., k, :, :] != 0] = k + 1
    rgb = palette[index]  # (..., H, W, 3)
    if size_px is not None and size_px != height:
        if height % size_px or width % size_px:
            raise ValueError(f"size_px={size_px} must divide the tile size {height}x{width}")
        f = height // size_px
        rgb = rgb.reshape(*lead, size_px, f, width // f, f, 3).mean(axis=(-4, -2))
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(rgb, -1, -3), dtype=np.float32))


def dominant_channel(tiles: torch.Tensor | np.ndarray) -> np.ndarray:
    """Index of the channel covering the most pixels of each tile (``-1`` for an empty tile).

    Args:
        tiles: ``(N, K, H, W)`` binary tiles.

    Returns:
        ``(N,)`` int64.
    """
    array = np.asarray(tiles)
    counts = (array != 0).reshape(array.shape[0], array.shape[1], -1).sum(-1)
    best = counts.argmax(1).astype(np.int64)
    best[counts.max(1) == 0] = -1
    return best


def pack_tiles(tiles: np.ndarray) -> np.ndarray:
    """Packs binary tiles 8 channels per byte: ``(..., K, H, W)`` -> ``(..., ceil(K / 8), H, W)`` uint8.

    Bit ``k % 8`` of byte ``k // 8`` is channel ``k`` (``np.packbits`` little bit order), as in
    :class:`maploc_osm.MapRaster`. Used to keep query tiles small in memory (12 channels: 2 bytes/pixel).
    """
    tiles = np.asarray(tiles) != 0
    k = tiles.shape[-3]
    nbytes = (k + 7) // 8
    padded = np.zeros((*tiles.shape[:-3], nbytes * 8, *tiles.shape[-2:]), np.uint8)
    padded[..., :k, :, :] = tiles
    grouped = padded.reshape(*tiles.shape[:-3], nbytes, 8, *tiles.shape[-2:])
    weights = (1 << np.arange(8, dtype=np.uint8)).reshape(8, 1, 1)
    return (grouped * weights).sum(axis=-3, dtype=np.uint8)


def unpack_tiles(packed: torch.Tensor | np.ndarray, num_channels: int) -> np.ndarray:
    """Inverse of :func:`pack_tiles`: ``(..., ceil(K / 8), H, W)`` uint8 -> ``(..., K, H, W)`` uint8 in {0, 1}."""
    array = np.asarray(packed, dtype=np.uint8)
    return np.unpackbits(array, axis=-3, count=num_channels, bitorder="little")

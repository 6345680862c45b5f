"""Semantic rasters of an :class:`~.model.OSMMap` (OrienterNet-style map tiles), oriented crops, disk cache.

Pixel grid: see :mod:`.geo` (row 0 north; pixel ``(i, j)`` centre at ``x = x_min + (j + 0.5) res``,
``y = y_max - (i + 0.5) res``). Drawing rules, with OpenCV (``LINE_8``, no anti-aliasing):

* Every vertex is snapped to the centre of the pixel that contains it: ``j = floor((x - x_min) / res)``,
  ``i = floor((y_max - y) / res)``.
* Areas: ``cv2.fillPoly`` of the exterior ring and its holes together (even-odd rule): a pixel is set when its
  centre lies inside or on the snapped exterior ring and not strictly inside a hole (exact for axis-aligned
  edges; slanted edges follow OpenCV's edge rasterization). Overlapping areas of a class add up. Building
  rings are also drawn as ``building_outline`` lines.
* Ways of width ``w`` metres (:data:`~.classes.CLASSES` ``size_m``): pixels within ``r = floor(w / (2 res))``
  pixels of the snapped polyline (``cv2.polylines`` of thickness ``2r``: round caps and joins, so the drawn
  width is ``2r + 1`` pixels, the odd count nearest ``w / res``); ``r = 0`` is an 8-connected 1-pixel line.
* Points of radius ``rho`` metres: the disk of ``r = floor(rho / res + 0.5)`` pixels around the snapped
  point (``cv2.circle``, filled; ``r = 0`` is the single pixel).

Storage: one bit per class and pixel, ``packed[i, j, c // 8] >> (c % 8) & 1`` (``np.packbits`` little bit
order), so the 51 classes of a 2 km x 2 km raster at 0.5 m/px take 112 MB instead of 816 MB.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import attrs
import cv2
import numpy as np
from numpy.typing import ArrayLike

from maploc.errors import DataError
from maploc.files import atomic_write_bytes

from .classes import CLASS_INFO, CLASS_NAMES, CLASS_TABLE_VERSION, GROUPS
from .geo import GeoReference
from .model import OSMMap

__all__ = ["MapRaster", "default_cache_dir", "load_map_raster", "rasterize", "unpack_labels"]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1
#: Largest raster rasterize() builds (pixels), about 40 km x 40 km at 0.5 m/px.
MAX_PIXELS = 80_000 * 80_000


def _bytes_per_pixel(num_classes: int) -> int:
    return (num_classes + 7) // 8


def unpack_labels(packed: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Unpack bit-packed labels ``(..., H, W, ceil(C / 8))`` uint8 into ``(..., C, H, W)`` uint8 in {0, 1}.

    The result is a strided view (channels moved to the front) of a fresh array.
    """
    unpacked = np.unpackbits(packed, axis=-1, count=num_classes, bitorder="little")
    return np.moveaxis(unpacked, -1, -3)


def _check_packed(instance: MapRaster, attribute: attrs.Attribute, value: np.ndarray) -> None:
    expected = (instance.georef.height, instance.georef.width, _bytes_per_pixel(len(instance.class_names)))
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.shape != expected:
        raise ValueError(f"packed must be a uint8 array of shape {expected}, got {getattr(value, 'shape', value)}")


def _check_georef(instance: MapRaster, attribute: attrs.Attribute, value: GeoReference) -> None:
    if not value.has_raster:
        raise ValueError("a MapRaster needs a GeoReference with raster fields (GeoReference.with_raster)")


@attrs.frozen(kw_only=True, eq=False)
class MapRaster:
    """A multi-channel semantic label raster: one binary channel per class of :data:`~.classes.CLASS_NAMES`.

    Channels are grouped as areas, ways and points (:attr:`groups`). Build one with :func:`rasterize` or
    :func:`load_map_raster`. The pixel grid and drawing rules are in the module docstring of :mod:`.raster`.

    Attributes:
        georef: map frame and raster grid (``resolution_m``, ``x_min``, ``y_max``, ``height``, ``width``).
        packed: ``(H, W, ceil(C / 8))`` uint8, bit ``c % 8`` of byte ``c // 8`` is class ``c``.
        class_names: channel names, C of them (default :data:`~.classes.CLASS_NAMES`).
        source: the OSM file the raster comes from, or None.
    """

    georef: GeoReference = attrs.field(validator=_check_georef)
    packed: np.ndarray = attrs.field(validator=_check_packed)
    class_names: tuple[str, ...] = CLASS_NAMES
    source: str | None = None

    # ---- shape and channels ---------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """C, the number of channels."""
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``, the shape of :attr:`labels`."""
        return (self.num_classes, int(self.packed.shape[0]), int(self.packed.shape[1]))

    @property
    def resolution_m(self) -> float:
        """Pixel size in metres."""
        assert self.georef.resolution_m is not None
        return self.georef.resolution_m

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` metres covered by the pixels (outer edges)."""
        g = self.georef
        assert g.x_min is not None and g.y_max is not None and g.width is not None and g.height is not None
        res = self.resolution_m
        return (g.x_min, g.y_max - g.height * res, g.x_min + g.width * res, g.y_max)

    @property
    def groups(self) -> dict[str, tuple[int, int]]:
        """Group name (``areas``, ``ways``, ``points``) -> half-open channel range ``(start, end)``."""
        if self.class_names != CLASS_NAMES:
            raise ValueError("groups are only defined for rasters with the standard classes")
        return dict(GROUPS)

    def channel(self, class_name: str) -> int:
        """Channel index of a class.

        Raises:
            KeyError: unknown class.
        """
        try:
            return self.class_names.index(class_name)
        except ValueError:
            raise KeyError(f"unknown class {class_name!r}; classes: {', '.join(self.class_names)}") from None

    def mask(self, class_name: str) -> np.ndarray:
        """``(H, W)`` bool mask of one class."""
        c = self.channel(class_name)
        return (self.packed[:, :, c >> 3] >> (c & 7)) & 1 == 1

    @property
    def labels(self) -> np.ndarray:
        """All channels as ``(C, H, W)`` uint8 in {0, 1} (unpacked: C bytes per pixel, a strided view)."""
        return unpack_labels(self.packed, self.num_classes)

    def group_indices(self) -> np.ndarray:
        """OrienterNet's compact map: ``(3, H, W)`` uint8, one channel per group (areas, ways, points).

        Value 0 = no class of the group, ``k + 1`` = the first class (in channel order) of the group present
        at the pixel, ``k`` counted from the group's first channel (OrienterNet ``mask_to_idx``).
        """
        out = np.zeros((3, *self.packed.shape[:2]), np.uint8)
        for g, (start, end) in enumerate(self.groups.values()):
            for c in range(end - 1, start - 1, -1):  # last written = first class
                m = self.mask(self.class_names[c])
                out[g][m] = c - start + 1
        return out

    # ---- crops ----------------------------------------------------------------------------------------------
    def _crop_transform(self, x: float, y: float, yaw: float, size_px: int) -> tuple[np.ndarray, tuple[int, ...]]:
        """Affine map from crop pixel (col, row) to raster pixel (j, i), restricted to a source window."""
        g = self.georef
        assert g.x_min is not None and g.y_max is not None
        res = self.resolution_m
        jc = (x - g.x_min) / res - 0.5
        ic = (g.y_max - y) / res - 0.5
        s, c = math.sin(yaw), math.cos(yaw)
        h = size_px / 2 - 0.5
        matrix = np.array([[s, -c, jc + h * c - h * s], [c, s, ic - h * s - h * c]], dtype=np.float64)
        # Source window: the crop's footprint (a rotated square) plus a margin; cv2 then never sees the whole
        # raster (fast, and no SHRT_MAX limit on the raster size).
        half = math.ceil(size_px * math.sqrt(0.5)) + 2
        height, width = self.packed.shape[:2]
        i0, i1 = max(0, math.floor(ic) - half), min(height, math.floor(ic) + half + 1)
        j0, j1 = max(0, math.floor(jc) - half), min(width, math.floor(jc) + half + 1)
        matrix[0, 2] -= j0
        matrix[1, 2] -= i0
        return matrix, (i0, i1, j0, j1)

    def _warp_packed(self, x: float, y: float, yaw: float, size_px: int, out: np.ndarray) -> None:
        matrix, (i0, i1, j0, j1) = self._crop_transform(float(x), float(y), float(yaw), size_px)
        if i1 <= i0 or j1 <= j0:
            out[...] = 0
            return
        cv2.warpAffine(
            self.packed[i0:i1, j0:j1],
            matrix,
            (size_px, size_px),
            dst=out,
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )

    def crop(self, x: float, y: float, yaw: float, size_px: int) -> np.ndarray:
        """An oriented square crop, nearest-neighbour (``cv2.warpAffine``), at the raster's resolution.

        The crop is centred at ``(x, y)`` and turned so that its "up" (row 0 side) points along the heading
        ``yaw`` and its columns increase to the right of the heading. Crop pixel ``(r, c)`` samples the map at
        forward ``(size_px / 2 - r - 0.5) * res`` and right ``(c + 0.5 - size_px / 2) * res`` metres from
        ``(x, y)``. ``yaw = pi / 2`` (heading north) gives the north-up raster slice; ``yaw = 0`` puts east up.

        Args:
            x: centre, map-frame metres (east).
            y: centre, map-frame metres (north).
            yaw: heading in radians, counter-clockwise from east (the map x axis), as ``Pose2.yaw``.
            size_px: side of the square crop in pixels.

        Returns:
            ``(C, size_px, size_px)`` uint8 in {0, 1} (a strided view of a fresh array); pixels outside the
            raster are 0.

        Raises:
            ValueError: ``size_px`` is not positive.
        """
        return unpack_labels(self.crop_packed(x, y, yaw, size_px), self.num_classes)

    def crop_packed(self, x: float, y: float, yaw: float, size_px: int) -> np.ndarray:
        """:meth:`crop` with the classes still bit-packed: ``(size_px, size_px, ceil(C / 8))`` uint8.

        Eight times less memory traffic than :meth:`crop`; unpack with :func:`unpack_labels` (or on the GPU:
        ``(packed[..., None] >> torch.arange(8)) & 1``, little bit order).
        """
        if size_px <= 0:
            raise ValueError(f"size_px must be positive, got {size_px}")
        out = np.empty((size_px, size_px, self.packed.shape[2]), np.uint8)
        self._warp_packed(x, y, yaw, size_px, out)
        return out

    def crop_many(self, poses: ArrayLike, size_px: int, *, packed: bool = False) -> np.ndarray:
        """Batched :meth:`crop` (or :meth:`crop_packed`).

        Args:
            poses: ``(N, 3)`` rows ``(x, y, yaw)``: metres, metres, radians (see :meth:`crop`).
            size_px: side of each square crop in pixels.
            packed: return the bit-packed crops ``(N, size_px, size_px, ceil(C / 8))`` instead.

        Returns:
            ``(N, C, size_px, size_px)`` uint8 in {0, 1} (a strided view), or the packed crops.

        Raises:
            ValueError: ``poses`` is not ``(N, 3)`` or ``size_px`` is not positive.
        """
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] != 3:
            raise ValueError(f"poses must have shape (N, 3), got {poses.shape}")
        if size_px <= 0:
            raise ValueError(f"size_px must be positive, got {size_px}")
        out = np.empty((len(poses), size_px, size_px, self.packed.shape[2]), np.uint8)
        for n, (x, y, yaw) in enumerate(poses):
            self._warp_packed(x, y, yaw, size_px, out[n])
        return out if packed else unpack_labels(out, self.num_classes)

    # ---- files ----------------------------------------------------------------------------------------------
    def save_npz(self, path: str | os.PathLike[str], *, key: str = "") -> Path:
        """Write the raster atomically as ``.npz`` (``packed`` + JSON metadata; no pickled objects)."""
        path = Path(path)
        meta = {
            "format": _CACHE_FORMAT,
            "key": key,
            "class_names": list(self.class_names),
            "georef": self.georef.to_dict(),
            "source": self.source,
        }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, packed=self.packed, meta=np.array(json.dumps(meta)))
        atomic_write_bytes(path, buffer.getbuffer())
        return path

    @classmethod
    def load_npz(cls, path: str | os.PathLike[str], *, key: str | None = None) -> MapRaster:
        """Read a file written by :meth:`save_npz` (``np.load(allow_pickle=False)``).

        Args:
            path: the ``.npz`` file.
            key: if given, the key stored in the file must equal it.

        Raises:
            DataError: missing, corrupt or not a maploc raster file, or a different key.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"][()]))
                packed = np.ascontiguousarray(data["packed"])
            if meta.get("format") != _CACHE_FORMAT:
                raise ValueError(f"unknown format {meta.get('format')!r}")
            if key is not None and meta.get("key") != key:
                raise ValueError("stale cache key")
            georef = GeoReference(**meta["georef"])
            return cls(georef=georef, packed=packed, class_names=tuple(meta["class_names"]), source=meta["source"])
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not a valid maploc map raster: {exc}") from exc


# ---- rasterization --------------------------------------------------------------------------------------------
def _line_radius_px(width_m: float, resolution_m: float) -> int:
    return math.floor(width_m / (2 * resolution_m))


def _point_radius_px(radius_m: float, resolution_m: float) -> int:
    return math.floor(radius_m / resolution_m + 0.5)


def _disk_offsets(radius_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the pixels of ``cv2.circle(radius_px, filled)`` around its centre."""
    patch = np.zeros((2 * radius_px + 1, 2 * radius_px + 1), np.uint8)
    cv2.circle(patch, (radius_px, radius_px), radius_px, 1, thickness=-1, lineType=cv2.LINE_8)
    rows, cols = np.nonzero(patch)
    return rows - radius_px, cols - radius_px


def _draw(osm_map: OSMMap, georef: GeoReference) -> np.ndarray:
    assert georef.height is not None and georef.width is not None and georef.resolution_m is not None
    assert georef.x_min is not None and georef.y_max is not None
    height, width, res = georef.height, georef.width, georef.resolution_m
    x_min, y_max = georef.x_min, georef.y_max
    limit = 1 << 28

    def to_px(xy: np.ndarray) -> np.ndarray:  # (N, 2) metres -> (N, 2) int32 (col, row), snapped
        px = np.empty(xy.shape, np.float64)
        np.floor((xy[:, 0] - x_min) / res, out=px[:, 0])
        np.floor((y_max - xy[:, 1]) / res, out=px[:, 1])
        return np.clip(px, -limit, limit, out=px).astype(np.int32)

    # Per class: polygons (ring lists), polylines, and the pixel bounds (col0, row0, col1, row1) they touch.
    polygons: dict[str, list[list[np.ndarray]]] = {}
    lines: dict[str, list[np.ndarray]] = {}
    bounds: dict[str, list[int]] = {}

    def add(name: str, px: np.ndarray, margin: int) -> bool:
        lo, hi = px.min(axis=0) - margin, px.max(axis=0) + margin
        if hi[0] < 0 or lo[0] >= width or hi[1] < 0 or lo[1] >= height:
            return False
        b = bounds.setdefault(name, [width, height, -1, -1])
        b[0], b[1] = min(b[0], int(lo[0])), min(b[1], int(lo[1]))
        b[2], b[3] = max(b[2], int(hi[0])), max(b[3], int(hi[1]))
        return True

    outline_r = _line_radius_px(CLASS_INFO["building_outline"].size_m, res)
    for area in osm_map.areas:
        rings = [to_px(area.exterior), *(to_px(h) for h in area.holes)]
        if add(area.class_name, rings[0], 0):
            polygons.setdefault(area.class_name, []).append(rings)
            if area.class_name == "building" and add("building_outline", rings[0], outline_r):
                lines.setdefault("building_outline", []).extend(rings)
    for way in osm_map.ways:
        px = to_px(way.xy)
        if add(way.class_name, px, _line_radius_px(CLASS_INFO[way.class_name].size_m, res)):
            lines.setdefault(way.class_name, []).append(px)
    points: dict[str, list[tuple[float, float]]] = {}
    for point in osm_map.points:
        points.setdefault(point.class_name, []).append(point.xy)

    packed = np.zeros((height, width, _bytes_per_pixel(len(CLASS_NAMES))), np.uint8)
    scratch = np.zeros((height, width), np.uint8)
    for c, name in enumerate(CLASS_NAMES):
        byte, bit = c >> 3, c & 7
        if name in bounds:  # areas and ways: draw into the scratch plane, then OR its window into the bit
            for rings in polygons.get(name, ()):
                cv2.fillPoly(scratch, rings, 1, lineType=cv2.LINE_8)
            if name in lines:
                r = _line_radius_px(CLASS_INFO[name].size_m, res)
                cv2.polylines(scratch, lines[name], False, 1, thickness=1 if r == 0 else 2 * r, lineType=cv2.LINE_8)
            j0, i0, j1, i1 = bounds[name]
            i0, j0, i1, j1 = max(i0, 0), max(j0, 0), min(i1 + 1, height), min(j1 + 1, width)
            window = scratch[i0:i1, j0:j1]
            packed[i0:i1, j0:j1, byte] |= window << bit
            window[...] = 0
        if name in points:  # points: stamp the cv2.circle disk at every snapped point
            px = to_px(np.asarray(points[name], dtype=np.float64))
            d_rows, d_cols = _disk_offsets(_point_radius_px(CLASS_INFO[name].size_m, res))
            rows = (px[:, 1:2] + d_rows[None, :]).ravel()
            cols = (px[:, 0:1] + d_cols[None, :]).ravel()
            inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
            packed[rows[inside], cols[inside], byte] |= np.uint8(1 << bit)
    return packed


def _cache_key(
    sha256: str,
    resolution_m: float,
    parse_origin: Sequence[float] | None,
    parse_bbox: Sequence[float] | None,
    raster_bbox: Sequence[float] | None,
) -> str:
    payload = {
        "format": _CACHE_FORMAT,
        "classes": CLASS_TABLE_VERSION,
        "sha256": sha256,
        "resolution_m": float(resolution_m),
        "origin": None if parse_origin is None else [float(v) for v in parse_origin],
        "bbox": None if parse_bbox is None else [float(v) for v in parse_bbox],
        "raster_bbox": None if raster_bbox is None else [float(v) for v in raster_bbox],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _cache_path(cache_dir: Path, sha256: str, resolution_m: float, key: str) -> Path:
    return cache_dir / f"osm-raster-{sha256[:12]}-{resolution_m:g}m-{key[:12]}.npz"


def _try_cache(path: Path, key: str) -> MapRaster | None:
    if not path.is_file():
        return None
    try:
        return MapRaster.load_npz(path, key=key)
    except DataError as exc:
        logger.warning("ignoring the raster cache file: %s", exc)
        return None


def default_cache_dir() -> Path:
    """Where :func:`load_map_raster` caches rasters: ``<cache root>/osm-rasters``.

    The cache root is the one of fetched samples (:func:`maploc.data.fetch.cache_root`: ``$MAPLOC_DATA``,
    else ``platformdirs.user_cache_dir("maploc")``).
    """
    from maploc.data.fetch import cache_root

    return cache_root() / "osm-rasters"


def rasterize(
    osm_map: OSMMap,
    resolution_m: float = 0.5,
    bbox: tuple[float, float, float, float] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MapRaster:
    """Draw an OSM map as a multi-channel semantic raster (one channel per class, grouped areas/ways/points).

    The grid and the drawing rules (OpenCV ``fillPoly`` even-odd for areas with holes, ``polylines`` with a
    per-class width in metres, ``circle`` with a per-class radius in metres) are in the :mod:`.raster` module
    docstring. As OrienterNet (Sarlin et al., CVPR 2023, ``maploc/osm/raster.py``), but with one channel per
    class instead of one index channel per group (see :meth:`MapRaster.group_indices`).

    Args:
        osm_map: the parsed map (:func:`~.parser.parse_osm`).
        resolution_m: pixel size in metres.
        bbox: ``(x_min, y_min, x_max, y_max)`` map-frame metres to cover; default ``osm_map.extent``. The raster
            has ``width = ceil((x_max - x_min) / res)`` columns from ``x_min`` and ``height = ceil((y_max -
            y_min) / res)`` rows from ``y_max`` down (it may reach up to one pixel past ``x_max`` / ``y_min``).
        cache_dir: if given (and the map knows its file's hash), the raster is read from / written to an
            ``.npz`` there, keyed by the file's SHA-256, the resolution, the parse arguments, ``bbox`` and the
            class table version.

    Returns:
        The raster.

    Raises:
        DataError: no feature of the map falls in the raster (the message names the file and the area).
        ValueError: non-positive resolution, empty ``bbox``, or a raster above :data:`MAX_PIXELS`.
    """
    if not (math.isfinite(resolution_m) and resolution_m > 0):
        raise ValueError(f"resolution_m must be a positive number of metres, got {resolution_m}")
    box = tuple(float(v) for v in (osm_map.extent if bbox is None else bbox))
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"bbox must be (x_min, y_min, x_max, y_max) metres with min <= max, got {box}")
    if bbox is not None and (box[2] == box[0] or box[3] == box[1]):
        raise ValueError(f"bbox is empty: {box}")
    width = max(1, math.ceil((box[2] - box[0]) / resolution_m - 1e-9))
    height = max(1, math.ceil((box[3] - box[1]) / resolution_m - 1e-9))
    if width * height > MAX_PIXELS:
        raise ValueError(f"a {height} x {width} raster is too large; use a coarser resolution or a smaller bbox")
    georef = osm_map.georef.with_raster(
        resolution_m=resolution_m, x_min=box[0], y_max=box[3], height=height, width=width
    )

    cache_file = key = None
    if cache_dir is not None and osm_map.source_sha256 is not None:
        key = _cache_key(osm_map.source_sha256, resolution_m, osm_map.parse_origin, osm_map.parse_bbox, bbox)
        cache_file = _cache_path(Path(cache_dir), osm_map.source_sha256, resolution_m, key)
        cached = _try_cache(cache_file, key)
        if cached is not None:
            return cached

    packed = _draw(osm_map, georef)
    if not packed.any():
        raise DataError(
            f"{osm_map.source or 'OSM map'}: no map features in x {box[0]:.1f}..{box[2]:.1f} m, "
            f"y {box[1]:.1f}..{box[3]:.1f} m"
        )
    raster = MapRaster(georef=georef, packed=packed, source=osm_map.source)
    if cache_file is not None and key is not None:
        try:
            raster.save_npz(cache_file, key=key)
        except OSError as exc:
            logger.warning("could not write the raster cache %s: %s", cache_file, exc)
    return raster


def load_map_raster(
    path: str | os.PathLike[str],
    resolution_m: float = 0.5,
    *,
    origin: tuple[float, float] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MapRaster:
    """Parse and rasterize an OSM file, through the disk cache (a cache hit skips parsing).

    Args:
        path: the OSM file (``.osm.pbf``, ``.osm``, ``.osm.bz2``).
        resolution_m: pixel size in metres.
        origin: ``(lat, lon)`` of the map frame, as in :func:`~.parser.parse_osm`.
        bbox: ``(min_lat, min_lon, max_lat, max_lon)`` degrees, as in :func:`~.parser.parse_osm`; the raster
            covers the map's extent.
        cache_dir: cache folder; default :func:`default_cache_dir`.

    Returns:
        The raster (as :func:`rasterize` of :func:`~.parser.parse_osm`).

    Raises:
        DataError: as :func:`~.parser.parse_osm` and :func:`rasterize`.
    """
    from .parser import _check_box, _sha256, parse_osm

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: OSM file not found")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sha256 = _sha256(path)
    parse_origin = None if origin is None else (float(origin[0]), float(origin[1]))
    parse_bbox = None if bbox is None else _check_box(bbox)
    key = _cache_key(sha256, resolution_m, parse_origin, parse_bbox, None)
    cached = _try_cache(_cache_path(cache, sha256, resolution_m, key), key)
    if cached is not None:
        return cached
    osm_map = parse_osm(path, origin=origin, bbox=bbox)
    return rasterize(osm_map, resolution_m, cache_dir=cache)

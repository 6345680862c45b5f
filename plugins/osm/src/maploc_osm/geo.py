"""Geo-referencing of the local metric map frame and of its rasters.

Frames and conventions (stated once, used by every ``maploc_osm`` function):

* Geographic coordinates are WGS84 ``(lat, lon)`` in degrees, latitude first, in every array and tuple.
* The **map frame** is an east-north tangent plane in metres: ``x`` east, ``y`` north, origin at the stated
  ``(origin_lat, origin_lon)``. It is an azimuthal equidistant projection on the WGS84 ellipsoid (PROJ
  ``aeqd``): distances and azimuths from the origin are exact; over a few km the scale error is below 1e-6.
* A **raster** over the map frame has ``height x width`` square pixels of ``resolution_m`` metres, row 0 at the
  north. Its outer left edge is at ``x = x_min`` and its top edge at ``y = y_max``. Pixel ``(i, j)`` (row,
  column) has its centre at::

      x = x_min + (j + 0.5) * resolution_m
      y = y_max - (i + 0.5) * resolution_m

  Continuous pixel coordinates ``(i, j)`` are floats with integer values at pixel centres, so pixel ``(i, j)``
  covers ``[i - 0.5, i + 0.5) x [j - 0.5, j + 0.5)``.
"""

from __future__ import annotations

import functools
import json
import math

import attrs
import numpy as np
import pyproj
from numpy.typing import ArrayLike

__all__ = ["GeoReference"]


@functools.lru_cache(maxsize=64)
def _transformers(projection: str) -> tuple[pyproj.Transformer, pyproj.Transformer]:
    crs = pyproj.CRS.from_user_input(projection)
    forward = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inverse = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return forward, inverse


def _pairs(values: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != 2:
        raise ValueError(f"{what} must have shape (..., 2), got {array.shape}")
    return array


def _check_latlon(lat: float, lon: float) -> None:
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"origin ({lat}, {lon}) is not a valid (lat, lon) in degrees")


@attrs.frozen(kw_only=True)
class GeoReference:
    """Links the metric map frame (and optionally a raster over it) to WGS84 latitude/longitude.

    See the module docstring for the frames. Build one with :meth:`from_origin`; a raster's georeference is
    :meth:`with_raster` of its map's.

    Attributes:
        origin_lat: latitude of the map-frame origin, degrees.
        origin_lon: longitude of the map-frame origin, degrees.
        projection: PROJ string of the map frame (metres, x east, y north).
        resolution_m: raster pixel size in metres, or None for a map without raster.
        x_min: map-frame x of the raster's left edge (metres), or None.
        y_max: map-frame y of the raster's top edge (metres), or None.
        height: raster rows, or None.
        width: raster columns, or None.
    """

    origin_lat: float = attrs.field(converter=float)
    origin_lon: float = attrs.field(converter=float)
    projection: str
    resolution_m: float | None = None
    x_min: float | None = None
    y_max: float | None = None
    height: int | None = None
    width: int | None = None

    @classmethod
    def from_origin(cls, lat: float, lon: float) -> GeoReference:
        """The azimuthal equidistant (WGS84) map frame centred at ``(lat, lon)`` degrees.

        Values within 1e-8 degree of 0 are set to 0 (PROJ's own rounding).

        Raises:
            ValueError: the origin is not a valid latitude/longitude.
        """
        # PROJ reads |angle| < 1e-8 degree (1 mm) as 0; the stored origin says what PROJ uses.
        lat, lon = (0.0 if abs(float(v)) < 1e-8 else float(v) for v in (lat, lon))
        _check_latlon(lat, lon)
        # Fixed-point degrees (PROJ does not read exponents: "5e-09" would be 5); 1e-12 degree is 0.1 micrometre.
        projection = f"+proj=aeqd +lat_0={lat:.12f} +lon_0={lon:.12f} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
        return cls(origin_lat=lat, origin_lon=lon, projection=projection)

    def with_raster(self, *, resolution_m: float, x_min: float, y_max: float, height: int, width: int) -> GeoReference:
        """This map frame with a raster of ``height x width`` pixels of ``resolution_m`` metres.

        Raises:
            ValueError: non-positive or non-finite resolution, or non-positive size.
        """
        if not (math.isfinite(resolution_m) and resolution_m > 0):
            raise ValueError(f"resolution_m must be a positive number of metres, got {resolution_m}")
        if height <= 0 or width <= 0:
            raise ValueError(f"raster size must be positive, got {height} x {width}")
        return attrs.evolve(
            self,
            resolution_m=float(resolution_m),
            x_min=float(x_min),
            y_max=float(y_max),
            height=int(height),
            width=int(width),
        )

    @property
    def has_raster(self) -> bool:
        """Whether the raster fields are set (pixel conversions need them)."""
        return self.resolution_m is not None

    # ---- lat/lon <-> metres ---------------------------------------------------------------------------------
    def latlon_to_xy(self, latlon: ArrayLike) -> np.ndarray:
        """WGS84 ``(lat, lon)`` degrees ``(..., 2)`` -> map-frame ``(x, y)`` metres ``(..., 2)`` float64."""
        latlon = _pairs(latlon, "latlon")
        forward, _ = _transformers(self.projection)
        x, y = forward.transform(latlon[..., 1], latlon[..., 0])
        return np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], axis=-1)

    def xy_to_latlon(self, xy: ArrayLike) -> np.ndarray:
        """Map-frame ``(x, y)`` metres ``(..., 2)`` -> WGS84 ``(lat, lon)`` degrees ``(..., 2)`` float64."""
        xy = _pairs(xy, "xy")
        _, inverse = _transformers(self.projection)
        lon, lat = inverse.transform(xy[..., 0], xy[..., 1])
        return np.stack([np.asarray(lat, np.float64), np.asarray(lon, np.float64)], axis=-1)

    # ---- metres <-> pixels ----------------------------------------------------------------------------------
    def _raster(self) -> tuple[float, float, float]:
        if self.resolution_m is None or self.x_min is None or self.y_max is None:
            raise ValueError("this GeoReference has no raster (use GeoReference.with_raster)")
        return self.resolution_m, self.x_min, self.y_max

    def xy_to_pixel(self, xy: ArrayLike) -> np.ndarray:
        """Map-frame ``(x, y)`` metres ``(..., 2)`` -> continuous pixel ``(i, j)`` ``(..., 2)`` float64.

        ``i = (y_max - y) / res - 0.5``, ``j = (x - x_min) / res - 0.5`` (integers at pixel centres).

        Raises:
            ValueError: no raster fields.
        """
        res, x_min, y_max = self._raster()
        xy = _pairs(xy, "xy")
        return np.stack([(y_max - xy[..., 1]) / res - 0.5, (xy[..., 0] - x_min) / res - 0.5], axis=-1)

    def pixel_to_xy(self, ij: ArrayLike) -> np.ndarray:
        """Continuous pixel ``(i, j)`` ``(..., 2)`` -> map-frame ``(x, y)`` metres ``(..., 2)`` float64.

        Raises:
            ValueError: no raster fields.
        """
        res, x_min, y_max = self._raster()
        ij = _pairs(ij, "ij")
        return np.stack([x_min + (ij[..., 1] + 0.5) * res, y_max - (ij[..., 0] + 0.5) * res], axis=-1)

    def latlon_to_pixel(self, latlon: ArrayLike) -> np.ndarray:
        """WGS84 ``(lat, lon)`` degrees ``(..., 2)`` -> continuous pixel ``(i, j)`` ``(..., 2)`` float64."""
        return self.xy_to_pixel(self.latlon_to_xy(latlon))

    def pixel_to_latlon(self, ij: ArrayLike) -> np.ndarray:
        """Continuous pixel ``(i, j)`` ``(..., 2)`` -> WGS84 ``(lat, lon)`` degrees ``(..., 2)`` float64."""
        return self.xy_to_latlon(self.pixel_to_xy(ij))

    # ---- serialization --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """A JSON-compatible dict of every field."""
        return attrs.asdict(self)

    def to_json(self) -> str:
        """The fields as a JSON object (used in raster cache files)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GeoReference:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: not a JSON object with exactly this class's fields.
        """
        data = json.loads(text)
        names = {a.name for a in attrs.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ValueError(f"not a GeoReference JSON object: {text[:200]!r}")
        return cls(**data)

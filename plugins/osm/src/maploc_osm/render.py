"""Pictures of semantic rasters (matplotlib, Agg; no pyplot global state)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from maploc.errors import DataError

from .classes import CLASS_INFO
from .raster import MapRaster

__all__ = ["ATTRIBUTION", "raster_to_rgb", "render_map_png", "show_sample_map"]

#: Required wherever OpenStreetMap data is shown (ODbL 1.0).
ATTRIBUTION = "© OpenStreetMap contributors (ODbL)"
_BACKGROUND = (247, 247, 242)


def _rgb(color: str) -> tuple[int, int, int]:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def raster_to_rgb(raster: MapRaster) -> tuple[np.ndarray, list[str]]:
    """Composite a raster in class colours: areas, then ways, then points on top (later channels win).

    Returns:
        ``(H, W, 3)`` uint8 RGB, and the names of the classes present (channel order).
    """
    palette = np.empty((raster.num_classes + 1, 3), np.uint8)
    palette[0] = _BACKGROUND
    index = np.zeros(raster.packed.shape[:2], np.uint8 if raster.num_classes < 255 else np.uint16)
    present = []
    for byte in range(raster.packed.shape[2]):
        plane = np.ascontiguousarray(raster.packed[:, :, byte])
        for bit in range(8):
            c = 8 * byte + bit
            if c >= raster.num_classes:
                break
            name = raster.class_names[c]
            palette[c + 1] = _rgb(CLASS_INFO[name].color) if name in CLASS_INFO else (128, 128, 128)
            mask = (plane & (1 << bit)) != 0
            if mask.any():
                index[mask] = c + 1
                present.append(name)
    return palette[index], present


def render_map_png(raster: MapRaster, out_path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Save a picture of the raster in class colours, with axes in metres, a legend and the OSM attribution.

    Args:
        raster: the semantic raster.
        out_path: the ``.png`` to write (atomically; parent folders are created).
        title: figure title.

    Returns:
        ``out_path`` as a Path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    out_path = Path(out_path)
    image, present = raster_to_rgb(raster)
    x_min, y_min, x_max, y_max = raster.extent
    aspect = (y_max - y_min) / max(x_max - x_min, 1e-9)
    fig_w = 11.0
    fig_h = float(np.clip(7.5 * aspect, 5.0, 16.0))
    fig = Figure(figsize=(fig_w, fig_h), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.07, 0.62, 0.86))
    ax.imshow(image, extent=(x_min, x_max, y_min, y_max), interpolation="antialiased", origin="upper")
    ax.set_xlabel("x east [m]")
    ax.set_ylabel("y north [m]")
    ax.set_title(title or (Path(raster.source).name if raster.source else "OpenStreetMap raster"))
    handles = [Patch(facecolor=CLASS_INFO[n].color, edgecolor="none", label=n) for n in present if n in CLASS_INFO]
    if handles:
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.72, 0.5), fontsize=7, frameon=False,
                   ncols=2 if len(handles) > 24 else 1, title="classes")  # fmt: skip
    g = raster.georef
    fig.text(
        0.01,
        0.01,
        f"{ATTRIBUTION}   |   {raster.resolution_m:g} m/px, origin {g.origin_lat:.6f}, {g.origin_lon:.6f}",
        fontsize=8,
        ha="left",
        va="bottom",
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=out_path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


_OSM_SUFFIXES = (".osm.pbf", ".osm", ".osm.bz2", ".osm.gz", ".pbf")


def _find_osm_file(location: Path, name: str) -> Path:
    if location.is_file():
        return location
    files = sorted(p for p in location.iterdir() if p.is_file() and p.name.lower().endswith(_OSM_SUFFIXES))
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise DataError(f"{location}: expected one OSM file for sample {name!r}, found {found}")
    return files[0]


def show_sample_map(
    name: str = "helsinki-osm",
    out: str | os.PathLike[str] = "map.png",
    *,
    resolution_m: float = 0.5,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Fetch a named OSM sample, rasterize it and save a picture (``maploc data show NAME --out PNG``).

    Args:
        name: a sample known to :func:`maploc.data.fetch.fetch` whose folder holds one OSM file
            (``helsinki-osm``: ``Helsinki.osm.pbf``).
        out: the ``.png`` to write.
        resolution_m: raster pixel size in metres.
        cache_dir: raster cache folder; default :func:`~.raster.default_cache_dir`.

    Returns:
        The written picture.

    Raises:
        DataError: the sample cannot be fetched or read, or holds no (or several) OSM files.
    """
    from maploc.data.fetch import fetch

    from .raster import load_map_raster

    osm_file = _find_osm_file(Path(fetch(name)), name)
    raster = load_map_raster(osm_file, resolution_m, cache_dir=cache_dir)
    _, h, w = raster.shape
    title = f"{name}: {osm_file.name}, {w * raster.resolution_m:.0f} m x {h * raster.resolution_m:.0f} m"
    return render_map_png(raster, out, title=title)

"""Pictures of semantic rasters (matplotlib, Agg; no pyplot global state)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maploc.files import atomic_write

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
    with atomic_write(out_path, "wb") as f:
        fig.savefig(f, format="png")
    return out_path


def show_sample_map(
    name: str | os.PathLike[str] = "helsinki-osm",
    out: str | os.PathLike[str] = "map.png",
    *,
    resolution_m: float = 0.5,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Rasterize an OSM map and save a picture (``maploc data show NAME|PATH --out PNG``).

    Args:
        name: a sample name (``helsinki-osm``, fetched on first use), or the path of an ``.osm.pbf`` / ``.osm`` /
            ``.osm.bz2`` file, or a folder holding one (see :func:`~.source.resolve_map`).
        out: the ``.png`` to write (atomically; parent folders are created).
        resolution_m: raster pixel size in metres.
        cache_dir: raster cache folder; default :func:`~.raster.default_cache_dir`.

    Returns:
        The written picture.

    Raises:
        DataError: the file is missing, unreadable or corrupt; an unknown sample name; a sample that cannot be
            fetched; a folder without exactly one OSM file.
        ValueError: a non-positive ``resolution_m``.
    """
    from .raster import load_map_raster
    from .source import is_osm_path, resolve_map

    osm_file = resolve_map(name)
    raster = load_map_raster(osm_file, resolution_m, cache_dir=cache_dir)
    _, h, w = raster.shape
    sample = not (is_osm_path(name) or Path(name).exists())
    title = f"{f'{name}: ' if sample else ''}{osm_file.name}, {w * raster.resolution_m:.0f} m x {h * raster.resolution_m:.0f} m"
    return render_map_png(raster, out, title=title)

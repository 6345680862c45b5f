"""Semantic labels of rendered images, and the ground class chosen where map classes overlap.

A rendered label image is ``(H, W)`` uint8. Its values index :data:`LABEL_NAMES`:

* ``0`` = ``sky`` (nothing rendered; depth 0),
* ``1 + c`` = the OSM class ``CLASS_NAMES[c]`` of :mod:`maploc_osm.classes` (buildings and their roofs are
  ``building``, trees ``tree``, lamp posts ``lamp``, road surfaces and their lane marks ``road`` ...),
* ``len(CLASS_NAMES) + 1`` = ``ground``: terrain that no OSM ground class covers (rendered as paving).

The ground surface takes, at every point, the first class of :data:`GROUND_PRIORITY` whose map-raster channel is
set there (``ground`` when none is): a road over a park is road, a footway over grass is footway.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from maploc_osm import CLASS_NAMES

__all__ = [
    "GROUND_LABEL",
    "GROUND_PRIORITY",
    "LABEL_NAMES",
    "SKY_LABEL",
    "ground_labels",
    "label_id",
    "label_palette",
]

#: Label names, indexed by the values of a label image.
LABEL_NAMES: Final[tuple[str, ...]] = ("sky", *CLASS_NAMES, "ground")
SKY_LABEL: Final[int] = 0
GROUND_LABEL: Final[int] = len(LABEL_NAMES) - 1

#: OSM classes drawn on the ground surface, highest priority first (see the module docstring).
GROUND_PRIORITY: Final[tuple[str, ...]] = (
    "road",
    "busway",
    "cycleway",
    "path",
    "kerb",
    "railway",
    "parking",
    "playground",
    "water",
    "grass",
    "park",
    "forest",
)


def label_id(name: str) -> int:
    """The label value of a name of :data:`LABEL_NAMES`.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return LABEL_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown label {name!r}; labels: {', '.join(LABEL_NAMES)}") from None


def ground_labels(raster: object) -> np.ndarray:
    """The ground label of every pixel of an OSM map raster.

    Args:
        raster: a :class:`maploc_osm.MapRaster` (standard classes).

    Returns:
        ``(H, W)`` uint8 label values (:data:`LABEL_NAMES`) on the raster's grid: the first class of
        :data:`GROUND_PRIORITY` set at the pixel, else :data:`GROUND_LABEL`.
    """
    height, width = raster.packed.shape[:2]  # type: ignore[attr-defined]
    out = np.full((height, width), GROUND_LABEL, np.uint8)
    undecided = np.ones((height, width), bool)
    for name in GROUND_PRIORITY:
        mask = raster.mask(name) & undecided  # type: ignore[attr-defined]
        out[mask] = label_id(name)
        undecided &= ~mask
    return out


def label_palette() -> np.ndarray:
    """``(len(LABEL_NAMES), 3)`` uint8 RGB colours to display label images (sky black, ground grey, OSM classes
    in their map colours)."""
    from maploc_osm.classes import CLASS_INFO

    palette = np.zeros((len(LABEL_NAMES), 3), np.uint8)
    for k, name in enumerate(LABEL_NAMES):
        if name in CLASS_INFO:
            hexa = CLASS_INFO[name].color.lstrip("#")
            palette[k] = [int(hexa[i : i + 2], 16) for i in (0, 2, 4)]
    palette[GROUND_LABEL] = (200, 200, 200)
    return palette

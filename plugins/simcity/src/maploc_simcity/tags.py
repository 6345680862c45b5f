"""The OSM tags that shape buildings: heights, levels, colours (read from the parsed map, never from the file).

:func:`maploc_osm.parse_osm` keeps every tag of every area (:attr:`maploc_osm.MapArea.tags`); this module turns the
few that the scene uses into numbers: :func:`building_height` (``height``, ``building:levels``, ``min_height``,
``building:min_level``) and :func:`parse_colour` (``building:colour`` / ``colour``, ``roof:colour``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from maploc_osm import OSMMap

__all__ = ["BUILDING_KEYS", "NAMED_COLOURS", "building_height", "building_tags", "facade_colour", "parse_colour",
           "parse_length", "roof_colour"]  # fmt: skip

#: The tags of a building area that :func:`building_height`, :func:`facade_colour` and :func:`roof_colour` read.
BUILDING_KEYS: tuple[str, ...] = (
    "height", "min_height", "building:levels", "building:min_level", "building:colour", "colour", "roof:colour",
    "roof:shape",
)  # fmt: skip

NAMED_COLOURS = {
    "white": (0.92, 0.92, 0.90), "black": (0.12, 0.12, 0.12), "grey": (0.55, 0.55, 0.55), "gray": (0.55, 0.55, 0.55),
    "red": (0.65, 0.20, 0.15), "brown": (0.45, 0.30, 0.20), "yellow": (0.90, 0.80, 0.40), "green": (0.35, 0.55, 0.35),
    "blue": (0.35, 0.45, 0.65), "beige": (0.85, 0.78, 0.62), "orange": (0.90, 0.55, 0.25), "pink": (0.90, 0.65, 0.65),
    "silver": (0.75, 0.75, 0.78), "maroon": (0.45, 0.15, 0.15), "tan": (0.82, 0.70, 0.55), "cream": (0.92, 0.88, 0.75),
}  # fmt: skip


def building_tags(osm_map: OSMMap) -> dict[tuple[str, int], dict[str, str]]:
    """The tags that shape buildings, per building area of a parsed map (no file is read).

    Args:
        osm_map: the parsed map; its areas carry their OSM tags (:attr:`maploc_osm.MapArea.tags`).

    Returns:
        ``{(osm_type, osm_id): {key: value}}`` for every ``building`` area that has one of :data:`BUILDING_KEYS`,
        with ``osm_type`` ``"way"`` or ``"relation"``.
    """
    out: dict[tuple[str, int], dict[str, str]] = {}
    for area in osm_map.areas:
        if area.class_name != "building":
            continue
        found = {k: area.tags[k] for k in BUILDING_KEYS if k in area.tags}
        if found:
            out[(area.osm_type, area.osm_id)] = found
    return out


_NUMBER = re.compile(r"^\s*([0-9]+(?:[.,][0-9]+)?)\s*(m|meters|metres|ft|')?\s*$", re.IGNORECASE)


def parse_length(value: str | None) -> float | None:
    if not value:
        return None
    match = _NUMBER.match(value)
    if match is None:
        return None
    number = float(match.group(1).replace(",", "."))
    if match.group(2) and match.group(2).lower() in ("ft", "'"):
        number *= 0.3048
    return number if math.isfinite(number) else None


def building_height(tags: Mapping[str, str], rng: np.random.Generator) -> tuple[float, float]:
    """Base and top height of a building, metres.

    Top: the ``height`` tag (metres, or feet with ``ft`` / ``'``), else ``building:levels`` x 3 m, else a uniform
    draw in 8-25 m from ``rng``. Base: ``min_height``, else ``building:min_level`` x 3 m, else 0. The top is at least
    the base + 2.5 m.

    Returns:
        ``(base, top)`` metres.
    """
    top = parse_length(tags.get("height"))
    if top is None or top <= 0:
        levels = parse_length(tags.get("building:levels"))
        top = 3.0 * levels if levels is not None and levels > 0 else None
    draw = float(rng.uniform(8.0, 25.0))  # drawn always, so the stream does not depend on the tags
    if top is None:
        top = draw
    base = parse_length(tags.get("min_height"))
    if base is None:
        min_level = parse_length(tags.get("building:min_level"))
        base = 3.0 * min_level if min_level is not None else 0.0
    top = min(top, 400.0)
    base = min(max(base, 0.0), 300.0)
    return base, max(top, base + 2.5)


def parse_colour(value: str | None) -> tuple[float, float, float] | None:
    if not value:
        return None
    value = value.strip().lower()
    if value in NAMED_COLOURS:
        return NAMED_COLOURS[value]
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return tuple(int(value[k : k + 2], 16) / 255.0 for k in (1, 3, 5))  # type: ignore[return-value]
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        return tuple(int(c * 2, 16) / 255.0 for c in value[1:])  # type: ignore[return-value]
    return None


def facade_colour(tags: Mapping[str, str]) -> tuple[float, float, float] | None:
    """The wall colour of a building: ``building:colour``, else ``colour`` (RGB in [0, 1]), or None."""
    return parse_colour(tags.get("building:colour")) or parse_colour(tags.get("colour"))


def roof_colour(tags: Mapping[str, str]) -> tuple[float, float, float] | None:
    """The roof colour of a building: ``roof:colour`` (RGB in [0, 1]), or None."""
    return parse_colour(tags.get("roof:colour"))

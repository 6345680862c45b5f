"""Semantic classes of the OpenStreetMap raster and the one table that maps OSM tags to them.

The classes and their three groups (areas, ways, points) follow OrienterNet (Sarlin et al., "OrienterNet:
Visual Localization in 2D Public Maps with Neural Matching", CVPR 2023; code ``maploc/osm/parser.py``,
``Patterns``/``Groups``). Departures from it are marked "maploc" in the tables below:

* ``railway`` (ways) is added: rails and tram tracks are prominent in city maps (Helsinki has many trams).
* ``living_street`` and ``road`` values count as ``road`` (OrienterNet's pattern misses them).
* Classification is "first matching row wins" over :data:`TAG_TABLE` instead of OrienterNet's "first present
  key, then pattern" (OrienterNet drops a node tagged ``amenity=foo`` + ``highway=street_lamp``; maploc keeps the
  lamp).
* Area tags that match no area class but a way class (``highway=pedestrian`` + ``area=yes``, ``area:highway=*``)
  give an area of that way class, filled into the way channel, as OrienterNet does. Point tags on ways, and way
  tags on nodes, are ignored (OrienterNet's cross-group fallbacks for them are dropped).

Which elements are considered (OrienterNet's ``filter_level``/``is_area``):

* An element on an underground level is ignored: ``location=underground``, ``parking=underground``, all
  ``layer`` values negative, or a ``level`` list that contains neither 0 nor 1 (see :func:`is_above_ground`).
* A way is an area when it is closed and :func:`has_area_tags` (``area``, ``building``, ``amenity``, ``indoor``,
  ``landuse``, ``landcover``, ``leisure``, ``public_transport``, ``shop`` or ``area:highway`` present and not
  ``no``, or ``natural`` in wood/grassland/water) and ``area`` is not ``no``. Multipolygon relations are areas.
* Value ``no`` never matches, nor does a value containing ``disused``.

Channels of a raster are :data:`CLASS_NAMES`, in the order areas, ways, points (:data:`GROUPS`).
``building_outline`` has no tag row: it is drawn from the rings of ``building`` areas.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from typing import Final

import attrs

__all__ = [
    "AREA_CLASSES",
    "CLASSES",
    "CLASS_NAMES",
    "CLASS_TABLE_VERSION",
    "GROUPS",
    "POINT_CLASSES",
    "TAG_TABLE",
    "WAY_CLASSES",
    "ClassInfo",
    "classify",
    "describe_classes",
    "has_area_tags",
    "is_above_ground",
]


@attrs.frozen(kw_only=True)
class ClassInfo:
    """Drawing style of one class.

    Attributes:
        group: ``"areas"``, ``"ways"`` or ``"points"``.
        name: the class (= channel) name, unique over all groups.
        color: ``#rrggbb`` used by :func:`maploc_osm.render_map_png`.
        size_m: ways: drawn width in metres; points: drawn radius in metres; areas: unused (0).
    """

    group: str
    name: str
    color: str
    size_m: float = 0.0


#: Every class, in channel order. ``size_m`` is the line width (ways) or disk radius (points) in metres; see
#: :func:`maploc_osm.rasterize` for how it becomes pixels.
CLASSES: Final[tuple[ClassInfo, ...]] = (
    # ---- areas (OrienterNet Patterns.areas) ---------------------------------------------------------
    ClassInfo(group="areas", name="building", color="#c9a08f"),
    ClassInfo(group="areas", name="parking", color="#b9b9cf"),
    ClassInfo(group="areas", name="playground", color="#e8c99b"),
    ClassInfo(group="areas", name="grass", color="#b5dc97"),
    ClassInfo(group="areas", name="park", color="#8ccf86"),
    ClassInfo(group="areas", name="forest", color="#4f9a4f"),
    ClassInfo(group="areas", name="water", color="#7fb2e5"),
    # ---- ways (OrienterNet Patterns.ways, + railway) ------------------------------------------------
    ClassInfo(group="ways", name="fence", color="#8c5a2b", size_m=0.5),
    ClassInfo(group="ways", name="wall", color="#595959", size_m=0.5),
    ClassInfo(group="ways", name="hedge", color="#2f6f2f", size_m=1.0),
    ClassInfo(group="ways", name="kerb", color="#a3a3a3", size_m=0.5),
    ClassInfo(group="ways", name="building_outline", color="#7a4636", size_m=0.5),
    ClassInfo(group="ways", name="cycleway", color="#1f77b4", size_m=2.0),
    ClassInfo(group="ways", name="path", color="#d9534f", size_m=2.0),
    ClassInfo(group="ways", name="road", color="#3b3b3b", size_m=4.0),
    ClassInfo(group="ways", name="busway", color="#9467bd", size_m=3.0),
    ClassInfo(group="ways", name="tree_row", color="#2ca02c", size_m=2.0),
    ClassInfo(group="ways", name="railway", color="#8c564b", size_m=1.5),  # maploc
    # ---- points (OrienterNet Patterns.nodes) --------------------------------------------------------
    ClassInfo(group="points", name="tree", color="#1a7f1a", size_m=1.0),
    ClassInfo(group="points", name="stone", color="#7f7f7f", size_m=0.5),
    ClassInfo(group="points", name="crossing", color="#f2c500", size_m=0.5),
    ClassInfo(group="points", name="lamp", color="#ff9900", size_m=0.5),
    ClassInfo(group="points", name="traffic_signal", color="#e41a1c", size_m=0.5),
    ClassInfo(group="points", name="bus_stop", color="#377eb8", size_m=0.5),
    ClassInfo(group="points", name="stop_sign", color="#b2182b", size_m=0.5),
    ClassInfo(group="points", name="junction", color="#4d4d4d", size_m=0.5),
    ClassInfo(group="points", name="bus_stop_position", color="#4393c3", size_m=0.5),
    ClassInfo(group="points", name="gate", color="#a6761d", size_m=0.5),
    ClassInfo(group="points", name="bollard", color="#666666", size_m=0.5),
    ClassInfo(group="points", name="shop", color="#e7298a", size_m=0.5),
    ClassInfo(group="points", name="restaurant", color="#d95f02", size_m=0.5),
    ClassInfo(group="points", name="bar", color="#7570b3", size_m=0.5),
    ClassInfo(group="points", name="pharmacy", color="#66a61e", size_m=0.5),
    ClassInfo(group="points", name="fuel", color="#e6ab02", size_m=0.5),
    ClassInfo(group="points", name="bicycle_parking", color="#1b9e77", size_m=0.5),
    ClassInfo(group="points", name="charging_station", color="#80b1d3", size_m=0.5),
    ClassInfo(group="points", name="parking_entrance", color="#bebada", size_m=0.5),
    ClassInfo(group="points", name="atm", color="#fb8072", size_m=0.5),
    ClassInfo(group="points", name="toilets", color="#8dd3c7", size_m=0.5),
    ClassInfo(group="points", name="vending_machine", color="#fdb462", size_m=0.5),
    ClassInfo(group="points", name="fountain", color="#00bcd4", size_m=0.5),
    ClassInfo(group="points", name="waste_basket", color="#b3de69", size_m=0.5),
    ClassInfo(group="points", name="bench", color="#bc80bd", size_m=0.5),
    ClassInfo(group="points", name="post_box", color="#ffed6f", size_m=0.5),
    ClassInfo(group="points", name="artwork", color="#ccebc5", size_m=0.5),
    ClassInfo(group="points", name="recycling", color="#5aae61", size_m=0.5),
    ClassInfo(group="points", name="give_way", color="#f46d43", size_m=0.5),
    ClassInfo(group="points", name="clock", color="#542788", size_m=0.5),
    ClassInfo(group="points", name="fire_hydrant", color="#d73027", size_m=0.5),
    ClassInfo(group="points", name="pole", color="#878787", size_m=0.5),
    ClassInfo(group="points", name="street_cabinet", color="#4575b4", size_m=0.5),
)

#: THE tag -> class table: rows ``(group, class, OSM key, values)``. ``values`` is ``|``-separated; each
#: alternative is an exact value or a shell pattern (``*_link``); ``*`` alone accepts any value but ``no``.
#: An element of a group takes the class of the first row of that group that matches one of its tags; tags
#: that match no row are ignored. Areas that match no ``areas`` row are tried against the ``ways`` rows.
#: Source: OrienterNet ``maploc/osm/parser.py`` (``Patterns``, ``parse_area``/``parse_way``/``parse_node``).
TAG_TABLE: Final[tuple[tuple[str, str, str, str], ...]] = (
    # group    class                 key                 values
    ("areas", "building", "building", "*"),
    ("areas", "parking", "amenity", "parking"),
    ("areas", "playground", "leisure", "playground|pitch"),
    ("areas", "grass", "landuse", "grass|meadow|flowerbed"),
    ("areas", "grass", "landcover", "grass"),
    ("areas", "grass", "natural", "grassland"),
    ("areas", "park", "leisure", "park|garden|dog_park"),
    ("areas", "forest", "landuse", "forest"),
    ("areas", "forest", "natural", "wood"),
    ("areas", "water", "natural", "water"),
    ("areas", "water", "waterway", "*"),
    ("ways", "fence", "barrier", "fence|yes"),
    ("ways", "wall", "barrier", "wall|retaining_wall"),
    ("ways", "hedge", "barrier", "hedge"),
    ("ways", "kerb", "barrier", "kerb"),
    ("ways", "cycleway", "highway", "cycleway"),
    ("ways", "path", "highway", "pedestrian|footway|steps|path|corridor"),
    ("ways", "road", "highway", "motorway|trunk|primary|secondary|tertiary|service|construction|track"),
    ("ways", "road", "highway", "unclassified|residential|*_link"),
    ("ways", "road", "highway", "living_street|road"),  # maploc
    ("ways", "busway", "highway", "busway"),
    ("ways", "cycleway", "area:highway", "cycleway"),  # areas only (area:highway is an area tag)
    ("ways", "path", "area:highway", "pedestrian|footway|steps|path|corridor"),
    ("ways", "road", "area:highway", "motorway|trunk|primary|secondary|tertiary|service|unclassified"),
    ("ways", "road", "area:highway", "residential|living_street|*_link"),
    ("ways", "tree_row", "natural", "tree_row"),
    ("ways", "railway", "railway", "rail|tram|light_rail|narrow_gauge|funicular|monorail|subway"),  # maploc
    ("points", "tree", "natural", "tree"),
    ("points", "stone", "natural", "stone"),
    ("points", "stone", "barrier", "block"),
    ("points", "crossing", "highway", "crossing"),
    ("points", "lamp", "highway", "street_lamp"),
    ("points", "traffic_signal", "highway", "traffic_signals"),
    ("points", "bus_stop", "highway", "bus_stop"),
    ("points", "stop_sign", "highway", "stop"),
    ("points", "junction", "highway", "motorway_junction"),
    ("points", "bus_stop_position", "public_transport", "stop_position"),
    ("points", "gate", "barrier", "gate|lift_gate|swing_gate|cycle_barrier"),
    ("points", "bollard", "barrier", "bollard"),
    ("points", "shop", "shop", "*"),
    ("points", "shop", "amenity", "bank|post_office"),
    ("points", "restaurant", "amenity", "restaurant|fast_food"),
    ("points", "bar", "amenity", "cafe|bar|pub|biergarten"),
    ("points", "pharmacy", "amenity", "pharmacy"),
    ("points", "fuel", "amenity", "fuel"),
    ("points", "bicycle_parking", "amenity", "bicycle_parking|bicycle_rental"),
    ("points", "charging_station", "amenity", "charging_station"),
    ("points", "parking_entrance", "amenity", "parking_entrance"),
    ("points", "atm", "amenity", "atm"),
    ("points", "toilets", "amenity", "toilets"),
    ("points", "vending_machine", "amenity", "vending_machine"),
    ("points", "fountain", "amenity", "fountain"),
    ("points", "waste_basket", "amenity", "waste_basket|waste_disposal"),
    ("points", "bench", "amenity", "bench"),
    ("points", "post_box", "amenity", "post_box"),
    ("points", "artwork", "tourism", "artwork"),
    ("points", "recycling", "amenity", "recycling"),
    ("points", "give_way", "highway", "give_way"),
    ("points", "clock", "amenity", "clock"),
    ("points", "fire_hydrant", "emergency", "fire_hydrant"),
    ("points", "pole", "man_made", "flagpole|utility_pole"),
    ("points", "street_cabinet", "man_made", "street_cabinet"),
)

AREA_CLASSES: Final[tuple[str, ...]] = tuple(c.name for c in CLASSES if c.group == "areas")
WAY_CLASSES: Final[tuple[str, ...]] = tuple(c.name for c in CLASSES if c.group == "ways")
POINT_CLASSES: Final[tuple[str, ...]] = tuple(c.name for c in CLASSES if c.group == "points")
#: All channel names, in raster channel order (areas, then ways, then points).
CLASS_NAMES: Final[tuple[str, ...]] = AREA_CLASSES + WAY_CLASSES + POINT_CLASSES
#: Group name -> ``(first channel, end channel)`` (half-open) in :data:`CLASS_NAMES`.
GROUPS: Final[Mapping[str, tuple[int, int]]] = {
    "areas": (0, len(AREA_CLASSES)),
    "ways": (len(AREA_CLASSES), len(AREA_CLASSES) + len(WAY_CLASSES)),
    "points": (len(AREA_CLASSES) + len(WAY_CLASSES), len(CLASS_NAMES)),
}
CLASS_INFO: Final[Mapping[str, ClassInfo]] = {c.name: c for c in CLASSES}

#: Changes whenever the classes, their styles or the tag table change (part of raster cache keys).
CLASS_TABLE_VERSION: Final[str] = hashlib.sha256(repr((CLASSES, TAG_TABLE)).encode()).hexdigest()[:16]

_AREA_KEYS: Final = frozenset(
    {"area", "building", "amenity", "indoor", "landuse", "landcover", "leisure", "public_transport", "shop"}
    | {"area:highway"}
)
_AREA_NATURAL: Final = frozenset({"wood", "grassland", "water"})


def _compile() -> dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]]:
    rules: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {"areas": [], "ways": [], "points": []}
    for group, name, key, values in TAG_TABLE:
        if name not in CLASS_INFO or CLASS_INFO[name].group != group:
            raise AssertionError(f"TAG_TABLE row ({group}, {name}) names no class of that group")
        rules[group].append((name, key, tuple(values.split("|"))))
    return {g: tuple(r) for g, r in rules.items()}


_RULES: Final = _compile()


def _value_matches(value: str, alternatives: tuple[str, ...]) -> bool:
    if value == "no" or "disused" in value:
        return False
    return any(alt == "*" or alt == value or fnmatch.fnmatchcase(value, alt) for alt in alternatives)


def _first_match(group: str, tags: Mapping[str, str]) -> str | None:
    for name, key, alternatives in _RULES[group]:
        value = tags.get(key)
        if value is not None and _value_matches(value, alternatives):
            return name
    return None


def classify(group: str, tags: Mapping[str, str]) -> str | None:
    """The class of an element from its tags, by :data:`TAG_TABLE` (first matching row wins).

    Args:
        group: ``"areas"`` (closed ways with area tags, multipolygons), ``"ways"`` or ``"points"`` (nodes).
        tags: the element's OSM tags.

    Returns:
        The class name, or None for tags that map to no class (ignored). For ``"areas"`` a way class can be
        returned (areas such as pedestrian squares are filled into that way channel).

    Raises:
        KeyError: ``group`` is not one of the three groups.
    """
    if group == "areas":
        name = _first_match("areas", tags)
        return name if name is not None else _first_match("ways", tags)
    if group == "ways":
        # area:highway rows only make sense for areas.
        return _first_match("ways", {k: v for k, v in tags.items() if k != "area:highway"})
    if group == "points":
        return _first_match("points", tags)
    raise KeyError(f"unknown class group {group!r}; expected 'areas', 'ways' or 'points'")


def _parse_levels(value: str) -> list[float]:
    try:
        return [float(v) for v in value.replace(",", ";").replace(" ", "").split(";")]
    except ValueError:
        return []


def is_above_ground(tags: Mapping[str, str]) -> bool:
    """False for elements on an underground level (OrienterNet ``filter_level``).

    Underground: ``location=underground``, ``parking=underground``, every ``layer`` value negative, or a
    ``level`` list without 0 and 1 (ground floors are sometimes numbered 1).
    """
    level = tags.get("level")
    if level is not None:
        levels = _parse_levels(level)
        if not (0 in levels or 1 in levels):
            return False
    layer = tags.get("layer")
    if layer is not None:
        layers = _parse_levels(layer)
        if layers and max(layers) < 0:
            return False
    return tags.get("location") != "underground" and tags.get("parking") != "underground"


def has_area_tags(tags: Mapping[str, str]) -> bool:
    """Whether a closed way with these tags is an area (OrienterNet ``is_area``, plus ``area:highway``)."""
    if tags.get("area") == "no":
        return False
    if any(key in tags and tags[key] != "no" for key in _AREA_KEYS):
        return True
    return tags.get("natural") in _AREA_NATURAL


def describe_classes() -> str:
    """The tag table as aligned text, one row per line (group, class, key, values)."""
    lines = [f"{'group':<7} {'class':<18} {'key':<17} values"]
    lines += [f"{g:<7} {c:<18} {k:<17} {v}" for g, c, k, v in TAG_TABLE]
    return "\n".join(lines)

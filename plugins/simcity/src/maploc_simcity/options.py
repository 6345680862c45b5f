"""The typed options of the ``sim-city`` dataset (``-o data.<key>=value``; ``maploc config show`` lists them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from maploc.config import at_least, greater_than, in_range
from maploc.errors import ConfigError

from .conditions import CONDITIONS
from .sampler import DISTRIBUTIONS

#: :data:`.trajectory.SPEED_PROFILES`, repeated so that the options import no geometry library (a test checks).
SPEED_PROFILES: tuple[str, ...] = ("constant", "varying")
#: The ``train_conditions`` value that draws the training routes' conditions from the sampler.
RANDOM = "random"

__all__ = ["RANDOM", "RANDOM_FIELDS", "RENDER_FIELDS", "SPLIT_FIELDS", "SimCityOptions", "check_query_traversals"]


def _names(value: Any) -> tuple[str, ...]:
    """A list of names, or one comma-separated string (``day,night``), as a tuple of stripped names."""
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


def _indices(value: Any) -> Any:
    """Traversal indices: a list (``[1, 2]``), one integer, or a comma-separated string (``1,2`` or ``[1,2]``), as a
    tuple of ints; anything that is not an integer is left for :func:`_traversal_indices` to report."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    if isinstance(value, str):
        value = [v for v in value.strip().strip("[]").split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        return value
    out: list[Any] = []
    for v in value:
        if isinstance(v, str) and v.strip().lstrip("+-").isdigit():
            v = int(v.strip())
        out.append(int(v) if isinstance(v, np.integer) else v)
    return tuple(out)


def _traversal_indices(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Integers >= 0, none repeated (the upper bound, the rendered traversals, is checked by
    :func:`check_query_traversals`)."""
    if not isinstance(value, tuple) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise ConfigError(f"config key 'data.{attribute.name}' expects traversal indices (e.g. [1] or 1,2), "
                          f"got {value!r}")  # fmt: skip
    if any(v < 0 for v in value):
        raise ConfigError(f"config key 'data.{attribute.name}': traversal indices are >= 0, got {list(value)}")
    if len(set(value)) != len(value):
        raise ConfigError(f"config key 'data.{attribute.name}' repeats a traversal: {list(value)}")


def check_query_traversals(query_traversals: Iterable[int], traversals: int) -> None:
    """Every index of ``query_traversals`` is a traversal of a render of ``traversals`` traversals.

    Raises:
        ConfigError: an index outside ``[0, traversals)`` (the message names the valid range).
    """
    bad = [t for t in query_traversals if not 0 <= t < traversals]
    if bad:
        raise ConfigError(
            f"data.query_traversals names traversal {bad[0]}, but the render has {traversals} traversal"
            f"{'s' if traversals != 1 else ''}: valid indices are 0 to {traversals - 1} (in [0, {traversals})); "
            f"render more (-o data.traversals={bad[0] + 1}) or choose among them"
        )


def _known_conditions(allow_empty: bool) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Iterable[str]) -> None:
        value = tuple(value)
        if not value and not allow_empty:
            raise ConfigError(f"config key 'data.{attribute.name}' must name at least one of {', '.join(CONDITIONS)}")
        unknown = [c for c in value if c not in CONDITIONS]
        if unknown:
            raise ConfigError(
                f"config key 'data.{attribute.name}': unknown condition {unknown[0]!r}; known: {', '.join(CONDITIONS)}"
            )
        if len(set(value)) != len(value):
            raise ConfigError(f"config key 'data.{attribute.name}' repeats a condition: {list(value)}")

    return check


def _train_conditions(instance: Any, attribute: attrs.Attribute, value: Iterable[str]) -> None:
    """Named conditions as for ``conditions`` (may be empty), or ``random`` alone."""
    value = tuple(value)
    if RANDOM in value:
        if len(value) > 1:
            raise ConfigError(f"config key 'data.{attribute.name}': {RANDOM!r} draws every condition; name it alone, "
                              f"got {','.join(value)}")  # fmt: skip
        return
    _known_conditions(allow_empty=True)(instance, attribute, value)


def _known_distribution(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in DISTRIBUTIONS:
        raise ConfigError(f"config key 'data.{attribute.name}': unknown distribution {value!r}; known: "
                          f"{', '.join(DISTRIBUTIONS)}")  # fmt: skip


def _one_of(*choices: str) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: str) -> None:
        if value not in choices:
            raise ConfigError(f"config key 'data.{attribute.name}' must be one of {', '.join(choices)}, got {value!r}")

    return check


def _known_condition(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in CONDITIONS:
        raise ConfigError(f"config key 'data.{attribute.name}': unknown condition {value!r}; known: {', '.join(CONDITIONS)}")


def _non_empty(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not str(value).strip():
        raise ConfigError(f"config key 'data.{attribute.name}' must name a sample or an OSM file")


@attrs.frozen(kw_only=True)
class SimCityOptions:
    """What the ``sim-city`` dataset renders, and how its sequences are split.

    Render options (:data:`RENDER_FIELDS`; every one is part of the render cache key):

    Attributes:
        map: the OSM map: a sample name (``helsinki-osm``, fetched on first use) or an ``.osm.pbf`` / ``.osm`` /
            ``.osm.bz2`` path.
        frames: frames per traversal and condition (>= 1).
        traversals: traversals of the route (>= 1); traversal ``t`` runs at its own lateral offset.
        conditions: lighting conditions rendered for every traversal, from ``day``, ``overcast``, ``dusk``,
            ``night``, ``autumn`` and the held-out ``smog`` (outside the training sampler's range) (a list, ``[day,night]``, or a comma-separated string, ``day,night``).
        seed: seed of the scene, the route and the camera noise (>= 0).
        width, height: image size in pixels, in [8, 8192].
        fov_deg: horizontal field of view in degrees, in [10, 150].
        spacing_m: metres between consecutive frames along the route (> 0).
        lateral_offset_m: traversals are spread evenly over ``[-lateral_offset_m, +lateral_offset_m]`` metres
            around the road centreline (one traversal drives on it), in [0, 10].
        train_routes: extra routes rendered for training only, in [0, 1000]: independent seeded walks of ``frames``
            frames each from their own starts (so streets are seen from more places and in both directions),
            under the first of ``conditions`` only. They join the ``train`` split (never ``map`` or ``query``),
            which needs ``map_condition`` to be that first condition (unless ``train_conditions`` is set).
        train_conditions: the conditions the extra training routes cycle through (route ``k`` under
            ``train_conditions[(k - 1) % n]``, e.g. ``day,overcast``); empty (the default) = the first of
            ``conditions``. They need not be among ``conditions``: they render training routes only. ``random``:
            each view (or each route, ``random_per``) of the training routes under its own condition drawn by
            :func:`.sampler.sample_conditions` (sequences ``r<k>_random``; needs ``train_routes`` >= 1).
        condition_distribution: the sampler's distribution with ``train_conditions=random``: ``day-to-night``
            (default) or ``daylight`` (:data:`.sampler.DISTRIBUTIONS`).
        condition_seed: the sampler's seed with ``train_conditions=random`` (>= 0).
        random_per: ``view`` (default: every training view its own condition) or ``route`` (one per route).
        speed_profile: ``constant`` (default: frame ``i`` of every traversal at the same place, ``spacing_m``
            apart) or ``varying``: traversals ``k >= 1`` drive at a smoothly varying speed, frames
            ``spacing_m * (1 + 0.35 sin(2 pi P u + phi_k))`` apart (``u`` = frame time in [0, 1], ``P`` whole
            cycles of about 200 m, ``phi_k`` seeded), so consecutive frames are ``0.65`` to ``1.35`` times
            ``spacing_m`` apart and cover exactly the map traversal's stretch of road
            (:func:`.trajectory.frame_arc_lengths`); traversal 0 (the map) and the extra training routes keep the
            constant spacing. In the cache key only when ``varying`` (constant renders keep their keys).

    Split options (:data:`SPLIT_FIELDS`; they choose sequences of the same render, so they are not in its key):

    Attributes:
        map_condition: the condition whose first traversal (``t0_<map_condition>``) is the ``map`` and ``train``
            split; it must be among the rendered conditions.
        query_conditions: the conditions whose sequences form the ``query`` split (the map sequence excluded);
            empty (the default) = every sequence but the map's.
        query_traversals: the traversals whose sequences form the ``query`` split (with ``query_conditions``; the
            map sequence excluded), indices in ``[0, traversals)`` (a list, ``[1]``, or ``1,2``); empty (the
            default) = every traversal. E.g. ``map_condition=day, query_traversals=[1],
            query_conditions=[day,night]``: queries ``t1_day`` and ``t1_night`` against the map ``t0_day``. An
            index outside the render's traversals is a :class:`~maploc.errors.ConfigError` naming the range.
    """

    map: str = attrs.field(default="helsinki-osm", validator=_non_empty)
    frames: int = attrs.field(default=100, validator=at_least(1))
    traversals: int = attrs.field(default=2, validator=at_least(1))
    # The annotation admits a string so that `-o data.conditions=day,night` reaches the converter; the value is
    # always a tuple of names.
    conditions: tuple[str, ...] | str = attrs.field(
        default=("day", "night"), converter=_names, validator=_known_conditions(allow_empty=False)
    )
    seed: int = attrs.field(default=0, validator=at_least(0))
    width: int = attrs.field(default=320, validator=in_range(8, 8192))
    height: int = attrs.field(default=240, validator=in_range(8, 8192))
    fov_deg: float = attrs.field(default=70.0, validator=in_range(10.0, 150.0))
    spacing_m: float = attrs.field(default=4.0, validator=greater_than(0.0))
    lateral_offset_m: float = attrs.field(default=1.2, validator=in_range(0.0, 10.0))
    train_routes: int = attrs.field(default=0, validator=in_range(0, 1000))
    train_conditions: tuple[str, ...] | str = attrs.field(default=(), converter=_names, validator=_train_conditions)
    condition_distribution: str = attrs.field(default="day-to-night", validator=_known_distribution)
    condition_seed: int = attrs.field(default=0, validator=at_least(0))
    random_per: str = attrs.field(default="view", validator=_one_of("view", "route"))
    speed_profile: str = attrs.field(default="constant", validator=_one_of(*SPEED_PROFILES))
    map_condition: str = attrs.field(default="day", validator=_known_condition)
    query_conditions: tuple[str, ...] | str = attrs.field(
        default=(), converter=_names, validator=_known_conditions(allow_empty=True)
    )
    # int and str admit `-o data.query_traversals=1` and `=1,2`; the value is always a tuple of ints.
    query_traversals: tuple[int, ...] | int | str = attrs.field(
        default=(), converter=_indices, validator=_traversal_indices
    )

    def render_options(self) -> dict[str, Any]:
        """The render options as plain values (the render cache key and ``render.json`` ``options``)."""
        return {name: _plain(getattr(self, name)) for name in RENDER_FIELDS}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


#: Options that change the rendered images: every one is hashed into the cache key.
RENDER_FIELDS: tuple[str, ...] = (
    "map", "frames", "traversals", "conditions", "seed", "width", "height", "fov_deg", "spacing_m", "lateral_offset_m",
    "train_routes", "train_conditions", "condition_distribution", "condition_seed", "random_per", "speed_profile",
)  # fmt: skip
#: Render options that matter only with ``train_conditions=random`` (left out of the cache key otherwise).
RANDOM_FIELDS: tuple[str, ...] = ("condition_distribution", "condition_seed", "random_per")
#: Options that only choose which rendered sequences form the splits.
SPLIT_FIELDS: tuple[str, ...] = ("map_condition", "query_conditions", "query_traversals")

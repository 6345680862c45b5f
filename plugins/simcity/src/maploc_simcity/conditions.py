"""Rendering conditions: time of day, weather and season, as the uniforms of the shaders.

Every condition is a fixed set of numbers (no randomness): what changes between two renders of the same pose
under the same condition is nothing. The geometry, the labels and the depth never depend on the condition,
only the colours do.

Names: ``day`` (sun high, blue sky with clouds), ``overcast`` (grey sky, flat light, haze), ``dusk`` (sun low
and orange, lamps and some windows lit), ``night`` (dark ambient, stars, street lamps lighting the ground and
the facades, many lit windows), ``autumn`` (day light, foliage in autumn colours, some leaves on the ground): the
five evaluation conditions, inside the range of the training-condition sampler (:mod:`.sampler`). ``smog`` (dense
brown-orange haze: fog 0.035 per metre, sky light red/blue 2.8) is held out: outside that range, a query condition
that measures generalisation.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from .gl import RenderParameterError

__all__ = ["CONDITIONS", "Condition", "get_condition"]


def _direction(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    """Unit vector towards the sun, map frame (x east, y north, z up); azimuth clockwise from north."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el))


@attrs.frozen(kw_only=True)
class Condition:
    """Lighting and appearance parameters (linear RGB in ``[0, 1]``, unless stated).

    Attributes:
        name: the condition's name.
        sun_direction: unit vector towards the sun, map frame (x east, y north, z up).
        sun_color: direct light colour (times the cosine of the incidence angle).
        sky_light: light from the sky on surfaces facing up (hemispheric ambient).
        ground_light: light bounced from the ground on surfaces facing down.
        sky_zenith: sky colour straight up.
        sky_horizon: sky colour at the horizon.
        sun_glow: colour added around the sun in the sky (zero to hide the sun).
        clouds: cloud cover in ``[0, 1]`` (0: none, 1: overcast).
        stars: star brightness in ``[0, 1]``.
        fog_color: colour distant surfaces fade to.
        fog_density: fog extinction per metre (``exp(-density * distance)``).
        lamp_intensity: street lamp brightness (0: off); lamps then light the ground and walls within ~25 m.
        lamp_color: colour of the lamps' light.
        window_lit_fraction: fraction of windows lit from inside, in ``[0, 1]``.
        window_color: colour of a lit window.
        foliage: ``0`` summer green, ``1`` autumn yellow-orange-red.
        exposure: multiplies the final colour before tone mapping.
    """

    name: str
    sun_direction: tuple[float, float, float]
    sun_color: tuple[float, float, float]
    sky_light: tuple[float, float, float]
    ground_light: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    sun_glow: tuple[float, float, float] = (0.0, 0.0, 0.0)
    clouds: float = 0.0
    stars: float = 0.0
    fog_color: tuple[float, float, float] = (0.7, 0.75, 0.8)
    fog_density: float = 0.0
    lamp_intensity: float = 0.0
    lamp_color: tuple[float, float, float] = (1.0, 0.78, 0.45)
    window_lit_fraction: float = 0.0
    window_color: tuple[float, float, float] = (1.0, 0.82, 0.55)
    foliage: float = 0.0
    exposure: float = 1.0


#: The named conditions (five for evaluation, and the held-out ``smog``).
CONDITIONS: Final[dict[str, Condition]] = {
    "day": Condition(
        name="day",
        sun_direction=_direction(200.0, 45.0),
        sun_color=(1.0, 0.96, 0.88),
        sky_light=(0.42, 0.48, 0.58),
        ground_light=(0.22, 0.21, 0.19),
        sky_zenith=(0.20, 0.42, 0.80),
        sky_horizon=(0.70, 0.82, 0.95),
        sun_glow=(0.8, 0.7, 0.5),
        clouds=0.35,
        fog_color=(0.72, 0.80, 0.90),
        fog_density=0.0015,
    ),
    "overcast": Condition(
        name="overcast",
        sun_direction=_direction(200.0, 40.0),
        sun_color=(0.12, 0.12, 0.12),
        sky_light=(0.70, 0.72, 0.75),
        ground_light=(0.32, 0.32, 0.32),
        sky_zenith=(0.55, 0.57, 0.60),
        sky_horizon=(0.74, 0.75, 0.77),
        clouds=1.0,
        fog_color=(0.70, 0.71, 0.73),
        fog_density=0.004,
        exposure=1.05,
    ),
    "dusk": Condition(
        name="dusk",
        sun_direction=_direction(300.0, 4.0),
        sun_color=(0.85, 0.45, 0.20),
        sky_light=(0.20, 0.17, 0.24),
        ground_light=(0.08, 0.06, 0.06),
        sky_zenith=(0.12, 0.15, 0.35),
        sky_horizon=(0.95, 0.55, 0.30),
        sun_glow=(1.0, 0.45, 0.15),
        clouds=0.25,
        fog_color=(0.55, 0.40, 0.38),
        fog_density=0.002,
        lamp_intensity=0.6,
        window_lit_fraction=0.25,
    ),
    "night": Condition(
        name="night",
        sun_direction=_direction(0.0, -30.0),
        sun_color=(0.0, 0.0, 0.0),
        sky_light=(0.07, 0.075, 0.10),
        ground_light=(0.03, 0.03, 0.035),
        sky_zenith=(0.005, 0.008, 0.025),
        sky_horizon=(0.04, 0.045, 0.07),
        stars=1.0,
        fog_color=(0.03, 0.035, 0.05),
        fog_density=0.002,
        lamp_intensity=1.0,
        window_lit_fraction=0.45,
    ),
    "autumn": Condition(
        name="autumn",
        sun_direction=_direction(190.0, 28.0),
        sun_color=(0.95, 0.85, 0.70),
        sky_light=(0.40, 0.44, 0.52),
        ground_light=(0.22, 0.19, 0.15),
        sky_zenith=(0.25, 0.45, 0.78),
        sky_horizon=(0.75, 0.80, 0.88),
        sun_glow=(0.8, 0.6, 0.4),
        clouds=0.5,
        fog_color=(0.75, 0.78, 0.82),
        fog_density=0.002,
        foliage=1.0,
    ),
    # Held out from training: outside the range of the condition sampler (maploc_simcity.sampler, whose tests
    # check it): fog far denser than it draws and a brown-orange colour cast of the sky light.
    "smog": Condition(
        name="smog",
        sun_direction=_direction(210.0, 30.0),
        sun_color=(0.55, 0.40, 0.22),
        sky_light=(0.50, 0.36, 0.18),
        ground_light=(0.22, 0.16, 0.09),
        sky_zenith=(0.52, 0.40, 0.24),
        sky_horizon=(0.70, 0.55, 0.34),
        sun_glow=(0.5, 0.3, 0.1),
        clouds=0.8,
        fog_color=(0.62, 0.48, 0.30),
        fog_density=0.035,
    ),
}


def get_condition(condition: str | Condition) -> Condition:
    """A condition by name (or the condition itself).

    Raises:
        RenderParameterError: unknown name (the message lists the known ones).
    """
    if isinstance(condition, Condition):
        return condition
    try:
        return CONDITIONS[condition]
    except KeyError:
        raise RenderParameterError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}") from None

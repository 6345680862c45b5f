"""Randomised rendering conditions for training: a seeded sampler of :class:`.conditions.Condition` parameters.

The named conditions of :mod:`.conditions` are five fixed points used for evaluation. For training, every view (or
every route) of the extra training routes can be rendered under its own condition drawn by
:func:`sample_conditions` from a :class:`ConditionDistribution`. The distribution is a small physical-ish model
(not a published method): a few latent draws (sun elevation and azimuth, cloud cover, fog, foliage, exposure) from
which every shader parameter is derived, so that the parameters stay consistent (no sun glow under an overcast sky,
lamps on whenever the sun is below the horizon).

:data:`HELD_OUT` is a condition the sampler cannot produce (:func:`outside_sampler_range` says why): a query
condition that measures generalisation rather than coverage.
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs
import numpy as np

from .conditions import CONDITIONS, Condition, _direction

__all__ = [
    "DISTRIBUTIONS",
    "HELD_OUT",
    "ConditionDistribution",
    "get_distribution",
    "outside_sampler_range",
    "sample_conditions",
]

Color = tuple[float, float, float]

# Palettes (linear RGB) the derived colours interpolate between: the fixed conditions' values.
_DAY_SKY_LIGHT, _NIGHT_SKY_LIGHT, _GREY_SKY_LIGHT = (0.42, 0.48, 0.58), (0.07, 0.075, 0.10), (0.70, 0.72, 0.75)
_DAY_GROUND, _NIGHT_GROUND = (0.22, 0.21, 0.19), (0.03, 0.03, 0.035)
_DAY_ZENITH, _DUSK_ZENITH, _NIGHT_ZENITH = (0.20, 0.42, 0.80), (0.12, 0.15, 0.35), (0.005, 0.008, 0.025)
_DAY_HORIZON, _DUSK_HORIZON, _NIGHT_HORIZON = (0.70, 0.82, 0.95), (0.95, 0.55, 0.30), (0.04, 0.045, 0.07)
_GREY_ZENITH, _GREY_HORIZON = (0.55, 0.57, 0.60), (0.74, 0.75, 0.77)
_WHITE_SUN, _LOW_SUN = (1.0, 0.96, 0.88), (0.85, 0.45, 0.20)


@attrs.frozen(kw_only=True)
class ConditionDistribution:
    """The ranges :func:`sample_conditions` draws from (angles in degrees, fog in 1/m).

    Attributes:
        name: the distribution's name (:data:`DISTRIBUTIONS`).
        sun_elevation_deg: ``(low, high)``: sun elevation, uniform; below 0 the sun is under the horizon.
        overcast_probability: probability of an overcast sky (cloud cover in ``overcast_clouds``, else in
            ``clouds``).
        clouds, overcast_clouds: ``(low, high)`` cloud cover in ``[0, 1]``, uniform.
        fog_density: ``(low, high)`` fog extinction per metre, log-uniform.
        foliage: ``(low, high)``: 0 summer green to 1 autumn, uniform.
        exposure: ``(low, high)``, log-uniform.
        max_red_blue: the largest red/blue ratio of ``sky_light`` the model produces (a colour-cast bound; the
            low, orange sun tints the direct light and the horizon, not the sky light beyond this).
    """

    name: str
    sun_elevation_deg: tuple[float, float] = (-20.0, 70.0)
    overcast_probability: float = 0.25
    clouds: tuple[float, float] = (0.0, 0.6)
    overcast_clouds: tuple[float, float] = (0.85, 1.0)
    fog_density: tuple[float, float] = (0.0005, 0.012)
    foliage: tuple[float, float] = (0.0, 1.0)
    exposure: tuple[float, float] = (0.8, 1.3)
    max_red_blue: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (hashed into the render cache key)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}


#: Named distributions (``-o data.condition_distribution=<name>``).
DISTRIBUTIONS: Final[dict[str, ConditionDistribution]] = {
    "day-to-night": ConditionDistribution(name="day-to-night"),
    "daylight": ConditionDistribution(name="daylight", sun_elevation_deg=(15.0, 70.0)),
}


def get_distribution(distribution: str | ConditionDistribution) -> ConditionDistribution:
    """A distribution by name (or itself).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if isinstance(distribution, ConditionDistribution):
        return distribution
    try:
        return DISTRIBUTIONS[distribution]
    except KeyError:
        raise ValueError(
            f"unknown condition distribution {distribution!r}; known: {', '.join(DISTRIBUTIONS)}"
        ) from None


def _smoothstep(a: float, b: float, x: float) -> float:
    t = min(max((x - a) / (b - a), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _scale(a: Color, s: float) -> Color:
    return tuple(float(x * s) for x in a)  # type: ignore[return-value]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _one(rng: np.random.Generator, dist: ConditionDistribution, index: int) -> Condition:
    elevation = float(rng.uniform(*dist.sun_elevation_deg))
    azimuth = float(rng.uniform(0.0, 360.0))
    overcast = bool(rng.random() < dist.overcast_probability)
    clouds = float(rng.uniform(*(dist.overcast_clouds if overcast else dist.clouds)))
    fog = _log_uniform(rng, *dist.fog_density)
    foliage = float(rng.uniform(*dist.foliage))
    exposure = _log_uniform(rng, *dist.exposure)
    jitter = float(rng.uniform(-0.05, 0.05))
    day = _smoothstep(-6.0, 10.0, elevation)  # 0 at night (below civil twilight), 1 in daylight
    low = 1.0 - _smoothstep(2.0, 25.0, elevation)  # how orange the low sun is
    cover = _smoothstep(0.5, 1.0, clouds)  # how much the clouds hide the sun
    grey = cover * day
    sun_up = _smoothstep(-1.0, 4.0, elevation)
    sky_light = _mix(_mix(_NIGHT_SKY_LIGHT, _DAY_SKY_LIGHT, day), _scale(_GREY_SKY_LIGHT, max(day, 0.1)), grey)
    zenith = _mix(_mix(_NIGHT_ZENITH, _DUSK_ZENITH, _smoothstep(-8.0, 0.0, elevation)), _DAY_ZENITH,
                  _smoothstep(2.0, 15.0, elevation))  # fmt: skip
    horizon = _mix(_mix(_NIGHT_HORIZON, _DUSK_HORIZON, _smoothstep(-8.0, 0.0, elevation)), _DAY_HORIZON,
                   _smoothstep(2.0, 15.0, elevation))  # fmt: skip
    sun_tint = _mix(_WHITE_SUN, _LOW_SUN, low)
    return Condition(
        name=f"sampled-{index}",
        sun_direction=_direction(azimuth, elevation),
        sun_color=_scale(sun_tint, sun_up * (1.0 - 0.88 * cover)),
        sky_light=sky_light,
        ground_light=_mix(_NIGHT_GROUND, _DAY_GROUND, day),
        sky_zenith=_mix(zenith, _scale(_GREY_ZENITH, max(day, 0.1)), grey),
        sky_horizon=_mix(horizon, _scale(_GREY_HORIZON, max(day, 0.1)), grey),
        sun_glow=_scale(_mix((0.8, 0.7, 0.5), (1.0, 0.45, 0.15), low), sun_up * (1.0 - cover)),
        clouds=clouds,
        stars=(1.0 - day) * (1.0 - clouds),
        fog_color=_mix(_scale(horizon, 0.9), _scale(_GREY_HORIZON, max(day, 0.05)), grey),
        fog_density=fog,
        lamp_intensity=min(max((8.0 - elevation) / 12.0, 0.0), 1.0),
        window_lit_fraction=min(max(0.05 + 0.45 * (1.0 - day) + jitter, 0.0), 0.55),
        foliage=foliage,
        exposure=exposure,
    )


def sample_conditions(n: int, seed: int, distribution: str | ConditionDistribution = "day-to-night") -> list[Condition]:
    """``n`` rendering conditions drawn from ``distribution``, deterministic in ``(n, seed, distribution)``; the
    first ``m`` of ``n`` draws equal the ``m`` draws of ``sample_conditions(m, seed)``.

    Latent draws per condition (independent): sun elevation ``e`` uniform in ``sun_elevation_deg`` (default -20 to
    70 degrees), sun azimuth uniform in [0, 360); overcast with probability ``overcast_probability`` (0.25), cloud
    cover uniform in ``overcast_clouds`` ([0.85, 1]) if overcast, else in ``clouds`` ([0, 0.6]); fog density
    log-uniform in ``fog_density`` ([0.0005, 0.012] per metre); foliage uniform in ``foliage`` ([0, 1], summer to
    autumn); exposure log-uniform in ``exposure`` ([0.8, 1.3]).

    Derived (the correlations): daylight ``d = smoothstep(-6, 10, e)`` blends the sky light, ground light and sky
    colours from the night values to the day values (an overcast sky greys them); the direct sun is zero below
    ``e = -1`` and orange when low (``e`` < 25), and the clouds dim it (by up to 88 %); the sun glow vanishes under
    clouds and below the horizon; stars ``(1 - d) * (1 - clouds)``; street lamps ``clip((8 - e) / 12, 0, 1)``: off
    above 8 degrees, at least 2/3 whenever the sun is below the horizon, full below -4 degrees; lit windows
    ``clip(0.05 + 0.45 (1 - d) +- 0.05, 0, 0.55)``: at least 0.2 when ``e`` < 0. The sky light's red/blue ratio never
    exceeds ``max_red_blue`` (1: no strong colour cast).

    Args:
        n: number of conditions (>= 0).
        seed: the seed (>= 0).
        distribution: a name of :data:`DISTRIBUTIONS` (``day-to-night``, ``daylight``) or a
            :class:`ConditionDistribution`.

    Returns:
        ``n`` :class:`.conditions.Condition`, named ``sampled-<i>``.

    Raises:
        ValueError: ``n`` or ``seed`` negative, or an unknown distribution.
    """
    dist = get_distribution(distribution)
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rngs = [np.random.default_rng([int(seed), i, 0x5C0D]) for i in range(int(n))]  # one stream per condition
    return [_one(rng, dist, i) for i, rng in enumerate(rngs)]


def sun_elevation_deg(condition: Condition) -> float:
    """The sun's elevation of ``condition``, degrees."""
    return math.degrees(math.asin(max(-1.0, min(1.0, condition.sun_direction[2]))))


#: The held-out query condition ``smog`` (:data:`.conditions.CONDITIONS` ``["smog"]``): its fog density (0.035 per
#: metre) and its sky light's colour cast (red/blue 2.8) lie outside every distribution of :data:`DISTRIBUTIONS`
#: (fog at most 0.012, red/blue at most 1).
HELD_OUT: Final[Condition] = CONDITIONS["smog"]


def outside_sampler_range(
    condition: Condition, distribution: str | ConditionDistribution = "day-to-night"
) -> list[str]:
    """Why ``condition`` cannot be drawn from ``distribution`` (empty: it may lie inside its range).

    Checks the fog density against the distribution's range, the sky light's red/blue ratio against
    ``max_red_blue``, and the foliage and exposure ranges.
    """
    dist = get_distribution(distribution)
    reasons = []
    lo, hi = dist.fog_density
    if not lo <= condition.fog_density <= hi:
        reasons.append(f"fog_density {condition.fog_density} outside [{lo}, {hi}]")
    red_blue = condition.sky_light[0] / max(condition.sky_light[2], 1e-9)
    if red_blue > dist.max_red_blue + 1e-9:
        reasons.append(f"sky_light red/blue {red_blue:.2f} > {dist.max_red_blue}")
    if not dist.foliage[0] <= condition.foliage <= dist.foliage[1]:
        reasons.append(f"foliage {condition.foliage} outside {list(dist.foliage)}")
    if not dist.exposure[0] <= condition.exposure <= dist.exposure[1]:
        reasons.append(f"exposure {condition.exposure} outside {list(dist.exposure)}")
    return reasons

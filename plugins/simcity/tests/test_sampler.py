"""The condition sampler (maploc_simcity.sampler): determinism, ranges and the documented correlations (hypothesis
over seeds), the held-out ``smog`` condition outside its range, ``train_conditions=random`` in the options, the cache
key and the renders (``egl`` tests: tiny images of the tiny city of conftest.py), and the contact sheet.
"""

from __future__ import annotations

import json
import math

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc.config import structure_dataset_options
from maploc.errors import ConfigError
from maploc_simcity import (
    CONDITIONS,
    DISTRIBUTIONS,
    HELD_OUT,
    ConditionDistribution,
    Renderer,
    RenderParameterError,
    SimCity,
    SimCityOptions,
    build_scene,
    make_camera,
    outside_sampler_range,
    plan_route,
    render_command,
    sample_conditions,
    sampled_conditions_sheet,
    traversal_poses,
)
from maploc_simcity import sampler as sampler_module
from maploc_simcity.sampler import sun_elevation_deg

EVALUATION = ("day", "overcast", "dusk", "night", "autumn")


# ---- the sampler ------------------------------------------------------------------------------------------------
def test_deterministic_and_seeded() -> None:
    a, b = sample_conditions(12, 7), sample_conditions(12, 7)
    assert a == b
    assert sample_conditions(5, 7) == a[:5]  # a draw does not depend on how many are drawn
    other = sample_conditions(12, 8)
    assert all(x != y for x, y in zip(a, other))
    assert sample_conditions(12, 7, "daylight") != a
    assert sample_conditions(0, 3) == []
    for bad in ({"n": -1, "seed": 0}, {"n": 2, "seed": -3}, {"n": 2.5, "seed": 0}):
        with pytest.raises(ValueError):
            sample_conditions(**bad)
    with pytest.raises(ValueError, match="unknown condition distribution 'foggy'; known: day-to-night, daylight"):
        sample_conditions(2, 0, "foggy")


def _in(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] - 1e-9 <= value <= bounds[1] + 1e-9


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(DISTRIBUTIONS)))
def test_ranges_and_correlations(seed: int, name: str) -> None:
    dist = DISTRIBUTIONS[name]
    for c in sample_conditions(16, seed, name):
        e = sun_elevation_deg(c)
        assert _in(e, dist.sun_elevation_deg)
        assert math.isclose(float(np.linalg.norm(c.sun_direction)), 1.0, rel_tol=1e-9)
        assert _in(c.clouds, dist.clouds) or _in(c.clouds, dist.overcast_clouds)
        assert _in(c.fog_density, dist.fog_density) and _in(c.foliage, dist.foliage) and _in(c.exposure, dist.exposure)
        for colour in (c.sun_color, c.sky_light, c.ground_light, c.sky_zenith, c.sky_horizon, c.sun_glow, c.fog_color):
            assert all(0.0 <= v <= 1.0 for v in colour), c
        assert 0.0 <= c.stars <= 1.0 and 0.0 <= c.window_lit_fraction <= 0.55 and 0.0 <= c.lamp_intensity <= 1.0
        assert c.sky_light[0] / c.sky_light[2] <= dist.max_red_blue
        assert outside_sampler_range(c, name) == []
        # the documented correlations
        if e < 0:  # sun below the horizon: lamps on, windows lit
            assert c.lamp_intensity >= 2 / 3 - 1e-9 and c.window_lit_fraction >= 0.2 - 1e-9, (e, c)
        if e < -4:
            assert c.lamp_intensity == 1.0
        if e < -1:  # no direct sun, no glow
            assert max(c.sun_color) == 0.0 and max(c.sun_glow) == 0.0
        if e >= 8:
            assert c.lamp_intensity == 0.0
        if e >= 10:  # full daylight: no stars, day sky light (greyed by clouds)
            assert c.stars == 0.0 and min(c.sky_light) >= 0.4
        if c.clouds >= 0.999:
            assert max(c.sun_glow) < 1e-3 and max(c.sun_color) <= 0.125


def test_the_distribution_spans_day_to_night() -> None:
    drawn = sample_conditions(600, 0)
    e = np.array([sun_elevation_deg(c) for c in drawn])
    clouds = np.array([c.clouds for c in drawn])
    assert e.min() < -15 and e.max() > 65 and 0.15 < (e < 0).mean() < 0.30  # 20/90 of the range is below 0
    assert 0.18 < (clouds >= 0.85).mean() < 0.32  # overcast_probability 0.25
    assert max(c.fog_density for c in drawn) > 0.008 and min(c.fog_density for c in drawn) < 0.001
    assert min(c.foliage for c in drawn) < 0.05 and max(c.foliage for c in drawn) > 0.95
    assert max(c.lamp_intensity for c in drawn) == 1.0 and max(c.window_lit_fraction for c in drawn) > 0.45
    daylight = sample_conditions(200, 0, "daylight")
    assert min(sun_elevation_deg(c) for c in daylight) >= 15 and max(c.lamp_intensity for c in daylight) == 0.0


def test_evaluation_conditions_inside_held_out_outside() -> None:
    """The five named conditions lie inside the sampler's range (sim-to-sim); ``smog`` lies outside every
    distribution's range, on two counts, and beyond anything 2000 draws produce."""
    for name in EVALUATION:
        assert outside_sampler_range(CONDITIONS[name]) == [], name
    assert CONDITIONS["smog"] is HELD_OUT and "smog" not in EVALUATION
    for name, dist in DISTRIBUTIONS.items():
        reasons = outside_sampler_range(HELD_OUT, name)
        assert any(r.startswith("fog_density") for r in reasons) and any("red/blue" in r for r in reasons), name
        assert HELD_OUT.fog_density > 2 * dist.fog_density[1]
    drawn = sample_conditions(2000, 1)
    assert max(c.fog_density for c in drawn) < HELD_OUT.fog_density / 2
    assert max(c.sky_light[0] / c.sky_light[2] for c in drawn) < HELD_OUT.sky_light[0] / HELD_OUT.sky_light[2] / 2
    # the check itself can say "inside" and "outside" for other reasons
    assert outside_sampler_range(attrs.evolve(CONDITIONS["day"], exposure=3.0)) == ["exposure 3.0 outside [0.8, 1.3]"]


# ---- options and the cache key ----------------------------------------------------------------------------------
def test_random_options() -> None:
    options = structure_dataset_options(
        SimCity, {"train_conditions": "random", "train_routes": 2, "random_per": "route"}
    )
    assert options.train_conditions == ("random",) and options.random_per == "route"
    assert options.condition_distribution == "day-to-night" and options.condition_seed == 0
    for values, needle in (
        ({"train_conditions": "random,day"}, "'random' draws every condition; name it alone"),
        ({"condition_distribution": "foggy"}, "unknown distribution 'foggy'; known: day-to-night, daylight"),
        ({"random_per": "frame"}, "'data.random_per' must be one of view, route"),
        ({"condition_seed": -1}, "'data.condition_seed' must be >= 0"),
        ({"query_conditions": "smog,rain"}, "unknown condition 'rain'"),
    ):
        with pytest.raises(ConfigError, match=None) as info:
            structure_dataset_options(SimCity, values)
        assert needle in str(info.value), (values, info.value)


def test_cache_key_covers_the_sampler(monkeypatch) -> None:
    sha = "0" * 64
    named = SimCityOptions(train_routes=2, train_conditions="day")
    random = attrs.evolve(named, train_conditions="random")
    key = SimCity.cache_key(random, sha)
    assert key != SimCity.cache_key(named, sha)
    for change in ({"condition_seed": 1}, {"condition_distribution": "daylight"}, {"random_per": "route"}):
        assert SimCity.cache_key(attrs.evolve(random, **change), sha) != key, change
        # without random they change nothing, and stay out of the key
        assert SimCity.cache_key(attrs.evolve(named, **change), sha) == SimCity.cache_key(named, sha), change
    # the key covers the distribution's parameters, not only its name
    edited = dict(
        DISTRIBUTIONS, **{"day-to-night": ConditionDistribution(name="day-to-night", fog_density=(0.001, 0.01))}
    )
    monkeypatch.setattr(sampler_module, "DISTRIBUTIONS", edited)
    from maploc_simcity import dataset as dataset_module

    monkeypatch.setattr(dataset_module, "DISTRIBUTIONS", edited)
    assert SimCity.cache_key(random, sha) != key


def test_random_needs_training_routes(city_file, tmp_path) -> None:
    with pytest.raises(RenderParameterError, match="set train_routes >= 1 too"):
        render_command(str(city_file), 2, ["day"], tmp_path / "out", train_conditions=["random"], progress=False)
    with pytest.raises(RenderParameterError, match="name it alone"):
        render_command(str(city_file), 2, ["day"], tmp_path / "out", train_routes=1, train_conditions=["random", "day"],
                       progress=False)  # fmt: skip
    with pytest.raises(RenderParameterError, match="random_per"):
        render_command(str(city_file), 2, ["day"], tmp_path / "out", train_routes=1, train_conditions=["random"],
                       random_per="frame", progress=False)  # fmt: skip
    assert not (tmp_path / "out").exists()  # checked before any work


def test_cli_contact_sheet_errors_are_one_line(maploc_main, city_file, tmp_path) -> None:
    for args, needle in (
        (("--contact-sheet", str(tmp_path / "sheet.jpg")), "give a .png file"),
        (("--contact-sheet", str(tmp_path / "s.png"), "--condition-distribution", "foggy"), "unknown; known: day-to"),
        ((), "needs --out DIR (or --contact-sheet OUT.png)"),
    ):
        status, _, stderr = maploc_main("data", "render", "--map", str(city_file), *args)
        assert status == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1, (args, stderr)


# ---- renders ----------------------------------------------------------------------------------------------------
@pytest.mark.egl
def test_sampled_conditions_change_colours_only(city) -> None:
    scene = build_scene(city, seed=3)
    view = traversal_poses(plan_route(city, 120.0, seed=5, margin_m=20.0), 8, spacing_m=6.0, seed=0)[4]
    with Renderer(scene, make_camera(64, 48, 80.0)) as renderer:
        frames = [renderer.render(view.T_cam2world, c) for c in sample_conditions(6, 0)]
        smog = renderer.render(view.T_cam2world, "smog")
    for f in frames[1:]:
        np.testing.assert_array_equal(f.depth, frames[0].depth)
        np.testing.assert_array_equal(f.labels, frames[0].labels)
    means = [f.rgb.reshape(-1, 3).mean(0) for f in frames]
    assert min(float(np.abs(a - b).max()) for i, a in enumerate(means) for b in means[i + 1 :]) > 1.0
    r, _, b = smog.rgb.reshape(-1, 3).mean(0)
    assert r > b + 20  # the held-out colour cast shows


@pytest.mark.egl
def test_random_training_routes_per_view_and_per_route(city_file, tmp_path) -> None:
    kwargs = dict(seed=1, traversals=1, width=48, height=36, train_routes=2, train_conditions=["random"],
                  condition_seed=4, layouts=("traversals",), progress=False)  # fmt: skip
    per_view = render_command(str(city_file), 3, ["day"], tmp_path / "view", **kwargs)
    per_route = render_command(str(city_file), 3, ["day"], tmp_path / "route", random_per="route", **kwargs)
    summary = json.loads((per_view / "render.json").read_text())
    assert summary["sequences"] == ["t0_day", "r1_random", "r2_random"]
    assert summary["options"]["train_conditions"] == ["random"] and summary["options"]["condition_seed"] == 4
    drawn = [attrs.asdict(c) for c in sample_conditions(6, 4)]

    def recorded(folder, k):
        return json.loads((folder / "traversals" / f"r{k}_random" / "conditions.json").read_text())["frames"]

    def as_json(values):
        return json.loads(json.dumps(values))

    assert recorded(per_view, 1) + recorded(per_view, 2) == as_json(drawn)  # view i of route k: draw (k-1)*3+i
    assert recorded(per_route, 2) == as_json([drawn[1]] * 3)  # route k: draw k-1

    def route_1(folder):
        dataset = SimCity(folder, "train")
        samples = [dataset[k] for k, (sequence, _) in enumerate(dataset.items) if sequence == "r1_random"]
        assert [s.condition for s in samples] == ["random"] * 3 and [s.timestamp for s in samples] == [0.0, 1.0, 2.0]
        return [s.image.numpy() for s in samples]

    views, routes = route_1(per_view), route_1(per_route)
    # Same poses in both renders: frame 0 of route 1 has the same draw (identical image), frames 1, 2 do not.
    assert np.array_equal(views[0], routes[0])
    for i in (1, 2):
        assert not np.array_equal(views[i], routes[i]), i


@pytest.mark.egl
def test_contact_sheet(city_file, tmp_path) -> None:
    import cv2

    out = sampled_conditions_sheet(str(city_file), tmp_path / "sheet.png", width=48, height=36, seed=2)
    sheet = cv2.imread(str(out))
    pad, band = 4, 46
    assert sheet.shape[:2] == (4 * (36 + band + pad) + pad + 20, 4 * (48 + pad) + pad)
    tiles = [
        sheet[pad + r * (36 + band + pad) :][:36, pad + c * (48 + pad) :][:, :48] for r in range(4) for c in range(4)
    ]
    assert len({t.tobytes() for t in tiles}) == 16  # 16 different conditions


@pytest.mark.egl
def test_cached_render_with_random_conditions(city_file, tmp_path, monkeypatch) -> None:
    """``-o data.train_conditions=random`` without ``--data-root``: the training routes render into the cache under
    sampled conditions; another condition seed is another cached render, the same options reuse it."""
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(SimCity, "say", None)
    options = SimCityOptions(map=str(city_file), frames=2, traversals=1, conditions="day", width=32, height=24,
                             train_routes=1, train_conditions="random")  # fmt: skip
    train = SimCity(None, "train", options=options)
    assert [s for s, _ in train.items] == ["t0_day", "r1_random", "r1_random"]  # even frames of t0 + the route
    recorded = json.loads((train.folder / "traversals" / "r1_random" / "conditions.json").read_text())
    assert recorded["seed"] == 0 and recorded["distribution"]["name"] == "day-to-night"
    assert SimCity(None, "train", options=options).folder == train.folder
    reseeded = SimCity(None, "train", options=attrs.evolve(options, condition_seed=1))
    assert reseeded.folder != train.folder
    assert not np.array_equal(reseeded[1].image.numpy(), train[1].image.numpy())  # same pose, another draw


@pytest.mark.egl
def test_held_out_smog_as_the_query_condition(city_file, tmp_path) -> None:
    out = render_command(str(city_file), 2, ["day", "night", "smog"], tmp_path / "out", seed=1, width=32, height=24,
                         layouts=("traversals",), progress=False)  # fmt: skip
    options = SimCityOptions(conditions="day,night,smog", query_conditions="smog", frames=2, traversals=1)
    query = SimCity(out, "query", options=options)
    assert [s for s, _ in query.items] == ["t0_smog", "t0_smog"] and query[0].condition == "smog"
    without = SimCity(out, "query", options=attrs.evolve(options, query_conditions="night"))
    assert {s for s, _ in without.items} == {"t0_night"}
    with pytest.raises(ConfigError, match="render it too: maploc data render --conditions day,night,smog,dusk$"):
        SimCity(out, "query", options=attrs.evolve(options, query_conditions="dusk"))


def test_random_without_training_routes_is_one_line_before_any_work(maploc_main, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    status, stdout, stderr = maploc_main("run", "--method", "nn-retrieval", "--dataset", "sim-city",
                                         "-o", "data.train_conditions=random")  # fmt: skip
    assert status == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "data.train_conditions=random applies to the extra training routes: set -o data.train_routes=N" in stderr
    assert "rendering" not in stdout and not (tmp_path / "cache" / "sim-city").exists()


@pytest.mark.egl
def test_rendered_folder_checks_the_sampler_options_only_when_it_sampled(city_file, tmp_path) -> None:
    kwargs = dict(seed=1, traversals=1, width=32, height=24, train_routes=1, layouts=("traversals",), progress=False)
    named = render_command(str(city_file), 2, ["day"], tmp_path / "named", train_conditions=["day"], **kwargs)
    random = render_command(str(city_file), 2, ["day"], tmp_path / "random", train_conditions=["random"], **kwargs)
    options = SimCityOptions(conditions="day", frames=2, traversals=1, train_routes=1, condition_seed=3)
    assert len(SimCity(named, "train", options=attrs.evolve(options, train_conditions="day"))) == 3
    with pytest.raises(
        ConfigError, match="data.condition_seed=3 but .* was rendered with condition_seed=0.*--condition-seed 3"
    ):
        SimCity(random, "train", options=attrs.evolve(options, train_conditions="random"))
    assert len(SimCity(random, "query", options=options)) == 1  # the map and query splits hold no training route

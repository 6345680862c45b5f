"""``speed_profile`` (traversals >= 1 at a smoothly varying speed) and ``query_traversals`` (which traversals
are queries) of the ``sim-city`` dataset.

Most tests work on trajectories and on a hand-made rendered folder (a ``render.json`` naming its sequences: the
splits read nothing else), so they need no OpenGL; the one that renders is marked ``egl``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import attrs
import numpy as np
import pytest

from maploc.config import parse_overrides, structure_dataset_options
from maploc.errors import ConfigError
from maploc_simcity import SimCity, SimCityOptions
from maploc_simcity.command import FORMAT_VERSION
from maploc_simcity.gl import RenderParameterError
from maploc_simcity.options import SPEED_PROFILES as OPTION_SPEED_PROFILES
from maploc_simcity.trajectory import (
    SPEED_AMPLITUDE,
    SPEED_PROFILES,
    Route,
    frame_arc_lengths,
    traversal_poses,
)
from maploc_simcity.writers import read_traversal_rows

LOW, HIGH = 1.0 - SPEED_AMPLITUDE, 1.0 + SPEED_AMPLITUDE


def _straight_route(length_m: float = 2000.0) -> Route:
    return Route(xy=np.array([[0.0, 0.0], [length_m, 0.0]]), s=np.array([0.0, length_m]), node_ids=np.array([1, 2]))


# ---- the speed law ----------------------------------------------------------------------------------------------
def test_documented_bounds() -> None:
    assert SPEED_PROFILES == OPTION_SPEED_PROFILES == ("constant", "varying")
    assert (LOW, HIGH) == pytest.approx((0.65, 1.35))


@pytest.mark.parametrize(("frames", "spacing_m", "seed"), [(100, 4.0, 0), (30, 4.0, 7), (400, 2.5, 3), (12, 10.0, 1)])
def test_varying_traversals_vary_within_the_bounds_and_cover_the_map_stretch(frames, spacing_m, seed) -> None:
    map_s = frame_arc_lengths(frames, spacing_m=spacing_m, speed_profile="varying", traversal=0, seed=seed)
    np.testing.assert_allclose(np.diff(map_s), spacing_m, rtol=0, atol=1e-9)  # the map keeps the constant spacing
    for k in (1, 2):
        s = frame_arc_lengths(frames, spacing_m=spacing_m, speed_profile="varying", traversal=k, seed=seed)
        step = np.diff(s) / spacing_m
        assert s.shape == (frames,) and s.dtype == np.float64
        assert step.min() >= LOW - 1e-9 and step.max() <= HIGH + 1e-9, (step.min(), step.max())
        assert step.max() - step.min() > 0.3  # it does vary (by most of the documented 0.7 spacing_m)
        assert s[0] == map_s[0] and s[-1] == pytest.approx(map_s[-1], abs=1e-9)  # the same stretch of road
        assert not np.allclose(s, map_s, atol=0.5)  # frames are not at the map's places


def test_phase_is_seeded_per_traversal() -> None:
    def s(k: int, seed: int) -> np.ndarray:
        return frame_arc_lengths(50, speed_profile="varying", traversal=k, seed=seed)

    np.testing.assert_array_equal(s(1, 0), s(1, 0))
    assert not np.allclose(s(1, 0), s(2, 0)) and not np.allclose(s(1, 0), s(1, 1))


def test_constant_profile_is_todays_spacing() -> None:
    for k in (0, 1, 3):
        s = frame_arc_lengths(20, spacing_m=4.0, start_m=5.0, traversal=k, seed=2)
        np.testing.assert_array_equal(s, 5.0 + 4.0 * np.arange(20))
    np.testing.assert_array_equal(frame_arc_lengths(1, speed_profile="varying", traversal=1), [5.0])


def test_bad_speed_profile() -> None:
    with pytest.raises(RenderParameterError, match="speed_profile must be one of constant, varying, got 'fast'"):
        frame_arc_lengths(10, speed_profile="fast")
    with pytest.raises(ConfigError, match="'data.speed_profile' must be one of constant, varying, got 'fast'"):
        structure_dataset_options(SimCity, {"speed_profile": "fast"})


def test_poses_follow_the_varying_places() -> None:
    """Traversal 1's poses (pose2 and T_cam2world) lie at its varying arc lengths; traversal 0's are unchanged."""
    route = _straight_route()
    common = dict(spacing_m=4.0, traversals=2, seed=5)
    constant0 = traversal_poses(route, 60, traversal=0, **common)
    varying0 = traversal_poses(route, 60, traversal=0, speed_profile="varying", **common)
    for a, b in zip(constant0, varying0):
        np.testing.assert_array_equal(a.T_cam2world, b.T_cam2world)
    poses = traversal_poses(route, 60, traversal=1, speed_profile="varying", **common)
    s = frame_arc_lengths(60, spacing_m=4.0, speed_profile="varying", traversal=1, seed=5)
    np.testing.assert_array_equal([p.arc_length_m for p in poses], s)
    for p in poses:  # the route runs along +x: x is the arc length, y the lateral offset
        assert p.pose2.x == pytest.approx(p.arc_length_m, abs=1e-9)
        assert p.pose2.y == pytest.approx(p.lateral_offset_m, abs=1e-9)
        np.testing.assert_allclose(p.T_cam2world[:2, 3], [p.pose2.x, p.pose2.y], atol=1e-9)
    steps = np.diff([p.pose2.x for p in poses])
    assert steps.min() >= 4.0 * LOW - 1e-9 and steps.max() <= 4.0 * HIGH + 1e-9
    map_steps = np.diff([p.pose2.x for p in varying0])
    np.testing.assert_allclose(map_steps, 4.0, atol=1e-9)


# ---- cache key --------------------------------------------------------------------------------------------------
def test_default_cache_key_is_the_key_from_before_the_option() -> None:
    # Computed by the code before speed_profile / query_traversals existed (commit 7e16048) for these options.
    assert SimCity.cache_key(SimCityOptions(), "a" * 64) == "fb22d2357c0cdaeb"
    options = SimCityOptions(traversals=3, conditions="day,night,dusk,autumn", train_routes=2, frames=10)
    assert SimCity.cache_key(options, "b" * 64) == "1e4445a8db3cff2b"
    # ... and the payload of today's options minus the new field hashes to the same key.
    payload = {k: v for k, v in SimCityOptions().render_options().items() if k != "speed_profile"}
    for name in ("train_routes", "train_conditions", "condition_distribution", "condition_seed", "random_per"):
        del payload[name]
    payload.update(map="a" * 64, format=FORMAT_VERSION)
    assert hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16] == "fb22d2357c0cdaeb"
    varying = SimCity.cache_key(SimCityOptions(speed_profile="varying"), "a" * 64)
    assert varying != "fb22d2357c0cdaeb"
    # query_traversals is a split option: the same render serves every choice.
    assert SimCity.cache_key(SimCityOptions(query_traversals=[1]), "a" * 64) == "fb22d2357c0cdaeb"


# ---- query_traversals -------------------------------------------------------------------------------------------
def _fake_render(folder: Path, traversals: int, conditions: list[str], frames: int = 3, **options) -> Path:
    """A rendered folder as far as the splits read it: ``render.json`` (images are not opened by ``names()``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rendered = dict(frames=frames, conditions=conditions, traversals=traversals, seed=0, width=32, height=24)
    rendered.update(fov_deg=70.0, spacing_m=4.0, lateral_offset_m=1.2, **options)
    summary = {
        "format": FORMAT_VERSION,
        "map": {"name": "tiny.osm", "source": "tiny.osm", "georef": {}},
        "options": rendered,
        "camera": {"K": [[16.0, 0, 16.0], [0, 16.0, 12.0], [0, 0, 1]], "width": 32, "height": 24},
        "sequences": [f"t{t}_{c}" for t in range(traversals) for c in conditions],
    }
    (folder / "render.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


def _sequences(dataset: SimCity) -> set[str]:
    return {n.split("/")[0] for n in dataset.names()}


def test_query_traversals_from_overrides() -> None:
    for text, want in (("data.query_traversals=[1]", (1,)), ("data.query_traversals=1,2", (1, 2)),
                       ("data.query_traversals=2", (2,)), ("data.query_traversals=[]", ())):  # fmt: skip
        values = parse_overrides([text])["data"]
        assert structure_dataset_options(SimCity, values).query_traversals == want, text
    assert SimCityOptions().query_traversals == ()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("one", "'data.query_traversals' expects traversal indices (e.g. [1] or 1,2)"),
        ([1.5], "config key 'data.query_traversals' expects"),
        ([-1], "'data.query_traversals': traversal indices are >= 0, got [-1]"),
        ("1,1", "'data.query_traversals' repeats a traversal: [1, 1]"),
    ],
)
def test_bad_query_traversals(value, needle) -> None:
    with pytest.raises(ConfigError) as info:
        structure_dataset_options(SimCity, {"query_traversals": value})
    assert needle in str(info.value)


def test_query_traversals_select_the_sequences(tmp_path) -> None:
    conditions = ["day", "night", "dusk", "autumn"]
    folder = _fake_render(tmp_path / "r", 3, conditions)
    options = SimCityOptions(map_condition="day", query_traversals=[1], query_conditions=conditions,
                             traversals=3, conditions=conditions)  # fmt: skip
    assert _sequences(SimCity(folder, "map", options=options)) == {"t0_day"}
    query = SimCity(folder, "query", options=options)
    assert _sequences(query) == {"t1_day", "t1_night", "t1_dusk", "t1_autumn"} and len(query) == 4 * 3
    # traversal 0 as a query traversal: its other conditions, never the map sequence itself
    assert _sequences(SimCity(folder, "query", options=attrs.evolve(options, query_traversals=(0, 2)))) == {
        "t0_night", "t0_dusk", "t0_autumn", "t2_day", "t2_night", "t2_dusk", "t2_autumn"}  # fmt: skip
    both = attrs.evolve(options, query_traversals=(2,), query_conditions=("night",))
    assert _sequences(SimCity(folder, "query", options=both)) == {"t2_night"}
    # empty = every traversal (today's behaviour)
    every = _sequences(SimCity(folder, "query", options=attrs.evolve(options, query_traversals=())))
    assert every == {f"t{t}_{c}" for t in range(3) for c in conditions} - {"t0_day"}
    with pytest.raises(ConfigError, match="query split is empty: the only sequences of condition.s. day and "
                                          r"traversal.s. 0 are the map's \(t0_day\)"):  # fmt: skip
        SimCity(folder, "query", options=attrs.evolve(options, query_traversals=(0,), query_conditions=("day",)))


def test_out_of_range_query_traversal_is_one_config_error(tmp_path) -> None:
    folder = _fake_render(tmp_path / "r", 2, ["day", "night"])
    for bad in ((2,), (0, 5)):
        with pytest.raises(ConfigError) as info:
            SimCity(folder, "query", options=SimCityOptions(query_traversals=bad))
        message = str(info.value)
        assert f"names traversal {max(bad)}" in message and "valid indices are 0 to 1 (in [0, 2))" in message
        assert "\n" not in message


def test_query_traversals_are_checked_before_rendering(maploc_main, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    status, _, stderr = maploc_main("run", "--method", "nn-retrieval", "--dataset", "sim-city",
                                    "-o", "data.query_traversals=[2]", "-o", "data.frames=3")  # fmt: skip
    assert status == 2, stderr
    assert "valid indices are 0 to 1 (in [0, 2))" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "cache" / "sim-city").exists()  # nothing was fetched or rendered


def test_a_constant_folder_is_not_read_as_varying(tmp_path) -> None:
    """A folder rendered before the option (no ``speed_profile`` in render.json) is a constant render."""
    folder = _fake_render(tmp_path / "r", 2, ["day", "night"])
    assert len(SimCity(folder, "query", options=SimCityOptions(speed_profile="constant"))) == 9
    with pytest.raises(ConfigError, match="data.speed_profile='varying' but .* was rendered with "
                                          "speed_profile='constant'.*--speed-profile 'varying'"):  # fmt: skip
        SimCity(folder, "query", options=SimCityOptions(speed_profile="varying"))
    varying = _fake_render(tmp_path / "v", 2, ["day", "night"], speed_profile="varying")
    assert len(SimCity(varying, "query", options=SimCityOptions(speed_profile="varying"))) == 9


# ---- a render -----------------------------------------------------------------------------------------------------
@pytest.mark.egl
def test_varying_render_writes_the_true_poses(city_file, tmp_path) -> None:
    from maploc_simcity import render_command

    out = render_command(str(city_file), 6, ["day"], tmp_path / "out", seed=1, traversals=2, width=32, height=24,
                         speed_profile="varying", layouts=("traversals",), progress=False)  # fmt: skip
    summary = json.loads((out / "render.json").read_text())
    assert summary["options"]["speed_profile"] == "varying"
    xy = {}
    for t in (0, 1):
        rows = read_traversal_rows(out / "traversals" / f"t{t}_day" / "pose2.txt")
        xy[t] = np.array([rows[i][:2] for i in range(6)])
        poses = read_traversal_rows(out / "traversals" / f"t{t}_day" / "poses.txt")
        np.testing.assert_allclose([[poses[i][3], poses[i][7]] for i in range(6)], xy[t], atol=1e-4)
    step0 = np.linalg.norm(np.diff(xy[0], axis=0), axis=1)
    step1 = np.linalg.norm(np.diff(xy[1], axis=0), axis=1)
    # on a polyline with lateral noise (<= 0.2 m each side) a chord is within 0.4 m + the corner cut of the arc
    assert np.all(step1 >= 4.0 * LOW - 0.5) and np.all(step1 <= 4.0 * HIGH + 0.5), step1
    assert np.ptp(step1) > np.ptp(step0) + 0.5, (step0, step1)
    query = SimCity(out, "query", options=SimCityOptions(speed_profile="varying", query_traversals=[1]))
    assert _sequences(query) == {"t1_day"}
    got = np.array([[query.metadata(k).pose2.x, query.metadata(k).pose2.y] for k in range(len(query))])
    np.testing.assert_allclose(got, xy[1], atol=1e-6)


def test_readme_example_gives_the_documented_split(tmp_path) -> None:
    """The README's "map = t0_day, queries = traversal 1 under four conditions" command, on a folder of its
    render options."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Speed profile", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    overrides = [w for w in block.replace("\\\n", " ").split() if w.startswith("data.")]
    options = structure_dataset_options(SimCity, parse_overrides(overrides)["data"])
    assert options.speed_profile == "varying" and options.query_traversals == (1,)
    folder = _fake_render(tmp_path / "r", options.traversals, list(options.conditions), speed_profile="varying")
    assert _sequences(SimCity(folder, "map", options=options)) == {"t0_day"}
    assert _sequences(SimCity(folder, "query", options=options)) == {"t1_day", "t1_night", "t1_dusk", "t1_autumn"}


@pytest.mark.egl
def test_cached_varying_render(city_file, tmp_path, monkeypatch) -> None:
    """Without --data-root the options reach the render: a varying render in its own cache folder."""
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(SimCity, "say", None)
    options = SimCityOptions(map=str(city_file), frames=5, conditions="day", width=32, height=24,
                             speed_profile="varying", query_traversals=[1])  # fmt: skip
    query = SimCity(None, "query", options=options)
    assert query.summary["options"]["speed_profile"] == "varying" and _sequences(query) == {"t1_day"}
    constant = SimCity(None, "query", options=attrs.evolve(options, speed_profile="constant"))
    assert constant.folder != query.folder and "speed_profile" not in constant.summary["options"]
    x = [query.metadata(k).pose2.x for k in range(5)], [constant.metadata(k).pose2.x for k in range(5)]
    y = [query.metadata(k).pose2.y for k in range(5)], [constant.metadata(k).pose2.y for k in range(5)]
    assert not np.allclose(x[0], x[1], atol=0.3) or not np.allclose(y[0], y[1], atol=0.3)

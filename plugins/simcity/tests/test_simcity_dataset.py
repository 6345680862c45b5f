"""The ``sim-city`` dataset: typed options (``-o data.<key>=value``), splits by condition, cheap metadata and
validation, the render cache key, and bad options answered in one line by the CLI.

Images are rendered (tests marked ``egl`` need an OpenGL context); the map is the tiny city of conftest.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
import pytest

from maploc.api import SampleMeta
from maploc.config import parse_overrides, structure_dataset_options
from maploc.errors import ConfigError, DataError
from maploc_simcity import SimCity, SimCityOptions
from maploc_simcity import dataset as dataset_module
from maploc_simcity.options import RANDOM_FIELDS, RENDER_FIELDS, SPLIT_FIELDS


# ---- options ----------------------------------------------------------------------------------------------------
def test_options_from_overrides() -> None:
    values = parse_overrides(["data.frames=400", "data.conditions=[day,night,dusk]", "data.map_condition=night",
                              "data.query_conditions=day,dusk", "data.lateral_offset_m=0.5"])["data"]  # fmt: skip
    options = structure_dataset_options(SimCity, values)
    assert isinstance(options, SimCityOptions) and SimCity.Options is SimCityOptions
    assert options.frames == 400 and options.conditions == ("day", "night", "dusk")
    assert options.map_condition == "night" and options.query_conditions == ("day", "dusk")
    assert options.lateral_offset_m == 0.5
    assert structure_dataset_options(SimCity, {"conditions": "day, night"}).conditions == ("day", "night")


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"frame": 3}, "unknown config key 'data.frame' for dataset 'sim-city'; valid data keys: data.image_height"),
        ({"frames": 0}, "'data.frames' must be >= 1"),
        ({"traversals": -1}, "'data.traversals' must be >= 1"),
        ({"conditions": ["day", "rain"]}, "unknown condition 'rain'; known: day, overcast, dusk, night, autumn"),
        ({"conditions": []}, "'data.conditions' must name at least one"),
        ({"conditions": ["day", "day"]}, "repeats a condition"),
        ({"map_condition": "noon"}, "'data.map_condition': unknown condition 'noon'"),
        ({"query_conditions": "day,fog"}, "'data.query_conditions': unknown condition 'fog'"),
        ({"fov_deg": 200.0}, "'data.fov_deg' must be in [10.0, 150.0]"),
        ({"spacing_m": 0.0}, "'data.spacing_m' must be > 0"),
        ({"width": 4}, "'data.width' must be in [8, 8192]"),
        ({"lateral_offset_m": 11.0}, "'data.lateral_offset_m' must be in [0.0, 10.0]"),
        ({"frames": "many"}, "'data.frames' expects an int"),
        ({"map": ""}, "'data.map' must name a sample or an OSM file"),
    ],
)
def test_bad_options_are_config_errors(values, needle) -> None:
    with pytest.raises(ConfigError) as info:
        structure_dataset_options(SimCity, values)
    assert needle in str(info.value)


def test_every_option_is_a_render_or_a_split_option() -> None:
    assert set(RENDER_FIELDS) | set(SPLIT_FIELDS) == {a.name for a in attrs.fields(SimCityOptions)}
    assert not set(RENDER_FIELDS) & set(SPLIT_FIELDS)


def test_cache_key_changes_with_every_render_option() -> None:
    base = SimCityOptions()
    key = SimCity.cache_key(base, "0" * 64)
    changed = {
        "frames": 101, "traversals": 3, "conditions": ("night", "day"), "seed": 1, "width": 321,
        "height": 241, "fov_deg": 71.0, "spacing_m": 4.5, "lateral_offset_m": 1.0, "train_routes": 2,
        "train_conditions": ("overcast",), "speed_profile": "varying",
    }  # fmt: skip
    # The sampler's options change the key only with train_conditions=random (test_sampler.py checks them).
    assert set(changed) | {"map"} | set(RANDOM_FIELDS) == set(RENDER_FIELDS)
    for name, value in changed.items():
        assert SimCity.cache_key(attrs.evolve(base, **{name: value}), "0" * 64) != key, name
    # The map enters by its file's SHA-256: the same file by sample name or by path is one render; another is not.
    assert SimCity.cache_key(attrs.evolve(base, map="/data/Helsinki.osm.pbf"), "0" * 64) == key
    assert SimCity.cache_key(base, "1" * 64) != key
    # The split options choose among the rendered sequences: the same render serves them all.
    split = dict(map_condition="night", query_conditions=("day",), query_traversals=(1,))
    assert SimCity.cache_key(attrs.evolve(base, **split), "0" * 64) == key


def test_cli_option_typo_is_one_line(maploc_main, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    for override, needle in (
        ("data.frame=3", "valid data keys: data.image_height, data.max_queries, data.map, data.frames"),
        ("data.conditions=[day,rain]", "unknown condition 'rain'"),
        ("data.frames=0", "'data.frames' must be >= 1"),
    ):
        status, _, stderr = maploc_main("run", "--method", "nn-retrieval", "--dataset", "sim-city", "-o", override)
        assert status == 2, stderr
        assert needle in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert not (tmp_path / "cache" / "sim-city").exists()  # nothing was rendered
    status, stdout, stderr = maploc_main("config", "show", "--method", "nn-retrieval", "--dataset", "sim-city",
                                         "-o", "data.conditions=day,night")  # fmt: skip
    assert status == 0, stderr
    assert "data.map_condition: 'day'" in stdout and "data.lateral_offset_m: 1.2" in stdout


# ---- splits, metadata, validation (on a render) -----------------------------------------------------------------
@pytest.mark.egl
def test_splits_by_condition(rendered) -> None:
    default_map, default_query = SimCity(rendered, "map"), SimCity(rendered, "query")
    assert {n.split("/")[0] for n in default_map.names()} == {"t0_day"}
    assert {n.split("/")[0] for n in default_query.names()} == {"t0_night", "t1_day", "t1_night"}
    options = SimCityOptions(map_condition="night", query_conditions=("day",))
    night_map, day_query = SimCity(rendered, "train", options=options), SimCity(rendered, "query", options=options)
    assert {n.split("/")[0] for n in night_map.names()} == {"t0_night"} and len(night_map) == 4
    assert {n.split("/")[0] for n in day_query.names()} == {"t0_day", "t1_day"} and len(day_query) == 8
    assert {day_query[k].condition for k in range(len(day_query))} == {"day"}
    assert night_map[0].condition == "night"
    only_night = SimCity(rendered, "query", options=SimCityOptions(query_conditions=("night",)))
    assert {n.split("/")[0] for n in only_night.names()} == {"t0_night", "t1_night"}


@pytest.mark.egl
def test_split_options_are_checked_against_the_render(rendered, caplog) -> None:
    with pytest.raises(ConfigError, match=r"map_condition='dusk' is not among the rendered conditions \(day, night\)"):
        SimCity(rendered, "map", options=SimCityOptions(map_condition="dusk"))
    with pytest.raises(ConfigError, match="query_conditions names 'autumn'"):
        SimCity(rendered, "query", options=SimCityOptions(query_conditions=("autumn",)))
    # A render option set to something else than the folder was rendered with cannot apply: an error, not ignored.
    with pytest.raises(ConfigError, match="data.frames=50 but .* was rendered with frames=4"):
        SimCity(rendered, "map", options=SimCityOptions(frames=50))
    # Other conditions: the folder is read with the conditions it holds (a warning, no error), so that a model
    # trained with other conditions evaluates on any render; the split options are checked against the folder.
    other = SimCityOptions(conditions=("day", "overcast"))
    with caplog.at_level("WARNING", logger="maploc_simcity.dataset"):
        assert len(SimCity(rendered, "query", options=other)) == len(SimCity(rendered, "query"))
    assert "data.conditions=day,overcast but" in caplog.text and "rendered with conditions=day,night" in caplog.text
    assert len(SimCity(rendered, "map", options=SimCityOptions(frames=4, width=96))) == 4  # matching: fine


@pytest.mark.egl
def test_metadata_reads_poses_without_images(rendered, monkeypatch) -> None:
    query = SimCity(rendered, "query")
    expected = [SampleMeta.of(query[k]) for k in (0, 5, len(query) - 1)]
    monkeypatch.setattr(dataset_module.io, "read_image", lambda *a, **k: pytest.fail("an image was decoded"))
    fresh = SimCity(rendered, "query")
    for k, want in zip((0, 5, len(query) - 1), expected):
        got = fresh.metadata(k)
        assert got.name == want.name and got.sequence == want.sequence and got.timestamp == want.timestamp
        assert got.T_cam2world.allclose(want.T_cam2world) and got.pose2 == want.pose2
    fresh.validate()
    with pytest.raises(IndexError):
        fresh.metadata(len(fresh))


@pytest.mark.egl
def test_validate_finds_a_broken_file(rendered, tmp_path) -> None:
    copy = Path(shutil.copytree(rendered, tmp_path / "copy", symlinks=True))
    ticks: list[int] = []
    SimCity(copy, "query").validate(progress=ticks.append)
    assert ticks == list(range(1, 13))
    (copy / "traversals" / "t1_day" / "depth" / "000002.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"t1_day/depth/000002.png: not a PNG image"):
        SimCity(copy, "query").validate()
    SimCity(copy, "map").validate()  # another split does not read that file
    rows = (copy / "traversals" / "t0_day" / "pose2.txt").read_text().splitlines()
    rows[1] = "1 nan 0 0"
    (copy / "traversals" / "t0_day" / "pose2.txt").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="frame 1 has a non-finite pose"):
        SimCity(copy, "map").validate()


def test_cache_key_without_training_routes_is_the_key_from_before_the_option() -> None:
    """Renders cached before ``train_routes`` and ``train_conditions`` existed keep their key (no re-render)."""
    import hashlib
    import json

    from maploc_simcity.command import FORMAT_VERSION

    options = SimCityOptions()
    added = ("train_routes", "train_conditions", *RANDOM_FIELDS, "speed_profile")
    before = {k: v for k, v in options.render_options().items() if k not in added}
    payload = dict(before, map="0" * 64, format=FORMAT_VERSION)
    expected = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert SimCity.cache_key(options, "0" * 64) == expected
    assert SimCity.cache_key(attrs.evolve(options, train_routes=1), "0" * 64) != expected
    assert SimCity.cache_key(attrs.evolve(options, train_conditions="day,overcast"), "0" * 64) != expected
    assert SimCity.cache_key(attrs.evolve(options, speed_profile="varying"), "0" * 64) != expected

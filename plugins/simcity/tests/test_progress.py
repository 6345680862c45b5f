"""sim-city says what it does while it prepares its frames: fetching the map (with the map's licence, once),
rendering N frames (a progress bar on a terminal), and which cached render it reads (with the attribution)."""

from __future__ import annotations

import shutil

import pytest

import maploc.data.fetch as fetch_module
import maploc_simcity.dataset as dataset_module
from maploc_simcity import SimCity

LICENCE = "(c) OpenStreetMap contributors, ODbL 1.0 (test licence text)"


class _Stop(Exception):
    pass


def test_first_use_says_fetching_with_the_licence_once_then_rendering(city_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    lines: list[str] = []
    monkeypatch.setattr(SimCity, "say", lines.append)
    monkeypatch.setattr(fetch_module, "is_fetched", lambda name: False)

    def fake_fetch(name, *, progress=print, force=False):
        folder = tmp_path / "cache" / name
        folder.mkdir(parents=True)
        shutil.copy(city_file, folder / "city.osm")
        progress(f"Fetching sample {name!r} ...")
        progress(LICENCE)
        return folder

    calls = []

    def fake_render(*args, **kwargs):
        calls.append(kwargs)
        raise _Stop

    monkeypatch.setattr(fetch_module, "fetch", fake_fetch)
    monkeypatch.setattr(dataset_module, "render_command", fake_render)
    options = SimCity.Options(map="helsinki-osm", frames=5, traversals=2, conditions="day,night")
    with pytest.raises(_Stop):
        SimCity(None, "map", options=options)
    assert lines[0] == "sim-city: fetching the OSM map 'helsinki-osm' (first use only) ..."
    assert lines[1:3] == ["Fetching sample 'helsinki-osm' ...", LICENCE]
    assert lines[3].startswith("sim-city: rendering 20 frames of helsinki-osm (day, night; 2 traversals) into ")
    assert sum("OpenStreetMap" in line for line in lines) == 1  # the licence once: the fetch said it
    assert calls[0]["progress"] is None  # the bar only where stderr is a terminal


@pytest.mark.egl
def test_rendering_and_reading_are_said_once_with_the_attribution(city_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    lines: list[str] = []
    monkeypatch.setattr(SimCity, "say", lines.append)
    monkeypatch.setattr(SimCity, "progress_bar", False)
    options = SimCity.Options(map=str(city_file), frames=4, traversals=1, conditions="day", width=48, height=36)
    first = SimCity(None, "map", options=options)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"sim-city: rendering 4 frames of {city_file} (day; 1 traversal) into {first.folder}")
    assert "map data © OpenStreetMap contributors (ODbL)" in lines[0]
    assert lines[1].startswith("sim-city: rendered 4 frames in ")
    SimCity(None, "query", options=options)
    assert len(lines) == 2  # the other split reads the same render without a word
    monkeypatch.setattr(dataset_module, "_ANNOUNCED", set())  # a new process
    SimCity(None, "query", options=options)
    assert lines[2] == (f"sim-city: reading the render of {city_file} in {first.folder} "
                        "(map data © OpenStreetMap contributors (ODbL))")

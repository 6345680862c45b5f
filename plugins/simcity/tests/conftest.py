"""Fixtures of the maploc-simcity tests: a tiny city written as OSM XML, the ``egl`` marker's skip, and the CLI
called in-process.

The map (about 240 m x 240 m): a grid of streets, a footway and a cycleway, four buildings (a courtyard block with
``height=12``, one with ``building:levels=4``, a 6 m "target" building whose north face is the plane y = -15 m, one
without height tags), a park, grass, water, parking, trees, lamps, a pole, a traffic signal and a zebra crossing.
Node positions are given in metres of the map frame and turned into lat/lon by geodesics from the origin
(pyproj.Geod), the maploc map frame being azimuthal equidistant there.

A test marked ``@pytest.mark.egl`` needs an offscreen OpenGL context. The first such test tries
:func:`maploc_simcity.gl.create_gl_context` once; where it fails (no libEGL, no Mesa driver, a broken GPU driver)
every ``egl`` test is skipped with the error as the reason, which says what to install.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyproj
import pytest

LAT0, LON0 = 60.17, 24.94
GEOD = pyproj.Geod(ellps="WGS84")
HALF = 120.0  # the map spans [-HALF, HALF]^2 metres


def latlon(x: float, y: float) -> tuple[float, float]:
    if x == 0 and y == 0:
        return LAT0, LON0
    lon, lat, _ = GEOD.fwd(LON0, LAT0, math.degrees(math.atan2(x, y)), math.hypot(x, y))
    return lat, lon


class MapBuilder:
    """Writes OSM XML from nodes in metres; shared (x, y) positions become shared nodes."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[float, float], int] = {}
        self.node_tags: dict[int, dict[str, str]] = {}
        self.ways: list[tuple[int, list[int], dict[str, str]]] = []
        self.relations: list[str] = []
        self.next_way = 1000

    def node(self, x: float, y: float, tags: dict[str, str] | None = None) -> int:
        key = (round(x, 3), round(y, 3))
        if key not in self.nodes:
            self.nodes[key] = len(self.nodes) + 1
        nid = self.nodes[key]
        if tags:
            self.node_tags.setdefault(nid, {}).update(tags)
        return nid

    def way(self, points: list[tuple[float, float]], tags: dict[str, str], closed: bool = False) -> int:
        refs = [self.node(x, y) for x, y in points]
        if closed:
            refs.append(refs[0])
        self.next_way += 1
        self.ways.append((self.next_way, refs, tags))
        return self.next_way

    def line(self, a: tuple[float, float], b: tuple[float, float], step: float, tags: dict[str, str]) -> int:
        n = max(1, round(math.dist(a, b) / step))
        points = [(a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(n + 1)]
        return self.way(points, tags)

    def xml(self) -> str:
        lat_lo, _ = latlon(0.0, -HALF)
        lat_hi, _ = latlon(0.0, HALF)
        _, lon_lo = latlon(-HALF, 0.0)
        _, lon_hi = latlon(HALF, 0.0)
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<osm version="0.6" generator="maploc-test">',
            f'  <bounds minlat="{lat_lo:.9f}" minlon="{lon_lo:.9f}" maxlat="{lat_hi:.9f}" maxlon="{lon_hi:.9f}"/>',
        ]
        for (x, y), nid in self.nodes.items():
            lat, lon = latlon(x, y)
            tags = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in self.node_tags.get(nid, {}).items())
            out.append(f'  <node id="{nid}" version="1" lat="{lat:.10f}" lon="{lon:.10f}">{tags}</node>')
        for wid, refs, tags in self.ways:
            body = "".join(f'<nd ref="{r}"/>' for r in refs) + "".join(
                f'<tag k="{k}" v="{v}"/>' for k, v in tags.items()
            )
            out.append(f'  <way id="{wid}" version="1">{body}</way>')
        out += self.relations
        out.append("</osm>")
        return "\n".join(out) + "\n"


def square(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def city_xml(with_roads: bool = True) -> str:
    m = MapBuilder()
    road = {"highway": "residential"}
    if with_roads:
        for y in (-80.0, 0.0, 80.0):
            m.line((-110.0, y), (110.0, y), 10.0, road)
        for x in (0.0, 90.0):
            m.line((x, -110.0), (x, 110.0), 10.0, road)
        m.node(20.0, 0.0, {"highway": "crossing", "crossing": "zebra"})
        m.node(0.0, 0.0, {"highway": "traffic_signals"})
    m.line((-100.0, -8.0), (-10.0, -8.0), 10.0, {"highway": "footway"})
    m.line((10.0, 8.0), (80.0, 8.0), 10.0, {"highway": "cycleway"})
    # courtyard block: multipolygon with a hole, height 12 m
    outer = m.way(square(20.0, 20.0, 60.0, 60.0), {}, closed=True)
    inner = m.way(square(32.0, 32.0, 48.0, 48.0), {}, closed=True)
    m.relations.append(
        f'  <relation id="5000" version="1"><member type="way" ref="{outer}" role="outer"/>'
        f'<member type="way" ref="{inner}" role="inner"/><tag k="type" v="multipolygon"/>'
        '<tag k="building" v="apartments"/><tag k="height" v="12"/></relation>'
    )
    m.way(square(-60.0, 20.0, -20.0, 50.0), {"building": "yes", "building:levels": "4"}, closed=True)
    m.way(square(-60.0, -45.0, -20.0, -15.0), {"building": "yes", "height": "6", "building:colour": "#c05040"},
          closed=True)  # fmt: skip
    m.way(square(20.0, -50.0, 50.0, -20.0), {"building": "yes"}, closed=True)
    m.way(square(-100.0, -70.0, -70.0, -30.0), {"leisure": "park"}, closed=True)
    m.way(square(60.0, -70.0, 80.0, -10.0), {"landuse": "grass"}, closed=True)
    m.way(square(-100.0, 20.0, -70.0, 60.0), {"natural": "water"}, closed=True)
    m.way(square(20.0, -75.0, 50.0, -60.0), {"amenity": "parking"}, closed=True)
    for x, y in ((10.0, 15.0), (15.0, -12.0), (-80.0, 10.0), (70.0, 12.0)):
        m.node(x, y, {"natural": "tree"})
    for x, y in ((-70.0, -6.0), (30.0, 5.0), (60.0, -5.0), (5.0, 40.0), (-5.0, -40.0)):
        m.node(x, y, {"highway": "street_lamp"})
    m.node(50.0, 10.0, {"man_made": "utility_pole"})
    return m.xml()


@pytest.fixture(scope="session")
def city_osm_xml():
    """``city_xml`` as a fixture (test modules cannot import this file)."""
    return city_xml


@pytest.fixture(scope="session")
def city_file(tmp_path_factory) -> Path:
    """The tiny city as OSM XML (see :func:`city_xml`)."""
    path = tmp_path_factory.mktemp("render") / "tiny-city.osm"
    path.write_text(city_xml(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def city(city_file):
    """The tiny city parsed, map-frame origin at (LAT0, LON0)."""
    from maploc_osm import parse_osm

    return parse_osm(city_file, origin=(LAT0, LON0))



@pytest.fixture(scope="session")
def rendered(city_file, tmp_path_factory) -> Path:
    """2 traversals x (day, night) x 4 frames at 96 x 72, every layout (needs OpenGL: use it from egl tests)."""
    from maploc_simcity import render_command

    return render_command(str(city_file), 4, ["day", "night"], tmp_path_factory.mktemp("rendered") / "out", seed=1,
                          traversals=2, width=96, height=72, fov_deg=80.0, progress=False)  # fmt: skip


def _gl_unavailable() -> str | None:
    """``None`` when an OpenGL context can be created here, else why not (checked once per session)."""
    from maploc_simcity.gl import offscreen_gl_problem

    reason = offscreen_gl_problem()
    return None if reason is None else f"no offscreen OpenGL context (EGL): {reason}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("egl") is not None:
        reason = _gl_unavailable()
        if reason is not None:
            pytest.skip(reason)

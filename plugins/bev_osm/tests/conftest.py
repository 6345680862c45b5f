"""Shared fixtures: a tiny OSM city (streets and buildings) written as OSM XML by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ORIGIN = (60.1700, 24.9400)


def city_osm_xml(size_m: float = 240.0, origin: tuple[float, float] = ORIGIN, first_id: int = 1) -> str:
    """A grid city: streets every 60 m, one building per block (OSM XML text), ``size_m`` square around
    ``origin``."""
    from maploc_osm import GeoReference

    geo = GeoReference.from_origin(*origin)
    nodes: list[tuple[int, float, float]] = []
    ways: list[tuple[int, list[int], dict[str, str]]] = []
    nid, wid = first_id, first_id

    def node(x: float, y: float) -> int:
        nonlocal nid
        lat, lon = geo.xy_to_latlon([x, y]).tolist()
        nodes.append((nid, lat, lon))
        nid += 1
        return nid - 1

    half = size_m / 2
    step = 60.0
    ticks = [-half + step * i for i in range(int(size_m // step) + 1)]
    grid = {(a, b): node(a, b) for a in ticks for b in ticks}  # street crossings shared by both streets
    for t in ticks:
        ways.append((wid, [grid[a, t] for a in ticks], {"highway": "residential"}))
        ways.append((wid + 1, [grid[t, b] for b in ticks], {"highway": "residential"}))
        wid += 2
    bx = -half
    i = 0
    while bx + step <= half:
        by = -half
        while by + step <= half:
            w, h = 20.0 + 10 * (i % 3), 15.0 + 8 * (i % 2)
            x0, y0 = bx + 12 + 5 * (i % 2), by + 12
            ring = [node(x0, y0), node(x0 + w, y0), node(x0 + w, y0 + h), node(x0, y0 + h)]
            ways.append((wid, [*ring, ring[0]], {"building": "yes"}))
            wid += 1
            i += 1
            by += step
        bx += step
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="maploc-test">']
    lines += [f'  <node id="{n}" version="1" lat="{lat:.9f}" lon="{lon:.9f}"/>' for n, lat, lon in nodes]
    for w, refs, tags in ways:
        body = "".join(f'<nd ref="{r}"/>' for r in refs) + "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        lines.append(f'  <way id="{w}" version="1">{body}</way>')
    return "\n".join([*lines, "</osm>"]) + "\n"


@pytest.fixture(scope="session")
def city_osm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("city") / "city.osm"
    path.write_text(city_osm_xml(), encoding="utf-8")
    return path

"""Fixtures of the Loc2Vec plugin tests: a small synthetic OpenStreetMap XML file written by the test."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

LAT0, LON0 = 60.17, 24.94
M_PER_DEG_LAT = 111_320.0


def _latlon(x: float, y: float) -> tuple[float, float]:
    """Map-frame metres around (LAT0, LON0) -> (lat, lon) degrees (equirectangular; fine for < 1 km)."""
    return LAT0 + y / M_PER_DEG_LAT, LON0 + x / (M_PER_DEG_LAT * math.cos(math.radians(LAT0)))


def write_city_osm(path: Path, size_m: float = 600.0, street_every_m: float = 60.0) -> Path:
    """Writes a ``size_m`` square city as OSM XML: a street grid (primary roads and footways alternating), a
    building in each block (of varying size), trees and lamps, a park every few blocks.

    Returns:
        ``path``.
    """
    nodes: list[str] = []
    ways: list[str] = []
    next_id = [1]

    def node(x: float, y: float, tags: dict[str, str] | None = None) -> int:
        i = next_id[0]
        next_id[0] += 1
        lat, lon = _latlon(x, y)
        body = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in (tags or {}).items())
        nodes.append(f'  <node id="{i}" version="1" lat="{lat:.9f}" lon="{lon:.9f}">{body}</node>')
        return i

    def way(refs: list[int], tags: dict[str, str]) -> None:
        i = next_id[0]
        next_id[0] += 1
        body = "".join(f'<nd ref="{r}"/>' for r in refs) + "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        ways.append(f'  <way id="{i}" version="1">{body}</way>')

    h = size_m / 2
    lines = [k * street_every_m - h for k in range(int(size_m // street_every_m) + 1)]
    for k, c in enumerate(lines):
        kind = "primary" if k % 2 == 0 else "footway"
        way([node(c, -h), node(c, h)], {"highway": kind})
        way([node(-h, c), node(h, c)], {"highway": "residential" if k % 3 else "cycleway"})
    for i, x0 in enumerate(lines[:-1]):
        for j, y0 in enumerate(lines[:-1]):
            s = 8 + ((i * 7 + j * 13) % 5) * 6  # building half-size varies by block
            cx, cy = x0 + street_every_m / 2, y0 + street_every_m / 2
            if (i + 2 * j) % 5 == 0:
                ring = [node(x0 + 6, y0 + 6), node(x0 + street_every_m - 6, y0 + 6),
                        node(x0 + street_every_m - 6, y0 + street_every_m - 6), node(x0 + 6, y0 + street_every_m - 6)]
                way([*ring, ring[0]], {"leisure": "park"})
                node(cx + 5, cy - 3, {"natural": "tree"})
            else:
                ring = [node(cx - s, cy - s / 2), node(cx + s, cy - s / 2), node(cx + s, cy + s / 2), node(cx - s, cy + s / 2)]
                way([*ring, ring[0]], {"building": "yes"})
            node(x0 + 3, y0 + 3, {"highway": "street_lamp"})
    text = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="maploc-loc2vec-test">',
            *nodes, *ways, "</osm>"]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def city_dir(tmp_path, monkeypatch) -> Path:
    """A folder with ``city.osm`` (600 m) and a raster cache inside ``tmp_path`` ($MAPLOC_DATA)."""
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "city"
    folder.mkdir()
    write_city_osm(folder / "city.osm")
    return folder


@pytest.fixture
def write_osm():
    """The :func:`write_city_osm` function (tests call it with their own sizes)."""
    return write_city_osm

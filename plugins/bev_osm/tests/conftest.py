"""Shared fixtures: a tiny OSM city (streets and buildings) written as OSM XML by the tests."""

from __future__ import annotations

import math
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


def se2_rows_by_hand(predictions: Path, truth: dict[str, tuple[float, float, float]]) -> dict[str, float]:
    """The core's se2 rows recounted from a run's predictions files and the true poses ``name -> (x m, y m,
    yaw rad)``: for the method and each variant, recall within 1/3/5 m and 1/3/5 deg and the medians; the
    ``prior:`` row (the prior's centre as the estimate) and the ``chance:`` row (a position uniform over the prior's
    square, by a 1001 x 1001 midpoint grid; a yaw uniform over the circle: ``2 a / 360``). Keys as in metrics.json."""
    import csv
    import json

    import numpy as np

    manifest = json.loads((predictions / "manifest.json").read_text())
    out: dict[str, float] = {}
    names = [manifest["method"], *manifest.get("variants", {})]
    for name in names:
        rows = [line.split() for line in (predictions / f"{name}.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]  # fmt: skip
        pos = np.array([math.hypot(float(x) - truth[q][0], float(y) - truth[q][1]) for q, x, y, _ in rows])
        yaw = np.array([abs((math.radians(float(a)) - truth[q][2] + math.pi) % (2 * math.pi) - math.pi)
                        for q, _, _, a in rows])  # fmt: skip
        yaw = np.degrees(yaw)
        prefix = "" if name == manifest["method"] else f"{name}:"
        for d in (1, 3, 5):
            out[f"{prefix}recall_{d}m"] = 100.0 * float((pos <= d).mean())
            out[f"{prefix}recall_{d}deg"] = 100.0 * float((yaw <= d).mean())
        out[f"{prefix}median_position_error_m"] = float(np.median(pos))
        out[f"{prefix}median_yaw_error_deg"] = float(np.median(yaw))
    with open(predictions / f"{manifest['method']}.csv", newline="") as f:
        priors = {r["name"]: (float(r["prior_x_m"]), float(r["prior_y_m"]), float(r["prior_halfwidth_m"]))
                  for r in csv.DictReader(f)}  # fmt: skip
    prior_err = np.array([math.hypot(px - truth[q][0], py - truth[q][1]) for q, (px, py, _) in priors.items()])
    u = (np.arange(1001) + 0.5) / 1001 * 2 - 1  # midpoints of [-1, 1]
    chance = {d: [] for d in (1, 3, 5)}
    for q, (px, py, half) in priors.items():
        gx, gy = np.meshgrid(px + half * u - truth[q][0], py + half * u - truth[q][1])
        dist = np.hypot(gx, gy)
        for d in chance:
            chance[d].append(float((dist <= d).mean()))
    for d in (1, 3, 5):
        out[f"prior:recall_{d}m"] = 100.0 * float((prior_err <= d).mean())
        out[f"chance:recall_{d}m"] = 100.0 * float(np.mean(chance[d]))
        out[f"chance:recall_{d}deg"] = 100.0 * 2 * d / 360
    out["prior:median_position_error_m"] = float(np.median(prior_err))
    return out


def _gl_unavailable() -> str | None:
    """Why sim-city cannot render here (no offscreen OpenGL context), or ``None``; tried once per session."""
    from maploc_simcity.gl import offscreen_gl_problem

    reason = offscreen_gl_problem()
    return None if reason is None else f"sim-city cannot render here (no offscreen OpenGL context): {reason}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``egl`` (they render sim-city views) skip with the reason where no OpenGL context exists."""
    if item.get_closest_marker("egl") is not None:
        reason = _gl_unavailable()
        if reason is not None:
            pytest.skip(reason)

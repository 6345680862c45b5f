"""Cross-map flow (train on one map, evaluate on a render of another, disjoint one) and sim-city's MGL layout read
by ``mgl``; tiny renders of a test city written as OSM XML."""

from __future__ import annotations

import json
import math

import osmium
import pytest

from maploc_bev_osm.osm_split import split_osm

from .conftest import ORIGIN, city_osm_xml, se2_rows_by_hand

TINY = ("model.cell_m=2.0", "model.bev_depth_m=8.0", "search.crop_m=32.0", "search.max_offset_m=4.0",
        "search.num_yaws_train=8", "search.num_yaws_eval=16", "train.batch_size=2", "train.max_steps=2",
        "data.image_height=48", "fusion.frames=2")  # fmt: skip


@pytest.fixture(scope="module")
def two_maps(tmp_path_factory):
    """A 480 m city cut into two disjoint halves (south, north) as .osm.pbf files."""
    from maploc_osm import GeoReference

    folder = tmp_path_factory.mktemp("maps")
    xml = folder / "city.osm"
    xml.write_text(city_osm_xml(480.0), encoding="utf-8")
    pbf = folder / "city.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for obj in osmium.FileProcessor(str(xml)):
            writer.add(obj)
    geo = GeoReference.from_origin(*ORIGIN)
    (lat0, lon0), (lat_mid0, _), (lat_mid1, _), (lat1, lon1) = geo.xy_to_latlon(
        [[-250.0, -250.0], [0.0, -5.0], [0.0, 5.0], [250.0, 250.0]]).tolist()  # fmt: skip
    south, north = folder / "south.osm.pbf", folder / "north.osm.pbf"
    split_osm(pbf, (lat0, lon0, lat_mid0, lon1), south)
    split_osm(pbf, (lat_mid1, lon0, lat1, lon1), north)
    return south, north


def _latitudes(path):
    return [n.location.lat for n in osmium.FileProcessor(str(path), osmium.osm.NODE)]


def test_split_maps_are_disjoint(two_maps):
    south, north = two_maps
    assert max(_latitudes(south)) < min(_latitudes(north))
    ways = [w for w in osmium.FileProcessor(str(south), osmium.osm.WAY) if "building" in w.tags]
    assert ways  # areas fully inside survive


def _render(osm, out, train_routes=0, train_conditions=()):
    from maploc_simcity.command import render_command

    return render_command(str(osm), 6, ["day", "night"], out, traversals=2, width=64, height=48,
                          train_routes=train_routes, train_conditions=list(train_conditions),
                          layouts=("traversals", "mgl"), progress=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.egl
def test_simcity_render_reads_as_mgl(two_maps, tmp_path, monkeypatch):
    from maploc_bev_osm.mgl import MGLDataset
    from maploc_simcity.dataset import SimCity

    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    out = _render(two_maps[0], tmp_path / "render")
    mgl_train, mgl_query = MGLDataset(out / "mgl" / "sim-city", "train"), MGLDataset(out / "mgl" / "sim-city", "query")
    assert len(mgl_train) + len(mgl_query) == 24
    mgl_query.validate()
    sim = SimCity(out, "map")
    by_name = {sim.metadata(k).name.replace("/", "_"): sim.metadata(k) for k in range(len(sim))}
    meta = next(mgl_train.metadata(k) for k in range(len(mgl_train)) if mgl_train.items[k] in by_name)
    truth = by_name[meta.name]
    assert meta.pose2.yaw == pytest.approx(truth.pose2.yaw, abs=1e-4)
    # same map, different frame origins: compare through latitude/longitude
    latlon = mgl_train.georef.xy_to_latlon([meta.pose2.x, meta.pose2.y])
    from maploc_osm import GeoReference

    geo = GeoReference.from_json(json.dumps(sim.summary["map"]["georef"]))
    x, y = geo.latlon_to_xy(latlon).tolist()
    assert math.hypot(x - truth.pose2.x, y - truth.pose2.y) < 0.05
    assert mgl_query[0].image.shape == (3, 48, 64) and mgl_train.map_raster(1.0).mask("building").any()


def _printed_rows(out: str) -> dict[str, dict[str, str]]:
    """The "all scored queries" table printed by ``maploc eval``: row name -> {column: cell text}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-- all scored queries --"))
    header = lines[start + 1].split()
    assert header[0] == "row", lines[start + 1]
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith(("--", "==")):
            break
        cells = line.split()
        name = cells[0]
        values = cells[-(len(header) - 1):]
        rows[name] = dict(zip(header[1:], values))
    return rows


def _truth(run) -> dict[str, tuple[float, float, float]]:
    """Query name -> true (x, y, yaw) of the dataset the run read (its config.yaml)."""
    from pathlib import Path

    from maploc.config import structure_dataset_options
    from maploc.engine.runner import load_run_config
    from maploc.plugins import load_component

    cfg = load_run_config(run / "config.yaml")
    cls = load_component("datasets", cfg["dataset"])
    data = cfg["config"]["data"]
    queries = cls(Path(cfg["data_root"]), "query", image_height=data["image_height"],
                  options=structure_dataset_options(cls, data.get("options") or {}))  # fmt: skip
    metas = (queries.metadata(i) for i in range(len(queries)))
    return {m.name: (m.pose2.x, m.pose2.y, m.pose2.yaw) for m in metas}


@pytest.mark.slow
@pytest.mark.egl
def test_train_on_one_map_evaluate_on_another(two_maps, tmp_path, maploc_main, monkeypatch):
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    south, north = two_maps
    # the training folder's route under sampled conditions, as bev_osm trains by default (data.train_conditions=random)
    train_render = _render(south, tmp_path / "south", train_routes=1, train_conditions=["random"])
    test_render = _render(north, tmp_path / "north")
    run = tmp_path / "run"
    args = ["run", "--method", "bev_osm", "--data-root", str(train_render), "--out", str(run), "--no-progress",
            *[a for o in (*TINY, "split.held_out=false") for a in ("-o", o)]]  # fmt: skip
    # the method's default training routes (12) are not in this folder: one line saying what to do, nothing run.
    # (Its default conditions, autumn too, are not either: the folder is read with the day and night it holds.)
    status, out, err = maploc_main(*args)
    assert status == 2 and "rendered with train_routes=1" in err and "-o data.train_routes=1" in err, err
    status, out, err = maploc_main(*args, "-o", "data.train_routes=1")
    assert status == 0, err[-2000:]
    # every view trains (t0_day and r1_random, 6 frames each) and nothing is held out: no split.json, all queries scored
    assert "12 of 12 training views" in (run / "report.txt").read_text()
    assert not (run / "split.json").exists()
    status, out, err = maploc_main("eval", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--data-root", str(test_render),
                   "--out", str(tmp_path / "eval"), "--no-progress")  # fmt: skip
    assert status == 0, err[-2000:]

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # the printed table holds metrics.json's numbers, row by row, and they are the predictions files recounted
    printed = _printed_rows(out)
    assert {"bev_osm", "fused", "road_snap", "chance", "prior"} <= set(printed), out
    for row, cells in printed.items():
        prefix = "" if row == "bev_osm" else f"{row}:"
        for column, text in cells.items():
            if text != "-":
                assert float(text) == pytest.approx(metrics[prefix + column], rel=0.01, abs=0.006), (row, column)
    truth = _truth(tmp_path / "eval")
    for key, value in se2_rows_by_hand(tmp_path / "eval" / "predictions", truth).items():
        tol = 0.05 if key.startswith("chance:") and key.endswith("m") else 1e-6
        assert metrics[key] == pytest.approx(value, abs=tol), key
    assert metrics["num_queries"] == 18  # t1_day, t0_night, t1_night of the north render (it has no training routes)
    assert not (tmp_path / "eval" / "split.json").exists() and "num_queries_outside_test_region" not in metrics
    # the core's per-condition rows: the method, its variants and the reference rows
    assert metrics["day/num_queries"] == 6 and metrics["night/num_queries"] == 12
    for row in ("fused:", "road_snap:", "prior:", "chance:"):
        assert f"{row}night/recall_5m" in metrics, row

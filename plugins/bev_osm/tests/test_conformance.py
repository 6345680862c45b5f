"""The core's conformance suite on ``bev_osm`` (synthetic dataset, tiny grids), and what the run folder says
about the split, the prior and the variants; every row of metrics.json recounted from the predictions files and
the true poses (:func:`conftest.se2_rows_by_hand`), and the estimates where the search puts them."""

import csv
import json
import math

import pytest

from maploc.config import structure_dataset_options
from maploc.data.split import SpatialSplit
from maploc.engine.runner import load_run_config
from maploc.plugins import load_component
from maploc.testing.conformance import check_method

from .conftest import se2_rows_by_hand


def test_bev_osm_conformance(tmp_path):
    metrics = check_method("bev_osm", tmp_path)
    run = tmp_path / "conformance-bev_osm"
    # the split is saved and the 4 evaluated queries lie in its test blocks (conformance_overrides chose it so)
    split = SpatialSplit.from_dict(json.loads((run / "split.json").read_text()))
    assert split.success_radius_m == 5.0 and split.footprint_m > 28
    assert metrics["num_queries"] == 4 and metrics["num_queries_outside_test_region"] == 0
    assert (tmp_path / "conformance-bev_osm-eval" / "split.json").read_text() == (run / "split.json").read_text()
    # the variants and the core's reference rows
    for row in ("fused", "fused_prior", "road_snap", "prior_only", "prior", "chance"):
        assert f"{row}:recall_5m" in metrics, row
    with open(run / "predictions" / "bev_osm.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["prior_halfwidth_m"]) == 4.0 for r in rows)  # search.max_offset_m
    # every row recounted by hand from the predictions files and the dataset's true poses
    data = load_run_config(run / "config.yaml")["config"]["data"]
    cls = load_component("datasets", "bev-osm-synthetic")
    queries = cls(None, "query", image_height=data["image_height"], options=structure_dataset_options(cls, data["options"]))
    truth = {m.name: (m.pose2.x, m.pose2.y, m.pose2.yaw) for m in (queries.metadata(i) for i in range(len(queries)))}
    expect = se2_rows_by_hand(run / "predictions", {r["name"]: truth[r["name"]] for r in rows})
    for key, value in expect.items():
        tol = 0.05 if key.startswith("chance:") and key.endswith("m") else 1e-6  # the grid integral of the square
        assert metrics[key] == pytest.approx(value, abs=tol), key
    assert 0 < metrics["chance:recall_1m"] < metrics["chance:recall_5m"] < 100.0
    # the estimates lie in the searched region: the prior's square (search.restrict_to_prior, on by default:
    # half-side search.max_offset_m = 4 m plus half a 2 m cell) for the method, its fused variant and the map
    # prior's argmax; the road snap within the crop (search.crop_m = 32 m around the prior); the first frame of a
    # sequence has no earlier frame to fuse: its fused estimate is its single-frame one
    est = {n: [line.split() for line in (run / "predictions" / f"{n}.txt").read_text().splitlines()
               if not line.startswith("#")] for n in ("bev_osm", "fused", "road_snap", "prior_only")}  # fmt: skip
    for n, lines in est.items():
        reach = 16.0 if n == "road_snap" else 4.0 + 1.0
        for r, (q, x, y, _) in zip(rows, lines):
            assert q == r["name"] and max(abs(float(x) - float(r["prior_x_m"])),
                                          abs(float(y) - float(r["prior_y_m"]))) <= reach + 1e-6, n
    first = [i for i, r in enumerate(rows) if r["name"].endswith("/000000")]
    assert first and all(est["fused"][i] == est["bev_osm"][i] for i in first)
    assert math.isclose(metrics["chance:recall_1deg"], 100 / 180)
    manifest = json.loads((run / "predictions" / "manifest.json").read_text())
    assert manifest["variants"]["fused"]["baseline"] is False and manifest["variants"]["road_snap"]["baseline"]
    report = (run / "report.txt").read_text()
    assert "5 of 20 training views" in report and "road_snap (baseline)" in report
    assert (run / "bev_osm_recall.png").is_file()

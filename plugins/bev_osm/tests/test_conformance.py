"""The core's conformance suite on ``bev_osm`` (synthetic dataset, tiny grids), and what the run folder says
about the split, the prior and the variants."""

import csv
import json

from maploc.data.split import SpatialSplit
from maploc.testing.conformance import check_method


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
    assert metrics["chance:recall_5m"] < 100.0  # a uniform guess over the 8 m square, not a certainty
    with open(run / "predictions" / "bev_osm.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["prior_halfwidth_m"]) == 4.0 for r in rows)  # search.max_offset_m
    manifest = json.loads((run / "predictions" / "manifest.json").read_text())
    assert manifest["variants"]["fused"]["baseline"] is False and manifest["variants"]["road_snap"]["baseline"]
    report = (run / "report.txt").read_text()
    assert "5 of 20 training views" in report and "road_snap (baseline)" in report
    assert (run / "bev_osm_recall.png").is_file()

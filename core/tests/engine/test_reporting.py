"""The printed report: one headline saying which row and which queries metrics.json's top-level keys are, then the
tables; no flat list of keys."""

from __future__ import annotations

import json
from pathlib import Path

from maploc.engine.reporting import headline

QUICKSTART = {
    "num_queries": 300, "num_failed": 0, "pr_auc": 0.3917, "recall_at_100_precision": 30.0, "recall_at_1": 42.67,
    "time_per_query_ms": 2.9, "day/num_queries": 100, "day/recall_at_1": 26.0, "night/recall_at_1": 51.0,
    "single_frame:recall_at_1": 33.0, "single_frame:day/recall_at_1": 12.0, "chance:recall_at_1": 6.96,
    "chance:night/pr_auc": 0.0696,
}


def test_headline_names_the_row_the_queries_and_the_key_scheme():
    line = headline("seqslam", "sequence", QUICKSTART)
    assert line == (
        "headline (metrics.json's top-level keys): seqslam, all 300 scored queries: recall_at_1 42.7, pr_auc 0.39; "
        "other rows are '<row>:<key>' (chance, single_frame); conditions '<condition>/<key>' (day, night)")
    assert "\n" not in line


def test_headline_of_a_pose_run_without_rows_or_conditions():
    metrics = {"num_queries": 12, "num_failed": 0, "median_translation_cm": 127.8, "median_rotation_deg": 19.3,
               "recall_5cm_5deg": 0.0}
    assert headline("nn-retrieval", "pose6dof", metrics) == (
        "headline (metrics.json's top-level keys): nn-retrieval, all 12 scored queries: median_translation_cm 127.8, "
        "median_rotation_deg 19.3")


def test_printed_run_shows_headline_and_tables_not_the_flat_list(run_cli, tmp_path):
    out = tmp_path / "nn"
    proc = run_cli("run", "--method", "nn-retrieval", "--dataset", "synthetic-room", "--out", str(out),
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    printed = proc.stdout
    assert "headline (metrics.json's top-level keys): nn-retrieval, all 12 scored queries" in printed
    assert "-- all scored queries --" in printed
    flat = [line for line in printed.splitlines() if line.split() and line.split()[0] in metrics]
    assert flat == []  # no line starts with a metrics.json key
    stages = [line for line in printed.splitlines() if line.endswith("...") or line.startswith("Map ready")]
    assert [s.split()[0] for s in stages] == ["Building", "Map", "Localizing", "Scoring"], stages
    assert "Built the map" not in printed
    assert (Path(out) / "report.txt").read_text().startswith("== Results")

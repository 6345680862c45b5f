"""Scoring on the validation blocks of a run's spatial split (``maploc evaluate RUN --region val``,
``maploc bench --region val``): only the val-block queries count, the run's own test figures are not
overwritten, and the bench pages say they are validation figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError
from maploc.evaluation.scoring import Manifest, query_xy, write_run_predictions
from maploc.plugins import load_component
from maploc.types import PoseEstimate, Retrieval


def _run_with_split(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A retrieval run on synthetic-room whose split puts the queries with x < 3.3 m in a val block and the
    others in a test block; every val-block query retrieves a wrong map image, every test-block one the
    right one (so the two regions give 0 % and 100 %)."""
    data = load_component("datasets", "synthetic-room")
    queries, maps = data(None, "query"), data(None, "map")
    q_metas = [queries.metadata(i) for i in range(len(queries))]
    m_metas = [maps.metadata(i) for i in range(len(maps))]
    xy = np.array([query_xy(m) for m in q_metas])
    m_xy = np.array([query_xy(m) for m in m_metas])
    assignment = np.array([[1, 2]], dtype=np.int8)  # one row: val block west of x = 3.3 m, test block east
    split = SpatialSplit(region=(0.0, 0.0, 6.6, 4.0), rows=1, cols=2, assignment=assignment, guard_m=0.1,
                         val_guard_m=0.1, success_radius_m=0.1)
    in_val = split.mask(xy, "val", guarded=False)
    in_test = split.mask(xy, "test")
    assert in_val.any() and in_test.any()
    estimates = []
    for p, v in zip(xy, in_val):
        d = np.linalg.norm(m_xy - p, axis=1)
        pick = int(d.argmax() if v else d.argmin())
        estimates.append(PoseEstimate(retrieval=Retrieval(indices=(pick,), scores=(1.0,))))
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps(split.to_dict()))
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "nn-retrieval", "dataset": "synthetic-room",
                                                     "config": {"data": {"options": {}}}}))
    manifest = Manifest(family="retrieval", method="nn-retrieval", dataset="synthetic-room",
                        num_queries=len(q_metas), distance_thresholds_m=(0.5,))
    write_run_predictions(run / "predictions", manifest, [m.name for m in q_metas], [m.name for m in m_metas],
                          estimates, {})
    return run, in_val, in_test


def test_region_val_scores_only_the_val_block_queries_into_its_own_folder(tmp_path: Path) -> None:
    from maploc.engine.runner import evaluate_predictions

    run, in_val, in_test = _run_with_split(tmp_path)
    test = evaluate_predictions(run_dir=run, say=lambda s: None)
    assert test.metrics["num_queries"] == int(in_test.sum())
    assert test.metrics["recall_at_1"] == 100.0
    before = (run / "metrics.json").read_text()
    val = evaluate_predictions(run_dir=run, region="val", say=lambda s: None)
    assert val.metrics["num_queries"] == int(in_val.sum())
    assert val.metrics["num_queries_outside_val_region"] == int((~in_val).sum())
    assert val.metrics["recall_at_1"] == 0.0
    assert (run / "metrics.json").read_text() == before  # the run's test figures are kept
    report = (run / "val_region" / "report.txt").read_text()
    assert "validation (for choosing defaults, not for publishing) blocks" in report
    with pytest.raises(ConfigError, match="--region must be one of test, val"):
        evaluate_predictions(run_dir=run, region="train", say=lambda s: None)


def test_cli_region_val_and_a_bad_region(tmp_path: Path) -> None:
    run, in_val, _ = _run_with_split(tmp_path)
    env = dict(os.environ, MAPLOC_DEBUG="0")
    cmd = [sys.executable, "-m", "maploc.cli", "evaluate", str(run)]
    r = subprocess.run([*cmd, "--region", "val", "--out", str(tmp_path / "v")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "v" / "metrics.json").read_text())["num_queries"] == int(in_val.sum())
    bad = subprocess.run([*cmd, "--region", "vall"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'vall'" in bad.stderr


def test_bench_val_pages_say_they_are_validation_figures(tmp_path: Path) -> None:
    from maploc.bench.report import Record, write_reports
    from maploc.bench.suite import Job, load_suite

    text = "name: s\nmethods: [{method: nn-retrieval}]\ndatasets: [{dataset: synthetic-room}]\n"
    suite = load_suite(text, tmp_path / "s.yaml")
    job = Job(dataset_label="synthetic-room", method_label="nn-retrieval", method="nn-retrieval",
              dataset="synthetic-room", preset="default", overrides=(), data_root=None, seed=0)
    rec = Record(job=job, family="retrieval", metrics={"recall_at_1": 50.0, "num_queries": 4}, variants={},
                 run_dir=tmp_path)
    write_reports(suite, tmp_path / "val", [rec], region="val")
    write_reports(suite, tmp_path / "test", [rec])
    assert "VALIDATION blocks" in (tmp_path / "val" / "report.md").read_text()
    assert "VALIDATION blocks" in (tmp_path / "val" / "index.html").read_text()
    assert "VALIDATION" not in (tmp_path / "test" / "report.md").read_text()


def test_score_only_takes_the_finished_runs_and_names_the_missing(tmp_path: Path) -> None:
    """``maploc bench --score-only``: a finished run is scored as it ran (its config may differ from the suite's
    now, which is said), a job without one is listed as skipped, and nothing is run."""
    from maploc.bench.runner import _finished_jobs
    from maploc.bench.suite import Job

    def job(method: str) -> Job:
        return Job(dataset_label="d", method_label=method, method=method, dataset="synthetic-room",
                   preset="default", overrides=(), data_root=None, seed=0)

    done, missing = job("nn-retrieval"), job("template-features")
    run = tmp_path / "runs" / done.key
    (run / "predictions").mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    (run / "predictions" / "manifest.json").write_text("{}")
    (run / "config.yaml").write_text("method: nn-retrieval\n")
    said: list[str] = []
    finished: list = []
    skipped = _finished_jobs([(done, {"method": "nn-retrieval", "seed": 0}), (missing, {"seed": 0})], tmp_path,
                             said.append, finished)
    assert finished == [(done, run, "kept")]
    assert len(skipped) == 1 and skipped[0].startswith("d/template-features/seed-0: no finished run")
    assert len(said) == 1 and "differs from the suite's resolved config now" in said[0]

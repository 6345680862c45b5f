"""``maploc bench``: suite validation (CLI, one line, exit 2), a tiny suite end to end with reuse, and the
mean ± spread of the report on a constructed case."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maploc.bench.report import Record, format_cell, mean_spread, split_metrics, write_reports
from maploc.bench.suite import Job, load_suite

TINY = """
name: tiny
seeds: [0, 1]
datasets:
  - dataset: synthetic-room
    options: [data.max_queries=4]
methods:
  - method: nn-retrieval
  - method: template-features
    overrides: [data.image_height=120]
"""


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAPLOC_DEBUG="0")
    return subprocess.run([sys.executable, "-m", "maploc.cli", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("suite", "expected"), [
    ("name: x\nmethods: [{method: nn-retrieval}]\ndatasets: [{dataset: synthetic-room}]\nseed: [0]\n",
     "unknown key 'seed'; valid keys: name, description, seeds"),
    ("methods: [{method: no-such-method}]\ndatasets: [{dataset: synthetic-room}]\n",
     "unknown method 'no-such-method'; installed methods:"),
    ("methods: [{method: nn-retrieval}]\ndatasets: [{dataset: no-such-set}]\n",
     "unknown dataset 'no-such-set'; installed datasets:"),
    ("methods: [{method: nn-retrieval}]\ndatasets: [{dataset: strecha, options: [data.splitt=loo]}]\n",
     "unknown config key 'data.splitt' for dataset 'strecha'; valid data keys:"),
    ("methods: [{method: nn-retrieval, overrides: [top_kk=3]}]\ndatasets: [{dataset: synthetic-room}]\n",
     "unknown config key 'top_kk'; valid keys at this level:"),
    ("methods: [{method: nn-retrieval, prest: fast}]\ndatasets: [{dataset: synthetic-room}]\n",
     "unknown key 'prest'; valid keys: label, method, preset"),
    ("methods: [{method: nn-retrieval}]\ndatasets: [{dataset: synthetic-room, shared_split: maybe}]\n",
     "datasets[0].shared_split must be true or false"),
    ("methods: [{method: nn-retrieval}]\ndatasets: [{dataset: synthetic-room, distance_thresholds_m: [25, -1]}]\n",
     "datasets[0].distance_thresholds_m must be a non-empty list of positive metres"),
])
def test_bad_suite_is_refused_in_one_line_before_any_run(tmp_path: Path, suite: str, expected: str) -> None:
    (tmp_path / "s.yaml").write_text(suite)
    r = _bench("s.yaml", "--out", "b", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert not (tmp_path / "b").exists(), "a refused suite must not start any run"


def test_unknown_suite_names_the_shipped_ones(tmp_path: Path) -> None:
    r = _bench("no-such-suite", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "smoke" in r.stderr and "six-dof" in r.stderr


def test_list_shows_the_shipped_suites(tmp_path: Path) -> None:
    r = _bench("--list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert {"smoke", "six-dof", "place-recognition", "bev"} <= set(names)


def test_skip_missing_runs_the_rest_and_lists_what_was_skipped(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "methods: [{method: no-such-method}, {method: nn-retrieval}]\n"
        "datasets: [{dataset: synthetic-room, options: [data.max_queries=2]}]\n")
    r = _bench("s.yaml", "--out", "b", "--skip-missing", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "skipped: no-such-method on synthetic-room (unknown method 'no-such-method'" in r.stdout
    assert (tmp_path / "b" / "runs" / "synthetic-room" / "nn-retrieval" / "seed-0" / "metrics.json").is_file()
    assert not (tmp_path / "b" / "runs" / "synthetic-room" / "no-such-method").exists()
    assert "no-such-method" in (tmp_path / "b" / "report.md").read_text()


def test_tiny_suite_writes_the_reports_and_a_rerun_reuses_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from maploc.cli import main

    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "bench"
    assert main(["bench", str(tmp_path / "tiny.yaml"), "--out", str(out), "--threads", "1"]) == 0
    first = capsys.readouterr().out
    assert first.count(": ran in ") == 4, first

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    methods = {(r["method"], r["row"], r["kind"], r["seed"]) for r in rows if r["condition"] == "all"}
    assert methods == {(m, row, kind, s) for m in ("nn-retrieval", "template-features") for s in ("0", "1")
                       for row, kind in ((m, "method"), ("coverage", "reference"))}
    assert all(r["dataset"] == "synthetic-room" and r["family"] == "pose6dof" for r in rows)
    # the csv's figures are the run's own metrics.json, scored again from the predictions files
    import json

    saved = json.loads((out / "runs/synthetic-room/template-features/seed-1/metrics.json").read_text())
    row = next(r for r in rows if (r["method"], r["row"], r["seed"]) == ("template-features", "template-features", "1"))
    assert float(row["recall_5cm_5deg"]) == pytest.approx(saved["recall_5cm_5deg"])
    assert int(float(row["num_queries"])) == 4

    report = (out / "report.md").read_text()
    assert "## synthetic-room — all queries (pose6dof)" in report
    table = [line for line in report.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in table[1:]] == ["nn-retrieval", "template-features", "coverage"]
    assert all(line.split("|")[2].strip() == "2" for line in table[1:])
    page = (out / "index.html").read_text()
    assert "<svg" in page and "template-features" in page and "http" not in page.split("<svg", 1)[0]

    # a rerun reuses every run: no method code runs the second time
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("config.yaml")}

    def no_run(*a: object, **k: object) -> None:
        raise AssertionError("a finished run with the same config was run again")

    monkeypatch.setattr("maploc.engine.runner.execute", no_run)
    assert main(["bench", str(tmp_path / "tiny.yaml"), "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert second.count(": reused in ") == 4, second
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("config.yaml")} == stamps
    assert (out / "report.md").read_text() == report

    # another config of one method is run again, not reused
    (tmp_path / "tiny.yaml").write_text(TINY.replace("data.image_height=120", "data.image_height=96"))
    calls: list[str] = []
    monkeypatch.setattr("maploc.engine.runner.execute", lambda spec, **k: calls.append(spec.method))
    main(["bench", str(tmp_path / "tiny.yaml"), "--out", str(out)])
    assert calls == ["template-features", "template-features"]


def test_mean_and_spread_on_a_constructed_case(tmp_path: Path) -> None:
    mean, sd, n = mean_spread([10.0, 20.0, 60.0])
    assert (mean, n) == (30.0, 3) and sd == pytest.approx(math.sqrt(((20**2) + (10**2) + (30**2)) / 2))
    assert mean_spread([5.0]) == (5.0, None, 1)
    assert mean_spread([math.inf, 4.0, 6.0]) == (5.0, pytest.approx(math.sqrt(2)), 2)
    assert mean_spread([math.inf])[0] == math.inf
    assert format_cell([10.0, 20.0, 60.0]) == "30 ± 26"
    assert format_cell([10.0, 20.0], spread=False) == "15"

    suite = load_suite("methods: [{method: m}]\ndatasets: [{dataset: d}]\n", tmp_path / "c.yaml")
    records = []
    for seed, (r1, base, chance) in enumerate([(40.0, 10.0, 5.0), (60.0, 30.0, 5.0), (80.0, 20.0, 5.0)]):
        job = Job(dataset_label="d", method_label="m", method="m", dataset="d", preset="default", overrides=(),
                  data_root=None, seed=seed)
        metrics = {"num_queries": 10, "recall_at_1": r1, "night/recall_at_1": r1 / 2, "snap:recall_at_1": base,
                   "chance:recall_at_1": chance}
        records.append(Record(job=job, family="retrieval", metrics=metrics,
                              variants={"snap": {"baseline": True, "description": ""}}, run_dir=tmp_path))
    assert split_metrics(records[0].metrics, "m") == {
        ("m", "all"): {"num_queries": 10, "recall_at_1": 40.0}, ("m", "night"): {"recall_at_1": 20.0},
        ("snap", "all"): {"recall_at_1": 10.0}, ("chance", "all"): {"recall_at_1": 5.0}}
    write_reports(suite, tmp_path / "out", records)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| m | 3 | 10 | 60 ± 20 |" in report
    assert "| m: snap (baseline) | 3 | - | 20 ± 10 |" in report
    assert "| chance | 3 | - | 5 ± 0 |" in report
    assert "## d — condition night (retrieval)" in report and "| m | 3 | 30 ± 10 |" in report
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3 * 4  # 3 seeds x (m/all, m/night, snap, chance)


def test_a_data_root_not_laid_out_as_the_dataset_expects_is_refused_before_any_run(tmp_path: Path) -> None:
    (tmp_path / "not-a-scene").mkdir()
    (tmp_path / "s.yaml").write_text("methods: [{method: nn-retrieval}]\n"
                                     "datasets: [{dataset: strecha, data_root: not-a-scene, split: loo}]\n")
    r = _bench("s.yaml", "--out", "b", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "nn-retrieval on strecha: " in r.stderr and "no 'images' folder" in r.stderr
    assert not (tmp_path / "b").exists()


def test_data_root_expands_variables_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from maploc.bench.suite import _data_root

    monkeypatch.delenv("MAPLOC_BENCH_TEST_ROOT", raising=False)
    assert _data_root("${MAPLOC_BENCH_TEST_ROOT:-../data}/scene") == Path("../data/scene")
    monkeypatch.setenv("MAPLOC_BENCH_TEST_ROOT", "/srv/x")
    assert _data_root("${MAPLOC_BENCH_TEST_ROOT:-../data}/scene") == Path("/srv/x/scene")
    assert _data_root("$MAPLOC_BENCH_TEST_ROOT/s") == Path("/srv/x/s")
    assert _data_root(None) is None


def test_runs_of_a_dataset_share_the_split_they_saved_and_different_splits_are_named(tmp_path: Path) -> None:
    """The bench scores every run of a dataset on the one split its learned runs saved; runs that
    saved different splits are reported as not comparable (and get no shared split)."""
    import json

    from maploc.bench.runner import shared_splits
    from maploc.bench.suite import DatasetScoring

    def run(dataset: str, method: str, split: dict | None) -> tuple[Job, Path, str]:
        job = Job(dataset_label=dataset, method_label=method, method=method, dataset="sim-city", preset="default",
                  overrides=(), data_root=None, seed=0)
        d = tmp_path / job.key
        d.mkdir(parents=True)
        if split is not None:
            (d / "split.json").write_text(json.dumps(split))
        return job, d, "ran"

    a, b = {"format": "x", "codes": [0, 1, 2]}, {"format": "x", "codes": [2, 1, 0]}
    finished = [run("same", "seqslam", None), run("same", "netvlad", a), run("same", "deepseqslam", a),
                run("differ", "netvlad", a), run("differ", "deepseqslam", b), run("none", "seqslam", None),
                run("off", "netvlad", a)]
    shared, problems = shared_splits(finished, {"off": DatasetScoring(shared_split=False)})
    assert shared == {"same": tmp_path / "same/netvlad/seed-0/split.json"}
    assert len(problems) == 1 and problems[0].startswith("differ: the runs saved different spatial splits")


def test_dry_run_checks_and_lists_every_job_and_runs_nothing(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = _bench(str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "b"), "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("[1/4] run: nn-retrieval on synthetic-room (synthetic-room/nn-retrieval/seed-0)")
    assert "-o data.image_height=120" in lines[2] and lines[-1] == "4 jobs checked; nothing was run (--dry-run)"
    assert not (tmp_path / "b").exists()
    bad = _bench(str(tmp_path / "tiny.yaml").replace("tiny", "nope"), "--dry-run", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

"""`maploc eval RUN`: a run of a method that does not train (no checkpoint) is built, localized and scored again
from its saved config; a training run is evaluated from its newest checkpoint; `--checkpoint` of a method that
has none says what to run instead (one line, exit 2)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

ROOM = ("--dataset", "synthetic-room", "--no-progress")


def _error_line(proc):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maploc: error:"), proc.stderr
    return lines[0]


def _scores(path):
    return {k: v for k, v in json.loads(path.read_text()).items() if "time" not in k and "seconds" not in k}


def test_eval_of_a_run_without_training(run_cli, tmp_path):
    run = tmp_path / "nn"
    proc = run_cli("run", "--method", "nn-retrieval", *ROOM, "-o", "thumbnail_width=16", "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    assert not (run / "checkpoints").exists()

    line = _error_line(run_cli("eval", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--no-progress"))
    assert "method 'nn-retrieval' does not train, so its runs have no checkpoint" in line
    assert f"`maploc eval {run}`" in line and f"`maploc evaluate {run}`" in line

    again = tmp_path / "again"
    proc = run_cli("eval", str(run), "--out", str(again), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert _scores(again / "metrics.json") == _scores(run / "metrics.json")
    saved = yaml.safe_load((again / "config.yaml").read_text())
    assert saved["method"] == "nn-retrieval" and saved["config"]["thumbnail_width"] == 16  # the run's config


def test_eval_needs_a_run_or_a_checkpoint(run_cli, tmp_path):
    assert "needs a run folder" in _error_line(run_cli("eval"))
    assert "is not a run folder" in _error_line(run_cli("eval", str(tmp_path / "nowhere")))


@pytest.mark.slow
def test_eval_of_a_training_run_takes_its_checkpoint(run_cli, tmp_path):
    run = tmp_path / "boring"
    proc = run_cli("run", "--method", "boring", "-o", "train.max_steps=6", "--seed", "3", "--out", str(run),
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    again, by_file, seeded = tmp_path / "again", tmp_path / "by-file", tmp_path / "seeded"
    proc = run_cli("eval", str(run), "--out", str(again), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("eval", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--out", str(by_file),
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert _scores(again / "metrics.json") == _scores(by_file / "metrics.json")  # the run's last.ckpt
    # the evaluation records (and uses) the run's seed unless --seed is given
    for folder in (again, by_file):
        assert yaml.safe_load((folder / "config.yaml").read_text())["engine"]["seed"] == 3, folder
    proc = run_cli("eval", str(run), "--seed", "5", "--out", str(seeded), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((seeded / "config.yaml").read_text())["engine"]["seed"] == 5
    shutil.rmtree(run / "checkpoints")
    line = _error_line(run_cli("eval", str(run), "--no-progress"))
    assert "has no checkpoint" in line and "method 'boring' trains" in line and f"maploc evaluate {run}" in line

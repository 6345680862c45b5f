"""End to end on the real corridor set (Milford, IJRR 2013; ../shared/data/corridor) through the
``two-pass`` reader, and the one-line errors of bad settings on a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maploc.engine.engine import EngineConfig
from maploc.engine.runner import RunSpec, execute
from maploc.errors import ConfigError

CORRIDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "corridor"


def _need_corridor() -> Path:
    if not (CORRIDOR / "ground_truth.csv").is_file():
        pytest.skip(f"real corridor set not found at {CORRIDOR}")
    return CORRIDOR.resolve()


def _run(tmp_path: Path, *overrides: str, method: str = "seqslam") -> dict:
    spec = RunSpec(method=method, dataset="two-pass", data_root=_need_corridor(), overrides=tuple(overrides),
                   out=tmp_path / "run", engine=EngineConfig(progress=False))
    result = execute(spec)
    return dict(result.metrics)


@pytest.mark.data
def test_seqslam_on_the_corridor(tmp_path: Path) -> None:
    m = _run(tmp_path)
    assert m["num_queries"] == 111
    # sequences recover far more of the corridor than single frames (real images, one condition:
    # no per-condition rows), and both far more than a random match
    assert m["recall_at_1"] > 40.0
    assert m["recall_at_1"] > m["single_frame:recall_at_1"] + 15.0
    assert m["pr_auc"] > m["single_frame:pr_auc"]
    assert m["single_frame:num_queries"] == 111
    # chance: a random reference is one of the query's true places (ground_truth.csv) 1 time in 111
    lines = (_need_corridor() / "ground_truth.csv").read_text().splitlines()[1:]
    true_places = [len(line.split(",")[1].split()) for line in lines]
    assert m["chance:recall_at_1"] == pytest.approx(100.0 * sum(true_places) / len(true_places) / 111)
    assert not any("/" in k for k in m)
    run = tmp_path / "run"
    for name in ("pr_curves.png", "difference_matrix.png", "examples.png", "report.txt", "predictions/single_frame.txt"):
        assert (run / name).is_file(), name
    report = (run / "report.txt").read_text()
    assert "single_frame (baseline)" in report and "chance (reference)" in report
    assert json.loads((run / "metrics.json").read_text())["num_queries"] == 111


@pytest.mark.data
@pytest.mark.parametrize(
    ("override", "message"),
    [("ds=200", r"ds=200 \(sequence length\) is longer than the reference traversal \(111 frames\)"),
     ("v_min=2.0", r"v_min \(2.0\) must be <= v_max \(1.2\)")],
)
def test_bad_settings(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _run(tmp_path, override)

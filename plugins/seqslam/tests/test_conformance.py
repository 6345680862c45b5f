"""The core's conformance suite on both methods (one test each): a run, ``maploc eval --checkpoint``
giving the same metrics (DeepSeqSLAM trains), ``maploc evaluate RUN`` reproducing metrics.json; and
the single-frame baseline written and scored beside the method."""

import json

import pytest

from maploc.testing.conformance import check_method


@pytest.mark.parametrize("name", ["seqslam", "deepseqslam"])
def test_conformance(tmp_path, name):
    metrics = check_method(name, tmp_path)
    assert metrics["num_queries"] == 4
    assert 0.0 <= metrics["pr_auc"] <= 1.0
    # the single-frame matcher is a baseline row of the same table, scored on the same 4 queries
    assert metrics["single_frame:num_queries"] == 4
    run = tmp_path / f"conformance-{name}"
    manifest = json.loads((run / "predictions" / "manifest.json").read_text())
    assert manifest["variants"]["single_frame"]["baseline"] is True
    assert (run / "predictions" / "single_frame.txt").is_file()
    assert "single_frame (baseline)" in (run / "report.txt").read_text()
    # the synthetic room is a few metres across: every map frame is within 10 m of every query
    assert metrics["chance:recall_at_1"] == 100.0
    for plot in ("pr_curves.png", "difference_matrix.png", "examples.png"):
        assert (run / plot).is_file(), plot

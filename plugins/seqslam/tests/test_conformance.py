"""The core's conformance suite on both methods (one test each)."""

from maploc.testing.conformance import check_method


def test_seqslam_conformance(tmp_path):
    metrics = check_method("seqslam", tmp_path)
    assert metrics["num_queries"] == 4
    assert 0.0 <= metrics["pr_auc"] <= 1.0


def test_deepseqslam_conformance(tmp_path):
    metrics = check_method("deepseqslam", tmp_path)
    assert metrics["num_queries"] == 4
    assert "seq_all_recall_at_5" in metrics or any(k.endswith("_recall_at_5") for k in metrics)

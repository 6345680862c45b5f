"""The core's conformance suite, once per method of this plugin (netvlad / mobilenetvlad render a tiny sim-city).

Besides the run itself it checks that ``maploc eval --checkpoint`` gives the same metrics (the saved faiss index
is reused) and that ``maploc evaluate RUN`` reproduces ``metrics.json`` from the predictions files."""

import pytest

from maploc.testing.conformance import check_method


@pytest.mark.parametrize("name", ["netvlad", "mobilenetvlad", "hloc"])
def test_conformance(tmp_path, name, request):
    if name != "hloc":
        pytest.importorskip("maploc_simcity")
        request.getfixturevalue("needs_render")
    metrics = check_method(name, tmp_path)
    assert metrics["num_queries"] == 4
    if name != "hloc":
        # the method, its thumbnail baseline and the core's chance row, at both thresholds, per condition
        for row in ("", "thumbnails:", "chance:"):
            assert 0.0 <= metrics[f"{row}recall_at_1"] <= metrics[f"{row}recall_at_20"] <= 100.0
            assert 0.0 <= metrics[f"{row}recall_at_5_within_10m"] <= 100.0
        assert "num_queries_outside_test_region" not in metrics  # a 44 m route: no split (see method._CONFORMANCE)
    else:
        assert "coverage:median_translation_cm" in metrics

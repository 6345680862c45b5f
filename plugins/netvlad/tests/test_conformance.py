"""The core's conformance suite, once per method of this plugin (netvlad / mobilenetvlad render a tiny sim-city)."""

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
        assert 0.0 <= metrics["recall_at_1"] <= 100.0
        assert metrics["descriptor_dim"] >= 1

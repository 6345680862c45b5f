"""The core's conformance suite, run on this plugin's method."""

from maploc.testing.conformance import check_method


def test_template_conformance(tmp_path):
    metrics = check_method("template", tmp_path)
    assert metrics["num_queries"] == 4

"""The conformance suite over every installed method (timm-style: one test per entry point)."""

from __future__ import annotations

import pytest

from maploc.plugins import list_entry_points
from maploc.testing.conformance import check_method

METHODS = [e.name for e in list_entry_points("methods")["methods"] if e.distribution != "maploc-hello"]


@pytest.mark.parametrize("name", METHODS)
def test_method_conformance(name, tmp_path):
    metrics = check_method(name, tmp_path)
    assert metrics["num_queries"] >= 1

"""The conformance suite over the core's own methods and the registered fake method.

Every plugin runs the same suite once in its own tests (``maploc.testing.conformance.check_method``);
the core does not run it again for them.
"""

from __future__ import annotations

import pytest

from maploc.plugins import list_entry_points
from maploc.testing.conformance import check_method

CORE_METHODS = [e.name for e in list_entry_points("methods")["methods"] if e.distribution == "maploc-core"]


@pytest.mark.parametrize("name", [*CORE_METHODS, "boring"])
def test_method_conformance(name, tmp_path, fake_site, monkeypatch):
    monkeypatch.syspath_prepend(str(fake_site))  # registers 'boring'
    metrics = check_method(name, tmp_path)
    assert metrics["num_queries"] >= 1

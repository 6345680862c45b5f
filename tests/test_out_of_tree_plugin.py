"""A third-party plugin, installed with pip into the test environment, is discovered and run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "maploc-hello"


@pytest.fixture(scope="module")
def installed_hello(tmp_path_factory):
    build = tmp_path_factory.mktemp("hello-src")
    # build from a copy so that no build artefacts land in the repository
    subprocess.run(["cp", "-r", str(FIXTURE), str(build)], check=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    proc = subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--quiet", str(build / FIXTURE.name)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    yield
    subprocess.run([*pip, "uninstall", "--yes", "--quiet", "maploc-hello"], capture_output=True, text=True)


@pytest.mark.slow
def test_third_party_plugin_is_listed_and_runs(installed_hello, run_cli, tmp_path):
    proc = run_cli("list")
    assert proc.returncode == 0
    assert "hello                maploc-hello 0.0.1" in proc.stdout
    assert "hello-hooks" in proc.stdout
    out = tmp_path / "hello-run"
    proc = run_cli("run", "--method", "hello", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_queries"] == 12
    assert "hello saw 12 queries" in (out / "report.txt").read_text()  # its maploc.hooks plugin contributed a section
    # blocking the distribution hides it again
    proc = run_cli("run", "--method", "hello", env={"MAPLOC_BLOCKED_PLUGINS": "maploc-hello"})
    assert proc.returncode == 2 and "unknown method 'hello'" in proc.stderr

"""Fixtures of the core's tests.

``run_cli`` runs ``maploc`` in a subprocess, as a user types it, with a *registered* fake plugin
(``maploc-fake``: the :class:`maploc.testing.fakes.BoringMethod` as method ``boring``) made visible
through a ``.dist-info`` folder on ``PYTHONPATH``: real entry-point discovery, nothing installed,
and no dependence on any other plugin of the repository (other plugins' hook modules are not
loaded: ``MAPLOC_DISABLE_PLUGIN_AUTOLOAD=1``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maploc.testing.pytest_plugin import cli_runner

FAKE_ENTRY_POINTS = """\
[maploc.methods]
boring = maploc.testing.fakes:BoringMethod
"""


def write_fake_distribution(site: Path, name: str = "maploc-fake", entry_points: str = FAKE_ENTRY_POINTS) -> Path:
    """Writes a metadata-only distribution registering ``entry_points`` into ``site``; returns ``site``."""
    dist = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return site


@pytest.fixture
def fake_site(tmp_path_factory) -> Path:
    return write_fake_distribution(tmp_path_factory.mktemp("fake-site"))


@pytest.fixture
def run_cli(tmp_path, fake_site):
    """Runs ``maploc ...`` in a subprocess (as a user would) and returns the CompletedProcess."""
    return cli_runner(tmp_path, {
        # the core's tests see only the core's own hook module (plugins test their own hooks)
        "MAPLOC_DISABLE_PLUGIN_AUTOLOAD": os.environ.get("MAPLOC_DISABLE_PLUGIN_AUTOLOAD", "1"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(fake_site), os.environ.get("PYTHONPATH", "")) if p),
    })


@pytest.fixture(autouse=True)
def _no_run_dir_leak(monkeypatch):
    monkeypatch.delenv("MAPLOC_RUN_DIR", raising=False)

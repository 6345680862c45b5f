"""Fixtures of the maploc-osm tests: the CLI called in-process."""

from __future__ import annotations

import pytest


@pytest.fixture
def maploc_main(monkeypatch, capsys):
    """Runs ``maploc ARGS...`` through :func:`maploc.cli.main` in this process; returns ``(status, stdout, stderr)``."""
    from maploc.cli import main

    monkeypatch.delenv("MAPLOC_RUN_DIR", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            status = int(exc.code or 0)
        out, err = capsys.readouterr()
        return status, out, err

    return run

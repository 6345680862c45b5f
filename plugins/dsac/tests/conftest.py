"""Tests marked ``open3d`` need Open3D (maploc-dsac[transpose]), whose Linux wheel links the system library
libusb-1.0: where it cannot be imported they skip with the reason and the fix, instead of failing."""

from __future__ import annotations

import functools

import pytest


@functools.cache
def _open3d_problem() -> str | None:
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("open3d") is not None]
    if not marked or _open3d_problem() is None:
        return
    skip = pytest.mark.skip(reason=(
        f"Open3D cannot be imported ({_open3d_problem()}); install maploc-dsac[transpose] and, on Debian/Ubuntu, "
        "the system libraries: apt install libusb-1.0-0 libegl1"))
    for item in marked:
        item.add_marker(skip)

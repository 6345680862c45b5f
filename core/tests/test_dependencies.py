"""The core stays lean: its installed distribution requires only what maploc-core imports."""

from __future__ import annotations

import importlib.metadata as md
import re

HEAVY = {"osmium", "pyproj", "shapely", "trimesh", "moderngl", "mapbox-earcut", "scipy", "timm", "faiss-cpu"}


def _requirements(extra: str | None) -> set[str]:
    names = set()
    for req in md.requires("maploc-core") or []:
        name = re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0].lower()
        marker = req.partition(";")[2]
        if extra is None and "extra ==" not in marker:
            names.add(name)
        elif extra is not None and f'extra == "{extra}"' in marker:
            names.add(name)
    return names


def test_core_runtime_requirements_exclude_the_osm_and_gl_stack():
    runtime = _requirements(None)
    assert "torch" in runtime and "lightning-fabric" in runtime
    assert not runtime & HEAVY, sorted(runtime & HEAVY)


def test_scipy_is_a_test_extra_only():
    assert "scipy" in _requirements("test")


def test_core_imports_nothing_heavy():
    """``import maploc`` and the CLI module import neither torch nor any OSM/GL library."""
    import subprocess
    import sys

    code = (
        "import sys, maploc, maploc.cli, maploc.plugins, maploc.config\n"
        "bad = [m for m in ('torch', 'osmium', 'pyproj', 'shapely', 'trimesh', 'moderngl', 'scipy') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", out

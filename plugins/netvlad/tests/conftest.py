"""Shared helpers of the maploc-netvlad tests."""

from pathlib import Path

import pytest

#: the real two-pass corridor set beside the repository (../shared/data/corridor)
CORRIDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "corridor"

def gl_unavailable() -> str | None:
    """Why sim-city cannot render here (no offscreen OpenGL), or ``None``; tried once per session."""
    from maploc_simcity.gl import offscreen_gl_problem

    reason = offscreen_gl_problem()
    return None if reason is None else f"sim-city cannot render here (no offscreen OpenGL context): {reason}"


@pytest.fixture
def needs_render():
    reason = gl_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def corridor() -> Path:
    """The corridor set, or a skip saying where it was looked for."""
    if not (CORRIDOR / "ground_truth.csv").is_file():
        pytest.skip(f"the corridor set is not at {CORRIDOR.resolve()}")
    return CORRIDOR

"""Shared helpers of the maploc-netvlad tests."""

from pathlib import Path

import pytest

#: the real two-pass corridor set beside the repository (../shared/data/corridor)
CORRIDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "corridor"

_GL: dict[str, str | None] = {}


def gl_unavailable() -> str | None:
    """Why sim-city cannot render here (no offscreen OpenGL), or ``None``; tried once per session."""
    if "reason" not in _GL:
        try:
            from maploc_simcity.gl import create_gl_context

            ctx = create_gl_context()
        except Exception as exc:  # noqa: BLE001 - RenderError or whatever a broken driver raises
            _GL["reason"] = f"sim-city cannot render here (no offscreen OpenGL context): {exc}"
        else:
            ctx.release()
            _GL["reason"] = None
    return _GL["reason"]


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

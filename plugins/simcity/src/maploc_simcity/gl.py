"""A headless OpenGL context (moderngl over EGL), with errors that say what to install."""

from __future__ import annotations

import ctypes.util
import logging
import os
from typing import Any

from maploc.errors import MaplocError

log = logging.getLogger(__name__)

__all__ = ["INSTALL_HINT", "RenderError", "RenderParameterError", "create_gl_context", "offscreen_gl_problem"]

#: What to install for headless rendering on Debian / Ubuntu, and on Fedora.
INSTALL_HINT = (
    "install Mesa's EGL and OpenGL drivers: `apt install libegl1 libgl1 libgl1-mesa-dri libgbm1` (Debian/Ubuntu) "
    "or `dnf install mesa-libEGL mesa-libGL mesa-dri-drivers mesa-libgbm` (Fedora); on a machine with a GPU "
    "the vendor's driver provides libEGL and libGL"
)

#: Libraries the EGL backend loads: (ctypes name, what it is, Debian package).
_LIBRARIES = (("EGL", "libEGL (EGL loader)", "libegl1"), ("GL", "libGL (OpenGL)", "libgl1"))


class RenderError(MaplocError):
    """Rendering is impossible here (no usable OpenGL / EGL) or failed; the message says what to do."""


class RenderParameterError(MaplocError, ValueError):
    """A rendering parameter (camera, trajectory, scene, command option) is out of range; the message names it.

    A ``ValueError`` for Python callers and a :class:`~maploc.errors.MaplocError` for the CLI (one line, no traceback).
    """


def _missing_libraries() -> list[str]:
    return [
        f"{what}, package {package}" for name, what, package in _LIBRARIES if ctypes.util.find_library(name) is None
    ]


def _load_triton_first() -> None:
    """Imports Triton (if installed) before Mesa's llvmpipe is loaded.

    Mesa's llvmpipe and Triton (pulled in by ``torch._dynamo``, e.g. when Lightning Fabric is
    imported) each bring their own LLVM; importing Triton after an EGL context exists crashes the
    process with a segmentation fault (reproduced with torch 2.15 / triton 3.9 / Mesa 22.3). Loaded
    in the other order both work, so this is done before every context creation.
    """
    import importlib.util

    try:
        if importlib.util.find_spec("triton") is not None:
            import torch._dynamo  # noqa: F401  (imports triton the way torch does)
    except Exception:  # a broken triton install must not stop CPU rendering
        log.debug("could not pre-import triton", exc_info=True)


def create_gl_context(backend: str | None = None) -> Any:
    """A standalone (offscreen) OpenGL >= 3.3 context.

    Args:
        backend: glcontext backend, default ``$MAPLOC_GL_BACKEND`` or ``"egl"`` (headless: Mesa's llvmpipe on a CPU
            machine, the GPU driver elsewhere). ``"x11"`` needs a display.

    Returns:
        a ``moderngl.Context``.

    Raises:
        RenderError: moderngl is not installed, a library is missing (named, with the package that provides it and
            the install command), or the context cannot be created.
    """
    backend = backend or os.environ.get("MAPLOC_GL_BACKEND", "").strip() or "egl"
    _load_triton_first()
    try:
        import moderngl
    except ImportError as exc:  # pragma: no cover - moderngl is a dependency of maploc-simcity
        raise RenderError(f"rendering needs the Python package moderngl: pip install moderngl ({exc})") from exc
    if backend == "egl":
        missing = _missing_libraries()
        if missing:
            raise RenderError(
                f"no usable OpenGL for headless rendering: {'; '.join(missing)} not found. {INSTALL_HINT}"
            )
    try:
        return moderngl.create_context(standalone=True, backend=backend, require=330)
    except Exception as exc:  # moderngl raises bare Exception for every context failure
        raise RenderError(
            f"could not create an offscreen OpenGL 3.3 context with the {backend!r} backend: {exc}. Headless "
            f"rendering needs libEGL with a working driver (Mesa's libgl1-mesa-dri and libgbm1 on a CPU machine); "
            f"{INSTALL_HINT}"
        ) from exc


_GL_PROBE: dict[str, str | None] = {}


def offscreen_gl_problem() -> str | None:
    """Why no offscreen OpenGL context can be created here (the error of :func:`create_gl_context`, which names
    the missing library and its package), or ``None`` when one can. Tried once per process; for tests and checks
    that skip with the reason instead of failing."""
    if "reason" not in _GL_PROBE:
        try:
            ctx = create_gl_context()
        except Exception as exc:  # noqa: BLE001 - RenderError, or anything a broken driver raises
            _GL_PROBE["reason"] = str(exc) or type(exc).__name__
        else:
            ctx.release()
            _GL_PROBE["reason"] = None
    return _GL_PROBE["reason"]

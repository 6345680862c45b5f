"""Checkpoints: one ``.ckpt`` file per save, written atomically, read without unpickling code.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)`` (no arbitrary code can run from a checkpoint file)::

    {
      "format": "maploc-checkpoint", "format_version": 1,
      "method": str, "config": dict,             # the resolved method config (plain data)
      "model": state_dict, "optimizer": state_dict, "scheduler": state_dict | None,
      "rng": {"torch": ByteTensor, "cuda": [ByteTensor], "numpy": {...}, "python": [...]},
      "step": int, "epoch": int, "batch_in_epoch": int, "global_batch_size": int, "world_size": int,
    }
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maploc.errors import CheckpointError
from maploc.files import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "get_rng_state", "set_rng_state", "FORMAT"]

FORMAT = "maploc-checkpoint"
FORMAT_VERSION = 1


def get_rng_state() -> dict[str, Any]:
    """The state of every random generator the training loop touches (torch, CUDA, numpy, random)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": [int(py_version), [int(v) for v in py_state], py_gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Writes ``payload`` (plus the format marker) to ``path`` atomically (temp file + rename).

    An interrupted save never leaves a truncated file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    with atomic_write(path, "wb") as f:
        torch.save(data, f)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: missing file, corrupt/truncated file, a file that needs unpickling of
            arbitrary objects, or a file that is not a maploc checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # RuntimeError (zip reader), UnpicklingError, EOFError, ...
        # torch's own message suggests loading with unpickling enabled; never pass that on.
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}): it is corrupt, truncated, or holds "
            "objects other than tensors and plain data; maploc only reads plain-data checkpoints that it wrote"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a maploc checkpoint (no '{FORMAT}' marker); was it written by maploc?")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {data['format_version']}; upgrade maploc-core to read it")
    return data

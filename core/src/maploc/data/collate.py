"""The default batch layout for training on :class:`~maploc.types.Sample` s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from maploc.types import Sample

__all__ = ["collate"]


def collate(samples: Sequence[Sample]) -> dict[str, Any]:
    """Stacks samples of equal size into a dict of tensors (Fabric moves it to the device).

    Returns:
        ``image`` ``(B, 3, H, W)`` float32 in [0, 1]; ``K`` ``(B, 3, 3)`` pixels;
        ``R_cam2world`` ``(B, 3, 3)`` and ``t_cam2world`` ``(B, 3)`` metres (only if every sample has
        a pose); ``depth`` ``(B, H, W)`` metres with 0 = invalid (only if every sample has depth);
        ``name``: list of str.

    Raises:
        ValueError: the samples have different image sizes (resize them with ``image_height``).
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    sizes = {tuple(s.image.shape) for s in samples}
    if len(sizes) > 1:
        raise ValueError(f"cannot batch images of different sizes {sorted(sizes)}; set data.image_height")
    batch: dict[str, Any] = {
        "image": torch.stack([s.image for s in samples]),
        "K": torch.stack([s.camera.K.to(torch.float32) for s in samples]),
        "name": [s.name for s in samples],
    }
    if all(s.T_cam2world is not None for s in samples):
        batch["R_cam2world"] = torch.stack([s.T_cam2world.R.to(torch.float32) for s in samples])  # type: ignore[union-attr]
        batch["t_cam2world"] = torch.stack([s.T_cam2world.t.to(torch.float32) for s in samples])  # type: ignore[union-attr]
    if all(s.depth is not None for s in samples):
        batch["depth"] = torch.stack([s.depth for s in samples])  # type: ignore[misc]
    return batch

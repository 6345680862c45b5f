"""The training stream of TransPose: real frames and synthetic renders mixed at a set fraction, with
appearance augmentation applied to the renders only (domain-gap options of the TransPose reference).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from maploc.errors import DataError
from maploc_dsac.transpose.config import RenderAugmentConfig

__all__ = ["MixedDataset", "augment_render", "mixed_length"]


def mixed_length(num_real: int, num_synthetic: int, fraction: float) -> int:
    """Slots of one epoch of the mixed stream: the fewest with ``round(fraction * L)`` synthetic
    slots that still hold every real frame and every render at least once (one slot when both are empty)."""
    if fraction <= 0.0 or num_synthetic == 0:
        return num_real
    if fraction >= 1.0 or num_real == 0:
        return num_synthetic
    return max(math.ceil(num_real / (1.0 - fraction)), math.ceil(num_synthetic / fraction))


def _gaussian_kernel(sigma: float) -> Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def augment_render(image: Tensor, config: RenderAugmentConfig, generator: torch.Generator | None = None) -> Tensor:
    """Colour jitter, Gaussian blur and additive noise of one rendered image.

    Args:
        image: ``(3, H, W)`` float RGB in ``[0, 1]``.
        config: the ranges (:class:`~maploc_dsac.transpose.config.RenderAugmentConfig`).
        generator: random source (default: torch's global one, seeded by the engine).

    Returns:
        ``(3, H, W)`` float32 in ``[0, 1]``; ``image`` itself when ``config.enabled`` is false.
    """
    if not config.enabled:
        return image

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    x = image.float()
    x = x * u(1 - config.brightness, 1 + config.brightness)
    mean = x.mean()
    x = (x - mean) * u(1 - config.contrast, 1 + config.contrast) + mean
    grey = (x * x.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    x = (x - grey) * u(1 - config.saturation, 1 + config.saturation) + grey
    if float(torch.rand((), generator=generator)) < config.blur_probability:
        k = _gaussian_kernel(u(0.3, config.blur_sigma_max_px))
        r = k.numel() // 2
        y = F.pad(x[None], (r, r, r, r), mode="replicate")
        y = F.conv2d(y, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
        x = F.conv2d(y, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)[0]
    if config.noise_std > 0:
        x = x + torch.randn(x.shape, generator=generator) * u(0.0, config.noise_std)
    return x.clamp(0.0, 1.0)


class MixedDataset:
    """Real frames and synthetic renders in one map-style dataset (what ``Engine.fit`` samples).

    Of the ``L = mixed_length(...)`` slots, the first ``round(fraction * L)`` are renders (slot ``i``
    -> render ``i mod S``), the rest real frames (cycled); the engine's shuffled sampler spreads
    them over the batches, so each batch holds ``fraction`` renders in expectation and each epoch
    exactly that share. Renders are augmented (:func:`augment_render`) on every read; real frames
    are returned as they are unless ``augment.apply_to == "all"`` (DSAC*'s own augmentation applies
    to both, on the batch).

    Args:
        real: the real training frames (``Sample`` s with pose and depth).
        synthetic: the renders (same image size as ``real``; holes: depth 0).
        fraction: share of synthetic slots, in ``[0, 1]``.
        augment: appearance augmentation of the renders.

    Raises:
        DataError: if both are empty, or the first real frame and the first render differ in size.
    """

    def __init__(self, real: Any, synthetic: Any, fraction: float, augment: RenderAugmentConfig) -> None:
        self.real, self.synthetic, self.augment = real, synthetic, augment
        n_real, n_syn = len(real), len(synthetic)
        if n_real + n_syn == 0:
            raise DataError("no training frames: both the real and the synthetic split are empty")
        self.fraction = 0.0 if n_syn == 0 else 1.0 if n_real == 0 else float(fraction)
        self.length = mixed_length(n_real, n_syn, self.fraction)
        self.num_synthetic_slots = round(self.fraction * self.length)
        if n_real and n_syn:
            a, b = real[0].image.shape, synthetic[0].image.shape
            if a != b:
                raise DataError(f"the renders are {tuple(b)} but the real frames {tuple(a)}: they cannot share a batch")

    def __len__(self) -> int:
        return self.length

    def is_synthetic(self, index: int) -> bool:
        return index < self.num_synthetic_slots

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        if self.is_synthetic(index):
            s = self.synthetic[index % len(self.synthetic)]
            return attrs.evolve(s, image=augment_render(s.image, self.augment))
        s = self.real[(index - self.num_synthetic_slots) % len(self.real)]
        if self.augment.apply_to == "all":
            s = attrs.evolve(s, image=augment_render(s.image, self.augment))
        return s

    def __repr__(self) -> str:
        return (f"MixedDataset({len(self.real)} real, {len(self.synthetic)} synthetic, "
                f"{self.num_synthetic_slots}/{self.length} synthetic slots)")

"""Photometric normalisation of network input images.

Two modes, chosen per method by a config key ``input_norm`` (see :data:`INPUT_NORMS`):

* ``"imagenet"``: subtract the fixed ImageNet per-channel mean and divide by the fixed ImageNet std (the usual
  input convention of torchvision / timm backbones).
* ``"per_image"``: standardise every channel of every image by that channel's own spatial mean and standard
  deviation, i.e. instance normalisation (Ulyanov, Vedaldi & Lempitsky, "Instance Normalization: The Missing
  Ingredient for Fast Stylization", arXiv:1607.08022, 2016, Sec. 2) applied to the input image without learned
  affine parameters. A global change of exposure, gain, black level or colour cast, ``x' = a_c x + b_c`` per channel
  with ``a_c > 0``, leaves the output unchanged (up to the ``eps`` guard), so a dark night image and a bright day
  image of the same scene reach the backbone at the same contrast level.
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
from torch import Tensor

__all__ = ["InputNorm", "INPUT_NORMS", "IMAGENET_MEAN", "IMAGENET_STD", "PER_IMAGE_EPS", "normalize_images"]

#: The config type of an ``input_norm`` key (a ``Literal``: a typo is a ``ConfigError`` listing the modes).
InputNorm = Literal["imagenet", "per_image"]
#: The valid ``input_norm`` modes.
INPUT_NORMS: tuple[str, ...] = typing.get_args(InputNorm)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``per_image`` divides by ``sqrt(var + PER_IMAGE_EPS)`` (variance in squared [0, 1] intensity units; its square
#: root, 1e-4, is far below one 8-bit grey level, so only a constant channel is affected: it maps to zeros).
PER_IMAGE_EPS = 1e-8


def normalize_images(images: Tensor, mode: str = "imagenet") -> Tensor:
    """Normalises a batch of RGB images for a network.

    Args:
        images: ``(B, 3, H, W)`` floating-point RGB, nominally in [0, 1] (values are not checked).
        mode: one of :data:`INPUT_NORMS`. ``"imagenet"``: ``(images - IMAGENET_MEAN) / IMAGENET_STD`` with float32
            constants (exactly the former inline formula, including its dtype promotion). ``"per_image"``: each
            ``(b, c)`` plane becomes ``(x - mean) / sqrt(var + PER_IMAGE_EPS)``, mean and (biased) variance over its
            ``H * W`` pixels.

    Returns:
        ``(B, 3, H, W)`` float tensor on the device of ``images`` (``per_image``: the dtype of ``images``).

    Raises:
        ValueError: ``images`` is not a 4-d floating-point tensor with 3 channels and at least one pixel, or
            ``mode`` is not in :data:`INPUT_NORMS`.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, H, W) tensor, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point, got {images.dtype}")
    if mode == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std
    if mode == "per_image":
        if images.shape[2] * images.shape[3] == 0:
            raise ValueError(f"per_image normalisation needs at least one pixel, got {tuple(images.shape)}")
        var, mean = torch.var_mean(images, dim=(2, 3), correction=0, keepdim=True)
        return (images - mean) / torch.sqrt(var + PER_IMAGE_EPS)
    raise ValueError(f"input_norm must be one of {', '.join(map(repr, INPUT_NORMS))}; got {mode!r}")

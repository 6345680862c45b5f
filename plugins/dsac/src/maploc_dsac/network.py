"""The scene coordinate regression network of DSAC*: a fully convolutional network with output stride 8.

Source: E. Brachmann and C. Rother, "Visual Camera Re-Localization from RGB and RGB-D Images Using
DSAC", TPAMI 2021 (DSAC*), Sec. 4.1 and Fig. 3, and the public code (``network.py``): an FCN maps a
grey image rescaled to 480 px height to one 3-D scene coordinate per 8x8 pixel cell, predicted
**relative to the mean scene coordinate** of the training data (a buffer added to the output).

Two encoders are available (``NetworkConfig.encoder``):

* ``"dsacstar"``: DSAC*'s own network (three stride-2 convolutions to 256 channels, then three
  residual blocks at 512 channels and three 1x1 layers), every channel count multiplied by
  ``NetworkConfig.width`` (``1.0`` is the published network, 27.8 M parameters).
* ``"timm:<model>"``: any ``timm`` backbone built with ``features_only=True, pretrained=False``
  (no weights can be downloaded here), cut at its stride-8 feature level, followed by the same
  1x1 regression head as DSAC*.

The optional uncertainty head (``NetworkConfig.uncertainty``) predicts a per-cell log-variance
``s`` of the scene coordinate (a heteroscedastic, aleatoric model as in Kendall & Gal, NeurIPS
2017), used by :func:`maploc_dsac.losses.euclidean_loss` and later by TransPose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maploc.api import Encoder

__all__ = ["SceneCoordinateNetwork", "DSACStarEncoder", "TimmEncoder", "RegressionHead", "output_size", "OUTPUT_STRIDE"]

#: Pixels of input per output cell (DSAC* ``OUTPUT_SUBSAMPLE``).
OUTPUT_STRIDE = 8
#: DSAC*'s grey-value normalisation, "statistics calculated over the 7-Scenes training set".
GREY_MEAN, GREY_STD = 0.4, 0.25
#: ImageNet statistics, used for RGB input (timm backbones).
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def output_size(height: int, width: int, stride: int = OUTPUT_STRIDE) -> tuple[int, int]:
    """The ``(h, w)`` of the scene coordinate map of a ``height x width`` image: ``ceil(size / stride)``
    (DSAC*: ``math.ceil(image.size / OUTPUT_SUBSAMPLE)``)."""
    return math.ceil(height / stride), math.ceil(width / stride)


def _ch(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


class DSACStarEncoder(nn.Module):
    """DSAC*'s encoder (``network.py`` of the reference, up to its ``res3`` block).

    ``(B, C_in, H, W)`` -> ``(B, 512 * width, ceil(H / 8), ceil(W / 8))`` features.

    Args:
        in_channels: 1 (grey, as DSAC*) or 3.
        width: multiplier of every channel count (1.0 = DSAC*).
    """

    def __init__(self, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        c32, c64, c128, c256, c512 = (_ch(c, width) for c in (32, 64, 128, 256, 512))
        self.conv1 = nn.Conv2d(in_channels, c32, 3, 1, 1)
        self.conv2 = nn.Conv2d(c32, c64, 3, 2, 1)
        self.conv3 = nn.Conv2d(c64, c128, 3, 2, 1)
        self.conv4 = nn.Conv2d(c128, c256, 3, 2, 1)
        self.res1_conv1 = nn.Conv2d(c256, c256, 3, 1, 1)
        self.res1_conv2 = nn.Conv2d(c256, c256, 1, 1, 0)
        self.res1_conv3 = nn.Conv2d(c256, c256, 3, 1, 1)
        self.res2_conv1 = nn.Conv2d(c256, c512, 3, 1, 1)
        self.res2_conv2 = nn.Conv2d(c512, c512, 1, 1, 0)
        self.res2_conv3 = nn.Conv2d(c512, c512, 3, 1, 1)
        self.res2_skip = nn.Conv2d(c256, c512, 1, 1, 0)
        self.out_channels = c512

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        res = F.relu(self.conv4(x))
        x = F.relu(self.res1_conv1(res))
        x = F.relu(self.res1_conv2(x))
        x = F.relu(self.res1_conv3(x))
        res = res + x
        x = F.relu(self.res2_conv1(res))
        x = F.relu(self.res2_conv2(x))
        x = F.relu(self.res2_conv3(x))
        return self.res2_skip(res) + x


class TimmEncoder(nn.Module):
    """A ``timm`` backbone cut at its stride-8 feature level.

    Args:
        model_name: a ``timm`` model name (e.g. ``resnet18``, ``efficientnet_b0``).
        in_channels: input channels.

    Raises:
        ValueError: if the model is unknown to timm or has no feature level of stride 8.
    """

    def __init__(self, model_name: str, in_channels: int = 3) -> None:
        super().__init__()
        import timm

        if model_name not in timm.list_models() and not timm.is_model(model_name):
            raise ValueError(f"unknown timm model {model_name!r}")
        probe = timm.create_model(model_name, features_only=True, pretrained=False, in_chans=in_channels)
        reductions = list(probe.feature_info.reduction())
        if OUTPUT_STRIDE not in reductions:
            raise ValueError(f"timm model {model_name!r} has no stride-{OUTPUT_STRIDE} feature level (has {reductions})")
        index = reductions.index(OUTPUT_STRIDE)
        self.backbone = timm.create_model(
            model_name, features_only=True, pretrained=False, in_chans=in_channels, out_indices=(index,)
        )
        self.out_channels = int(self.backbone.feature_info.channels()[0])
        self.model_name = model_name

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)[0]


class RegressionHead(nn.Module):
    """DSAC*'s head: a residual block of three 1x1 convolutions (``res3``) and three 1x1 layers
    (``fc1..fc3``) to 3 scene-coordinate channels, plus an optional 1-channel log-variance.

    Args:
        in_channels: encoder channels.
        channels: hidden channels (DSAC*: 512).
        uncertainty: add the log-variance output.
    """

    def __init__(self, in_channels: int, channels: int, uncertainty: bool = False) -> None:
        super().__init__()
        self.proj = nn.Identity() if in_channels == channels else nn.Conv2d(in_channels, channels, 1)
        self.res3_conv1 = nn.Conv2d(channels, channels, 1)
        self.res3_conv2 = nn.Conv2d(channels, channels, 1)
        self.res3_conv3 = nn.Conv2d(channels, channels, 1)
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.fc2 = nn.Conv2d(channels, channels, 1)
        self.fc3 = nn.Conv2d(channels, 3, 1)
        self.log_variance = nn.Conv2d(channels, 1, 1) if uncertainty else None
        if self.log_variance is not None:
            nn.init.zeros_(self.log_variance.weight)
            nn.init.zeros_(self.log_variance.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor | None]:
        res = self.proj(features)
        x = F.relu(self.res3_conv1(res))
        x = F.relu(self.res3_conv2(x))
        x = F.relu(self.res3_conv3(x))
        res = res + x
        x = F.relu(self.fc1(res))
        x = F.relu(self.fc2(x))
        log_var = self.log_variance(x) if self.log_variance is not None else None
        return self.fc3(x), log_var


class SceneCoordinateNetwork(Encoder):
    """Images to scene coordinates (DSAC*'s FCN, or a timm backbone with DSAC*'s head).

    ``forward(images)`` takes ``(B, 3, H, W)`` float RGB in ``[0, 1]`` (any ``H, W``; DSAC* uses
    ``H = 480``) and returns a dict:

    * ``scene_coordinates``: ``(B, 3, h, w)`` float, world frame, metres, with
      ``(h, w) = (ceil(H / 8), ceil(W / 8))``; cell ``(i, j)`` belongs to pixel
      ``(u, v) = (8 j + 4, 8 i + 4)`` (see :func:`maploc_dsac.losses.cell_centres`).
    * ``log_variance``: ``(B, 1, h, w)`` float, log of the per-cell variance of the scene coordinate
      (metres squared), only when built with ``uncertainty=True``.

    Buffers (saved in checkpoints): ``mean`` ``(3,)`` float32, the mean scene coordinate in metres
    added to the regressed offsets (DSAC*: mean of the ground-truth scene coordinates of the
    training set, or of the camera centres without depth); ``mean_initialized`` ``()`` bool.

    Args:
        encoder: ``"dsacstar"`` or ``"timm:<model name>"``.
        width: channel multiplier of the ``dsacstar`` encoder and of the head (1.0 = DSAC*).
        grayscale: feed the grey image normalised as DSAC* (``(grey - 0.4) / 0.25``); otherwise
            RGB normalised with the ImageNet statistics.
        uncertainty: add the log-variance output.

    Raises:
        ValueError: for an unknown encoder or a timm model without a stride-8 level.
    """

    output_stride: ClassVar[int] = OUTPUT_STRIDE

    def __init__(
        self,
        encoder: str = "dsacstar",
        width: float = 1.0,
        grayscale: bool = True,
        uncertainty: bool = False,
        init: str = "he",
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.grayscale = grayscale
        in_channels = 1 if grayscale else 3
        if encoder == "dsacstar":
            self.encoder: nn.Module = DSACStarEncoder(in_channels, width)
        elif encoder.startswith("timm:"):
            self.encoder = TimmEncoder(encoder[len("timm:") :], in_channels)
        else:
            raise ValueError(f"unknown encoder {encoder!r}; use 'dsacstar' or 'timm:<model name>'")
        self.encoder_name = encoder
        self.head = RegressionHead(self.encoder.out_channels, _ch(512, width), uncertainty)
        self.uncertainty = uncertainty
        if init == "he":
            self._he_init()
        elif init != "default":
            raise ValueError(f"unknown init {init!r}; use 'he' or 'default'")
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("mean_initialized", torch.tensor(False))
        if grayscale:
            self.register_buffer("input_mean", torch.tensor([GREY_MEAN]).view(1, 1, 1, 1), persistent=False)
            self.register_buffer("input_std", torch.tensor([GREY_STD]).view(1, 1, 1, 1), persistent=False)
        else:
            self.register_buffer("input_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("input_std", torch.tensor(RGB_STD).view(1, 3, 1, 1), persistent=False)

    def _he_init(self) -> None:
        """He (Kaiming) normal initialisation of the DSAC* convolutions (fan-in, ReLU gain), zero
        biases; the last layer (``fc3``) scaled to predict offsets of a few centimetres at first.
        timm encoders keep timm's own initialisation."""
        modules = list(self.head.modules())
        if isinstance(self.encoder, DSACStarEncoder):
            modules += list(self.encoder.modules())
        for m in modules:
            if isinstance(m, nn.Conv2d) and m is not self.head.log_variance:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.head.fc3.weight.mul_(0.01)

    def set_mean(self, mean: Tensor) -> None:
        """Sets the mean scene coordinate ``(3,)`` (metres, world frame) and marks it initialised."""
        mean = torch.as_tensor(mean, dtype=self.mean.dtype, device=self.mean.device).reshape(3)
        if not torch.isfinite(mean).all():
            raise ValueError(f"the mean scene coordinate must be finite, got {mean.tolist()}")
        with torch.no_grad():
            self.mean.copy_(mean)
            self.mean_initialized.fill_(True)

    def normalize(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` RGB in [0, 1] -> the normalised network input ``(B, 1 or 3, H, W)``.

        Grey is ITU-R 601 luma (as ``torchvision.transforms.Grayscale``, used by DSAC*)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if self.grayscale:
            w = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images * w).sum(1, keepdim=True)
        return (images - self.input_mean) / self.input_std

    def forward(self, images: Tensor) -> Mapping[str, Tensor]:  # type: ignore[override]
        H, W = images.shape[-2:]
        features = self.encoder(self.normalize(images))
        offsets, log_var = self.head(features)
        h, w = output_size(H, W)
        if offsets.shape[-2:] != (h, w):  # timm backbones may floor instead of ceil
            offsets = F.interpolate(offsets, size=(h, w), mode="bilinear", align_corners=False)
            if log_var is not None:
                log_var = F.interpolate(log_var, size=(h, w), mode="bilinear", align_corners=False)
        out: dict[str, Any] = {"scene_coordinates": offsets + self.mean.view(1, 3, 1, 1).to(offsets.dtype)}
        if log_var is not None:
            out["log_variance"] = log_var
        return out

"""The networks: image -> BEV template (``bev-osm-image``), OSM raster -> neural map (``bev-osm-map``), and the
model that matches them.

Reference: Sarlin et al., "OrienterNet", CVPR 2023: Sec. 3.1 (map encoder: class embeddings, U-Net, map features
and a log-prior), Sec. 3.2 (image encoder, monocular BEV through a polar representation, BEV net, confidence),
Sec. 3.3 (matching; :mod:`maploc_bev_osm.matching`). Sizes are set by :class:`ModelConfig` (CPU-sized default,
the reference's sizes in the ``full`` preset).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maploc.api import Encoder
from maploc.config import at_least, greater_than

from .geometry import polar_to_bev
from .matching import correlate_direct, correlate_fft, log_softmax_volume, rotate_templates

__all__ = ["BEVOSMModel", "ImageToBEV", "MapEncoder", "ModelConfig"]


@attrs.frozen(kw_only=True)
class ModelConfig:
    """Sizes of the networks and of the grids.

    Attributes:
        backbone: timm model name (``features_only``, ``pretrained=False``); its stride-4 and stride-8 levels are
            used.
        feature_dim: channels of the BEV and map features that are matched (OrienterNet: 8).
        image_dim: channels of the image features lifted to the BEV.
        depth_bins: log-spaced depth bins of the per-pixel distribution.
        min_depth_m: nearest depth bin, metres.
        cell_m: BEV and map cell size, metres (OrienterNet: 0.5).
        bev_depth_m: how far ahead the BEV reaches, metres (OrienterNet: 32); the template is ``2 n + 1`` cells
            square, ``n = bev_depth_m / cell_m``, camera at its centre.
        map_embed_dim: channels of the OSM class embeddings.
        unet_dim: channels of the map U-Net's first level (doubled at the second).
        bev_net_dim: channels of the BEV net.
    """

    backbone: str = "mobilenetv3_small_100"
    feature_dim: int = attrs.field(default=8, validator=at_least(1))
    image_dim: int = attrs.field(default=32, validator=at_least(1))
    depth_bins: int = attrs.field(default=24, validator=at_least(2))
    min_depth_m: float = attrs.field(default=1.0, validator=greater_than(0))
    cell_m: float = attrs.field(default=1.0, validator=greater_than(0))
    bev_depth_m: float = attrs.field(default=24.0, validator=greater_than(0))
    map_embed_dim: int = attrs.field(default=16, validator=at_least(1))
    unet_dim: int = attrs.field(default=32, validator=at_least(1))
    bev_net_dim: int = attrs.field(default=32, validator=at_least(1))

    @property
    def half_cells(self) -> int:
        return max(1, round(self.bev_depth_m / self.cell_m))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ImageToBEV(Encoder):
    """Image -> BEV template (the ``bev-osm-image`` encoder).

    ``forward(images (B, 3, H, W) in [0, 1], gravity-aligned; K (B, 3, 3) pixels)`` returns a dict: ``template``
    ``(B, feature_dim, S, S)`` (unit-norm features times confidence), ``confidence`` ``(B, S, S)`` in [0, 1],
    ``valid`` ``(B, S, S)`` bool, ``features`` ``(B, feature_dim, S, S)`` and ``depth_prob`` ``(B, D, h, w)``.
    """

    output_stride: ClassVar[int] = 4

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        import timm

        self.config = cfg = config or ModelConfig()
        self.backbone = timm.create_model(cfg.backbone, features_only=True, pretrained=False, out_indices=(1, 2))
        c4, c8 = self.backbone.feature_info.channels()
        self.fuse = nn.Sequential(nn.Conv2d(c4 + c8, cfg.image_dim, 3, padding=1), nn.ReLU(inplace=True))
        self.depth_head = nn.Conv2d(cfg.image_dim, cfg.depth_bins, 1)
        self.bev_net = nn.Sequential(_block(cfg.image_dim, cfg.bev_net_dim), _block(cfg.bev_net_dim, cfg.bev_net_dim))
        self.bev_head = nn.Conv2d(cfg.bev_net_dim, cfg.feature_dim + 1, 1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor, K: Tensor | None = None) -> dict[str, Tensor]:  # type: ignore[override]
        if K is None:
            raise ValueError("ImageToBEV needs the intrinsics K (B, 3, 3)")
        cfg = self.config
        f4, f8 = self.backbone((images - self.mean) / self.std)
        f8 = F.interpolate(f8, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        feats = self.fuse(torch.cat([f4, f8], dim=1))  # (B, Ci, h, w), stride 4
        depth_prob = torch.softmax(self.depth_head(feats), dim=1)  # (B, D, h, w)
        polar = torch.einsum("bcvu,bdvu->bcdu", feats, depth_prob)  # (B, Ci, D, w)
        stride = images.shape[-1] / feats.shape[-1]
        bev, valid = polar_to_bev(polar, K, stride, cfg.half_cells, cfg.cell_m, cfg.min_depth_m, cfg.bev_depth_m * 1.5)
        out = self.bev_head(self.bev_net(bev))
        features = F.normalize(out[:, :-1], dim=1)
        confidence = torch.sigmoid(out[:, -1]) * valid
        return {"template": features * confidence[:, None], "confidence": confidence, "valid": valid,
                "features": features, "depth_prob": depth_prob}  # fmt: skip


class MapEncoder(Encoder):
    """OSM class raster -> neural map features and a log-prior (the ``bev-osm-map`` encoder).

    ``forward(raster (B, num_classes, H, W) uint8/float in {0, 1})`` returns ``features`` ``(B, feature_dim, H, W)``
    (unit norm) and ``log_prior`` ``(B, H, W)``. The class embeddings are a 1x1 convolution of the binary class
    channels (the sum of the embeddings of the classes present in a cell), followed by a two-level U-Net.
    """

    output_stride: ClassVar[int] = 1

    def __init__(self, num_classes: int, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ModelConfig()
        d = cfg.unet_dim
        self.embed = nn.Conv2d(num_classes, cfg.map_embed_dim, 1)
        self.enc1 = _block(cfg.map_embed_dim, d)
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), _block(d, 2 * d), _block(2 * d, 2 * d))
        self.dec1 = _block(3 * d, d)
        self.head = nn.Conv2d(d, cfg.feature_dim + 1, 1)

    def forward(self, raster: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        x = self.embed(raster.float())
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        up = F.interpolate(e2, size=e1.shape[-2:], mode="bilinear", align_corners=False)
        out = self.head(self.dec1(torch.cat([e1, up], dim=1)))
        return {"features": F.normalize(out[:, :-1], dim=1), "log_prior": out[:, -1]}


class BEVOSMModel(nn.Module):
    """Both encoders and a learned matching temperature; ``forward`` gives the log-probability volume.

    Args:
        num_classes: OSM class channels of the raster.
        config: sizes.
    """

    def __init__(self, num_classes: int, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.image_encoder = ImageToBEV(self.config)
        self.map_encoder = MapEncoder(num_classes, self.config)
        self.log_temperature = nn.Parameter(torch.tensor(-4.0))  # scores of ~200 matching cells -> logits ~4

    def forward(self, images: Tensor, K: Tensor, raster: Tensor, num_yaws: int, *, use_fft: bool = True,
                use_prior: bool = True) -> dict[str, Tensor]:  # fmt: skip
        """Args: ``images`` ``(B, 3, H, W)``, ``K`` ``(B, 3, 3)``, ``raster`` ``(B, num_classes, Hm, Wm)`` north-up
        map crops, ``num_yaws`` N. Returns the BEV dict, the map dict and ``log_volume`` ``(B, N, Hm, Wm)``,
        ``scores`` (before the prior and the softmax)."""
        bev = self.image_encoder(images, K)
        neural_map = self.map_encoder(raster)
        templates = rotate_templates(bev["template"], num_yaws)
        corr = correlate_fft if use_fft else correlate_direct
        scores = corr(neural_map["features"], templates) * self.log_temperature.exp()
        log_volume = log_softmax_volume(scores, neural_map["log_prior"] if use_prior else None)
        return {"bev": bev, "map": neural_map, "scores": scores, "log_volume": log_volume}

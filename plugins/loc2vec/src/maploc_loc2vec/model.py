"""The Loc2Vec network: a backbone over K-channel tiles and a head giving an L2-normalised embedding.

Either as the Loc2Vec reference (a ResNet over 12-channel map tiles, a fully connected layer to a 16-D
embedding, normalised to the unit sphere), built with :func:`timm.create_model` (``pretrained=False``: no
weights are downloaded; ``in_chans`` = the number of tile channels), e.g. ``model.backbone=resnet18``; or, the
default, ``mlp``: one hidden layer over the tile area-reduced to 16 x 16 px (the input of the raw-tile
baseline), which on the CPU budget of the main job learned far more than the ResNet (see the README).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maploc.config import at_least

__all__ = ["ModelConfig", "Loc2VecNet"]


@attrs.frozen(kw_only=True)
class ModelConfig:
    """The network.

    Attributes:
        backbone: a timm model name (``timm.list_models()``), created with ``pretrained=False``; or ``mlp``: the
            tile area-reduced to ``input_px`` (zero-mean, unit variance), one hidden layer of ``hidden_dim``
            (default 512) with batch norm and ReLU, then the linear head: a learned counterpart of the
            PCA-reduced raw-tile baseline, on the same input.
        in_chans: tile channels K (12 for the ``loc2vec12`` channel set).
        embedding_dim: size of the embedding (16 in Loc2Vec).
        input_px: the tiles are area-resized to ``input_px x input_px`` before the backbone (``0`` = as they
            come). Default 16: a 128 m tile at 8 m per pixel, each pixel the fraction of its 8 x 8 m covered by
            each channel (the raw-tile baseline's input). The compute of a CNN grows with the pixel count (32 px
            costs 1/16 of 128 px); see the README for what each setting measured.
        hidden_dim: width of the hidden layer of the head (``0`` = a single linear layer).
    """

    backbone: str = "mlp"
    in_chans: int = attrs.field(default=12, validator=at_least(1))
    embedding_dim: int = attrs.field(default=16, validator=at_least(1))
    input_px: int = attrs.field(default=16, validator=at_least(0))
    hidden_dim: int = attrs.field(default=0, validator=at_least(0))


class Loc2VecNet(nn.Module):
    """Tiles ``(B, K, S, S)`` (float, or uint8 in {0, 1}) -> embeddings ``(B, D)`` float32 with unit L2 norm.

    Args:
        config: the model settings.

    Raises:
        RuntimeError: unknown timm model name (from timm).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        import timm

        self.config = config
        if config.backbone == "mlp":
            if not config.input_px:
                raise ValueError("model.backbone=mlp needs model.input_px > 0 (the tiny-image side)")
            width = config.hidden_dim or 512
            self.backbone = nn.Sequential(
                nn.Flatten(), nn.Linear(config.in_chans * config.input_px**2, width), nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
            )
            features = width
            self.head = nn.Linear(features, config.embedding_dim)
            return
        self.backbone = timm.create_model(config.backbone, pretrained=False, in_chans=config.in_chans, num_classes=0)
        features = int(self.backbone.num_features)
        if config.hidden_dim > 0:
            self.head = nn.Sequential(
                nn.Linear(features, config.hidden_dim), nn.ReLU(inplace=True),
                nn.Linear(config.hidden_dim, config.embedding_dim),
            )
        else:
            self.head = nn.Linear(features, config.embedding_dim)

    def forward(self, tiles: Tensor) -> Tensor:
        if tiles.ndim != 4 or tiles.shape[1] != self.config.in_chans:
            raise ValueError(
                f"expected tiles (B, {self.config.in_chans}, S, S), got {tuple(tiles.shape)}; the tile channels "
                f"must match model.in_chans"
            )
        x = tiles.float() if not tiles.is_floating_point() else tiles
        size = self.config.input_px
        if size and x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="area")
        if self.config.backbone == "mlp":  # the tiny image, zero-mean and unit-variance per tile
            flat = x.flatten(1)
            flat = flat - flat.mean(dim=1, keepdim=True)
            x = F.normalize(flat, dim=1) * flat.shape[1] ** 0.5
        embedding = self.head(self.backbone(x))
        return F.normalize(embedding.float(), dim=1)

    @torch.no_grad()
    def embed(self, tiles: Tensor, batch_size: int = 64) -> Tensor:
        """Embeds many tiles in batches (eval mode, no gradient): ``(N, K, S, S)`` -> ``(N, D)`` float32 on CPU."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [self(tiles[i : i + batch_size].to(device)).cpu() for i in range(0, len(tiles), batch_size)]
        self.train(was_training)
        if not out:
            return torch.zeros(0, self.config.embedding_dim)
        return torch.cat(out)

"""The Loc2Vec network: a timm backbone over K-channel tiles and a head giving an L2-normalised embedding.

As the Loc2Vec reference (a ResNet over 12-channel map tiles, a fully connected layer to a 16-D embedding,
normalised to the unit sphere), built with :func:`timm.create_model` (``pretrained=False``: no weights are
downloaded; ``in_chans`` = the number of tile channels).
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
        backbone: a timm model name (``timm.list_models()``), created with ``pretrained=False``.
        in_chans: tile channels K (12 for the ``loc2vec12`` channel set).
        embedding_dim: size of the embedding (16 in Loc2Vec).
        input_px: the tiles are area-resized to ``input_px x input_px`` before the backbone (``0`` = as they
            come). Default 32: a 128 m tile at 4 m per pixel, each pixel the fraction of its 4 x 4 m covered by
            each channel. The compute of a CNN grows with the pixel count: 32 px costs 1/16 of 128 px, which is
            what lets the main job train ~10x more triplets and index the grid at 8 headings on a CPU.
        hidden_dim: width of the hidden layer of the head (``0`` = a single linear layer).
    """

    backbone: str = "resnet18"
    in_chans: int = attrs.field(default=12, validator=at_least(1))
    embedding_dim: int = attrs.field(default=16, validator=at_least(1))
    input_px: int = attrs.field(default=32, validator=at_least(0))
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

"""Small test doubles (in the spirit of Lightning's ``BoringModel``).

:class:`BoringMethod` is a complete, trainable method on :class:`~maploc.data.synthetic.SyntheticRoom`
that regresses the camera position from a thumbnail with one linear layer. It has no batch norm and
no dropout, so its training is exactly reproducible and DDP with N processes equals one process with
the same global batch (up to float reduction order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from maploc.api import Dataset, Method, RunContext
from maploc.config import DataConfig, TrainConfig
from maploc.types import Pose, PoseEstimate, Sample

__all__ = ["BoringConfig", "BoringMethod"]


@attrs.frozen(kw_only=True)
class BoringConfig:
    thumbnail: int = 8
    train: TrainConfig = TrainConfig(epochs=2, batch_size=8, lr=1e-2, log_every=1)
    data: DataConfig = DataConfig()


class _Regressor(nn.Module):
    def __init__(self, thumbnail: int) -> None:
        super().__init__()
        self.thumbnail = thumbnail
        self.linear = nn.Linear(3 * thumbnail * thumbnail, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(images, self.thumbnail).flatten(1)
        return self.linear(x)


class BoringMethod(Method[BoringConfig]):
    """A linear camera-position regressor; the orientation is taken from the first map image."""

    name: ClassVar[str] = "boring"
    Config = BoringConfig
    default_dataset: ClassVar[str] = "synthetic-room"

    def configure_model(self) -> nn.Module:
        return _Regressor(self.config.thumbnail)

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.loss(model(batch["image"]), batch)

    def validation_step(self, model: nn.Module, batch: Any, batch_idx: int) -> dict[str, float]:
        return {"val_loss": float(self.loss(model(batch["image"]), batch))}

    def loss(self, outputs: torch.Tensor, batch: Any) -> torch.Tensor:
        return F.mse_loss(outputs, batch["t_cam2world"])

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        self.R = map_data[0].T_cam2world.R  # type: ignore[union-attr]

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        assert self.model is not None
        device = next(self.model.parameters()).device
        with torch.no_grad():
            t = self.model(torch.stack([q.image for q in queries]).to(device)).cpu()
        return [PoseEstimate(T_cam2world=Pose(R=self.R, t=t[i])) for i in range(len(queries))]

"""The ``template`` method: a tiny absolute pose regressor.

Reference: Kendall, Grimes & Cipolla, "PoseNet: A Convolutional Network for Real-Time 6-DOF Camera
Relocalization", ICCV 2015 (loss of Sec. 3.1: ``||t - t_gt|| + beta * ||q - q_gt / ||q_gt||| ``).
This is a teaching example, not a competitive method.
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
from maploc.geometry.rotation import matrix_to_quaternion
from maploc.types import Pose, PoseEstimate, Sample


@attrs.frozen(kw_only=True)
class TemplateConfig:
    """Config of ``template``.

    Attributes:
        width: channels of the first convolution (doubled at each of the 3 stages).
        beta: weight of the quaternion term of the loss (PoseNet's beta).
        train: generic training settings.
        data: dataset options.
    """

    width: int = 8
    beta: float = 1.0
    train: TrainConfig = TrainConfig(epochs=5, batch_size=8, lr=3e-3, log_every=5)
    data: DataConfig = DataConfig(image_height=48)


class PoseRegressor(nn.Module):
    """``(B, 3, H, W)`` images in [0, 1] -> ``(B, 3)`` position (metres) and ``(B, 4)`` unit quaternion wxyz."""

    def __init__(self, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(3):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, 7)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.features(images))
        return out[:, :3], F.normalize(out[:, 3:], dim=1)


class TemplateMethod(Method[TemplateConfig]):
    """PoseNet-style regression of ``T_cam2world`` from a single image."""

    name: ClassVar[str] = "template"
    Config = TemplateConfig
    presets_package: ClassVar[str | None] = "maploc_template.presets"
    default_dataset: ClassVar[str] = "synthetic-room"
    localize_batch_size: ClassVar[int] = 8

    def configure_model(self) -> nn.Module:
        return PoseRegressor(self.config.width)

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.loss(model(batch["image"]), batch)

    def validation_step(self, model: nn.Module, batch: Any, batch_idx: int) -> dict[str, float]:
        return {"val_loss": float(self.loss(model(batch["image"]), batch))}

    def loss(self, outputs: Any, batch: Any) -> torch.Tensor:
        t, q = outputs
        q_gt = matrix_to_quaternion(batch["R_cam2world"])
        # q and -q are the same rotation: compare with the closer sign
        q_err = torch.minimum((q - q_gt).norm(dim=1), (q + q_gt).norm(dim=1))
        return (t - batch["t_cam2world"]).norm(dim=1).mean() + self.config.beta * q_err.mean()

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Absolute pose regression needs no map; the map split is only checked to be non-empty."""
        if len(map_data) == 0:
            raise ValueError("the map split is empty")

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """One ``T_cam2world`` per query. The core writes them to ``RUN/predictions/template.txt`` and
        scores that file beside the ``coverage:`` reference row (the nearest mapping camera)."""
        assert self.model is not None, "configure_model was not called"
        device = next(self.model.parameters()).device
        with torch.no_grad():
            t, q = self.model(torch.stack([s.image for s in queries]).to(device))
        pose = Pose.from_quaternion(q.cpu(), t.cpu())
        return [PoseEstimate(T_cam2world=pose[i]) for i in range(len(queries))]

"""The typed contract between a method and the engine (structural: any object that fits works).

:class:`TrainableMethod` is what :meth:`maploc.engine.Engine.fit` needs from a method (every
:class:`maploc.api.Method` satisfies it); :class:`EngineLike` is what :meth:`maploc.api.Method.fit`
may use of the engine (a multi-stage method calls ``engine.fit`` once per stage).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from maploc.config import TrainConfig
    from maploc.engine.engine import EngineConfig, FitResult

__all__ = ["HasTrainConfig", "TrainableMethod", "EngineLike"]


class HasTrainConfig(Protocol):
    """A method config with the engine's ``train`` section."""

    @property
    def train(self) -> TrainConfig: ...


@runtime_checkable
class TrainableMethod(Protocol):
    """What the engine calls on a method during ``fit``/``validate``."""

    name: str
    config: Any  # HasTrainConfig; typed loosely so frozen attrs configs satisfy it
    model: nn.Module | None

    def configure_optimizers(self, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]: ...

    def collate(self, samples: list[Any]) -> Any: ...

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> torch.Tensor | Mapping[str, Any] | None: ...

    def validation_step(self, model: nn.Module, batch: Any, batch_idx: int) -> Mapping[str, float]: ...


@runtime_checkable
class EngineLike(Protocol):
    """What a method may use of the engine inside :meth:`maploc.api.Method.fit`."""

    config: EngineConfig
    run_dir: Path
    resume_from: Path | None

    @property
    def device(self) -> torch.device: ...

    @property
    def is_global_zero(self) -> bool: ...

    @property
    def world_size(self) -> int: ...

    def fit(self, method: TrainableMethod, train_data: Any, val_data: Any = None, resume: Path | None = None) -> FitResult: ...

    def barrier(self) -> None: ...

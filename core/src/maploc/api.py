"""The interfaces every maploc component implements.

A *method* (``Method``) binds an ``Encoder`` (images to features), a ``Matcher`` (query features
against the map representation) and a ``PoseSolver`` (matches to a pose) under one typed config. The
generic engine (:mod:`maploc.engine`) owns devices, precision, distribution, checkpoints, logging and
seeds; a method only says what to compute, in the split of Lightning's LightningModule / Trainer.

Life of a run (``maploc run``)::

    method = MethodCls(config)
    model = method.configure_model()          # None for methods that do not learn
    engine.fit(method, train_data, val_data)  # only if the method trains (see Method.trains)
    method.build_map(map_data)                # index the reference data
    estimates = method.localize(batch)        # query samples -> PoseEstimates, batch by batch
    metrics = evaluate(...)                   # the metric family named by Method.metric_family

Every optional step has a documented default that does nothing (or the obvious thing).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn

from maploc.types import Correspondences, PoseEstimate, Sample

__all__ = ["Dataset", "Encoder", "Matcher", "PoseSolver", "Method", "ConfigT", "SPLITS"]

#: The splits every dataset understands: ``train`` (learning), ``map`` (the reference / database
#: images indexed by ``build_map``) and ``query`` (the images to localize and evaluate).
SPLITS: tuple[str, ...] = ("train", "map", "query")

ConfigT = TypeVar("ConfigT")


class Dataset(torch.utils.data.Dataset, abc.ABC):
    """A split of a localization dataset: an indexable sequence of :class:`~maploc.types.Sample`.

    Subclasses are registered in the ``maploc.datasets`` entry-point group and constructed as
    ``DatasetCls(root, split, **options)``.

    Args:
        root: the dataset folder (its layout is documented by each subclass).
        split: one of :data:`SPLITS`.
        image_height: if given, images (and intrinsics, and depth) are resized to this height.

    Raises:
        maploc.errors.DataError: if ``root`` is missing or a file in it is missing or malformed;
            the message names the file (and the line, for text files).
        ValueError: for an unknown split.

    Class attributes:
        name: the entry-point name.
        default_sample: the name of the sample-data entry (see ``maploc data list``) used when no
            root is given, or ``None`` if the dataset has none.
        has_depth: whether samples carry depth maps.
        needs_root: ``False`` for datasets generated without files (``root`` is then ignored).
    """

    name: ClassVar[str] = ""
    default_sample: ClassVar[str | None] = None
    has_depth: ClassVar[bool] = False
    needs_root: ClassVar[bool] = True

    def __init__(self, root: Path, split: str, *, image_height: int | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.image_height = image_height

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of samples in this split."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Sample:
        """The ``index``-th sample. Raises ``IndexError`` past the end."""

    def names(self) -> list[str]:
        """The sample names in order (default: loads every sample; override when cheaper)."""
        return [self[i].name for i in range(len(self))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


class Encoder(nn.Module, abc.ABC):
    """A network from images to features (scene coordinates, descriptors, BEV, embeddings).

    ``forward(images)`` takes ``(B, 3, H, W)`` float images in ``[0, 1]`` and returns a tensor or a
    dict of tensors whose shapes each subclass documents.

    Class attributes:
        output_stride: pixels of input per output cell (1 for global descriptors' input).
    """

    output_stride: ClassVar[int] = 1

    @abc.abstractmethod
    def forward(self, images: Tensor) -> Tensor | Mapping[str, Tensor]:
        ...


class Matcher(abc.ABC):
    """Query features x map representation -> correspondences, similarities or a score volume."""

    @abc.abstractmethod
    def match(self, query_features: Any, map_representation: Any) -> Any:
        """Matches one batch of query features against the map; the return type is documented by
        each subclass (e.g. :class:`~maploc.types.Correspondences`, a ``(B, M)`` similarity
        matrix, or a ``(B, yaw, H, W)`` score volume)."""


class PoseSolver(abc.ABC):
    """Matches -> :class:`~maploc.types.PoseEstimate`.

    A solver must never raise on a degenerate input (too few matches, NaN coordinates): it returns
    ``PoseEstimate.failed(...)`` so the query is counted in ``num_failed``.
    """

    @abc.abstractmethod
    def solve(self, correspondences: Sequence[Correspondences]) -> list[PoseEstimate]:
        """Solves a batch of queries, one :class:`PoseEstimate` (``T_cam2world``) per entry."""


class Method(abc.ABC, Generic[ConfigT]):
    """A localization method: binds an encoder, a matcher and a solver under a typed config.

    Subclasses are registered in the ``maploc.methods`` entry-point group.

    Class attributes:
        name: the entry-point name.
        Config: the frozen attrs config class; ``Config()`` must be the ``default`` preset.
        presets_package: the package holding named presets as ``<name>.yaml`` (read with
            ``importlib.resources``), or ``None``.
        default_dataset: dataset entry-point name used when ``--dataset`` is not given.
        metric_family: which metrics evaluate this method's estimates: ``pose6dof``, ``se2``,
            ``retrieval`` or ``sequence``.
        localize_batch_size: how many query samples ``localize`` receives at once.
        conformance_dataset / conformance_overrides: what :mod:`maploc.testing.conformance` runs
            the method on (a small, file-free dataset and settings that make it fast).

    Attributes:
        config: the resolved config.
        model: the trainable ``nn.Module`` (``None`` for methods that do not learn). Set by
            :meth:`configure_model`; the engine replaces it with the trained weights after ``fit``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    presets_package: ClassVar[str | None] = None
    default_dataset: ClassVar[str] = "7scenes"
    metric_family: ClassVar[str] = "pose6dof"
    localize_batch_size: ClassVar[int] = 1
    #: dataset and overrides the conformance suite uses to exercise the method quickly (no fetch).
    conformance_dataset: ClassVar[str] = "synthetic-room"
    conformance_overrides: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self.model: nn.Module | None = None

    # -- training: optional; the defaults make a method that does not learn ---------------------
    @property
    def trains(self) -> bool:
        """Whether ``fit`` has work to do: a model exists and the config asks for steps/epochs."""
        train = getattr(self.config, "train", None)
        return self.model is not None and train is not None and (train.epochs > 0 or train.max_steps > 0)

    def configure_model(self) -> nn.Module | None:
        """Builds ``self.model`` (called once, after seeding). Default: no model (returns ``None``)."""
        return self.model

    def configure_optimizers(self, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
        """The optimizer and an optional LR scheduler (stepped once per optimizer step).

        Default: Adam with ``config.train.lr`` and no scheduler.
        """
        return torch.optim.Adam(model.parameters(), lr=self.config.train.lr), None  # type: ignore[attr-defined]

    def collate(self, samples: list[Sample]) -> Any:
        """Turns a list of samples into a training batch. Default: :func:`maploc.data.collate`."""
        from maploc.data.collate import collate

        return collate(samples)

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> Tensor:
        """Returns the scalar loss of one batch (the engine does backward and the optimizer step).

        Default: ``self.loss(model(batch), batch)``.
        """
        return self.loss(model(batch), batch)

    def validation_step(self, model: nn.Module, batch: Any, batch_idx: int) -> Mapping[str, float]:
        """Validation metrics of one batch, averaged by the engine. Default: ``{"val_loss": loss}``."""
        with torch.no_grad():
            return {"val_loss": float(self.loss(model(batch), batch))}

    def loss(self, outputs: Any, batch: Any) -> Tensor:
        """The training objective. Default: raises ``NotImplementedError`` (only needed to train)."""
        raise NotImplementedError(f"{type(self).__name__} does not define a loss")

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None) -> Any:
        """Training; ``maploc run`` / ``train`` call this. Default: the generic engine loop
        (:meth:`maploc.engine.Engine.fit`) when :attr:`trains`, else nothing.

        Returns:
            the engine's ``FitResult`` (or ``None`` when nothing was trained). Overrides that call
            ``engine.fit`` several times (e.g. training stages) should return the last result.
        """
        if self.trains:
            return engine.fit(self, train_data, val_data)
        return None

    # -- mapping and localization: required ----------------------------------------------------
    @abc.abstractmethod
    def build_map(self, map_data: Dataset) -> None:
        """Indexes the reference data (database descriptors, scene statistics, map rasters...)."""

    @abc.abstractmethod
    def localize(self, queries: Sequence[Sample]) -> list[PoseEstimate]:
        """Localizes a batch of at most ``localize_batch_size`` queries, one estimate each.

        Must not raise on a hard query: return ``PoseEstimate.failed()`` instead.
        """

    # -- reporting: optional ---------------------------------------------------------------------
    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """Writes method-specific plots into ``run_dir``; returns their paths. Default: none."""
        return []

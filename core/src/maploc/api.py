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
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import attrs
import torch
from torch import Tensor, nn

from maploc.types import Correspondences, Pose, Pose2, PoseEstimate, Sample

if TYPE_CHECKING:
    from maploc.engine.engine import FitResult
    from maploc.engine.protocols import EngineLike

__all__ = [
    "Dataset", "Encoder", "Matcher", "PoseSolver", "Method", "ConfigT", "SPLITS", "ALL_SPLITS",
    "NoOptions", "SampleMeta", "StepOutput", "RunContext", "Variant",
]

#: The splits every dataset understands: ``train`` (learning), ``map`` (the reference / database
#: images indexed by ``build_map``) and ``query`` (the images to localize and evaluate).
SPLITS: tuple[str, ...] = ("train", "map", "query")
#: ``SPLITS`` plus the optional ``val`` split (validation during training) of datasets that have one.
ALL_SPLITS: tuple[str, ...] = (*SPLITS, "val")


@attrs.frozen(kw_only=True)
class NoOptions:
    """The options class of a dataset that takes none (``-o data.<key>=...`` is then an error)."""


@attrs.frozen(kw_only=True, eq=False)
class SampleMeta:
    """What a sample is, without its pixels: :meth:`Dataset.metadata` returns this.

    Attributes:
        name: the sample's unique name in its dataset.
        T_cam2world: camera-to-world pose in metres (``None`` when unknown).
        pose2: map-frame pose (x, y metres, yaw radians), or ``None``.
        sequence: sequence (traversal) name.
        timestamp: seconds, or the frame index.
        condition: the capture condition metrics are grouped by (see :attr:`maploc.types.Sample.condition`:
            the dataset's, else the sequence, else ``"default"``).
    """

    name: str
    T_cam2world: Pose | None = None
    pose2: Pose2 | None = None
    sequence: str = ""
    timestamp: float = 0.0
    condition: str = ""

    def __attrs_post_init__(self) -> None:
        from maploc.types import condition_or_default

        object.__setattr__(self, "condition", condition_or_default(self.condition, self.sequence))

    @classmethod
    def of(cls, sample: Sample) -> SampleMeta:
        return cls(name=sample.name, T_cam2world=sample.T_cam2world, pose2=sample.pose2,
                   sequence=sample.sequence, timestamp=sample.timestamp, condition=sample.condition)


#: What :meth:`Method.training_step` may return: the loss; a mapping with the key ``"loss"`` and
#: further scalars to log (``{"loss": l, "mining/hard_fraction": 0.4}`` logs ``train/mining/...``);
#: or ``None`` to skip the optimizer step for this batch (the engine counts skipped steps).
StepOutput = Tensor | Mapping[str, Any] | None

ConfigT = TypeVar("ConfigT")


@attrs.frozen(kw_only=True)
class RunContext:
    """What the runner hands to :meth:`Method.fit`, :meth:`Method.build_map` and :meth:`Method.localize`.

    A method never reads environment variables or command-line arguments: everything about the run
    it may need is here. A method driven by hand (tests, notebooks) gets the default context: no
    run folder, the CPU, seed 0.

    Attributes:
        run_dir: the folder of the run in progress; a method writes its own artefacts (an index,
            caches, a saved split) under it. ``None`` when driven by hand.
        source_run_dir: for ``maploc eval --checkpoint RUN/checkpoints/X.ckpt``, the folder of the
            run that wrote the checkpoint (``RUN``), so a method can reuse what that run saved beside
            its weights (a map index, a teacher). ``None`` when training or driven by hand.
        device: the torch device string the engine put the model on (``"cpu"``, ``"cuda:0"``).
        seed: the run's global seed (the engine has seeded torch, numpy and random with it).
        logger: where a method reports progress (``logging.getLogger("maploc.method.<name>")``).
        leave_one_out: the dataset is a leave-one-out split (:attr:`Dataset.leave_one_out`): the map and the
            query split hold the same images, and the method must never use a query's own image (the map entry
            of the same ``name``) for that query: not retrieved, not matched, and no map point made with an
            observation of it. Only methods with :attr:`Method.supports_leave_one_out` are run on such data.
    """

    run_dir: Path | None = None
    source_run_dir: Path | None = None
    device: str = "cpu"
    seed: int = 0
    logger: logging.Logger = attrs.field(factory=lambda: logging.getLogger("maploc.method"), eq=False)
    leave_one_out: bool = False


@attrs.frozen(kw_only=True)
class Variant:
    """A further set of estimates a method contributes beside its own (see :meth:`Method.variants`).

    The core writes it to ``RUN/predictions/<name>.txt`` and scores it with the same code, in the
    same table.

    Attributes:
        estimates: one estimate per evaluated query, in query order.
        baseline: ``True`` for a baseline (e.g. bev_osm's road snap, the single-frame matcher of
            SeqSLAM); ``False`` for another output of the method itself (e.g. fused over frames).
        description: one line for the report (what it is, what inputs it gets).
    """

    estimates: Sequence[PoseEstimate]
    baseline: bool = False
    description: str = ""


class Dataset(torch.utils.data.Dataset, abc.ABC):
    """A split of a localization dataset: an indexable sequence of :class:`~maploc.types.Sample`.

    Subclasses are registered in the ``maploc.datasets`` entry-point group and constructed as
    ``DatasetCls(root, split, image_height=..., options=DatasetCls.Options(...))``.

    Args:
        root: the dataset folder (its layout is documented by each subclass); ``None`` for a dataset that
            generates its samples (``needs_root = False``). Re-open another split with
            ``type(data)(data.root, split, ...)``.
        split: one of :data:`SPLITS` (or ``val`` when ``"val" in splits``).
        image_height: if given, images (and intrinsics, and depth) are resized to this height.
        options: an instance of :attr:`Options` (``None``: its defaults). Users set them with
            ``-o data.<key>=value``; ``maploc config show --dataset NAME`` lists them.

    Raises:
        maploc.errors.DataError: if ``root`` is missing or a file in it is missing or malformed;
            the message names the file (and the line, for text files).
        ValueError: for an unknown split.

    Class attributes:
        name: the entry-point name.
        default_sample: the name of the sample-data entry (see ``maploc data list``) used when no
            root is given, or ``None`` if the dataset has none.
        has_depth: whether samples carry depth maps.
        needs_root: ``False`` for datasets that can generate their samples without files (``maploc run``
            then passes ``root=None``). Such a dataset given a root reads it (sim-city: a rendered folder)
            or refuses it with :func:`maploc.data.io.refuse_root`; it never ignores it.
        splits: the splits this dataset has; ``maploc run`` validates during training on ``val``
            when it is listed.
        Options: a frozen attrs class of the dataset's own options (strict keys, typed, range-checked
            by validators); :class:`NoOptions` by default.

    Attributes:
        leave_one_out: ``True`` for a leave-one-out split (e.g. ``strecha`` with ``split=loo``): the map
            and the query split hold the same images and every image is localized in turn against a map
            made from all the others. The runner then passes ``RunContext(leave_one_out=True)`` and refuses
            a method without :attr:`Method.supports_leave_one_out`; the core's coverage row leaves the query's
            own image out. ``False`` by default (set per instance by datasets that offer it).
    """

    leave_one_out: bool = False

    name: ClassVar[str] = ""
    default_sample: ClassVar[str | None] = None
    has_depth: ClassVar[bool] = False
    needs_root: ClassVar[bool] = True
    splits: ClassVar[tuple[str, ...]] = SPLITS
    Options: ClassVar[type] = NoOptions

    def __init__(
        self, root: Path | None, split: str, *, image_height: int | None = None, options: Any = None
    ) -> None:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(self.splits)}")
        if options is None:
            options = self.Options()
        elif not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} expects options of type {self.Options.__name__}, got {options!r}")
        self.root: Path | None = Path(root) if root is not None else None
        self.split = split
        self.image_height = image_height
        self.options = options

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of samples in this split."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Sample:
        """The ``index``-th sample. Raises ``IndexError`` past the end."""

    def names(self) -> list[str]:
        """The sample names in order (default: from :meth:`metadata`)."""
        return [self.metadata(i).name for i in range(len(self))]

    def metadata(self, index: int) -> SampleMeta:
        """Name, poses, sequence and timestamp of sample ``index`` without decoding its image.

        Default: loads the sample (override it where the poses can be read alone; retrieval and
        sequence evaluation call it for every map image).
        """
        return SampleMeta.of(self[index])

    def validate(self, progress: Callable[[int], None] | None = None) -> None:
        """Checks every file of this split before any work starts (``maploc run`` calls it).

        Default: loads every sample (decoding images, parsing poses and calibrations) and checks
        that poses are finite. Override with something cheaper (image headers only) for large
        splits.

        Args:
            progress: called with the number of samples checked so far (for a progress bar).

        Raises:
            maploc.errors.DataError: naming the first broken file or sample.
        """
        from maploc.errors import DataError

        for i in range(len(self)):
            try:
                sample = self[i]
            except DataError:
                raise
            except (OSError, ValueError, RuntimeError) as e:
                raise DataError(f"{self!r}: sample {i} cannot be read: {e}") from None
            for what, pose in (("T_cam2world", sample.T_cam2world), ("pose2", sample.pose2)):
                if pose is not None and not _pose_finite(pose):
                    raise DataError(f"{self!r}: sample {sample.name or i} has a non-finite {what}")
            if progress is not None:
                progress(i + 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


def _pose_finite(pose: Pose | Pose2) -> bool:
    return bool(torch.isfinite(pose.matrix()).all())


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

    Subclasses are registered in the ``maploc.methods`` entry-point group. A method computes
    estimates; the core writes them to ``RUN/predictions/`` and scores them (``maploc evaluate``):
    a method never computes its own recalls, chance levels or per-condition tables.

    Class attributes (each one line of contract):
        name: the entry-point name.
        Config: the frozen attrs config class; ``Config()`` must be the ``default`` preset.
        presets_package: the package holding named presets as ``<name>.yaml``, or ``None``.
        default_dataset: dataset entry-point name used when ``--dataset`` is not given.
        metric_family: how the core scores the estimates: ``pose6dof`` (``T_cam2world``), ``se2``
            (``pose2``), ``retrieval`` or ``sequence`` (``retrieval``).
        localize_batch_size: how many query samples :meth:`localize` receives at once.
        dataset_defaults: dataset options the method uses by default, per dataset name, unless set.
        conformance_dataset / conformance_overrides: what :mod:`maploc.testing.conformance` runs
            the method on (a small, file-free dataset and settings that make it fast).
        supports_leave_one_out: the method honours ``RunContext.leave_one_out`` (never uses a query's
            own image for that query), so it may run on leave-one-out datasets.

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
    dataset_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: dataset and overrides the conformance suite uses to exercise the method quickly (no fetch).
    conformance_dataset: ClassVar[str] = "synthetic-room"
    conformance_overrides: ClassVar[tuple[str, ...]] = ()
    supports_leave_one_out: ClassVar[bool] = False

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

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> StepOutput:
        """The scalar loss of one batch (the engine does backward and the optimizer step).

        Returns:
            a scalar tensor; or a mapping with ``"loss"`` and further float scalars that the
            engine logs as ``train/<name>`` (TensorBoard and ``metrics.jsonl``), e.g. mining
            statistics; or ``None`` to skip the optimizer step for this batch (e.g. every image
            of it failed RANSAC). Skipped steps are counted in ``FitResult.skipped_steps``.

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

    def fit(
        self, engine: EngineLike, train_data: Dataset, val_data: Dataset | None = None,
        context: RunContext = RunContext(),
    ) -> FitResult | None:
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
    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Indexes the reference data (database descriptors, scene statistics, map rasters...)."""

    @abc.abstractmethod
    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """Localizes a batch of at most ``localize_batch_size`` queries, one estimate each.

        Must not raise on a hard query: return ``PoseEstimate.failed()`` instead.
        """

    # -- further outputs and reporting: optional -------------------------------------------------
    def variants(
        self, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate], context: RunContext = RunContext(),
    ) -> Mapping[str, Variant]:
        """Further named estimates (fused outputs, baselines) the core writes and scores beside the
        method's own, in the same table. Called once after every query was localized.

        Args:
            queries: the evaluated queries' metadata, in order.
            estimates: the method's estimates, in order.
            context: the run context.

        Returns:
            ``name -> Variant`` (names: lower case, ``[a-z0-9_]``; not the method's name, not
            ``chance``, ``prior``, ``coverage``). Default: none.
        """
        return {}

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        """Method-specific ``(title, body)`` sections below the core's tables (e.g. a training-stage
        summary); never a recall table, which is the core's. Default: none."""
        return []

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """Writes method-specific plots into ``run_dir``; returns their paths. Default: none."""
        return []

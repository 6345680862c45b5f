"""The ``netvlad`` (teacher) and ``mobilenetvlad`` (distilled student) methods.

``netvlad``: Arandjelović et al., "NetVLAD", CVPR 2016: k-means initialised NetVLAD on a timm backbone, trained
with the weakly supervised triplet ranking loss (Sec. 4) and hard negatives mined from a descriptor cache; PCA
whitening learned on the map (Sec. 5.1).

``mobilenetvlad``: Sarlin et al., "Leveraging Deep Visual Descriptors for Hierarchical Efficient Localization",
CoRL 2018, Sec. III-A: MobileNetV2 (x0.35) + NetVLAD + a linear layer trained to regress the teacher's whitened
global descriptors on unlabelled images (L2 distillation loss); no labels are needed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from maploc.api import Dataset, RunContext, StepOutput
from maploc.data.split import SpatialSplit
from maploc.errors import CheckpointError, ConfigError

from .config import MobileNetVLADConfig, NetVLADConfig
from .model import GlobalDescriptorNet
from .retrieval import RetrievalMethod
from .training import IndexDataset, TrainingImages, load_training_images, mine_triplets, triplet_ranking_loss

__all__ = ["NetVLADMethod", "MobileNetVLADMethod", "build_teacher"]

log = logging.getLogger(__name__)

#: conformance: a tiny sim-city render (one traversal by day and night, 12 frames 4 m apart, 64x48 px; a 44 m route
#: is too short for a spatial split guarding 25 m, so none: tests/test_eval_reuse.py runs the split end to end).
_CONFORMANCE = (
    "split.block_size_m=0", "data.image_height=48", "encode_batch_size=8", "data.frames=12", "data.traversals=1",
    "data.conditions=day,night", "data.width=64", "data.height=48",
)


def training_sources(train_data: Dataset, split: SpatialSplit | None, other_sequences: bool) -> list[Dataset]:
    """The training split, plus, when there is a spatial split and ``other_sequences``, the dataset's ``query``
    split (sim-city: the other traversals and conditions): only their images the split allows for training are
    used (:func:`.training.load_training_images`), so test and val blocks stay unseen."""
    sources = [train_data]
    if split is not None and other_sequences:
        try:
            other = type(train_data)(train_data.root, "query", image_height=train_data.image_height,
                                     options=train_data.options)
        except (ValueError, TypeError, ConfigError) as e:
            log.info("training on the training split only (%s)", e)
        else:
            if len(other):
                sources.append(other)
    return sources


def build_teacher(config: NetVLADConfig) -> GlobalDescriptorNet:
    m = config.model
    return GlobalDescriptorNet(m.backbone, m.layer, m.num_clusters, input_norm=m.input_norm)


class NetVLADMethod(RetrievalMethod):
    """NetVLAD teacher: triplet-trained global descriptors, PCA-whitened on the map, searched with faiss."""

    name: ClassVar[str] = "netvlad"
    Config = NetVLADConfig
    presets_package: ClassVar[str | None] = "maploc_netvlad.presets.netvlad"
    whiten_on_map: ClassVar[bool] = True
    conformance_overrides: ClassVar[tuple[str, ...]] = (
        *_CONFORMANCE, "mining.num_negatives=2", "model.num_clusters=8", "train.batch_size=2",
    )

    def __init__(self, config: NetVLADConfig) -> None:
        super().__init__(config)
        self.train_images: TrainingImages | None = None
        self.cache: torch.Tensor | None = None
        self.cache_step = -1
        self.generator = torch.Generator().manual_seed(0)

    def configure_model(self) -> nn.Module:
        return build_teacher(self.config)

    def collate(self, samples: list[Any]) -> Any:
        return torch.as_tensor(samples, dtype=torch.long)

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None,
            context: RunContext = RunContext(), split: SpatialSplit | None | str = "build") -> Any:
        """Builds the spatial split (saved as ``context.run_dir / "split.json"``), loads the images it allows for
        training, initialises the NetVLAD clusters by k-means on them, and trains with the triplet ranking loss
        (the engine's loop calls :meth:`training_step`).

        Args:
            engine, train_data, val_data, context: as :meth:`maploc.api.Method.fit` (``val_data`` is not used).
            split: ``"build"`` (default): build the split from the config and the map split of ``train_data``'s
                dataset; or the split to train on (a student's: see :class:`MobileNetVLADMethod`), or ``None``.

        Raises:
            ConfigError: the split leaves no image, a guard below the success radius, or mining radii that are
                inconsistent.
            DataError: training images of different sizes or without poses; too few blocks for a split.
        """
        if not self.trains:
            return None
        cfg = self.config
        if cfg.mining.positive_radius_m >= cfg.mining.negative_radius_m:
            raise ConfigError(f"mining.positive_radius_m ({cfg.mining.positive_radius_m}) must be < "
                              f"mining.negative_radius_m ({cfg.mining.negative_radius_m})")
        self.context = context
        self.split = self._make_split(train_data, context) if isinstance(split, str) else split
        self.train_images = load_training_images(
            training_sources(train_data, self.split, cfg.split.other_sequences), self.split)
        assert isinstance(self.model, GlobalDescriptorNet)
        self.model.to(engine.device)
        images = self.train_images.images.to(engine.device)
        # running statistics of the data before k-means: eval-mode features (k-means, the mining cache) must be
        # those train mode computes (a pretrained=False backbone starts with running mean 0 / variance 1)
        self.model.calibrate_batch_norm(images, cfg.encode_batch_size)
        self.model.init_clusters(images, seed=engine.config.seed)
        self.generator.manual_seed(engine.config.seed)
        result = engine.fit(self, IndexDataset(len(self.train_images.names)), None)
        self.fit_summary = {"training_images": len(self.train_images.names), "steps": result.steps,
                            "seconds": result.seconds}
        return result

    def _refresh_cache(self, model: nn.Module, step: int) -> None:
        assert self.train_images is not None
        was = model.training
        model.eval()
        out = []
        device = next(model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(self.train_images.names), self.config.encode_batch_size):
                out.append(model(self.train_images.images[start:start + self.config.encode_batch_size].to(device)))
        model.train(was)
        self.cache = torch.cat(out).float().cpu()
        self.cache_step = step

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> StepOutput:
        """One step of the ranking loss (Eq. 7) on mined triplets; returns the loss and ``mining/*`` scalars, or
        ``None`` when no anchor of the batch has both a positive and enough negatives."""
        assert self.train_images is not None, "fit() loads the training images"
        m = self.config.mining
        if self.cache is None or batch_idx - self.cache_step >= m.refresh_every:
            self._refresh_cache(model, batch_idx)
        assert self.cache is not None
        mined = mine_triplets(batch.cpu(), self.cache, self.train_images.xyz, m.positive_radius_m,
                              m.negative_radius_m, m.num_negatives, m.negative_pool, m.margin, self.generator,
                              sequences=self.train_images.sequences)
        if len(mined.anchors) == 0:
            return None
        a, k = len(mined.anchors), m.num_negatives
        rows = torch.cat([mined.anchors, mined.positives, mined.negatives.flatten()])
        device = next(model.parameters()).device
        desc = model(self.train_images.images[rows].to(device))
        q, p, n = desc[:a], desc[a:2 * a], desc[2 * a:].view(a, k, -1)
        loss = triplet_ranking_loss(q, p, n, m.margin)
        stats = {f"mining/{key}": value for key, value in mined.stats.items()}
        stats["mining/cache_age_steps"] = float(batch_idx - self.cache_step)
        return {"loss": loss, **stats}


class MobileNetVLADMethod(RetrievalMethod):
    """MobileNetVLAD: a MobileNetV2 x0.35 + NetVLAD student distilled from a NetVLAD teacher."""

    name: ClassVar[str] = "mobilenetvlad"
    Config = MobileNetVLADConfig
    presets_package: ClassVar[str | None] = "maploc_netvlad.presets.mobilenetvlad"
    conformance_overrides: ClassVar[tuple[str, ...]] = (
        *_CONFORMANCE, "model.num_clusters=8", "model.descriptor_dim=16", "train.batch_size=4",
        "teacher.train.max_steps=2", "teacher.train.batch_size=2", "teacher.model.num_clusters=8",
        "teacher.mining.num_negatives=2",
    )

    def __init__(self, config: MobileNetVLADConfig) -> None:
        super().__init__(config)
        self.targets: torch.Tensor | None = None
        self.train_images: TrainingImages | None = None
        self.teacher: NetVLADMethod | None = None

    def configure_model(self) -> nn.Module:
        m = self.config.model
        return GlobalDescriptorNet(m.backbone, m.layer, m.num_clusters, projection_dim=m.descriptor_dim,
                                   input_norm=m.input_norm)

    def collate(self, samples: list[Any]) -> Any:
        return torch.as_tensor(samples, dtype=torch.long)

    def _load_teacher(self, path: str) -> NetVLADMethod:
        from maploc.config import structure
        from maploc.engine.checkpoint import load_checkpoint

        state = load_checkpoint(path)
        if state.get("method") != "netvlad":
            raise CheckpointError(f"teacher_checkpoint {path} holds method {state.get('method')!r}, not 'netvlad'")
        try:
            config = structure(NetVLADConfig, state["config"])
        except Exception as e:  # noqa: BLE001 - any mismatch of the saved config
            raise CheckpointError(f"teacher_checkpoint {path}: its config does not fit netvlad ({e})") from None
        teacher = NetVLADMethod(config)
        teacher.model = teacher.configure_model()
        try:
            teacher.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"teacher_checkpoint {path} does not fit its model: {str(e).splitlines()[0]}") from None
        return teacher

    def _check_teacher_split(self, path: str) -> None:
        """A ``teacher_checkpoint``'s run must have trained on this run's split (or on other data): its
        ``split.json``, when its run folder holds one, must equal this run's split.

        Raises:
            ConfigError: the teacher's run saved another split (it may have trained on this run's test blocks).
        """
        from .split import load_split

        run = Path(path).resolve().parent.parent
        theirs = load_split(run)
        if theirs is None:
            log.warning("teacher_checkpoint %s: its run folder %s holds no split.json; make sure the teacher never "
                        "trained on this run's test blocks (%s)", path, run,
                        self.split.describe() if self.split is not None else "no split")
        elif theirs != self.split:
            raise ConfigError(
                f"teacher_checkpoint {path} was trained with another spatial split ({theirs.describe()}) than this "
                f"run's ({self.split.describe() if self.split is not None else 'none'}): the teacher may have "
                "trained on this run's test blocks; use the same split.* options as the teacher's run")

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None,
            context: RunContext = RunContext()) -> Any:
        """Builds the spatial split (saved as ``context.run_dir / "split.json"``); gets the teacher
        (``teacher_checkpoint``, whose run must have used the same split; or trains one first on this split and
        keeps its checkpoint as ``RUN/teacher.ckpt``); learns the teacher's PCA whitening on the training images,
        and regresses the teacher's whitened descriptors (zero-padded to ``model.descriptor_dim``) with the
        student, on the images the split allows for training.

        Raises:
            ConfigError: as :meth:`NetVLADMethod.fit`; a teacher checkpoint trained on another split.
            CheckpointError: an unusable ``teacher_checkpoint``.
        """
        if not self.trains:
            return None
        cfg = self.config
        self.context = context
        self.split = self._make_split(train_data, context)
        if cfg.teacher_checkpoint:
            self._check_teacher_split(cfg.teacher_checkpoint)
            self.teacher = self._load_teacher(cfg.teacher_checkpoint)
            teacher_steps = 0
        else:
            self.teacher = NetVLADMethod(cfg.teacher)
            self.teacher.model = self.teacher.configure_model()
            result = self.teacher.fit(engine, train_data, None, context, split=self.split)
            teacher_steps = result.steps if result is not None else 0
            if result is not None and engine.is_global_zero:
                shutil.copyfile(result.checkpoint, engine.run_dir / "teacher.ckpt")
        self.train_images = load_training_images(
            training_sources(train_data, self.split, cfg.split.other_sequences), self.split)
        teacher_model = self.teacher.model.to(engine.device).eval()
        with torch.no_grad():
            raw = torch.cat([teacher_model.vlad(self.train_images.images[s:s + cfg.encode_batch_size].to(engine.device))
                             for s in range(0, len(self.train_images.names), cfg.encode_batch_size)])
            kept = teacher_model.whitening.fit(raw, min(cfg.model.descriptor_dim, cfg.teacher.model.whitening_dim or
                                                        cfg.model.descriptor_dim))
            target = teacher_model.whitening(raw).float().cpu()
        padded = torch.zeros(len(target), cfg.model.descriptor_dim)
        padded[:, :kept] = target
        self.targets = padded
        assert isinstance(self.model, GlobalDescriptorNet)
        self.model.to(engine.device)
        images = self.train_images.images.to(engine.device)
        self.model.calibrate_batch_norm(images, cfg.encode_batch_size)
        self.model.init_clusters(images, seed=engine.config.seed)
        initial = float("nan")
        if cfg.model.projection_init == "ridge":
            initial = self.model.fit_projection(images, padded.to(engine.device), cfg.model.ridge, cfg.encode_batch_size)
            log.info("student projection initialised by ridge regression: cosine to the teacher %.3f on the %d "
                     "training images", initial, len(images))
        result = engine.fit(self, IndexDataset(len(self.train_images.names)), None)
        final = self.training_cosine(images, padded)
        self.fit_summary = {"training_images": len(self.train_images.names), "teacher_steps": teacher_steps,
                            "teacher_dims": kept, "steps": result.steps, "seconds": result.seconds,
                            "cosine_to_teacher_at_start": initial, "cosine_to_teacher_at_end": final}
        return result

    @torch.no_grad()
    def training_cosine(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        """Mean cosine of the student's (eval-mode) descriptors of ``images`` with ``targets`` (``(N, D)``)."""
        assert self.model is not None
        was = self.model.training
        self.model.eval()
        bs = self.config.encode_batch_size
        out = torch.cat([self.model(images[s:s + bs]).cpu() for s in range(0, len(images), bs)])
        self.model.train(was)
        return float((out * targets.cpu()).sum(dim=1).mean())

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> StepOutput:
        """L2 regression of the teacher's whitened descriptor: ``mean_b ||s_b - t_b||^2``."""
        assert self.train_images is not None and self.targets is not None, "fit() prepares the targets"
        device = next(model.parameters()).device
        if self.config.model.freeze_batch_norm:
            for m in model.modules():  # the engine put the model in train mode; keep the calibrated statistics
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        rows = batch.cpu()
        out = model(self.train_images.images[rows].to(device))
        target = self.targets[rows].to(device)
        loss = (out - target).square().sum(dim=1).mean()
        cosine = float((out.detach() * target).sum(dim=1).mean())
        return {"loss": loss, "distill/cosine_to_teacher": cosine}



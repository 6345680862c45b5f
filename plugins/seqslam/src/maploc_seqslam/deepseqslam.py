"""The ``deepseqslam`` method: DeepSeqSLAM (Chancán & Milford, "DeepSeqSLAM: A Trainable CNN+RNN
for Joint Global Description and Sequence-based Place Recognition", NeurIPS 2020 workshop ML4AD).

A per-frame CNN global descriptor (a timm backbone built with ``pretrained=False`` and trained
here, or any ``maploc.encoders`` entry such as ``netvlad``) feeds an LSTM over the last ``ds``
frames (Sec. 3: optionally with the frame's normalised position as an extra input, as the
reference code's positional option); a linear layer classifies the sequence's last frame among
the reference traversal's places (one class per reference frame). Training (Sec. 3-4 of the
paper: the reference traversal only) runs through the core engine on every window of the
reference traversal, with photometric augmentation (brightness, gamma, colour gains, noise)
standing in for the unseen query conditions, and soft labels over the places within
``label_tolerance`` frames (a departure from the paper's one-hot labels: adjacent frames show
nearly the same place, and one-hot targets did not train from scratch in our CPU budget); a window length between 1 and ``ds`` is drawn per
step so the same network also answers single frames and the start of a sequence.

Evaluation is the SeqSLAM one (:mod:`maploc_seqslam.common`): the match is the most probable
place; ``confidence = 1 - mu`` with the uniqueness ratio ``mu`` of the negative log-probabilities
(best over best outside ``uniqueness_window``); ``retrieval`` holds the top-5 places with scores
``1 - S / S_second``. The same network on the last frame alone (``ds = 1``) is the
``single_frame`` baseline (:meth:`DeepSeqSLAM.variants`).

Spatial split (``split`` section, :mod:`maploc_seqslam.split`; on by default, ``split.block_size_m=0`` turns it
off): the paper trains on the whole reference traversal and tests on other traversals of the same places, so every
test place was trained on. With the split, the run builds the same :class:`~maploc.data.split.SpatialSplit` as
``netvlad`` over the map frames' positions, saves it as ``RUN/split.json`` (the core then scores only the queries in
test blocks), and trains only on the reference frames the split allows for training, on windows whose frames are
all allowed (a window never crosses a held-out stretch: it restarts after one, as at a sequence start).

Matching, two modes:

* ``split.block_size_m=0`` (the paper): the classifier's logits. The match is the most probable place
  (scores = negative log-probabilities); the number of places (the classifier's size) is the reference
  traversal's length: ``fit`` and ``build_map`` build the network for it; evaluating a checkpoint, the network built
  by ``configure_model`` takes the classifier's size from the checkpoint's weights
  (:meth:`DeepSeqSLAMNet.load_state_dict`) and needs a map of that many frames.
* with a split: the classes are only the training frames, so the classifier cannot name a place of a test block
  (its logit was never trained towards a positive; softmax training pushes it down). The classifier is then only
  the training objective, and places are matched by **descriptors**: the LSTM's last output (``hidden_size``,
  L2-normalised, :meth:`DeepSeqSLAMNet.embed`) of the query's last ``<= ds`` frames against that of every map
  frame's window of ``<= ds`` map frames ending at it (same sequence); scores = Euclidean distance in ``[0, 2]``
  (lower = better), and the single-frame baseline compares windows of one frame. Any map then works, of any
  length, and the test-block frames are found without their classes. This is a departure from the paper's
  classification, forced by the held-out places.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maploc.api import Dataset, Method, RunContext, SampleMeta, Variant
from maploc.config import DataConfig, TrainConfig, at_least, greater_than, in_range
from maploc.data.photometric import INPUT_NORMS, InputNorm, normalize_images
from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError, DataError
from maploc.types import PoseEstimate, Sample
from maploc_seqslam import common
from maploc_seqslam.search import uniqueness
from maploc_seqslam.seqslam import StreamingMatcher, plot_all, single_frame_variants
from maploc_seqslam.split import SplitConfig, build_split, load_split, map_split_of, positions, save_split

__all__ = ["DeepSeqSLAM", "DeepSeqSLAMConfig", "DeepSeqSLAMNet"]


def _check_velocities(instance: Any, attribute: Any, value: float) -> None:
    if instance.v_min > instance.v_max:
        raise ConfigError(f"v_min ({instance.v_min}) must be <= v_max ({instance.v_max})")


@attrs.frozen(kw_only=True)
class DeepSeqSLAMConfig:
    """Config of ``deepseqslam``.

    Attributes:
        backbone: timm model name of the per-frame CNN (``pretrained=False``; its pooled features).
        encoder: a ``maploc.encoders`` entry point (e.g. ``netvlad``) used instead of ``backbone``
            when not empty; it must map ``(B, 3, H, W)`` images to ``(B, D)`` descriptors.
        descriptor_dim: the per-frame descriptor size after a linear projection.
        hidden_size: LSTM hidden units.
        ds: sequence length in frames.
        positional: add each frame's normalised index in its traversal to the LSTM input (the
            reference's positional option; only fair where query and reference indices are not
            aligned by construction, so off by default).
        augment: photometric augmentation strength in ``[0, 1]`` (0 = none).
        input_norm: input normalisation (:func:`maploc.data.photometric.normalize_images`): ``imagenet`` (fixed mean
            / std) or ``per_image`` (each image's channels standardised by their own statistics: exposure-invariant).
        block_size: consecutive places per training block; ``train.batch_size`` counts blocks, so a
            step classifies ``batch_size * block_size`` windows.
        label_tolerance: soft labels: the target is uniform over the places within this many
            frames of the true one (neighbouring frames show nearly the same place; 0 = one-hot).
        uniqueness_window: frames around the best place excluded from the second-best score.
        v_min / v_max: velocities (reference frames per window step) of the training windows, one drawn uniformly
            per block: a window of ``L`` frames ending at reference ``j`` holds references
            ``j - round(v * (L - 1 - t))``, ``t = 0 .. L-1`` (``v < 1`` repeats frames, ``v > 1`` skips some), so that
            the LSTM sees queries whose frame spacing differs from the map's (SeqSLAM's ``V_min .. V_max``, learnt
            instead of searched). ``1`` / ``1`` (default): consecutive frames only, as in the paper. The map's own
            windows (descriptor matching) are always consecutive frames.
        single_frame: also return ``ds = 1`` (the network on the last frame alone) as the
            ``single_frame`` baseline.
        split: the spatial train / val / test split (:class:`maploc_seqslam.split.SplitConfig`; ``block_size_m=0``
            = none, the paper's protocol and classifier matching; see the module docstring).
        train / data / eval: the generic sections.
    """

    backbone: str = "resnet10t"
    encoder: str = ""
    descriptor_dim: int = attrs.field(default=128, validator=at_least(1))
    hidden_size: int = attrs.field(default=256, validator=at_least(1))
    ds: int = attrs.field(default=10, validator=at_least(1))
    positional: bool = False
    augment: float = attrs.field(default=0.5, validator=in_range(0.0, 1.0))
    input_norm: InputNorm = attrs.field(default="imagenet", validator=attrs.validators.in_(INPUT_NORMS))
    block_size: int = attrs.field(default=4, validator=at_least(1))
    label_tolerance: int = attrs.field(default=2, validator=at_least(0))
    uniqueness_window: int = attrs.field(default=10, validator=at_least(0))
    v_min: float = attrs.field(default=1.0, validator=greater_than(0))
    v_max: float = attrs.field(default=1.0, validator=[greater_than(0), _check_velocities])
    single_frame: bool = True
    train: TrainConfig = TrainConfig(epochs=0, max_steps=600, batch_size=8, lr=1e-3, log_every=10,
                                     checkpoint_every=100)
    data: DataConfig = DataConfig(image_height=48)
    eval: common.EvalConfig = common.EvalConfig()
    split: SplitConfig = SplitConfig()


class DeepSeqSLAMNet(nn.Module):
    """CNN per frame -> LSTM over the sequence -> place logits.

    ``forward(images, positions=None)``: ``images (B, L, 3, H, W)`` in [0, 1], ``positions
    (B, L)`` normalised frame indices (only with ``positional``) -> ``(B, num_places)`` logits of
    the last frame's place. ``input_norm``: see :attr:`DeepSeqSLAMConfig.input_norm` (ValueError if unknown).

    Attributes:
        num_places: the classifier's number of places (reference frames).
        loaded: ``True`` once weights were loaded with :meth:`load_state_dict` (a checkpoint).
    """

    def __init__(self, num_places: int, backbone: str = "resnet10t", encoder: str = "", descriptor_dim: int = 128,
                 hidden_size: int = 256, positional: bool = False, input_norm: str = "imagenet") -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(map(repr, INPUT_NORMS))}; got {input_norm!r}")
        self.input_norm = input_norm
        if encoder:
            from maploc.plugins import load_component

            self.cnn = load_component("encoders", encoder)()
        else:
            import timm

            try:
                self.cnn = timm.create_model(backbone, pretrained=False, num_classes=0)
            except RuntimeError as e:  # unknown model
                raise ConfigError(f"backbone={backbone!r}: {e}") from None
        with torch.no_grad():
            self.cnn.eval()
            out = self.cnn(torch.zeros(1, 3, 64, 64))
            self.cnn.train()
        if isinstance(out, Mapping):
            raise ConfigError(f"encoder {encoder!r} returns a mapping; deepseqslam needs (B, D) descriptors")
        self.project = nn.Linear(int(out.reshape(1, -1).shape[1]), descriptor_dim)
        self.positional = positional
        self.lstm = nn.LSTM(descriptor_dim + int(positional), hidden_size, batch_first=True)
        self.classify = nn.Linear(hidden_size, num_places)
        self.num_places = num_places
        self.loaded = False
        # ImageNet statistics (``input_norm=imagenet``); buffers, so that checkpoints hold them and load strictly
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``, after resizing the classifier to the number of places of
        ``state_dict`` (``classify.weight`` is ``(num_places, hidden_size)``): a checkpoint says how
        many places its model classifies, so ``maploc eval --checkpoint`` needs nothing else."""
        weight = state_dict.get("classify.weight")
        if weight is not None and weight.ndim == 2 and int(weight.shape[0]) != self.num_places:
            with torch.random.fork_rng(devices=[]):  # the weights are overwritten: draw nothing
                ref = self.classify.weight
                self.classify = nn.Linear(self.classify.in_features, int(weight.shape[0])).to(ref.device, ref.dtype)
            self.num_places = int(weight.shape[0])
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.loaded = True
        return out

    def describe(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` images -> ``(N, descriptor_dim)`` frame descriptors."""
        per_image = self.input_norm == "per_image"
        x = self.cnn(normalize_images(images, "per_image") if per_image else (images - self.mean) / self.std)
        return self.project(x.reshape(x.shape[0], -1))

    def last_output(self, descriptors: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, D)`` frame descriptors (+ ``(B, L)`` positions) -> ``(B, hidden_size)`` LSTM output at the
        last frame."""
        if self.positional:
            if positions is None:
                raise ValueError("positional=True needs positions")
            descriptors = torch.cat([descriptors, positions[..., None].to(descriptors)], -1)
        out, _ = self.lstm(descriptors)
        return out[:, -1]

    def sequence(self, descriptors: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, D)`` frame descriptors (+ ``(B, L)`` positions) -> ``(B, num_places)`` logits."""
        return self.classify(self.last_output(descriptors, positions))

    def embed(self, descriptors: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, D)`` frame descriptors (+ ``(B, L)`` positions) -> ``(B, hidden_size)`` L2-normalised sequence
        descriptors (the LSTM output at the last frame; matching with a spatial split)."""
        return F.normalize(self.last_output(descriptors, positions), dim=1)

    def forward(self, images: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        B, L = images.shape[:2]
        d = self.describe(images.flatten(0, 1)).view(B, L, -1)
        return self.sequence(d, positions)


class _Windows(torch.utils.data.Dataset):
    """Item ``j``: the label ``j`` (reference place); the images are gathered in ``collate``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j: int) -> int:
        return j


def augment(images: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Photometric augmentation of ``(B, L, 3, H, W)`` sequences (one draw per sequence): brightness
    scale, gamma, per-channel gains, additive noise and a small horizontal shift; ``strength`` in [0, 1]."""
    if strength <= 0:
        return images
    B = images.shape[0]
    g = generator

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(B, *shape, generator=g)

    s = strength
    scale = u(1 - 0.85 * s, 1 + 0.2 * s, 1, 1, 1, 1)
    gamma = torch.exp(u(-0.7 * s, 0.7 * s, 1, 1, 1, 1))
    gains = u(1 - 0.3 * s, 1 + 0.3 * s, 1, 3, 1, 1)
    out = (images.clamp(0, 1) ** gamma) * scale * gains
    out = out + 0.03 * s * torch.randn(out.shape, generator=g)
    shift = int(round(0.06 * s * images.shape[-1]))
    if shift:
        dx = int(torch.randint(-shift, shift + 1, (1,), generator=g))
        out = torch.roll(out, dx, dims=-1)
    return out.clamp(0, 1)


class DeepSeqSLAM(Method[DeepSeqSLAMConfig]):
    """DeepSeqSLAM; see the module docstring."""

    name: ClassVar[str] = "deepseqslam"
    Config = DeepSeqSLAMConfig
    presets_package: ClassVar[str | None] = "maploc_seqslam.presets.deepseqslam"
    default_dataset: ClassVar[str] = "sim-city"
    metric_family: ClassVar[str] = "sequence"
    localize_batch_size: ClassVar[int] = 32
    conformance_dataset: ClassVar[str] = "synthetic-room"
    #: the synthetic room is a few metres across, one block: too small for a spatial split guarding 25 m, so none
    #: (the paper's classifier matching); tests/test_deepseqslam_split.py runs the split with these sizes
    conformance_overrides: ClassVar[tuple[str, ...]] = ("ds=2", "uniqueness_window=1", "train.batch_size=1",
                                                        "block_size=2", "descriptor_dim=8", "hidden_size=8",
                                                        "split.block_size_m=0")

    def __init__(self, config: DeepSeqSLAMConfig) -> None:
        super().__init__(config)
        self._num_places: int | None = None
        self._map: Dataset | None = None
        self._train_images: torch.Tensor | None = None
        #: the run's spatial split (``None``: no split, ``split.block_size_m=0``)
        self.split: SpatialSplit | None = None
        #: indices into the training split of the frames trained on (one class each, in this order)
        self.train_frames: list[int] = []
        self._map_descriptors: tuple[torch.Tensor, torch.Tensor | None] | None = None

    @property
    def matches_descriptors(self) -> bool:
        """``True`` with a spatial split: places are matched by the LSTM's sequence descriptors, not by the
        classifier (see the module docstring)."""
        return self.config.split.block_size_m > 0

    # -- training ----------------------------------------------------------------------------------
    def _places(self, data: Dataset) -> int:
        n = len(data)
        if self.config.ds > n:
            raise ConfigError(f"ds={self.config.ds} (sequence length) is longer than the reference traversal ({n} frames)")
        return n

    def configure_model(self) -> nn.Module | None:
        """A network of one place, standing in until the number of places is known: ``fit`` and
        ``build_map`` rebuild it for the reference traversal, and a checkpoint loaded into it
        (``maploc eval --checkpoint``) resizes its classifier (:meth:`DeepSeqSLAMNet.load_state_dict`).
        Built without drawing from the global random generators, so the trained network's
        initialisation depends on the seed alone."""
        if self.model is None:
            c = self.config
            with torch.random.fork_rng(devices=[]):
                self.model = DeepSeqSLAMNet(1, c.backbone, c.encoder, c.descriptor_dim, c.hidden_size, c.positional,
                                            c.input_norm)
            self._num_places = None  # a stand-in: not built for a traversal
        return self.model

    def _build(self, num_places: int) -> None:
        if self.model is not None and self._num_places == num_places:
            return
        c = self.config
        self.model = DeepSeqSLAMNet(num_places, c.backbone, c.encoder, c.descriptor_dim, c.hidden_size, c.positional,
                                    c.input_norm)
        self._num_places = num_places

    @property
    def trains(self) -> bool:
        t = self.config.train
        return t.epochs > 0 or t.max_steps > 0

    def _make_split(self, train_data: Dataset, context: RunContext) -> SpatialSplit | None:
        """The run's split from the map split of ``train_data``'s dataset, saved as ``context.run_dir /
        "split.json"`` (``None`` with ``split.block_size_m=0``)."""
        if self.config.split.block_size_m <= 0:
            return None
        map_data = map_split_of(train_data)
        split = build_split([map_data.metadata(i) for i in range(len(map_data))], self.config.split,
                            self.config.eval.distance_threshold_m)
        assert split is not None
        save_split(split, context.run_dir)
        context.logger.info("spatial split: %s", split.describe())
        return split

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None,
            context: RunContext = RunContext()) -> Any:
        """Builds the spatial split (saved as ``context.run_dir / "split.json"``; none with
        ``split.block_size_m=0``) and trains on the reference traversal's frames it allows for training (the
        ``train`` split = the map's frames, in order; all of them without a split): one class per frame, windows of
        up to ``ds`` allowed frames ending at it.

        Raises:
            ConfigError: ``ds`` longer than the traversal; the split allows no training frame; a bad ``split``
                option (the core's split checks).
            DataError: a map frame without position; too few blocks for a split.
        """
        N = self._places(train_data)
        self.split = self._make_split(train_data, context)
        metas = [train_data.metadata(i) for i in range(N)]
        if self.split is None:
            frames = list(range(N))
        else:
            frames = [int(i) for i in np.flatnonzero(self.split.allowed(positions(metas), "train", outside=True))]
            if not frames:
                raise ConfigError(f"the spatial split ({self.split.describe()}) allows none of the {N} training "
                                  "frames; lower split.block_size_m or set it to 0")
            context.logger.info("training on %d of %d reference frames (the others are in or near held-out "
                                "blocks)", len(frames), N)
        self.train_frames = frames
        self._build(len(frames))
        self._train_images = torch.stack([train_data[i].image for i in frames])
        # a segment: consecutive allowed frames of one sequence (a window never leaves its segment)
        segments, starts, seg = [], [], -1
        for c, i in enumerate(frames):
            if c == 0 or i != frames[c - 1] + 1 or metas[i].sequence != metas[frames[c - 1]].sequence:
                seg += 1
                first = c
            segments.append(seg)
            starts.append(first)
        self._segments = torch.tensor(segments, dtype=torch.long)
        self._segment_starts = starts
        self._frame_positions = torch.tensor(frames, dtype=torch.float32) / max(1, N - 1)
        if not self.trains:
            return None
        return engine.fit(self, _Windows(len(frames)), None)

    def _window(self, j: int, L: int, v: float = 1.0) -> list[int]:
        """Classes of the ``L`` frames ending at class ``j`` at velocity ``v`` (``j - round(v * (L - 1 - t))``),
        clamped to the first frame of ``j``'s segment (repeating it)."""
        first = self._segment_starts[j]
        return [max(first, j - int(round(v * (L - 1 - t)))) for t in range(L)]

    def collate(self, samples: list[Any]) -> Any:
        """Sampled places ``j`` -> blocks of ``block_size`` consecutive places ``j, j + 1, ...``;
        the windows (length ``L``, drawn per step) of a block share frames, so the CNN runs once
        per distinct frame (``frames``, classes = indices into :attr:`train_frames`), with one photometric
        augmentation draw per block."""
        assert self._train_images is not None
        n = self._train_images.shape[0]
        ds = self.config.ds
        L = ds if torch.rand(()) < 0.5 else int(torch.randint(1, ds + 1, ()))
        labels, windows, frames, images = [], [], [], []
        v_min, v_max = self.config.v_min, self.config.v_max
        for j0 in samples:
            v = v_min + (v_max - v_min) * float(torch.rand(())) if v_max > v_min else v_min
            ends = list(range(int(j0), min(n, int(j0) + self.config.block_size)))
            block = [self._window(j, L, v) for j in ends]
            distinct = sorted({k for w in block for k in w})
            where = {k: len(frames) + i for i, k in enumerate(distinct)}
            labels.extend(ends)
            windows.extend([[where[k] for k in w] for w in block])
            frames.extend(distinct)
            images.append(augment(self._train_images[distinct][None], self.config.augment)[0])
        idx = torch.tensor(windows)
        positions = self._frame_positions[torch.tensor(frames, dtype=torch.long)][idx]
        return {"images": torch.cat(images), "windows": idx, "positions": positions,
                "frames": torch.tensor(frames, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> Any:
        descriptors = model.describe(batch["images"])[batch["windows"]]  # (B, L, D)
        logits = model.sequence(descriptors, batch["positions"] if self.config.positional else None)
        places = torch.arange(logits.shape[1], device=logits.device)
        labels = batch["labels"]
        segments = self._segments.to(logits.device)
        target = (((places[None, :] - labels[:, None]).abs() <= self.config.label_tolerance)
                  & (segments[None, :] == segments[labels][:, None])).float()
        target = target / target.sum(1, keepdim=True)
        loss = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
        near = target.gather(1, logits.argmax(1, keepdim=True))[:, 0] > 0
        return {"loss": loss, "top1_within_tolerance": float(near.float().mean())}

    # -- map and queries ---------------------------------------------------------------------------
    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Keeps the place names. Without a split the classes are the map's frames, in order. With a split
        (``split.block_size_m > 0``): gets the run's split (the one ``fit`` built; under ``maploc eval
        --checkpoint`` the checkpoint's run's ``split.json``; else built from this map) and saves it as
        ``context.run_dir / "split.json"``, then computes every map frame's sequence descriptor (and, with
        ``single_frame``, its one-frame descriptor).

        Raises:
            ConfigError: without a split, if the map has another number of frames than the places the model
                was trained (or loaded) for; ``ds`` longer than the map.
            DataError: a malformed saved split; a map frame without position (a split built here).
        """
        n = self._places(map_data)
        self._map = map_data
        self._map_metas = [map_data.metadata(i) for i in range(n)]
        if self.matches_descriptors:
            self._split_for_map(context)
            if self.model is None:
                self.configure_model()
            self._map_descriptors = self._describe_map(map_data)
        else:
            trained = self._num_places
            if trained is None and self.model is not None and getattr(self.model, "loaded", False):
                trained = int(self.model.num_places)  # a checkpoint's network
            if trained is not None and self.model is not None and n != trained:
                raise ConfigError(
                    f"the map has {n} frames but the model was trained on a reference traversal of {trained} "
                    "places: DeepSeqSLAM classifies the training traversal's frames, so evaluate it on the same map")
            if trained is not None:
                self._num_places = trained
            self._build(n)
        self._history: list[torch.Tensor] = []
        self._positions: list[float] = []
        self._stream = StreamingMatcher(self.config.eval.plot_max_queries if n <= self.config.eval.plot_max_refs else 0)

    def _split_for_map(self, context: RunContext) -> None:
        if self.split is None:
            source = context.source_run_dir
            if source is not None:
                self.split = load_split(source)
                if self.split is None:
                    context.logger.warning(
                        "%s holds no split.json: building the split from this map; make sure the checkpoint never "
                        "trained on its test blocks", source)
            if self.split is None:
                try:
                    self.split = build_split(self._map_metas, self.config.split,
                                             self.config.eval.distance_threshold_m)
                except DataError as e:
                    raise DataError(f"{e} (the map of deepseqslam's spatial split)") from None
            context.logger.info("spatial split: %s", self.split.describe())
        save_split(self.split, context.run_dir)

    @torch.no_grad()
    def _describe_map(self, map_data: Dataset) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(M, hidden_size)`` sequence descriptors of every map frame's window of ``<= ds`` frames ending at it
        (same sequence), and the ``(M, hidden_size)`` one-frame descriptors (``None`` without ``single_frame``)."""
        assert self.model is not None
        model = self.model.eval()
        device = next(model.parameters()).device
        n = len(self._map_metas)
        desc = torch.cat([model.describe(torch.stack([map_data[i].image for i in range(a, min(n, a + 32))]).to(device))
                          for a in range(0, n, 32)])
        pos = torch.arange(n, dtype=torch.float32, device=device) / max(1, n - 1)
        seq_out, single_out = [], []
        first = 0
        for j in range(n):
            if j == 0 or self._map_metas[j].sequence != self._map_metas[j - 1].sequence:
                first = j
            a = max(first, j - self.config.ds + 1)
            p = pos[a:j + 1][None] if self.config.positional else None
            seq_out.append(model.embed(desc[a:j + 1][None], p)[0])
            if self.config.single_frame:
                single_out.append(model.embed(desc[j:j + 1][None], p[:, -1:] if p is not None else None)[0])
        return torch.stack(seq_out), torch.stack(single_out) if single_out else None

    @torch.no_grad()
    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """Runs the CNN on the batch and the LSTM on each query's last ``<= ds`` frames (call in
        traversal order; a new ``sequence`` restarts the window). The last frame alone gives the
        single-frame baseline, kept for :meth:`variants`. ``extras["sequence_frames"]``: the frames
        the LSTM saw (fewer than ``ds`` at a sequence start)."""
        assert self.model is not None, "build_map was not called"
        t0 = time.perf_counter()
        model = self.model.eval()
        device = next(model.parameters()).device
        starts = self._stream.starts(queries)
        desc = model.describe(torch.stack([s.image for s in queries]).to(device))
        windows, positions, lengths = [], [], []
        for b, s in enumerate(queries):
            if starts[b]:
                self._history, self._positions = [], []
            self._history = (self._history + [desc[b]])[-self.config.ds:]
            self._positions = (self._positions + [s.timestamp / max(1, len(self._map_metas) - 1)])[-self.config.ds:]
            windows.append(torch.stack(self._history))
            positions.append(torch.tensor(self._positions))
            lengths.append(len(self._history))
        scores = self._scores(model, windows, positions)
        result = uniqueness(scores, self.config.uniqueness_window)
        single = None
        if self.config.single_frame:
            single = uniqueness(self._scores(model, [w[-1:] for w in windows], [p[-1:] for p in positions], True),
                                self.config.uniqueness_window)
        self._stream.keep([s.name for s in queries], None, scores, result.best)
        seconds = (time.perf_counter() - t0) / len(queries)
        if single is not None:
            self._stream.single.extend(common.estimate(single, b, seconds) for b in range(len(queries)))
        return [common.estimate(result, b, seconds, sequence_frames=lengths[b]) for b in range(len(queries))]

    def variants(self, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate],
                 context: RunContext = RunContext()) -> Mapping[str, Variant]:
        """``single_frame``: the same network on each query's last frame alone (``ds = 1``), a
        baseline (none with ``single_frame=false``)."""
        return single_frame_variants(
            getattr(self, "_stream", None), estimates,
            "ds=1: the same CNN+LSTM on the query's last frame alone (no sequence)")

    def _scores(self, model: DeepSeqSLAMNet, windows: list[torch.Tensor], positions: list[torch.Tensor],
                single: bool = False) -> torch.Tensor:
        """``(B, M)`` scores of every place (lower = better): negative log-probabilities (no split), or the
        Euclidean distances in ``[0, 2]`` between the query's and the map frames' normalised sequence
        descriptors (with a split; ``single``: the one-frame descriptors)."""
        out = []
        for w, p in zip(windows, positions):  # windows differ in length only at sequence starts
            pos = p[None].to(w.device) if self.config.positional else None
            if self.matches_descriptors:
                assert self._map_descriptors is not None, "build_map was not called"
                ref = self._map_descriptors[1 if single else 0]
                assert ref is not None
                q = model.embed(w[None], pos).float()
                out.append(torch.cdist(q, ref.to(q).float())[0])
            else:
                logits = model.sequence(w[None], pos)
                out.append(-F.log_softmax(logits.float(), dim=1)[0])
        return torch.stack(out).cpu()

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """PR curves per condition (the method and its single-frame baseline, scored by the core),
        the score matrix (negative log-probabilities) with the ground truth and matches, and
        example matched frames."""
        return plot_all(self, run_dir, queries, estimates)

"""Typed configs of ``netvlad``, ``mobilenetvlad`` and ``hloc`` (frozen attrs; ``Config()`` = the default preset)."""

from __future__ import annotations

import attrs

from maploc.config import DataConfig, TrainConfig, at_least, greater_than, in_range
from maploc.data.photometric import INPUT_NORMS, InputNorm

__all__ = ["ModelConfig", "MiningConfig", "SplitConfig", "IndexConfig", "EvalConfig", "NetVLADConfig",
           "StudentModelConfig", "MobileNetVLADConfig", "SIMCITY_OPTIONS"]

#: sim-city options of the ``conditions`` preset: map = traversal 0 by day, queries = both traversals at night, dusk
#: and in autumn (the default config sets no dataset options, so that any dataset works; sim-city's own defaults are
#: two traversals by day and night).
SIMCITY_OPTIONS: dict[str, object] = {
    "frames": 120,
    "traversals": 2,
    "conditions": ["day", "night", "dusk", "autumn"],
    "map_condition": "day",
    "query_conditions": ["night", "dusk", "autumn"],
}


@attrs.frozen(kw_only=True)
class ModelConfig:
    """The teacher network.

    Attributes:
        backbone: timm model name (``pretrained=False``): ``resnet18`` (CPU default) or ``vgg16`` (the paper's).
        layer: the backbone feature stage NetVLAD pools (``resnet18``: 3 = stride 16, 256 channels; ``vgg16``: 4 =
            conv5_3, 512 channels).
        num_clusters: NetVLAD clusters ``K`` (k-means initialised).
        whitening_dim: PCA-whitened output dimension learned on the map (capped at a quarter of the map size); 0 = no whitening.
        input_norm: input photometric normalisation (:func:`maploc.data.photometric.normalize_images`):
            ``imagenet`` (fixed ImageNet mean / std) or ``per_image`` (each image's channels standardised by their
            own mean / std: invariant to a global exposure or colour-cast change, e.g. night against day).
    """

    backbone: str = "resnet18"
    layer: int = attrs.field(default=3, validator=at_least(0))
    num_clusters: int = attrs.field(default=64, validator=at_least(2))
    whitening_dim: int = attrs.field(default=512, validator=at_least(0))
    input_norm: InputNorm = attrs.field(default="imagenet", validator=attrs.validators.in_(INPUT_NORMS))


@attrs.frozen(kw_only=True)
class StudentModelConfig:
    """The student network (MobileNetVLAD).

    Attributes:
        backbone: timm name; ``mobilenetv2_035`` is MobileNetV2 with depth multiplier 0.35.
        layer: feature stage pooled (``mobilenetv2_035``: 4 = stride 32, 112 channels).
        num_clusters: NetVLAD clusters.
        descriptor_dim: output dimension (the teacher's whitened descriptors are zero-padded to it when the
            teacher's whitening keeps fewer dimensions).
        projection_init: ``ridge``: the linear projection starts as the closed-form ridge regression of the
            targets on the student's initial NetVLAD vectors (see ``GlobalDescriptorNet.fit_projection``);
            ``random``: PyTorch's default initialisation.
        ridge: the ridge ``lambda`` relative to the mean squared norm of the centred NetVLAD vectors.
        freeze_batch_norm: after calibrating the backbone's batch-norm statistics on the training images, keep them
            fixed (eval mode) during distillation, so that small batches train the function used at inference.
        input_norm: input photometric normalisation, as for the teacher (:attr:`ModelConfig.input_norm`).
    """

    backbone: str = "mobilenetv2_035"
    layer: int = attrs.field(default=4, validator=at_least(0))
    num_clusters: int = attrs.field(default=64, validator=at_least(2))
    descriptor_dim: int = attrs.field(default=256, validator=at_least(1))
    projection_init: str = attrs.field(default="ridge", validator=attrs.validators.in_(("ridge", "random")))
    ridge: float = attrs.field(default=0.01, validator=greater_than(0))
    freeze_batch_norm: bool = True
    input_norm: InputNorm = attrs.field(default="imagenet", validator=attrs.validators.in_(INPUT_NORMS))


@attrs.frozen(kw_only=True)
class MiningConfig:
    """Weak supervision and hard-negative mining (NetVLAD Sec. 4).

    Attributes:
        positive_radius_m: potential positives lie within this distance (metres).
        negative_radius_m: negatives lie beyond it.
        num_negatives: hardest negatives per query in the loss.
        negative_pool: random negatives examined per query before taking the hardest.
        refresh_every: recompute the descriptor cache every this many steps.
        margin: the ranking-loss margin ``m`` (squared distances of unit descriptors).
    """

    positive_radius_m: float = attrs.field(default=10.0, validator=greater_than(0))
    negative_radius_m: float = attrs.field(default=25.0, validator=greater_than(0))
    num_negatives: int = attrs.field(default=3, validator=at_least(1))
    negative_pool: int = attrs.field(default=200, validator=at_least(1))
    refresh_every: int = attrs.field(default=50, validator=at_least(1))
    margin: float = attrs.field(default=0.1, validator=greater_than(0))


@attrs.frozen(kw_only=True)
class SplitConfig:
    """The spatial train / val / test split (the core's :class:`maploc.data.split.SpatialSplit`, built in
    :func:`maploc_netvlad.split.build_split`).

    The split is a grid of blocks over the bounding box of the **map** frames' positions
    (``SpatialSplit.from_points``); a seeded share of the blocks holding map frames is held out for ``test`` and
    ``val``. Training uses only images allowed for ``train`` (at least ``guard_m`` from every test block and from
    every val block), and the run saves the split as ``RUN/split.json``, so that the core scores only the queries
    inside test blocks. The success radius it guards is the largest evaluation threshold
    (``max(eval.distance_threshold_m, eval.fine_threshold_m)``, 25 m by default).

    Attributes:
        block_size_m: target block side in metres (> 0); ``0`` = no split: train on the whole training split and
            score every query (only for data whose queries lie elsewhere than the training images, or with no
            training at all). The default (60 m) gives sim-city's default route (100 frames, 4 m apart, a ~310 m
            stretch) 5 blocks: 1 test, 1 val, 3 train.
        footprint_m: radius (metres) of the map area a training sample counts for around its position, added to
            the guard. ``0``: the retrieval ground truth is the camera position (a map image is correct when its
            camera lies within the success radius of the query's), so the camera's position is what the guard must
            keep away from test queries; what the camera sees farther away is not a positive (see the README).
        guard_m: metres every training (and val) position keeps from every test block; ``None`` = success radius +
            ``footprint_m``, the smallest allowed (a smaller value is a ``ConfigError`` of the core's split).
        val_fraction: share of the occupied blocks held out for validation (choosing defaults; never trained on);
            in ``[0, 1)``.
        test_fraction: share of the occupied blocks held out for testing; in ``(0, 1)``.
        seed: seed of the block assignment (fixed, independent of the run's ``--seed``, so that every training
            seed is scored on the same test blocks).
        other_sequences: also train on the ``train``-allowed images of the dataset's ``query`` split (sim-city: the
            other traversals and conditions, e.g. night images of the query traversals at training places); their
            test-block and val-block images stay unseen.
    """

    block_size_m: float = attrs.field(default=60.0, validator=at_least(0))
    footprint_m: float = attrs.field(default=0.0, validator=at_least(0))
    guard_m: float | None = None
    val_fraction: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0))
    test_fraction: float = attrs.field(default=0.2, validator=in_range(0.0, 1.0))
    seed: int = 0
    other_sequences: bool = True


@attrs.frozen(kw_only=True)
class IndexConfig:
    """The faiss map index.

    Attributes:
        kind: ``flat`` (exact inner product) or ``ivfpq``.
        nlist, pq_subquantizers, pq_bits, nprobe: IVF-PQ settings.
        top_k: map images retrieved per query (recall@N needs ``N <= top_k``).
        load_from: a saved index folder (``RUN/index`` of an earlier run) to reuse instead of re-encoding the map;
            its whitening is reused too.
    """

    kind: str = attrs.field(default="flat", validator=attrs.validators.in_(("flat", "ivfpq")))
    nlist: int = attrs.field(default=64, validator=at_least(1))
    pq_subquantizers: int = attrs.field(default=16, validator=at_least(1))
    pq_bits: int = attrs.field(default=8, validator=in_range(1, 16))
    nprobe: int = attrs.field(default=8, validator=at_least(1))
    top_k: int = attrs.field(default=20, validator=at_least(1))
    load_from: str | None = None


@attrs.frozen(kw_only=True)
class EvalConfig:
    """Evaluation thresholds.

    Attributes:
        distance_threshold_m: a retrieved map image within this distance is correct (the core's primary threshold,
            25 m: ``recall_at_<N>``).
        fine_threshold_m: the second threshold the core reports (``recall_at_<N>_within_10m``).
    """

    distance_threshold_m: float = attrs.field(default=25.0, validator=greater_than(0))
    fine_threshold_m: float = attrs.field(default=10.0, validator=greater_than(0))


@attrs.frozen(kw_only=True)
class NetVLADConfig:
    """Config of ``netvlad`` (the teacher).

    Attributes:
        model, mining, split, index, eval: see their classes.
        encode_batch_size: images per forward pass when encoding the map and the cache.
        train: generic training settings (steps, batch of anchors, Adam learning rate).
        data: dataset options (``image_height`` in pixels).
    """

    model: ModelConfig = ModelConfig()
    mining: MiningConfig = MiningConfig()
    split: SplitConfig = SplitConfig()
    index: IndexConfig = IndexConfig()
    eval: EvalConfig = EvalConfig()
    encode_batch_size: int = attrs.field(default=16, validator=at_least(1))
    train: TrainConfig = TrainConfig(epochs=0, max_steps=150, batch_size=4, lr=1e-4, log_every=10)
    data: DataConfig = DataConfig(image_height=96)


@attrs.frozen(kw_only=True)
class MobileNetVLADConfig:
    """Config of ``mobilenetvlad`` (the distilled student).

    Attributes:
        model: the student network.
        teacher: the teacher's config, used when no ``teacher_checkpoint`` is given (a teacher is trained first, on
            the student's spatial split: ``teacher.split`` is not used).
        teacher_checkpoint: a ``netvlad`` checkpoint (``RUN/checkpoints/last.ckpt``) to distil from.
        split, index, eval: as for ``netvlad``.
        encode_batch_size: images per forward pass.
        train: the distillation schedule.
        data: dataset options.
    """

    model: StudentModelConfig = StudentModelConfig()
    teacher: NetVLADConfig = NetVLADConfig()
    teacher_checkpoint: str | None = None
    split: SplitConfig = SplitConfig()
    index: IndexConfig = IndexConfig()
    eval: EvalConfig = EvalConfig()
    encode_batch_size: int = attrs.field(default=16, validator=at_least(1))
    train: TrainConfig = TrainConfig(epochs=0, max_steps=150, batch_size=16, lr=1e-3, log_every=10)
    data: DataConfig = DataConfig(image_height=96)

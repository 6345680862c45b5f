"""The typed config of the ``dsac`` method (frozen attrs; ``DSACConfig()`` is the ``default`` preset).

Every key can be overridden on the command line, e.g. ``-o mode=rgbd``, ``-o network.width=1.0``,
``-o init.steps=2000``, ``-o stages=[init,reprojection,e2e]``, ``-o data.image_height=480``.

Defaults follow DSAC*'s public code (Brachmann & Rother, TPAMI 2021; ``train_init.py``,
``train_e2e.py``, ``test.py``, ``dataset.py``) except where the CPU budget of the default run asks
for less; each such field says so. The ``dsacstar`` preset restores the published settings.
"""

from __future__ import annotations

from typing import Literal

import attrs

from maploc.config import DataConfig, TrainConfig, at_least, greater_than, in_range, probability

__all__ = [
    "REFERENCE_HEIGHT",
    "NetworkConfig",
    "AugmentConfig",
    "LossConfig",
    "RansacConfig",
    "StageConfig",
    "ClassicalConfig",
    "DSACConfig",
    "STAGES",
]

#: The training stages, in the order they run (DSAC* Sec. 4.2-4.3).
STAGES: tuple[str, ...] = ("init", "reprojection", "e2e")

#: The image height (pixels) that DSAC*'s pixel thresholds refer to. Every threshold in pixels in
#: this config is given at this height and scaled by ``H / 480`` for images of height ``H``, so the
#: same config means the same angular tolerance at any ``data.image_height``.
REFERENCE_HEIGHT = 480


@attrs.frozen(kw_only=True)
class NetworkConfig:
    """The scene coordinate regressor (:class:`maploc_dsac.network.SceneCoordinateNetwork`).

    Attributes:
        encoder: ``dsacstar`` (DSAC*'s own FCN) or ``timm:<model>`` (a timm backbone with
            ``features_only=True, pretrained=False`` cut at stride 8, e.g. ``timm:resnet18``).
        width: channel multiplier of the ``dsacstar`` encoder and of the head. DSAC*: 1.0; the
            default 0.25 (about 16x fewer multiply-adds, 0.43 M parameters) fits the 2-core CPU
            budget of the default run; on the 7-Scenes sample its training error falls about as
            fast per step as at 0.5, at 60 % of the time per step.
        grayscale: grey input normalised as DSAC* (``true``) or RGB with ImageNet statistics.
        uncertainty: add a per-cell log-variance output (used by the Euclidean loss, and TransPose).
        init: ``he`` (He-normal convolutions, a near-zero last layer; trains much faster from
            scratch) or ``default`` (PyTorch's default initialisation, as DSAC*'s code).
    """

    encoder: str = "dsacstar"
    width: float = attrs.field(default=0.25, validator=greater_than(0))
    grayscale: bool = True
    uncertainty: bool = False
    init: Literal["he", "default"] = "he"


@attrs.frozen(kw_only=True)
class AugmentConfig:
    """DSAC*'s training augmentation (``dataset.py``), applied on the batch in ``training_step``.

    Attributes:
        enabled: augment at all.
        rotation_deg: in-plane rotation about the principal point, uniform in ``[-r, r]`` degrees.
        scale_min: smallest scale factor (focal length multiplied by it).
        scale_max: largest scale factor.
        brightness: brightness factor uniform in ``[1 - b, 1 + b]``.
        contrast: contrast factor uniform in ``[1 - c, 1 + c]``.
    """

    enabled: bool = True
    rotation_deg: float = attrs.field(default=30.0, validator=in_range(0.0, 180.0))
    scale_min: float = attrs.field(default=2.0 / 3.0, validator=greater_than(0))
    scale_max: float = attrs.field(default=1.5, validator=greater_than(0))
    brightness: float = attrs.field(default=0.1, validator=probability())
    contrast: float = attrs.field(default=0.1, validator=probability())


@attrs.frozen(kw_only=True)
class LossConfig:
    """Loss settings (DSAC* ``train_init.py`` / ``train_e2e.py`` defaults).

    Attributes:
        use_depth: in the ``init`` stage, regress ground-truth scene coordinates computed from depth
            and pose when the data has depth; otherwise (or when ``false``) use DSAC*'s RGB-only
            heuristic (reprojection error plus a constant-depth target for invalid predictions).
        init_tolerance_m: a prediction farther than this from its ground-truth coordinate is
            pulled by the 3-D distance instead of the reprojection error (``--inittolerance``).
        min_depth_m: predictions must lie this far in front of the camera (``--mindepth``).
        max_depth_m: ... and at most this far, without ground truth (``--maxdepth``).
        target_depth_m: depth of the proxy target on the pixel ray without ground truth
            (``--targetdepth``; DSAC*'s 10 m is meant for outdoor scenes).
        soft_clamp_px: reprojection errors above this grow as a square root (``--softclamp``);
            pixels at 480 px image height (scaled, see :data:`REFERENCE_HEIGHT`).
        hard_clamp_px: reprojection errors above this count as invalid (``--hardclamp``); pixels at
            480 px image height (scaled).
        weight_rot: weight of the rotation error (degrees) in the pose loss (``--weightrot``).
        weight_trans: weight of the translation error (metres) in the pose loss (``--weighttrans``).
        pose_soft_clamp: pose losses above this grow as a square root (``--softclamp`` of e2e).
    """

    use_depth: bool = True
    init_tolerance_m: float = attrs.field(default=0.1, validator=greater_than(0))
    min_depth_m: float = attrs.field(default=0.1, validator=at_least(0))
    max_depth_m: float = attrs.field(default=1000.0, validator=greater_than(0))
    target_depth_m: float = attrs.field(default=10.0, validator=greater_than(0))
    soft_clamp_px: float = attrs.field(default=100.0, validator=greater_than(0))
    hard_clamp_px: float = attrs.field(default=1000.0, validator=greater_than(0))
    weight_rot: float = attrs.field(default=1.0, validator=at_least(0))
    weight_trans: float = attrs.field(default=100.0, validator=at_least(0))
    pose_soft_clamp: float = attrs.field(default=100.0, validator=greater_than(0))


@attrs.frozen(kw_only=True)
class RansacConfig:
    """The differentiable RANSAC (:class:`maploc_dsac.solvers.DSACRansac`), DSAC* ``test.py`` defaults.

    Attributes:
        num_hypotheses: hypotheses per image at test time (DSAC*: 64).
        train_hypotheses: hypotheses per image in the ``e2e`` stage (DSAC*: 64).
        inlier_threshold: ``tau``; ``null`` = 10 px (RGB) or 0.1 m (RGB-D). RGB: pixels at 480 px
            image height, scaled by ``H / 480`` (2.5 px at 120 px), see :data:`REFERENCE_HEIGHT`.
        inlier_alpha: ``alpha`` of the selection softmax (DSAC*: 100).
        max_error: error clamp; ``null`` = 100 px (RGB, at 480 px height, scaled) or 1 m (RGB-D).
        max_refinement_steps: inlier re-collections at most (DSAC*: 100).
        train_refinement_steps: differentiable LM steps per hypothesis in ``e2e`` (RGB).
        min_inliers: a pose with fewer final inliers is reported as failed (the solver itself needs
            a minimal set: 4 RGB, 3 RGB-D).
        seed: seed of the hypothesis sampling at test time (results are reproducible).
        adaptive_confidence: test time only, a deviation from DSAC* (``null``, the default, is
            DSAC*): stop an image's hypothesis search early when classical RANSAC's bound at this
            confidence is met (:mod:`maploc_dsac.solvers.adaptive`); never used in training.
        min_hypotheses: hypotheses of the adaptive stop's first round.
    """

    num_hypotheses: int = attrs.field(default=64, validator=at_least(1))
    train_hypotheses: int = attrs.field(default=64, validator=at_least(1))
    inlier_threshold: float | None = attrs.field(default=None, validator=greater_than(0))
    inlier_alpha: float = attrs.field(default=100.0, validator=greater_than(0))
    max_error: float | None = attrs.field(default=None, validator=greater_than(0))
    max_refinement_steps: int = attrs.field(default=100, validator=at_least(0))
    train_refinement_steps: int = attrs.field(default=5, validator=at_least(0))
    min_inliers: int = attrs.field(default=4, validator=at_least(1))
    seed: int = 0
    adaptive_confidence: float | None = attrs.field(default=None, validator=in_range(1e-6, 1.0 - 1e-6))
    min_hypotheses: int = attrs.field(default=8, validator=at_least(1))


@attrs.frozen(kw_only=True)
class StageConfig:
    """One training stage.

    Attributes:
        steps: optimizer steps of this stage.
        lr: its learning rate (``null``: ``train.lr``).
        geometric_augmentation: rotation and scale augmentation in this stage (photometric
            augmentation follows ``augment.enabled`` in every stage; DSAC*'s e2e uses photometric only).
    """

    steps: int = attrs.field(default=0, validator=at_least(0))
    lr: float | None = attrs.field(default=None, validator=greater_than(0))
    geometric_augmentation: bool = True


@attrs.frozen(kw_only=True)
class ClassicalConfig:
    """The classical baseline run beside DSAC* (:mod:`maploc_dsac.classical`).

    Attributes:
        enabled: run it (index the mapping frames in ``build_map``, localize each query in
            ``localize``) and return its estimates as the baseline variant ``sift_pnp``, which the
            core scores in the same table as DSAC* (a few seconds on the stairs sample).
        image_height: the image height it works at; the same frames are re-read at this height
            (``null``: the samples the network sees, at ``data.image_height``). SIFT needs more
            pixels than the network, so it gets the native 480 px by default.
        max_features: SIFT keypoints per image at most (0 = no limit).
        ratio: Lowe's ratio test threshold.
        reprojection_error_px: inlier threshold of ``cv2.solvePnPRansac``, pixels at 480 px image
            height (scaled to ``image_height``; OpenCV's default is 8).
        iterations: RANSAC iterations of ``cv2.solvePnPRansac``.
        confidence: RANSAC confidence of ``cv2.solvePnPRansac``.
        min_inliers: fewer inliers = failed query.
    """

    enabled: bool = True
    image_height: int | None = attrs.field(default=480, validator=at_least(1))
    max_features: int = attrs.field(default=4000, validator=at_least(0))
    ratio: float = attrs.field(default=0.8, validator=in_range(0.0, 1.0))
    reprojection_error_px: float = attrs.field(default=8.0, validator=greater_than(0))
    iterations: int = attrs.field(default=10000, validator=at_least(1))
    confidence: float = attrs.field(default=0.999, validator=probability())
    min_inliers: int = attrs.field(default=10, validator=at_least(1))


def _check_stages(instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    unknown = [s for s in value if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; stages are {', '.join(STAGES)}")
    if list(value) != sorted(value, key=STAGES.index) or len(set(value)) != len(value):
        raise ValueError(f"stages must be distinct and in the order {', '.join(STAGES)}; got {list(value)}")


@attrs.frozen(kw_only=True)
class DSACConfig:
    """Config of the ``dsac`` method (DSAC*).

    Attributes:
        mode: ``rgb`` (PnP from scene coordinates; Sec. 3.1) or ``rgbd`` (Kabsch between scene
            coordinates and the query's depth; Sec. 3.2).
        stages: the training stages to run, in order (subset of ``init``, ``reprojection``,
            ``e2e``). Each runs ``<stage>.steps`` optimizer steps inside one ``Engine.fit``.
        network: the regressor.
        augment: training augmentation.
        loss: loss settings.
        ransac: the differentiable RANSAC.
        init: stage ``init`` (depth: Euclidean distance to ground truth; no depth: DSAC*'s
            heuristic). DSAC*: 1M steps at lr 1e-4, batch 1; the default here is sized for the CPU.
        reprojection: stage ``reprojection`` (DSAC*'s clamped reprojection loss, ``train_init.py``
            with ground truth).
        e2e: stage ``e2e`` (expected pose loss through the differentiable RANSAC; DSAC*: 100k
            steps at lr 1e-6, batch 1, photometric augmentation only).
        classical: the classical baseline (``sift_pnp``).
        plot_query: index of the query whose scene-coordinate error is plotted.
        report_map_views: also localize (up to 16 of) the mapping frames, the network's own
            training views, and report that separately (``map_views_metrics.json``): a sanity
            check that tells a method failure from queries unlike the training views.
        train: the generic loop (batch size, checkpoints). ``train.max_steps = 0`` means the sum
            of the steps of the configured stages; a smaller value truncates the schedule, a
            larger one continues the last stage.
        train_cache_mib: decoded training samples kept in memory, MiB (least recently used out
            first; :class:`maploc.data.cache.CachedDataset`). Decoding a 7-Scenes frame takes ~30 ms,
            which otherwise dominates a CPU training step at 120 px. ``0`` decodes on every read.
        data: dataset options; ``data.image_height`` is the network input height (DSAC*: 480;
            the default 120 px, a 15 x 20 grid of cells for 7-Scenes, fits the CPU budget: per
            training step, the error falls about as fast at 120 px as at 240 px, at a quarter of
            the cost).
    """

    mode: Literal["rgb", "rgbd"] = "rgb"
    stages: tuple[str, ...] = attrs.field(default=("init", "reprojection", "e2e"), validator=_check_stages)
    network: NetworkConfig = NetworkConfig()
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    ransac: RansacConfig = RansacConfig()
    init: StageConfig = StageConfig(steps=4000, lr=1e-3)
    reprojection: StageConfig = StageConfig(steps=800, lr=3e-4)
    e2e: StageConfig = StageConfig(steps=100, lr=1e-5, geometric_augmentation=False)
    classical: ClassicalConfig = ClassicalConfig()
    plot_query: int = attrs.field(default=0, validator=at_least(0))
    report_map_views: bool = True
    train: TrainConfig = TrainConfig(epochs=0, max_steps=0, batch_size=4, lr=1e-4, log_every=10)
    train_cache_mib: int = attrs.field(default=1024, validator=at_least(0))
    data: DataConfig = DataConfig(image_height=120)

    def stage_steps(self) -> list[tuple[str, int]]:
        """``[(stage, steps), ...]`` of the configured stages with ``steps > 0``, in order."""
        return [(s, getattr(self, s).steps) for s in self.stages if getattr(self, s).steps > 0]

    def total_steps(self) -> int:
        """The engine's step budget: ``train.max_steps`` if set, else the sum of the stage steps."""
        return self.train.max_steps if self.train.max_steps > 0 else sum(n for _, n in self.stage_steps())

    def stage_at(self, step: int) -> str:
        """The stage that optimizer step ``step`` (0-based) belongs to; past the last stage's end,
        the last stage (``init`` when no stage has steps)."""
        end = 0
        schedule = self.stage_steps()
        for name, n in schedule:
            end += n
            if step < end:
                return name
        return schedule[-1][0] if schedule else (self.stages[0] if self.stages else "init")

    def pixel_scale(self, height: int) -> float:
        """The factor ``height / 480`` applied to every pixel threshold for images ``height`` px high."""
        return float(height) / REFERENCE_HEIGHT

    def stage_lr(self, stage: str) -> float:
        lr = getattr(self, stage).lr
        return float(self.train.lr if lr is None else lr)

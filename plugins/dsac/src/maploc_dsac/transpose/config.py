"""The typed config of the ``transpose`` method: DSAC*'s config (:class:`~maploc_dsac.config.DSACConfig`)
plus the synthetic views, the real/synthetic mixing schedule, the appearance augmentation of the
renders, the uncertainty head's loss and use, and the real-only baseline.

Every key can be overridden, e.g. ``-o synthetic.num_views=100``, ``-o synthetic.fraction=0.25``,
``-o render_augment.enabled=false``, ``-o uncertainty.exclude_fraction=0``, ``-o baseline.enabled=false``.
"""

from __future__ import annotations

from typing import Literal

import attrs

from maploc.config import at_least, greater_than, in_range, probability
from maploc_dsac.config import ClassicalConfig, DSACConfig, NetworkConfig, StageConfig

__all__ = ["SyntheticConfig", "RenderAugmentConfig", "UncertaintyConfig", "BaselineConfig", "TransPoseConfig"]


@attrs.frozen(kw_only=True)
class SyntheticConfig:
    """Synthetic views of the real scene (:func:`maploc_dsac.transpose.synthesize.build_synthetic_views`).

    Attributes:
        num_views: novel views rendered from the TSDF model fused from the mapping frames
            (``0``: no synthetic views; the model trains on real frames only).
        max_angle_deg: largest rotation of a novel view away from the mapping frames, degrees.
        max_translation_m: largest translation away from the mapping trajectory, metres.
        voxel_m: TSDF voxel size, metres.
        truncation_m: TSDF truncation distance, metres.
        depth_max_m: depth beyond this is not fused, metres.
        min_valid_fraction: a render with fewer valid (seen-surface) pixels is dropped.
        seed: seed of the novel-view sampler.
        fraction: the mixing schedule: the fraction of synthetic samples in the training stream
            (each epoch holds exactly this share of synthetic slots, shuffled by the engine, so a
            batch holds this fraction in expectation); ``0`` = real only, ``1`` = synthetic only.
    """

    num_views: int = attrs.field(default=200, validator=at_least(0))
    max_angle_deg: float = attrs.field(default=60.0, validator=in_range(0.0, 180.0))
    max_translation_m: float = attrs.field(default=0.5, validator=at_least(0.0))
    voxel_m: float = attrs.field(default=0.01, validator=greater_than(0.0))
    truncation_m: float = attrs.field(default=0.04, validator=greater_than(0.0))
    depth_max_m: float = attrs.field(default=4.0, validator=greater_than(0.0))
    min_valid_fraction: float = attrs.field(default=0.3, validator=probability())
    seed: int = 0
    fraction: float = attrs.field(default=0.5, validator=probability())


@attrs.frozen(kw_only=True)
class RenderAugmentConfig:
    """Appearance augmentation of the **renders only** (a domain-gap option of TransPose; real frames
    keep DSAC*'s own augmentation). Applied per synthetic sample before batching, in this order:
    colour jitter, Gaussian blur, additive Gaussian noise.

    Attributes:
        enabled: augment the renders at all.
        apply_to: ``synthetic`` (the renders of the mixed stream only) or ``all`` (every training
            frame: for training sets that are renders themselves, e.g. ``--dataset sim-city``).
        brightness: brightness factor uniform in ``[1 - b, 1 + b]``.
        contrast: contrast factor uniform in ``[1 - c, 1 + c]`` (about the image mean).
        saturation: saturation factor uniform in ``[1 - s, 1 + s]`` (about the grey value).
        blur_probability: probability of a Gaussian blur.
        blur_sigma_max_px: its sigma, uniform in ``[0.3, max]`` pixels at the network's input size.
        noise_std: standard deviation of additive Gaussian noise, uniform in ``[0, max]`` (image in [0, 1]).
    """

    enabled: bool = True
    apply_to: Literal["synthetic", "all"] = "synthetic"
    brightness: float = attrs.field(default=0.3, validator=probability())
    contrast: float = attrs.field(default=0.3, validator=probability())
    saturation: float = attrs.field(default=0.3, validator=probability())
    blur_probability: float = attrs.field(default=0.5, validator=probability())
    blur_sigma_max_px: float = attrs.field(default=1.0, validator=greater_than(0.3))
    noise_std: float = attrs.field(default=0.02, validator=in_range(0.0, 0.5))


@attrs.frozen(kw_only=True)
class UncertaintyConfig:
    """The per-cell uncertainty (needs ``network.uncertainty=true``).

    Attributes:
        loss: ``kfnet``: the isotropic Gaussian NLL of KFNet (Zhou et al., CVPR 2020, Sec. 3.2;
            :func:`~maploc_dsac.transpose.uncertainty.gaussian_nll_loss`) in the ``init`` stage;
            ``laplace``: the heteroscedastic L1 form of :func:`maploc_dsac.losses.euclidean_loss`.
        exclude_fraction: at test time, the fraction of each query's cells with the largest
            predicted sigma that is excluded from hypothesis sampling and scoring (``0``: off, the
            default). The run always reports the other setting too, as a row of the core's table
            (``uncertainty_mask_25pct`` beside 0, ``no_uncertainty_mask`` beside a fraction > 0).
            Off by default because it was measured worse on the stairs queries (README).
        calibration_bins: equal-count bins of the reliability table and plot.
    """

    loss: Literal["kfnet", "laplace"] = "kfnet"
    exclude_fraction: float = attrs.field(default=0.0, validator=in_range(0.0, 0.95))
    calibration_bins: int = attrs.field(default=10, validator=at_least(1))


@attrs.frozen(kw_only=True)
class BaselineConfig:
    """DSAC* trained on the real frames only, beside TransPose: the same network (without the
    uncertainty head), the same initial weights, seed, schedule and step budget.

    Attributes:
        enabled: train and evaluate it (its checkpoint: ``RUN/baseline/checkpoints/last.ckpt``).
    """

    enabled: bool = True


@attrs.frozen(kw_only=True)
class TransPoseConfig(DSACConfig):
    """Config of the ``transpose`` method: every key of :class:`~maploc_dsac.config.DSACConfig` plus
    the sections below. Defaults differ from ``dsac`` where the 20-minute CPU budget of the
    no-argument run (two trainings) asks: only the ``init`` stage (3000 steps, the Euclidean loss
    against ground truth from depth for the baseline, KFNet's NLL for TransPose), no classical
    reference, and the uncertainty head on.

    Attributes:
        synthetic: synthetic views and the mixing schedule.
        render_augment: appearance augmentation of the renders.
        uncertainty: the uncertainty loss and its use in RANSAC.
        baseline: the real-only DSAC* baseline (the row ``dsac_real_only`` of the core's table).
        plot_query: index of the query of the side-by-side plots.
    """

    stages: tuple[str, ...] = attrs.field(default=("init",), validator=DSACConfig.__attrs_attrs__.stages.validator)
    network: NetworkConfig = NetworkConfig(uncertainty=True)
    init: StageConfig = StageConfig(steps=3000, lr=1e-3)
    classical: ClassicalConfig = ClassicalConfig(enabled=False)
    synthetic: SyntheticConfig = SyntheticConfig()
    render_augment: RenderAugmentConfig = RenderAugmentConfig()
    uncertainty: UncertaintyConfig = UncertaintyConfig()
    baseline: BaselineConfig = BaselineConfig()

    def baseline_config(self) -> DSACConfig:
        """The baseline's :class:`DSACConfig`: this config's DSAC* keys, without the uncertainty head and
        without the classical baseline (TransPose itself reports that one when ``classical.enabled``)."""
        keys = {f.name: getattr(self, f.name) for f in attrs.fields(DSACConfig)}
        keys["network"] = attrs.evolve(self.network, uncertainty=False)
        keys["classical"] = attrs.evolve(self.classical, enabled=False)
        return DSACConfig(**keys)

"""The ``transpose`` method: DSAC* trained on real frames plus synthetic views of the same real
scene, with a per-cell uncertainty head, beside DSAC* trained on the real frames only.

Sources: the TransPose project ("Sim2Real transfer learning for camera pose estimation", built on
DSAC*: renders of a real site plus real images, an uncertainty head trained with a KFNet-style loss);
DSAC* (Brachmann & Rother, TPAMI 2021) for the network, training and RANSAC; KFNet (Zhou et al.,
CVPR 2020, Sec. 3.2) for the uncertainty loss; CrossLoc (Yan et al.) for the sim/real setting.

Life of a run (``maploc run --method transpose``, default dataset ``7scenes``, the stairs sample):

1. ``fit``: renders ``synthetic.num_views`` novel views of the scene from a TSDF model fused from the
   training (= mapping) frames at full resolution (:mod:`maploc_dsac.transpose.synthesize`, cached
   under ``$MAPLOC_DATA/transpose-views``), mixes them with the real frames
   (:class:`~maploc_dsac.transpose.mixing.MixedDataset`, renders augmented in appearance) and
   trains DSAC* with the uncertainty head (``init`` stage: KFNet's NLL,
   :func:`~maploc_dsac.transpose.uncertainty.gaussian_nll_loss`); then trains the baseline, DSAC*
   on the real frames only, from the same initial weights with the same seed, schedule and step
   budget (checkpoint ``RUN/baseline/checkpoints/last.ckpt``, reloaded from the source run by
   ``maploc eval --checkpoint``).
2. ``localize``: DSAC*'s RANSAC, with the ``uncertainty.exclude_fraction`` most uncertain cells of
   each query excluded from hypothesis sampling and scoring. The same queries are localized by the
   baseline and by TransPose with the other exclusion setting (0 or 25 %).
3. ``variants``: those as rows of the core's table: the baseline ``dsac_real_only`` and
   ``uncertainty_mask_25pct`` (or ``no_uncertainty_mask`` when the exclusion is on), scored by the
   core with TransPose and its ``coverage`` reference row.
4. ``plots`` / ``report_sections``: what is real and what is rendered, the calibration of the
   predicted sigma (Spearman, reliability plot) and the figure of a real query, its nearest
   synthetic view, both models' scene-coordinate errors and the uncertainty map.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor

from maploc.api import Dataset, RunContext, Variant
from maploc.data.cache import CachedDataset
from maploc.errors import CheckpointError, DataError
from maploc.files import atomic_write_text
from maploc.types import PoseEstimate, Sample
from maploc_dsac.method import DSACMethod, _unwrap, scene_mean
from maploc_dsac.network import SceneCoordinateNetwork
from maploc_dsac.transpose.config import TransPoseConfig
from maploc_dsac.transpose.mixing import MixedDataset
from maploc_dsac.transpose.uncertainty import gaussian_nll_loss, uncertainty_exclusion_mask

__all__ = ["TransPoseMethod", "BASELINE_VARIANT", "other_exclusion"]

log = logging.getLogger(__name__)

#: The variant name of the real-only DSAC* baseline.
BASELINE_VARIANT = "dsac_real_only"
#: The exclusion fraction of the other setting when the configured one is 0.
OTHER_EXCLUSION = 0.25


def other_exclusion(exclude_fraction: float) -> tuple[str, float, str]:
    """The uncertainty setting reported beside the configured ``exclude_fraction``: ``(variant name,
    fraction, description)``; 25 % when the configured one is 0 (the default), else 0."""
    if exclude_fraction > 0:
        return "no_uncertainty_mask", 0.0, "TransPose without excluding uncertain cells from RANSAC"
    pct = round(100 * OTHER_EXCLUSION)
    return (f"uncertainty_mask_{pct}pct", OTHER_EXCLUSION,
            f"TransPose with the {pct} % most uncertain cells of each query excluded from RANSAC")


class TransPoseMethod(DSACMethod):
    """TransPose (see the module docstring). Config: :class:`~maploc_dsac.transpose.config.TransPoseConfig`."""

    name: ClassVar[str] = "transpose"
    Config = TransPoseConfig  # type: ignore[assignment]
    presets_package: ClassVar[str | None] = "maploc_dsac.transpose.presets"
    conformance_overrides: ClassVar[tuple[str, ...]] = (
        "data.image_height=48",
        "network.width=0.125",
        "ransac.num_hypotheses=16",
        "ransac.max_refinement_steps=10",
        "train.batch_size=2",
        "synthetic.num_views=0",
        "report_map_views=false",
    )

    #: ``(map_data, SynthOptions, cache_dir) -> Path`` of a DSAC*-layout folder; tests may replace it.
    synthesize: ClassVar[Any] = None

    @classmethod
    def check_runtime(cls) -> None:
        """Imports Open3D (the TSDF fusion), which this module imports lazily; ``maploc list --check`` calls it.

        Raises:
            DataError: Open3D cannot be imported (not installed, or libusb-1.0 missing on Linux), naming the fix.
        """
        from maploc_dsac.transpose.fusion import _open3d

        _open3d()

    def __init__(self, config: TransPoseConfig) -> None:
        super().__init__(config)
        self.config: TransPoseConfig
        #: the real-only DSAC* baseline (trained in ``fit`` or reloaded in ``build_map``)
        self.baseline: DSACMethod | None = None
        self.baseline_seconds: float | None = None
        self.transpose_seconds: float | None = None
        self.synthetic_root: Path | None = None
        self.synthetic_data: Any = None
        self.synthesis_seconds: float | None = None
        self.num_real_frames: int | None = None
        self.calibration_result: dict[str, Any] | None = None
        #: the exclusion fraction :meth:`predict` applies (``uncertainty.exclude_fraction`` by default)
        self.exclude_fraction = float(config.uncertainty.exclude_fraction)
        self._stream: str | None = None
        #: the query dataset's name (``7scenes``: real photographs; ``sim-city``: renders), set by :meth:`plots`
        self.query_dataset: str | None = None

    # -- training -------------------------------------------------------------------------------------
    def init_loss(self, pred: Tensor, gt: Tensor, valid: Tensor, log_var: Tensor | None) -> Tensor:
        """KFNet's NLL (``uncertainty.loss=kfnet``) when the network has the uncertainty head, else
        DSAC*'s Euclidean loss (:meth:`DSACMethod.init_loss`)."""
        if log_var is not None and self.config.uncertainty.loss == "kfnet":
            return gaussian_nll_loss(pred, gt, valid, log_var.float())
        return super().init_loss(pred, gt, valid, log_var)

    def _synthetic_views(self, train_data: Dataset) -> Any:
        """The DSAC*-layout dataset of the renders (built once, cached), at the network's input height."""
        from maploc.data.dsac_layout import DSACLayout
        from maploc.data.fetch import cache_root

        s = self.config.synthetic
        full = self._full_resolution(train_data)
        build = type(self).synthesize
        if build is None:
            from maploc_dsac.transpose.fusion import FusionOptions
            from maploc_dsac.transpose.synthesize import SynthOptions, build_synthetic_views

            options: Any = SynthOptions(
                num_views=s.num_views, max_angle_deg=s.max_angle_deg, max_translation_m=s.max_translation_m, seed=s.seed,
                fusion=FusionOptions(voxel_m=s.voxel_m, truncation_m=s.truncation_m, depth_max_m=s.depth_max_m),
                min_valid_fraction=s.min_valid_fraction,
            )
            build = build_synthetic_views
        else:
            options = s
        t0 = time.perf_counter()
        self.synthetic_root = Path(build(full, options, cache_root() / "transpose-views"))
        self.synthesis_seconds = time.perf_counter() - t0
        data = DSACLayout(self.synthetic_root, "train", image_height=self.config.data.image_height)
        if not data.has_depth:
            raise DataError(f"{self.synthetic_root}: the synthetic views have no depth folder")
        log.info("transpose: %d synthetic views in %s (%.1f s)", len(data), self.synthetic_root, self.synthesis_seconds)
        return data

    @staticmethod
    def _full_resolution(data: Dataset) -> Dataset:
        """``data`` re-read at its native resolution (the fusion needs full-resolution depth)."""
        if getattr(data, "image_height", None) is None:
            return data
        try:
            return type(data)(data.root, "map", image_height=None, options=data.options)
        except Exception as e:  # an adapter with another constructor
            log.warning("transpose: cannot re-read %r at full resolution (%s); fusing the network's input", data, e)
            return data

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None,
            context: RunContext = RunContext()) -> Any:
        """Renders the synthetic views, trains TransPose on real + synthetic, then the real-only
        baseline from the same initial weights, seed and step budget (its checkpoint and
        ``training_stages.json`` under ``context.run_dir / "baseline"``). Returns TransPose's
        ``FitResult``."""
        if not self.trains:
            return None
        cfg = self.config
        assert self.model is not None
        net = _unwrap(self.model)
        self.num_real_frames = len(train_data)
        mean = scene_mean(train_data)
        if isinstance(net, SceneCoordinateNetwork):
            net.set_mean(mean)
        initial = {k: v.detach().clone() for k, v in net.state_dict().items()}
        seed = int(getattr(getattr(engine, "config", None), "seed", 0))
        real = CachedDataset(train_data, max_bytes=cfg.train_cache_mib << 20) if cfg.train_cache_mib > 0 else train_data
        synthetic: Any = []
        if cfg.synthetic.num_views > 0:
            self.synthetic_data = self._synthetic_views(train_data)
            synthetic = CachedDataset(self.synthetic_data, max_bytes=cfg.train_cache_mib << 20) if cfg.train_cache_mib > 0 \
                else self.synthetic_data
        stream = MixedDataset(real, synthetic, cfg.synthetic.fraction, cfg.render_augment)
        self._stream = repr(stream)
        _seed(engine, seed)
        t0 = time.perf_counter()
        result = engine.fit(self, stream, val_data)
        self.transpose_seconds = time.perf_counter() - t0
        if getattr(engine, "is_global_zero", True) and context.run_dir is not None and self.stage_log:
            _write_json(Path(context.run_dir) / "training_stages.json", self.stage_summary())
        if cfg.baseline.enabled:
            self._fit_baseline(engine, real, val_data, initial, seed, context)
        return result

    def _fit_baseline(self, engine: Any, real: Any, val_data: Any, initial: Mapping[str, Tensor], seed: int,
                      context: RunContext) -> None:
        baseline = DSACMethod(self.config.baseline_config())
        baseline.model = baseline.configure_model()
        missing, _ = baseline.model.load_state_dict(dict(initial), strict=False)
        if missing:
            raise RuntimeError(f"the baseline network lacks TransPose's weights {missing[:3]}")
        baseline_context = attrs.evolve(
            context, run_dir=None if context.run_dir is None else Path(context.run_dir) / "baseline")
        run_dir = getattr(engine, "run_dir", None)  # the engine writes the checkpoints under it
        if run_dir is not None:
            engine.run_dir = Path(run_dir) / "baseline"
        _seed(engine, seed)
        t0 = time.perf_counter()
        try:
            baseline.fit(engine, real, val_data, baseline_context)
        finally:
            if run_dir is not None:
                engine.run_dir = run_dir
        self.baseline_seconds = time.perf_counter() - t0
        self.baseline = baseline

    # -- map and localization ---------------------------------------------------------------------------
    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """DSAC*'s ``build_map`` for TransPose and the baseline; under ``maploc eval --checkpoint``
        the baseline is reloaded from ``context.source_run_dir / "baseline/checkpoints/last.ckpt"``
        (a warning, and no baseline row, when that file is absent).

        Raises:
            DataError: if the map split is empty.
            CheckpointError: if the baseline checkpoint exists but does not fit.
        """
        super().build_map(map_data, context)
        if self.baseline is None and self.config.baseline.enabled and context.source_run_dir is not None:
            path = Path(context.source_run_dir) / "baseline" / "checkpoints" / "last.ckpt"
            if path.is_file():
                from maploc.engine import load_checkpoint

                baseline = DSACMethod(self.config.baseline_config())
                baseline.model = baseline.configure_model()
                try:
                    baseline.model.load_state_dict(load_checkpoint(path)["model"])
                except (RuntimeError, KeyError) as e:
                    raise CheckpointError(f"{path} does not fit the baseline: {str(e).splitlines()[0]}") from None
                self.baseline = baseline
            else:
                log.warning("transpose: no baseline checkpoint at %s; the baseline row is left out", path)
        if self.baseline is not None:
            assert self.model is not None and self.baseline.model is not None
            device = next(self.model.parameters()).device
            self.baseline.model = self.baseline.model.to(device).eval()
            self.baseline.build_map(map_data, context)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Network outputs; with ``exclude_fraction > 0`` and an uncertainty head, the most uncertain
        cells of each image (:func:`~maploc_dsac.transpose.uncertainty.uncertainty_exclusion_mask`)
        get non-finite scene coordinates, which DSAC*'s RANSAC drops from hypothesis sampling and
        scoring (``DSACRansac`` masks non-finite rows)."""
        out = super().predict(images)
        log_var = out.get("log_variance")
        if self.exclude_fraction > 0 and log_var is not None:
            sc = out["scene_coordinates"]
            B, _, h, w = sc.shape
            keep = uncertainty_exclusion_mask(log_var, self.exclude_fraction, torch.isfinite(sc).all(1)).reshape(B, 1, h, w)
            out["scene_coordinates"] = torch.where(keep, sc, torch.full_like(sc, float("nan")))
        return out

    def localize_with(self, queries: Sequence[Sample], exclude_fraction: float) -> list[PoseEstimate]:
        """:meth:`localize_dsac` with another ``exclude_fraction`` (the with/without comparison)."""
        saved, self.exclude_fraction = self.exclude_fraction, float(exclude_fraction)
        try:
            return self.localize_dsac(queries)
        finally:
            self.exclude_fraction = saved

    def further_estimates(self, queries: Sequence[Sample]) -> dict[str, Variant]:
        """DSAC*'s further rows, the real-only baseline (``dsac_real_only``, when there is one) and
        TransPose with the other uncertainty setting (:func:`other_exclusion`), on the same queries."""
        out = super().further_estimates(queries)
        if self.baseline is not None:
            out[BASELINE_VARIANT] = Variant(
                estimates=self.baseline.localize_dsac(queries), baseline=True,
                description="DSAC* trained on the real frames only: same seed, schedule, step budget, initial weights")
        name, fraction, description = other_exclusion(self.exclude_fraction)
        out[name] = Variant(estimates=self.localize_with(queries, fraction), description=description)
        return out

    # -- reporting ------------------------------------------------------------------------------------------
    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """DSAC*'s plots (of the full prediction, without exclusion), then ``calibration.json``,
        ``calibration.png``, ``uncertainty_map.png`` and ``transpose_comparison.png``."""
        from maploc_dsac.transpose import report

        saved, self.exclude_fraction = self.exclude_fraction, 0.0
        try:
            paths = super().plots(run_dir, queries, estimates)
        finally:
            self.exclude_fraction = saved
        n = len(estimates)
        if n == 0:
            return paths
        self.query_dataset = getattr(type(queries), "name", type(queries).__name__)
        samples = [queries[i] for i in range(n)]
        paths.extend(report.uncertainty_outputs(self, Path(run_dir), samples))
        paths.extend(report.comparison_figure(self, Path(run_dir), samples, estimates))
        return paths

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        """DSAC*'s sections, what was real / rendered, the calibration and the baseline's training stages."""
        from maploc_dsac.transpose import report

        return [*super().report_sections(run_dir, metrics), *report.sections(self)]


def _seed(engine: Any, seed: int) -> None:
    fabric = getattr(engine, "fabric", None)
    if fabric is not None:
        fabric.seed_everything(seed, verbose=False)
    else:
        torch.manual_seed(seed)


def _write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=float) + "\n")


"""The ``dsac`` method: DSAC* scene coordinate regression with batched differentiable RANSAC.

Source: E. Brachmann and C. Rother, "Visual Camera Re-Localization from RGB and RGB-D Images Using
DSAC", TPAMI 2021 (DSAC*), and its public code for defaults.

Life of a run (``maploc run --method dsac``):

1. ``configure_model``: :class:`~maploc_dsac.network.SceneCoordinateNetwork` (Sec. 4.1).
2. Training, one ``Engine.fit`` whose optimizer steps are laid out in stages (Sec. 4.2-4.3):
   ``init`` (ground-truth scene coordinates from depth, or DSAC*'s RGB-only heuristic),
   ``reprojection`` (the clamped reprojection error) and ``e2e`` (expected pose loss through
   :meth:`~maploc_dsac.solvers.DSACRansac.expectation`). The stage of a step is a pure function of
   the step index (:meth:`~maploc_dsac.config.DSACConfig.stage_at`) and each stage's learning rate
   is applied by the LR scheduler, so checkpoints resume exactly, in any stage. Augmentation
   (:mod:`maploc_dsac.augment`) happens in ``training_step`` on the batch's device.
3. ``build_map``: the network *is* the map; the mapping frames only initialise the mean scene
   coordinate of an untrained network, and feed the classical baseline (:mod:`~maploc_dsac.classical`).
4. ``localize``: scene coordinates of a batch of queries, then one batched RANSAC over all of them:
   P3P hypotheses and reprojection errors (``mode=rgb``, Sec. 3.1) or Kabsch hypotheses and 3-D
   distances to the query's depth (``mode=rgbd``, Sec. 3.2). With ``classical.enabled`` (the
   default) the classical baseline localizes the same queries too.
5. ``variants``: the classical baseline's estimates as the baseline ``sift_pnp``; the core writes
   them to ``RUN/predictions/sift_pnp.txt`` and scores them in the same table as DSAC*, beside its
   ``coverage`` reference row (the nearest mapping camera).
6. ``plots``: ``poses_dsac.txt`` (DSAC*'s convention, :mod:`~maploc_dsac.plots`), the
   scene-coordinate error of a query (``scene_coordinate_error.png``), DSAC* on its own mapping
   frames (``map_views_metrics.json``) and ``training_stages.json``. :meth:`DSACMethod.report_sections`
   prints the training stages, the map-view check and the classical baseline's mapping time from
   what the method holds in memory.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor, nn

from maploc.api import Dataset, Method, RunContext, SampleMeta, Variant
from maploc.data.cache import CachedDataset
from maploc.errors import DataError
from maploc.files import atomic_write_text
from maploc.types import PoseEstimate, Sample
from maploc_dsac.augment import augment_batch, sample_params
from maploc_dsac.config import DSACConfig
from maploc_dsac.losses import (
    camera_coordinates_from_depth,
    cell_centres,
    cells_inside,
    euclidean_loss,
    pose_loss,
    reprojection_loss,
    sample_at_cells,
    scene_coordinates_from_depth,
)
from maploc_dsac.network import SceneCoordinateNetwork, output_size
from maploc_dsac.plots import format_training_stages

__all__ = ["DSACMethod", "scene_mean"]

log = logging.getLogger(__name__)

#: How many queries' RANSAC inlier masks are kept for the plots.
_KEEP_INLIERS = 64


def _unwrap(model: nn.Module) -> nn.Module:
    module = getattr(model, "module", model)  # Fabric's wrapper
    return getattr(module, "module", module)  # DDP


def _name_seed(name: str, seed: int) -> int:
    """A per-query RANSAC seed: the same query gets the same hypotheses in any batch."""
    return (zlib.crc32(name.encode("utf-8")) << 20) ^ int(seed)


def scene_mean(samples: Sequence[Sample] | Dataset, max_samples: int = 256) -> Tensor:
    """DSAC*'s mean scene coordinate (``train_init.py``): the mean of the ground-truth scene
    coordinates from depth over the training frames when they have depth, else the mean camera
    centre.

    Args:
        samples: frames with ``T_cam2world`` (and ``depth``); at most ``max_samples`` evenly spaced
            ones are read.
        max_samples: bound on the frames read.

    Returns:
        ``(3,)`` float32, metres, world frame.

    Raises:
        DataError: if no sample has a pose.
    """
    n = len(samples)
    idx = sorted({round(i * (n - 1) / max(1, min(n, max_samples) - 1)) for i in range(min(n, max_samples))}) if n else []
    total = torch.zeros(3, dtype=torch.float64)
    count = 0
    centres = []
    for i in idx:
        s = samples[i]
        if s.T_cam2world is None:
            continue
        centres.append(s.T_cam2world.t.double())
        if s.depth is not None:
            H, W = s.depth.shape
            h, w = output_size(H, W)
            coords, valid = scene_coordinates_from_depth(
                s.depth[None].double(), s.camera.K[None].double(), s.T_cam2world.R[None].double(),
                s.T_cam2world.t[None].double(), h, w,
            )
            total += coords[0].permute(1, 2, 0)[valid[0]].sum(0)
            count += int(valid.sum())
    if not centres:
        raise DataError("cannot compute the mean scene coordinate: no sample has a ground-truth pose")
    if count > 0:
        return (total / count).float()
    return torch.stack(centres).mean(0).float()


class DSACMethod(Method[DSACConfig]):
    """DSAC* (see the module docstring). Config: :class:`~maploc_dsac.config.DSACConfig`."""

    name: ClassVar[str] = "dsac"
    Config = DSACConfig
    presets_package: ClassVar[str | None] = "maploc_dsac.presets"
    default_dataset: ClassVar[str] = "7scenes"
    metric_family: ClassVar[str] = "pose6dof"
    localize_batch_size: ClassVar[int] = 8
    conformance_dataset: ClassVar[str] = "synthetic-room"
    conformance_overrides: ClassVar[tuple[str, ...]] = (
        "data.image_height=48",
        "network.width=0.125",
        "ransac.num_hypotheses=16",
        "ransac.train_hypotheses=8",
        "ransac.max_refinement_steps=10",
        "train.batch_size=2",
        "classical.enabled=false",
    )

    def __init__(self, config: DSACConfig) -> None:
        if config.train.max_steps == 0 and config.total_steps() > 0:
            config = attrs.evolve(config, train=attrs.evolve(config.train, max_steps=config.total_steps()))
        super().__init__(config)
        #: per-stage training statistics: ``stage -> {steps, first_step, last_step, loss_sum, ...}``
        self.stage_log: dict[str, dict[str, Any]] = {}
        self._classical: Any = None
        self._classical_queries: Dataset | None = None
        self._classical_index: dict[str, int] | None = None
        self._map_data: Dataset | None = None
        self._inliers: dict[str, Tensor] = {}
        self._last_stage: str | None = None
        self._last_step_start: float | None = None
        #: ``name -> (Variant without estimates, {query name: estimate})`` of the further rows
        #: (:meth:`further_estimates`), filled by :meth:`localize`, returned by :meth:`variants`
        self._further: dict[str, tuple[Variant, dict[str, PoseEstimate]]] = {}
        #: metrics of the map-view check, set by :meth:`plots`
        self.map_view_metrics: dict[str, float] | None = None

    # -- model and optimisation -------------------------------------------------------------------
    @property
    def trains(self) -> bool:
        return self.model is not None and (self.config.train.max_steps > 0 or self.config.train.epochs > 0)

    def configure_model(self) -> nn.Module:
        n = self.config.network
        return SceneCoordinateNetwork(
            encoder=n.encoder, width=n.width, grayscale=n.grayscale, uncertainty=n.uncertainty, init=n.init
        )

    def configure_optimizers(self, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
        """Adam; a ``LambdaLR`` that sets each step's learning rate to its stage's ``lr``."""
        cfg = self.config
        base = cfg.stage_lr(cfg.stage_at(0))
        if base <= 0:
            raise ValueError(f"the learning rate of stage {cfg.stage_at(0)!r} must be positive, got {base}")
        optimizer = torch.optim.Adam(model.parameters(), lr=base, foreach=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cfg.stage_lr(cfg.stage_at(step)) / base)
        return optimizer, scheduler

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None,
            context: RunContext = RunContext()) -> Any:
        """Computes DSAC*'s mean scene coordinate over ``train_data`` (``train_init.py``), then runs
        every configured stage in one ``engine.fit`` (stages are a schedule over the steps), and
        writes ``training_stages.json`` into ``context.run_dir`` (when there is one).

        ``maploc run`` / ``maploc train`` call this method. Code that calls ``engine.fit`` directly
        gets the mean from the first training batch instead (see :meth:`training_step`). Returns the
        engine's ``FitResult``.
        """
        if not self.trains:
            return None
        assert self.model is not None
        if self.config.train_cache_mib > 0:
            # Samples are read thousands of times (augmentation is applied to the batch, later):
            # decode each once.
            train_data = CachedDataset(train_data, max_bytes=self.config.train_cache_mib << 20)
        net = _unwrap(self.model)
        if isinstance(net, SceneCoordinateNetwork) and not bool(net.mean_initialized):
            net.set_mean(scene_mean(train_data))
        result = engine.fit(self, train_data, val_data)
        if getattr(engine, "is_global_zero", True) and context.run_dir is not None and self.stage_log:
            # also for `maploc train`, which makes no plots
            _write_json(Path(context.run_dir) / "training_stages.json", self.stage_summary())
        return result

    # -- training -----------------------------------------------------------------------------------
    def _check_batch(self, batch: dict[str, Any]) -> None:
        if "R_cam2world" not in batch:
            names = ", ".join(batch.get("name", [])[:3])
            raise DataError(f"dsac needs ground-truth poses to train; a training batch ({names}) has none")

    def _init_mean(self, net: SceneCoordinateNetwork, batch: dict[str, Any]) -> None:
        depth = batch.get("depth")
        if depth is not None and self.config.loss.use_depth:
            h, w = output_size(*depth.shape[-2:])
            coords, valid = scene_coordinates_from_depth(
                depth.double(), batch["K"].double(), batch["R_cam2world"].double(), batch["t_cam2world"].double(), h, w
            )
            if bool(valid.any()):
                net.set_mean(coords.permute(0, 2, 3, 1)[valid].mean(0).float())
                return
        net.set_mean(batch["t_cam2world"].double().mean(0).float())

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> Tensor | None:
        """One optimizer step of the stage that step ``batch_idx`` belongs to.

        ``batch`` is :func:`maploc.data.collate`'s dict (``image``, ``K``, ``R_cam2world``,
        ``t_cam2world``, optional ``depth``); ``batch_idx`` is the engine's global step. Returns the
        loss, or ``None`` (the engine skips the optimizer step and counts it) for an ``e2e`` batch in
        which no image has a RANSAC hypothesis.

        Raises:
            DataError: if the batch has no ground-truth poses.
        """
        cfg = self.config
        self._check_batch(batch)
        stage = cfg.stage_at(batch_idx)
        stage_cfg = getattr(cfg, stage)
        net = _unwrap(model)
        if isinstance(net, SceneCoordinateNetwork) and not bool(net.mean_initialized):
            self._init_mean(net, batch)
        images, K = batch["image"], batch["K"].float()
        R, t = batch["R_cam2world"].float(), batch["t_cam2world"].float()
        depth = batch.get("depth") if cfg.loss.use_depth or cfg.mode == "rgbd" else None
        B = images.shape[0]
        params = sample_params(B, cfg.augment, geometric=stage_cfg.geometric_augmentation, device=images.device)
        aug = augment_batch(images, K, params, R_cam2world=R, t_cam2world=t, depth=depth)
        t0 = time.perf_counter()
        out = model(aug.images)
        pred = out["scene_coordinates"].float()
        log_var = out.get("log_variance")
        h, w = pred.shape[-2:]
        H, W = images.shape[-2:]
        cell_valid = sample_at_cells(aug.valid, h, w) & cells_inside(h, w, H, W, device=pred.device)
        gt = gt_valid = None
        if aug.depth is not None:
            gt, gt_valid = scene_coordinates_from_depth(aug.depth.float(), aug.K, aug.R_cam2world, t, h, w)
            gt_valid = gt_valid & cell_valid
        stats: dict[str, float] = {}
        if stage == "init":
            if gt is not None and cfg.loss.use_depth:
                loss = self.init_loss(pred, gt, gt_valid, log_var)
                stats["valid_fraction"] = float(gt_valid.float().mean())
            else:
                loss, frac = self._reprojection(pred, aug, t, cell_valid, None, None, H)
                stats["valid_fraction"] = float(frac)
        elif stage == "reprojection":
            loss, frac = self._reprojection(pred, aug, t, cell_valid, gt, gt_valid, H)
            stats["valid_fraction"] = float(frac)
        else:
            loss, e2e_stats = self._e2e(pred, aug, t, cell_valid, h, w, H)
            stats.update(e2e_stats)
        seconds = time.perf_counter() - t0
        if loss is None:
            self._record_skip(stage, batch_idx, seconds, B)
            return None
        self._record(stage, batch_idx, float(loss.detach()), seconds, B, stats)
        return loss

    def init_loss(self, pred: Tensor, gt: Tensor, valid: Tensor, log_var: Tensor | None) -> Tensor:
        """The ``init`` stage's loss against ground truth from depth (a hook: TransPose overrides it)."""
        return euclidean_loss(pred, gt, valid, None if log_var is None else log_var.float())

    def _reprojection(
        self, pred: Tensor, aug: Any, t: Tensor, cell_valid: Tensor, gt: Tensor | None, gt_valid: Tensor | None,
        height: int,
    ) -> tuple[Tensor, Tensor]:
        c = self.config.loss
        scale = self.config.pixel_scale(height)
        return reprojection_loss(
            pred, aug.K, aug.R_cam2world, t, target=gt, target_valid=gt_valid, cell_valid=cell_valid,
            min_depth=c.min_depth_m, max_depth=c.max_depth_m, target_depth=c.target_depth_m,
            init_tolerance=c.init_tolerance_m, soft_clamp=c.soft_clamp_px * scale, hard_clamp=c.hard_clamp_px * scale,
        )

    def _ransac(self, train: bool, height: int) -> Any:
        """The solver for images ``height`` px high: RGB pixel thresholds scaled by ``height / 480``."""
        from maploc_dsac.solvers import DSACRansac

        r = self.config.ransac
        rgb = self.config.mode == "rgb"
        scale = self.config.pixel_scale(height) if rgb else 1.0
        threshold = r.inlier_threshold if r.inlier_threshold is not None else (10.0 if rgb else 0.1)
        max_error = r.max_error if r.max_error is not None else (100.0 if rgb else 1.0)
        return DSACRansac(
            self.config.mode,
            num_hypotheses=r.train_hypotheses if train else r.num_hypotheses,
            inlier_threshold=threshold * scale,
            inlier_alpha=r.inlier_alpha,
            max_error=max_error * scale,
            max_refinement_steps=r.max_refinement_steps,
            train_refinement_steps=r.train_refinement_steps,
            adaptive_confidence=None if train else r.adaptive_confidence,
            min_hypotheses=r.min_hypotheses,
        )

    def _e2e(
        self, pred: Tensor, aug: Any, t: Tensor, cell_valid: Tensor, h: int, w: int, height: int
    ) -> tuple[Tensor | None, dict[str, float]]:
        """DSAC*'s end-to-end objective (Sec. 4.3, Eq. 11): the expected pose loss over the
        hypotheses, ``sum_h p_h loss(h)``, differentiated through scoring, selection and refinement;
        ``None`` when no image of the batch has a hypothesis."""
        cfg = self.config
        B = pred.shape[0]
        N = h * w
        sc = pred.permute(0, 2, 3, 1).reshape(B, N, 3)
        mask = cell_valid.reshape(B, N)
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        ransac = self._ransac(train=True, height=height)
        if cfg.mode == "rgb":
            pixels = cell_centres(h, w, dtype=sc.dtype, device=sc.device).reshape(1, N, 2).expand(B, N, 2)
            expectation = ransac.expectation(sc, pixels, aug.K, mask=mask, seed=seed)
        else:
            if aug.depth is None:
                raise DataError("the e2e stage in rgbd mode needs depth in the training data")
            pc, pvalid = camera_coordinates_from_depth(aug.depth.float(), aug.K, h, w)
            expectation = ransac.expectation(sc, points_cam=pc.reshape(B, N, 3), mask=mask & pvalid.reshape(B, N), seed=seed)
        lc = cfg.loss
        R_gt, t_gt = aug.R_cam2world, t
        losses = expectation.expected_loss(
            lambda R_, t_: pose_loss(R_, t_, R_gt[:, None].to(R_.dtype), t_gt[:, None].to(t_.dtype), lc.weight_rot,
                                     lc.weight_trans, lc.pose_soft_clamp)
        )
        ok = expectation.success
        if not bool(ok.any()):
            return None, {}
        return losses[ok].mean().to(pred.dtype), {"images_with_hypotheses": float(ok.float().mean())}

    def _record(
        self, stage: str, step: int, loss: float | None, seconds: float, batch: int, stats: dict[str, float]
    ) -> None:
        """Per-stage statistics. ``seconds``: forward and loss of this step; ``wall_seconds`` adds the
        time from one step's start to the next one's (backward, optimizer, loading the next batch).
        ``loss=None``: a skipped step (no loss)."""
        now = time.perf_counter()
        if self._last_step_start is not None and self._last_stage in self.stage_log:
            self.stage_log[self._last_stage]["wall_seconds"] += now - seconds - self._last_step_start
        self._last_step_start = now - seconds
        entry = self.stage_log.setdefault(
            stage,
            {"first_step": step, "last_step": step, "steps": 0, "images": 0, "seconds": 0.0, "wall_seconds": 0.0,
             "loss_first": None, "loss_last": None},
        )
        if loss is not None:
            entry["loss_last"] = loss
            if entry["loss_first"] is None:
                entry["loss_first"] = loss
        entry["last_step"] = step
        entry["steps"] += 1
        entry["images"] += batch
        entry["seconds"] += seconds
        entry["lr"] = self.config.stage_lr(stage)
        for k, v in stats.items():
            entry[f"{k}_last"] = v
        if self._last_stage != stage:
            log.info("dsac: stage %s starts at step %d", stage, step)
            self._last_stage = stage

    def _record_skip(self, stage: str, step: int, seconds: float, batch: int) -> None:
        """A step whose batch had no RANSAC hypothesis (no optimizer step): counted per stage."""
        self._record(stage, step, None, seconds, batch, {})
        entry = self.stage_log[stage]
        entry["skipped_steps"] = entry.get("skipped_steps", 0) + 1

    def stage_summary(self) -> dict[str, Any]:
        """Per-stage training information (what ``training_stages.json`` holds): for each stage that
        ran, its step range, images seen, seconds (forward and loss; ``wall_seconds``: whole steps,
        up to the start of the stage's last step), first and last loss, learning rate."""
        schedule = [{"stage": s, "steps": n, "lr": self.config.stage_lr(s)} for s, n in self.config.stage_steps()]
        return {"schedule": schedule, "total_steps": self.config.train.max_steps, "stages": self.stage_log}

    def validation_step(self, model: nn.Module, batch: Any, batch_idx: int) -> dict[str, float]:
        """The Euclidean scene-coordinate error (metres) against depth, when the batch has depth."""
        self._check_batch(batch)
        with torch.no_grad():
            out = model(batch["image"])
            pred = out["scene_coordinates"].float()
            if "depth" not in batch:
                return {}
            h, w = pred.shape[-2:]
            gt, valid = scene_coordinates_from_depth(
                batch["depth"].float(), batch["K"].float(), batch["R_cam2world"].float(), batch["t_cam2world"].float(), h, w
            )
            return {"val_scene_coordinate_error_m": float(euclidean_loss(pred, gt, valid))}

    # -- map -------------------------------------------------------------------------------------------
    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """The trained network is the map. Here: the mean scene coordinate of a network that was
        not trained (so an untrained run still predicts near the scene), and the classical
        baseline's index of the mapping frames (``classical.enabled``), at ``classical.image_height``.

        Raises:
            DataError: if the map split is empty.
        """
        if len(map_data) == 0:
            raise DataError(f"the map split of {map_data!r} is empty")
        self._map_data = map_data
        self._further = {}
        if self.model is None:
            self.model = self.configure_model()
        net = _unwrap(self.model)
        if isinstance(net, SceneCoordinateNetwork) and not bool(net.mean_initialized):
            net.set_mean(scene_mean(map_data))
        self._classical = None
        self._classical_queries = None
        self._classical_index = None
        if self.config.classical.enabled:
            from maploc_dsac.classical import ClassicalReference

            self._classical = ClassicalReference(self.config.classical)
            data = self._classical_split(map_data, "map") or map_data
            used = self._classical.build(data[i] for i in range(len(data)))
            if used == 0:
                log.warning("classical baseline: no mapping frame has depth and a pose; it will fail every query")

    def _classical_split(self, data: Dataset, split: str) -> Dataset | None:
        """``split`` of ``data``'s dataset (same adapter, root and options) at ``classical.image_height``;
        ``None`` when that is ``data``'s height already (or ``null``), or when the adapter cannot be
        re-opened so (the classical baseline then sees the network's samples)."""
        height = self.config.classical.image_height
        if height is None or height == getattr(data, "image_height", None):
            return None
        try:
            return type(data)(data.root, split, image_height=height, options=data.options)
        except Exception as e:  # an adapter with another constructor: fall back to the same samples
            log.warning("classical baseline: cannot re-read %r at %d px (%s); using the network's input", data, height, e)
            return None

    def _classical_query(self, query: Sample) -> Sample:
        """``query`` as the classical baseline sees it: the same sample re-read at
        ``classical.image_height`` (looked up by name in the re-opened query split), else itself."""
        if self._classical_index is None:
            assert self._map_data is not None
            self._classical_queries = self._classical_split(self._map_data, "query")
            names = self._classical_queries.names() if self._classical_queries is not None else []
            self._classical_index = {n: i for i, n in enumerate(names)}
        i = self._classical_index.get(query.name)
        return query if i is None or self._classical_queries is None else self._classical_queries[i]

    # -- localization ------------------------------------------------------------------------------------
    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Network outputs for ``(B, 3, H, W)`` images on the model's device, without gradients."""
        assert self.model is not None, "configure_model was not called"
        device = next(self.model.parameters()).device
        with torch.no_grad():
            return dict(self.model(images.to(device)))

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """DSAC*'s estimates of a batch (:meth:`localize_dsac`); the further rows of the same queries
        (:meth:`further_estimates`) are kept for :meth:`variants`."""
        estimates = self.localize_dsac(queries)
        for name, variant in self.further_estimates(queries).items():
            _, store = self._further.setdefault(name, (attrs.evolve(variant, estimates=()), {}))
            store.update({q.name: e for q, e in zip(queries, variant.estimates)})
        return estimates

    def further_estimates(self, queries: Sequence[Sample]) -> dict[str, Variant]:
        """The estimates of the further rows for a batch of queries, ``name -> Variant`` (one estimate
        per query): here the classical baseline ``sift_pnp`` when ``classical.enabled``. Subclasses
        add theirs (TransPose: the real-only DSAC* and the other uncertainty setting)."""
        if self._classical is None:
            return {}
        c = self.config.classical
        height = "the network's input" if c.image_height is None else f"{c.image_height} px"
        return {"sift_pnp": Variant(
            estimates=[self._classical.localize(self._classical_query(q)) for q in queries], baseline=True,
            description=f"SIFT to the mapping frames lifted with their depth, cv2.solvePnPRansac (EPnP) + LM, at {height}",
        )}

    def variants(
        self, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate], context: RunContext = RunContext(),
    ) -> dict[str, Variant]:
        """The further rows collected by :meth:`localize` (see :meth:`further_estimates`), in query
        order; a query they did not see gets a failed estimate."""
        out = {}
        for name, (variant, store) in self._further.items():
            rows = [store.get(q.name) for q in queries]
            out[name] = attrs.evolve(variant, estimates=[
                e if e is not None else PoseEstimate.failed(reason="not localized") for e in rows])
        return out

    def localize_dsac(self, queries: Sequence[Sample]) -> list[PoseEstimate]:
        """Scene coordinates, then DSAC*'s RANSAC on all queries of the batch at once.

        Queries of different image sizes are solved in groups of equal size. A query with too few
        valid scene coordinates (or, in ``rgbd`` mode, without depth) gets a failed estimate.
        """
        out: list[PoseEstimate | None] = [None] * len(queries)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault(tuple(q.image.shape[-2:]), []).append(i)
        for indices in groups.values():
            for i, e in zip(indices, self._localize_group([queries[i] for i in indices])):
                out[i] = e
        return [e if e is not None else PoseEstimate.failed() for e in out]

    def _localize_group(self, queries: Sequence[Sample]) -> list[PoseEstimate]:
        from maploc_dsac.pose_solvers import estimates_from_result

        cfg = self.config
        t0 = time.perf_counter()
        images = torch.stack([q.image for q in queries])
        pred = self.predict(images)["scene_coordinates"].float()
        device = pred.device
        B, _, h, w = pred.shape
        H, W = images.shape[-2:]
        N = h * w
        sc = pred.permute(0, 2, 3, 1).reshape(B, N, 3)
        mask = cells_inside(h, w, H, W, device=device).reshape(1, N).expand(B, N) & torch.isfinite(sc).all(-1)
        K = torch.stack([q.camera.K.float() for q in queries]).to(device)
        seeds = torch.tensor([_name_seed(q.name, cfg.ransac.seed) for q in queries], dtype=torch.int64, device=device)
        ransac = self._ransac(train=False, height=H)
        no_depth = [i for i, q in enumerate(queries) if cfg.mode == "rgbd" and q.depth is None]
        if cfg.mode == "rgb":
            pixels = cell_centres(h, w, device=device).reshape(1, N, 2).expand(B, N, 2)
            result = ransac(sc, pixels, K, mask=mask, seed=seeds)
        else:
            depth = torch.stack([q.depth if q.depth is not None else torch.zeros(H, W) for q in queries]).to(device)
            pc, pvalid = camera_coordinates_from_depth(depth.float(), K, h, w)
            result = ransac(sc, points_cam=pc.reshape(B, N, 3), mask=mask & pvalid.reshape(B, N), seed=seeds)
        seconds = (time.perf_counter() - t0) / B
        estimates = estimates_from_result(result, max(cfg.ransac.min_inliers, ransac.set_size), seconds)
        for i in no_depth:
            estimates[i] = PoseEstimate.failed(seconds=seconds, reason="rgbd mode needs query depth")
        inliers = result.inliers.reshape(B, h, w).cpu()
        for i, q in enumerate(queries):
            if len(self._inliers) < _KEEP_INLIERS:
                self._inliers[q.name] = inliers[i]
        return estimates

    # -- reporting -------------------------------------------------------------------------------------
    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """Writes ``poses_dsac.txt``, ``scene_coordinate_error.png``, ``training_stages.json`` and
        (``report_map_views``) ``map_views_metrics.json`` (the evaluated queries are the first
        ``len(estimates)``)."""
        from maploc_dsac.plots import plot_scene_coordinate_error, write_poses_dsac

        run_dir = Path(run_dir)
        n = len(estimates)
        samples = [queries[i] for i in range(n)]
        paths = [write_poses_dsac(run_dir / "poses_dsac.txt", samples, estimates)]
        if self.stage_log:
            paths.append(_write_json(run_dir / "training_stages.json", self.stage_summary()))
        if n:
            k = min(max(self.config.plot_query, 0), n - 1)
            q = samples[k]
            if q.depth is not None and q.T_cam2world is not None:
                pred = self.predict(q.image[None])["scene_coordinates"][0].float().cpu()
                h, w = pred.shape[-2:]
                gt, valid = scene_coordinates_from_depth(
                    q.depth[None].float(), q.camera.K[None].float(), q.T_cam2world.R[None].float(),
                    q.T_cam2world.t[None].float(), h, w,
                )
                e = estimates[k]
                title = f"dsac ({self.config.mode}) on {q.name}: " + (
                    f"{e.num_inliers} inliers" if e.success else "localization failed"
                )
                paths.append(plot_scene_coordinate_error(
                    run_dir / "scene_coordinate_error.png", q, pred, gt[0], valid[0], self._inliers.get(q.name), title
                ))
            else:
                log.info("no scene-coordinate error plot: query %s has no depth or pose", q.name)
        if self.config.report_map_views and self._map_data is not None:
            paths.extend(self._map_view_check(run_dir))
        return paths

    def _map_view_check(self, run_dir: Path, max_frames: int = 16) -> list[Path]:
        """Localizes (up to ``max_frames`` of) the mapping frames, i.e. views the network was trained
        on: separates "the method does not work" from "the queries are unlike the training views".
        Not a result (these are not queries): ``map_views_metrics.json`` and one line of the report."""
        from maploc.evaluation import evaluate, write_metrics_json

        data = self._map_data
        assert data is not None
        n = len(data)
        idx = sorted({round(i * (n - 1) / max(1, min(n, max_frames) - 1)) for i in range(min(n, max_frames))})
        samples = [data[i] for i in idx]
        if any(s.T_cam2world is None for s in samples):
            return []
        estimates: list[PoseEstimate] = []
        for start in range(0, len(samples), self.localize_batch_size):
            estimates.extend(self.localize_dsac(samples[start : start + self.localize_batch_size]))
        metrics = dict(evaluate("pose6dof", samples, estimates).metrics)
        self.map_view_metrics = metrics
        return [write_metrics_json(run_dir / "map_views_metrics.json", metrics)]

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        """Sections below the core's tables, from what this run computed (nothing is read back from
        disk): the per-stage training summary, the map-view check (DSAC* on its own mapping frames,
        one line: a sanity check, not a result) and the classical baseline's mapping time."""
        sections: list[tuple[str, str]] = []
        text = format_training_stages(self.stage_log)
        if text:
            sections.append(("DSAC* training stages", text))
        m = self.map_view_metrics
        if m is not None:
            sections.append(("DSAC* on its own mapping frames (its training views: a sanity check, not a result)", (
                f"{int(m['num_queries'])} frames, {int(m['num_failed'])} failed, median "
                f"{m['median_translation_cm']:.2f} cm / {m['median_rotation_deg']:.2f} deg (map_views_metrics.json)")))
        if self._classical is not None:
            sections.append(("Timing", (
                f"sift_pnp: SIFT of {len(self._classical.frames)} mapping frames and their 3-D points in "
                f"{self._classical.build_seconds:.1f} s (its time per query is in metrics.json, "
                "sift_pnp:time_per_query_ms)")))
        return sections


def _write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")

"""The ``bev_osm`` method: OrienterNet-style localization of a street-level image in an OpenStreetMap raster.

Reference: Sarlin et al., "OrienterNet: Visual Localization in 2D Public Maps with Neural Matching", CVPR 2023.
The image becomes a bird's-eye-view template (Sec. 3.2), the OSM raster around a position prior becomes neural
map features and a log-prior (Sec. 3.1); the template is matched exhaustively over position and yaw (Sec. 3.3),
trained with the negative log-likelihood of the true pose (Sec. 3.4); consecutive frames are fused (Sec. 3.5).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from torch import nn

from maploc.api import Dataset, Method, RunContext, SampleMeta, Variant
from maploc.config import DataConfig, TrainConfig, at_least, greater_than, in_range
from maploc.types import Pose2, PoseEstimate, Sample

from .baselines import ROAD_DIRECTION_RADIUS_M, admissible_draw, admissible_recall, road_direction_yaw, road_snap
from .data import (
    CropError,
    SplitConfig,
    north_up_crop,
    raster_of,
    sequence_prior_offset,
    spatial_split,
    training_footprint_m,
    xy_of,
)
from .geometry import RectificationError, gravity_rectify
from .matching import expectation_pose, fuse_log_volumes, restrict_to_square
from .model import BEVOSMModel, ModelConfig

__all__ = ["AugmentConfig", "BEVOSMConfig", "BEVOSMMethod", "road_snap"]


@attrs.frozen(kw_only=True)
class SearchConfig:
    """Where and how finely the pose is searched.

    Attributes:
        crop_m: side of the north-up map crop searched around the position prior, metres.
        max_offset_m: the prior is the true position plus an offset in ``[-max, max]^2`` metres (east, north),
            so the truth lies in the axis-aligned square of half-side ``max_offset_m`` around the prior (the inner
            half of the north-up crop): written per query as ``prior_halfwidth_m``, the region of the core's
            ``chance:`` row. The offset is GPS-like: one per query sequence plus a slow random walk along it
            (:func:`.data.sequence_prior_offset`), so the frames fused by ``fused`` share a correlated prior
            instead of averaging independent ones. Training crops draw their own uniform offsets.
        prior_drift_m: per-frame step (standard deviation, each axis, metres) of the prior's random walk along a
            sequence (0 = one constant offset per sequence).
        prior_drift_max_m: largest excursion of the walk from the sequence's base offset, metres (at most half of
            ``max_offset_m`` is used, so the truth stays in the square).
        num_yaws_train: yaw bins in training (OrienterNet: 64; the CPU default 32 halves the matching cost, which
            dominates a training step).
        num_yaws_eval: yaw bins at evaluation (OrienterNet: 256).
        window: half-size (cells, yaw bins) of the expectation around the argmax.
        max_tilt_deg: largest camera roll/pitch that gravity rectification accepts (beyond: a counted failure).
        seed: seed of the prior offsets, the odometry noise and the random baselines.
        rot90: training augmentation (OrienterNet's code has it as an option): each training crop is turned by a
            random multiple of 90 degrees, the target cell and yaw with it, so that the model cannot learn the
            headings of the training route as a yaw prior (a route driven one way teaches "always east").
        restrict_to_prior: at evaluation, search only the prior's square (half-side ``max_offset_m``) instead of
            the whole crop: the volume (and the learned map prior of ``prior_only``) is renormalised over the cells
            that meet the square (:func:`.matching.restrict_to_square`), the support the baselines' draws use too.
            Training is unchanged (the softmax spans the crop, as in OrienterNet). On by default: chosen on the val
            blocks (issue 25; ``false`` searches the whole crop as before).
    """

    crop_m: float = attrs.field(default=64.0, validator=greater_than(0))
    max_offset_m: float = attrs.field(default=16.0, validator=at_least(0))
    prior_drift_m: float = attrs.field(default=0.5, validator=at_least(0))
    prior_drift_max_m: float = attrs.field(default=4.0, validator=at_least(0))
    num_yaws_train: int = attrs.field(default=32, validator=at_least(4))
    num_yaws_eval: int = attrs.field(default=256, validator=at_least(4))
    window: int = attrs.field(default=2, validator=at_least(0))
    max_tilt_deg: float = attrs.field(default=30.0, validator=in_range(0, 89))
    seed: int = attrs.field(default=0, validator=at_least(0))
    rot90: bool = False
    restrict_to_prior: bool = True


@attrs.frozen(kw_only=True)
class AugmentConfig:
    """Photometric augmentation of the training images (applied in ``training_step`` only, never at evaluation).

    Rendered day views light every facade by one fixed sun, so a model can read its heading off the shading (a
    compass that fails at night). Random exposure, gamma, per-channel gains and noise make that cue unreliable and
    widen the range of exposures seen in training (the queries include night). Off by default: on the default data
    it bought some night heading but cost position by day and by night (README, "What made position learnable").

    Attributes:
        photometric: apply it.
        min_brightness: each image is scaled by a factor drawn uniformly in ``[min_brightness, 1.2]``.
        max_gamma: each image is raised to a gamma drawn log-uniformly in ``[1 / max_gamma, max_gamma]``.
        channel_gain: each colour channel is scaled by ``1 + U(-channel_gain, channel_gain)``.
        noise_std: standard deviation of the added Gaussian pixel noise (images in [0, 1]).
    """

    photometric: bool = False
    min_brightness: float = attrs.field(default=0.3, validator=in_range(0.0, 1.0))
    max_gamma: float = attrs.field(default=2.0, validator=at_least(1.0))
    channel_gain: float = attrs.field(default=0.15, validator=in_range(0.0, 1.0))
    noise_std: float = attrs.field(default=0.02, validator=in_range(0.0, 1.0))

    def apply(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` float images in [0, 1] -> augmented images of the same shape, clamped to [0, 1]."""
        if not self.photometric:
            return images
        b = images.shape[0]
        opts = {"device": images.device, "dtype": images.dtype}

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(*shape, generator=generator).to(**opts)

        gamma = torch.exp(uniform(-1.0, 1.0, b, 1, 1, 1) * math.log(self.max_gamma))
        out = images.clamp(0, 1) ** gamma
        out = out * uniform(self.min_brightness, 1.2, b, 1, 1, 1)
        out = out * (1 + uniform(-self.channel_gain, self.channel_gain, b, 3, 1, 1))
        if self.noise_std > 0:
            out = out + self.noise_std * torch.randn(out.shape, generator=generator).to(**opts)
        return out.clamp(0, 1)


@attrs.frozen(kw_only=True)
class FusionConfig:
    """Sequential fusion of consecutive frames (OrienterNet, Sec. 3.5).

    The relative poses come from simulated odometry, never from the ground truth alone: each step between two
    consecutive fused frames is the true relative pose (in the earlier frame's body frame: forward, left, yaw) plus
    Gaussian noise, and the steps are composed, so the error of an earlier frame's relative pose grows with the
    number of steps back (drift, and a yaw error turns later steps). The noise of a step is drawn from
    ``(search.seed, sequence, the two frame indices)``: every query that fuses that step sees the same odometry.

    Attributes:
        frames: frames fused (1 = off): the query and the ``frames - 1`` before it in its traversal.
        odometry_noise_m: standard deviation of the noise on each step's forward and left motion, metres.
        odometry_noise_deg: standard deviation of the noise on each step's yaw change, degrees.
    """

    frames: int = attrs.field(default=4, validator=at_least(1))
    odometry_noise_m: float = attrs.field(default=0.3, validator=at_least(0))
    odometry_noise_deg: float = attrs.field(default=1.0, validator=at_least(0))


@attrs.frozen(kw_only=True)
class BEVOSMConfig:
    """Config of ``bev_osm`` (the default is CPU-sized; preset ``full`` has OrienterNet's sizes).

    Attributes:
        model: network and grid sizes.
        search: the searched crop and yaw bins.
        fusion: sequential fusion.
        augment: photometric augmentation of the training images.
        split: the spatial split (:class:`maploc.data.split.SpatialSplit` over the map raster): training views
            keep their whole training footprint out of the test and val blocks; the core scores only the queries
            inside test blocks (``split.json`` in the run folder).
        train: generic training settings.
        data: dataset options. The config sets none; with ``sim-city`` the method adds ``train_routes`` and
            ``conditions`` (:attr:`BEVOSMMethod.dataset_defaults`) unless they are set: the default render
            (Helsinki, 100 frames, 2 traversals, day, night and autumn, plus 12 extra 400 m training routes by
            day) trains on traversal 0 by day and the extra routes, and queries every other sequence (traversal 1
            by day, both traversals by night and in autumn). ``maploc eval --checkpoint ... --data-root DIR``
            reads any render: training routes are checked for the train split only, and a folder is read with
            the conditions it holds.
    """

    model: ModelConfig = ModelConfig()
    search: SearchConfig = SearchConfig()
    fusion: FusionConfig = FusionConfig()
    augment: AugmentConfig = AugmentConfig()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig(epochs=0, max_steps=1500, batch_size=4, lr=2e-3, log_every=50)
    data: DataConfig = DataConfig(image_height=96)


class _Subset(torch.utils.data.Dataset):
    def __init__(self, data: Any, indices: list[int]) -> None:
        self.data, self.indices = data, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.data[self.indices[i]]

    def __repr__(self) -> str:
        return f"{self.data!r}[{len(self.indices)} views outside the guard bands of the test and val blocks]"


def random_yaw(name: str, seed: int = 0) -> float:
    """A reproducible uniform heading in ``[-pi, pi)`` radians from a query name: the yaw of the position-only
    baselines (``road_snap``, ``prior_only``, ``fused_prior``, ``fused_road_snap``; ``road_direction`` where no road
    direction is found), whose yaw columns are thus at chance level."""
    digest = hashlib.sha256(f"yaw:{seed}:{name}".encode()).digest()
    return (int.from_bytes(digest[:8], "little") / 2**64 * 2 - 1) * math.pi


#: The largest position threshold (metres) the evaluation reports (``recall_5m``): the split's success radius.
SUCCESS_RADIUS_M = 5.0
#: This method's own file in the run folder: the map it trained on (a checkpoint evaluated on another map is
#: scored on every query, see :meth:`BEVOSMMethod.build_map`).
MAP_FILE = "bev_osm_map.json"


class BEVOSMMethod(Method[BEVOSMConfig]):
    """Image -> BEV, OSM raster -> neural map, exhaustive matching over (yaw, y, x) (OrienterNet)."""

    name: ClassVar[str] = "bev_osm"
    Config = BEVOSMConfig
    presets_package: ClassVar[str | None] = "maploc_bev_osm.presets"
    default_dataset: ClassVar[str] = "sim-city"
    #: 41 training views (one route, one heading per street) were memorised and position was not learned in held-out
    #: blocks; 12 extra routes give 310 views in every direction outside the guard bands of the default split
    #: (README, "Main job"). Their views are rendered under conditions drawn by sim-city's sampler (daylight to
    #: night, overcast, fog, foliage, exposure; ``-o data.train_conditions=[]``: by day), chosen on the val blocks
    #: (issue 25, ``maploc bench bev --region val``). Autumn is rendered so that the main job evaluates per
    #: condition with night and autumn.
    dataset_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "sim-city": {"train_routes": 12, "conditions": ["day", "night", "autumn"], "train_conditions": "random"}
    }
    metric_family: ClassVar[str] = "se2"
    localize_batch_size: ClassVar[int] = 1
    conformance_dataset: ClassVar[str] = "bev-osm-synthetic"
    conformance_overrides: ClassVar[tuple[str, ...]] = (
        "model.cell_m=2.0", "model.bev_depth_m=8.0", "search.crop_m=32.0", "search.max_offset_m=4.0",
        "search.num_yaws_train=8", "search.num_yaws_eval=16", "train.batch_size=2", "data.image_height=48",
        "split.block_m=40.0", "split.seed=8", "fusion.frames=2", "data.frames=20",
    )  # fmt: skip
    # split.seed=8: on the synthetic 200 m raster the first queries lie in a test block and 5 of the 20 training
    # views outside every guard band (tests/test_conformance.py checks both)

    def __init__(self, config: BEVOSMConfig) -> None:
        super().__init__(config)
        self.raster: Any = None
        self._history: list[dict[str, Any]] = []
        #: per query name: what the variants need (fused pose, baselines), filled by :meth:`localize`
        self._side: dict[str, dict[str, Any]] = {}
        self.train_views = 0
        self.train_candidates = 0
        self.split: Any = None

    # ---- model and training --------------------------------------------------------------------------------------
    @property
    def crop_cells(self) -> int:
        return max(2, round(self.config.search.crop_m / self.config.model.cell_m))

    @property
    def footprint_m(self) -> float:
        """How far a training sample's map content reaches from its position, metres."""
        return training_footprint_m(self.config.search.crop_m, self.config.search.max_offset_m)

    def make_split(self, raster: Any) -> Any:
        """The spatial split of the map of ``raster`` (``None`` with ``split.held_out=false``): success radius
        :data:`SUCCESS_RADIUS_M` (5 m, the largest recall threshold reported), footprint :attr:`footprint_m`."""
        if not self.config.split.held_out:
            return None
        return spatial_split(raster, self.config.split, success_radius_m=SUCCESS_RADIUS_M,
                             footprint_m=self.footprint_m)  # fmt: skip

    def configure_model(self) -> nn.Module:
        from maploc_osm import CLASS_NAMES

        return BEVOSMModel(len(CLASS_NAMES), self.config.model)

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None,
            context: RunContext = RunContext()) -> Any:  # fmt: skip
        """Trains on the views of ``train_data`` that :meth:`~maploc.data.split.SpatialSplit.allowed` admits for
        ``train`` (the whole training footprint stays out of test and val blocks; every view with
        ``split.held_out=false``). Records the map in ``context.run_dir / bev_osm_map.json``.

        Raises:
            ConfigError: no training view is left outside the guard bands.
        """
        from maploc.evaluation.scoring import query_xy

        self.raster = raster_of(train_data, self.config.model.cell_m)
        if context.run_dir is not None:
            from maploc.files import atomic_write_text

            atomic_write_text(context.run_dir / MAP_FILE, json.dumps({"georef": _georef(self.raster)}) + "\n")
        if not self.trains:
            return None
        self.split = self.make_split(self.raster)
        xy = np.array([query_xy(train_data.metadata(i)) for i in range(len(train_data))], np.float64).reshape(-1, 2)
        ok = np.isfinite(xy).all(axis=1)
        if self.split is not None:
            ok &= self.split.allowed(np.where(np.isfinite(xy), xy, 0.0), "train")
            context.logger.info("bev_osm split: %s", self.split.describe())
        keep = [int(i) for i in np.flatnonzero(ok)]
        self.train_views, self.train_candidates = len(keep), len(train_data)
        if not keep:
            from maploc.errors import ConfigError

            raise ConfigError("no training view lies outside the guard bands of the test and val blocks; enlarge "
                              "split.block_m or change split.seed")  # fmt: skip
        return engine.fit(self, _Subset(train_data, keep), val_data)

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        from maploc.data.collate import collate

        batch = collate(samples)
        cfg, size = self.config, self.crop_cells
        # torch's global generator, which the engine seeds (and DataLoader workers derive from), so that
        # the crop offsets are reproducible under --seed; np.random.default_rng() would draw OS entropy
        crops, cells = [], []
        for s in samples:
            assert s.pose2 is not None, "bev_osm trains on samples with a map pose (pose2)"
            # an integer-cell offset puts the true position on a cell centre
            max_cells = int(cfg.search.max_offset_m / cfg.model.cell_m)
            dr, dc = torch.randint(-max_cells, max_cells + 1, (2,)).tolist()
            row, col = size // 2 + dr, size // 2 + dc
            cx = s.pose2.x - (col + 0.5 - size / 2) * cfg.model.cell_m
            cy = s.pose2.y - (size / 2 - 0.5 - row) * cfg.model.cell_m
            crop = north_up_crop(self.raster, cx, cy, size, require_features=False)
            yaw = s.pose2.yaw
            if cfg.search.rot90:
                # turn the world by q quarter turns counter-clockwise: cell (r, c) -> (size - 1 - c, r), yaw + q pi/2
                for _ in range(int(torch.randint(0, 4, ()))):
                    crop = np.rot90(crop, 1, axes=(1, 2))
                    row, col = size - 1 - col, row
                    yaw += math.pi / 2
            crops.append(torch.from_numpy(np.ascontiguousarray(crop)))
            k = round((yaw % (2 * math.pi)) / (2 * math.pi / cfg.search.num_yaws_train))
            cells.append((k % cfg.search.num_yaws_train, row, col))
        batch["raster"] = torch.stack(crops)
        batch["gt_cell"] = torch.tensor(cells, dtype=torch.long)
        return batch

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> Any:
        images = self.config.augment.apply(batch["image"])
        out = model(images, batch["K"], batch["raster"], self.config.search.num_yaws_train)
        loss = self.loss(out, batch)
        with torch.no_grad():
            _, arg = expectation_pose(out["log_volume"].detach(), 0)
            pos_err = (arg[:, 1:] - batch["gt_cell"][:, 1:]).float().norm(dim=1) * self.config.model.cell_m
        return {"loss": loss, "position_error_m": float(pos_err.median())}

    def validation_step(self, model: nn.Module, batch: Any, batch_idx: int) -> Mapping[str, float]:
        with torch.no_grad():
            out = model(batch["image"], batch["K"], batch["raster"], self.config.search.num_yaws_train)
            return {"val_loss": float(self.loss(out, batch))}

    def loss(self, outputs: Any, batch: Any) -> torch.Tensor:
        from .matching import nll_loss

        return nll_loss(outputs["log_volume"], batch["gt_cell"].to(outputs["log_volume"].device))

    # ---- localization --------------------------------------------------------------------------------------------
    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Loads the OSM raster of the map the queries were taken in (crops are cut per query) and saves the
        spatial split as ``context.run_dir / split.json``, so that the core scores only test-block queries.

        No split is saved with ``split.held_out=false``, nor when the checkpoint's run
        (``context.source_run_dir``) trained on another map (its ``bev_osm_map.json`` names another georeference):
        a map never trained on holds out every query.
        """
        self.raster = raster_of(map_data, self.config.model.cell_m)
        self._history, self._side = [], {}
        self.split = self.make_split(self.raster)
        if self.split is not None and context.source_run_dir is not None:
            trained = Path(context.source_run_dir) / MAP_FILE
            if trained.is_file() and json.loads(trained.read_text(encoding="utf-8")).get("georef") != _georef(self.raster):
                context.logger.info("bev_osm: the checkpoint was trained on another map; every query is scored")
                self.split = None
        if context.run_dir is not None:
            path = Path(context.run_dir) / "split.json"
            if self.split is not None:
                from maploc.files import atomic_write_text

                atomic_write_text(path, json.dumps(self.split.to_dict()) + "\n")
            elif path.is_file():
                path.unlink()  # a split of an earlier run into the same folder would filter these queries

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        return [self._localize_one(q) for q in queries]

    def _prior(self, q: Sample) -> tuple[float, float]:
        """The position prior of a query: truth + :func:`.data.sequence_prior_offset` of its sequence (its own name
        when it has none) at its frame index (``timestamp``)."""
        s = self.config.search
        ox, oy = sequence_prior_offset(q.sequence or q.name, q.timestamp or 0.0, s.max_offset_m,
                                       drift_step_m=s.prior_drift_m, drift_max_m=s.prior_drift_max_m, seed=s.seed)  # fmt: skip
        assert q.pose2 is not None
        return q.pose2.x + ox, q.pose2.y + oy

    def _prior_columns(self, cx: float, cy: float) -> dict[str, float]:
        """The prior as predictions-CSV columns: the truth lies in the axis-aligned (north-up) square of half-side
        ``search.max_offset_m`` around it (no region is written for a zero offset: the prior is then exact)."""
        out = {"prior_x_m": float(cx), "prior_y_m": float(cy)}
        if self.config.search.max_offset_m > 0:
            out["prior_halfwidth_m"] = float(self.config.search.max_offset_m)
        return out

    def _localize_one(self, q: Sample) -> PoseEstimate:
        assert self.model is not None and self.raster is not None, "configure_model and build_map come first"
        t0 = time.perf_counter()
        cfg, size = self.config, self.crop_cells
        cell = cfg.model.cell_m
        if q.pose2 is None or q.T_cam2world is None:
            return PoseEstimate.failed(time.perf_counter() - t0, reason="no position prior (pose2)")
        cx, cy = self._prior(q)
        prior = self._prior_columns(cx, cy)
        try:
            image, K, _ = gravity_rectify(q.image, q.camera.K.float(), q.T_cam2world.R.float(), cfg.search.max_tilt_deg)
            crop = north_up_crop(self.raster, cx, cy, size)
        except (RectificationError, CropError) as exc:
            self._history = []
            return PoseEstimate.failed(time.perf_counter() - t0, reason=str(exc), **prior)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(image[None].to(device), K[None].to(device), torch.from_numpy(crop)[None].to(device),
                             cfg.search.num_yaws_eval)  # fmt: skip
        log_volume = out["log_volume"][0].cpu()
        log_prior = out["map"]["log_prior"][0].cpu()
        if cfg.search.restrict_to_prior:
            log_volume = restrict_to_square(log_volume, cfg.search.max_offset_m, cell)
            log_prior = restrict_to_square(log_prior, cfg.search.max_offset_m, cell)
        pose, _ = expectation_pose(log_volume[None], cfg.search.window)
        row, col, yaw = pose[0].tolist()
        x, y = xy_of(float(row), float(col), cx, cy, size, cell)
        pr, pc = divmod(int(log_prior.argmax()), size)
        fused, fused_prior = self._fuse(q, log_volume, (cx, cy))
        self._side[q.name] = {"prior_only": xy_of(pr, pc, cx, cy, size, cell), **self._baselines(q, crop, (cx, cy)),
                              "fused": fused, "fused_prior": fused_prior,
                              "fused_road_snap": self._snap_at(fused_prior)}  # fmt: skip
        return PoseEstimate(pose2=Pose2(x=x, y=y, yaw=float(yaw)), confidence=float(log_volume.max().exp()),
                            seconds=time.perf_counter() - t0, extras=prior)  # fmt: skip

    def _baselines(self, q: Sample, crop: np.ndarray, centre: tuple[float, float]) -> dict[str, Any]:
        """The single-frame baselines of a query from its prior crop (:mod:`.baselines`)."""
        from maploc.evaluation.metrics import SE2_POSITION_THRESHOLDS_M

        cfg = self.config
        cell, hw = cfg.model.cell_m, cfg.search.max_offset_m
        snap = road_snap(crop, centre[0], centre[1], cell)
        assert q.pose2 is not None
        return {
            "road_snap": snap,
            "road_direction": (*snap, road_direction_yaw(crop, max(2.0, ROAD_DIRECTION_RADIUS_M / cell))),
            "admissible_random": admissible_draw(crop, centre[0], centre[1], cell, hw, q.name, cfg.search.seed),
            "admissible_recall": dict(zip(SE2_POSITION_THRESHOLDS_M, admissible_recall(
                crop, centre[0], centre[1], cell, hw, (q.pose2.x, q.pose2.y), SE2_POSITION_THRESHOLDS_M))),
            "truth_xy": (q.pose2.x, q.pose2.y),
        }  # fmt: skip

    def _snap_at(self, xy: tuple[float, float]) -> tuple[float, float]:
        """``xy`` moved to the nearest road cell of a crop centred there (``xy`` itself off the raster)."""
        try:
            crop = north_up_crop(self.raster, xy[0], xy[1], self.crop_cells, require_features=False)
        except CropError:
            return xy
        return road_snap(crop, xy[0], xy[1], self.config.model.cell_m)

    def _odometry_step(self, sequence: str, a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, float]:
        """The odometry from frame ``a`` to the later frame ``b`` (``(forward, left, dyaw)`` in ``a``'s body frame,
        metres and radians): the true relative pose plus seeded Gaussian noise (:class:`FusionConfig`)."""
        cfg = self.config
        pa, pb = a["pose2"], b["pose2"]
        c, s = math.cos(pa.yaw), math.sin(pa.yaw)
        dx, dy = pb.x - pa.x, pb.y - pa.y
        fwd, left, dyaw = c * dx + s * dy, -s * dx + c * dy, pb.yaw - pa.yaw
        digest = hashlib.sha256(f"odometry:{cfg.search.seed}:{sequence}:{a['t']}:{b['t']}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        n = rng.normal(0.0, 1.0, 3)
        return (fwd + cfg.fusion.odometry_noise_m * n[0], left + cfg.fusion.odometry_noise_m * n[1],
                dyaw + math.radians(cfg.fusion.odometry_noise_deg) * n[2])  # fmt: skip

    def _relative_poses(self, sequence: str, frames: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
        """Each frame's pose in the last frame's body frame ``(forward, left, dyaw)`` as the composed noisy
        odometry steps give it (the last frame: zeros)."""
        poses = [(0.0, 0.0, 0.0)]  # frame poses in the first frame's body frame, by composing the steps
        for a, b in zip(frames, frames[1:]):
            f, lf, dyaw = self._odometry_step(sequence, a, b)
            x, y, yaw = poses[-1]
            poses.append((x + math.cos(yaw) * f - math.sin(yaw) * lf, y + math.sin(yaw) * f + math.cos(yaw) * lf,
                          yaw + dyaw))  # fmt: skip
        xl, yl, yawl = poses[-1]
        c, s = math.cos(yawl), math.sin(yawl)
        return [(c * (x - xl) + s * (y - yl), -s * (x - xl) + c * (y - yl), yaw - yawl) for x, y, yaw in poses]

    def _fuse(self, q: Sample, log_volume: torch.Tensor, centre: tuple[float, float]
              ) -> tuple[tuple[float, float, float], tuple[float, float]]:  # fmt: skip
        """Fused pose of the query with its previous frames (relative poses from noisy odometry,
        :meth:`_relative_poses`), and the ``fused_prior`` baseline: the mean of the fused frames' priors, each
        moved to the query by the same noisy relative poses (turned into the map frame by the query's true heading:
        an advantage the fused matcher does not have).

        Returns:
            ``((x, y, yaw), (x_prior, y_prior))``: map-frame metres and radians.
        """
        cfg = self.config
        entry = {"sequence": q.sequence, "t": q.timestamp, "pose2": q.pose2, "log_volume": log_volume,
                 "centre": centre}  # fmt: skip
        hist = [h for h in self._history if h["sequence"] == q.sequence and q.timestamp is not None
                and h["t"] is not None and 0 < q.timestamp - h["t"] < cfg.fusion.frames]  # fmt: skip
        self._history = ([*hist, entry])[-cfg.fusion.frames:] if cfg.fusion.frames > 1 else []
        frames = [*hist, entry]
        size = self.crop_cells
        prior = centre
        if len(frames) > 1:
            last = q.pose2
            assert last is not None
            rel = self._relative_poses(q.sequence, frames)
            fused = fuse_log_volumes(torch.stack([h["log_volume"] for h in frames]), torch.tensor(rel),
                                     cfg.model.cell_m, torch.tensor([h["centre"] for h in frames]))  # fmt: skip
            c, s = math.cos(last.yaw), math.sin(last.yaw)
            moved = [(h["centre"][0] - (c * f - s * lf), h["centre"][1] - (s * f + c * lf))
                     for h, (f, lf, _) in zip(frames, rel)]  # fmt: skip
            prior = (sum(m[0] for m in moved) / len(moved), sum(m[1] for m in moved) / len(moved))
        else:
            fused = log_volume
        (row, col, yaw) = expectation_pose(fused[None], cfg.search.window)[0][0].tolist()
        x, y = xy_of(row, col, centre[0], centre[1], size, cfg.model.cell_m)
        return (x, y, yaw), prior

    def variants(self, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate],
                 context: RunContext = RunContext()) -> Mapping[str, Variant]:  # fmt: skip
        """The fused output and the baselines from the same prior and map, scored by the core beside the method's
        single-frame estimates (and the core's ``prior:`` and ``chance:`` rows):

        * ``fused`` (the method): ``fusion.frames`` frames fused (OrienterNet, Sec. 3.5) with noisy odometry;
        * ``fused_prior`` (baseline, the inputs of ``fused``): the mean of the fused frames' priors, each moved to
          the query by the same noisy odometry (the priors of a sequence are correlated, so averaging them removes
          little of their common offset);
        * ``fused_road_snap`` (baseline, the inputs of ``fused``): ``fused_prior`` moved to the nearest road cell;
        * ``road_snap`` (baseline, single frame): the prior moved to the nearest OSM road cell of its crop;
        * ``road_direction`` (baseline, single frame): position of ``road_snap``, yaw along the road there
          (:func:`.baselines.road_direction_yaw`, always the direction east of north-south: on a street grid right
          or 180 degrees off): the fair heading baseline;
        * ``admissible_random`` (baseline, single frame): a position drawn uniformly among the road cells inside
          the prior's square, a uniform yaw (:func:`.baselines.admissible_draw`); each row carries the exact
          expected recalls of that draw (``expected_recall_<d>m``, percent);
        * ``prior_only`` (baseline, single frame): the argmax of the learned OSM log-prior over the crop.

        Position-only baselines get a uniform random heading per query (:func:`random_yaw`): their yaw columns are
        chance level. A query the method failed fails in every variant. ``fused``, ``fused_prior`` and
        ``fused_road_snap`` are left out with ``fusion.frames=1``.
        """
        cfg = self.config
        frames = cfg.fusion.frames
        odo = (f"odometry noise {cfg.fusion.odometry_noise_m:g} m / {cfg.fusion.odometry_noise_deg:g} deg per step, "
               "composed")  # fmt: skip
        names = {
            "fused": (False, f"{frames} consecutive frames fused (the query and the {frames - 1} before it), {odo}"),
            "fused_prior": (True, f"mean of the {frames} fused frames' priors moved to the query by the same "
                                  "noisy odometry (true heading); yaw random"),
            "fused_road_snap": (True, "fused_prior moved to the nearest OSM road cell; yaw random"),
            "road_snap": (True, "the prior moved to the nearest OSM road cell of its crop; yaw random"),
            "road_direction": (True, "road_snap position, yaw along the nearest road (the direction east of "
                                     "north-south; 180 deg ambiguous)"),
            "admissible_random": (True, "uniform over the road cells in the prior's square, uniform yaw; rows carry "
                                        "the exact expected recalls (expected_recall_<d>m)"),
            "prior_only": (True, "argmax of the learned OSM log-prior over the crop (no image); yaw random"),
        }  # fmt: skip
        if frames <= 1:
            del names["fused"], names["fused_prior"], names["fused_road_snap"]
        out: dict[str, Variant] = {}
        for name, (baseline, description) in names.items():
            rows = []
            for q, e in zip(queries, estimates):
                side = self._side.get(q.name)
                if not e.success or side is None:
                    rows.append(PoseEstimate.failed(e.seconds))
                    continue
                value = side[name]
                yaw = value[2] if len(value) > 2 and value[2] is not None else random_yaw(q.name, cfg.search.seed)
                extras = {}
                if name == "admissible_random":
                    extras = {f"expected_recall_{d:g}m": v for d, v in side["admissible_recall"].items()}
                rows.append(PoseEstimate(pose2=Pose2(x=value[0], y=value[1], yaw=float(yaw)), seconds=e.seconds,
                                         extras=extras))  # fmt: skip
            out[name] = Variant(estimates=rows, baseline=baseline, description=description)
        return out

    # ---- reporting -----------------------------------------------------------------------------------------------
    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        from .report import report_sections

        return report_sections(self, metrics)

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        from .plots import write_plots

        return write_plots(self, run_dir, queries, estimates)


def _georef(raster: Any) -> Any:
    """A map's identity: its raster's georeference as plain JSON values."""
    return json.loads(raster.georef.to_json())

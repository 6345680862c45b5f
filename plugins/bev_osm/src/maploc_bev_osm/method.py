"""The ``bev_osm`` method: OrienterNet-style localization of a street-level image in an OpenStreetMap raster.

Reference: Sarlin et al., "OrienterNet: Visual Localization in 2D Public Maps with Neural Matching", CVPR 2023.
The image becomes a bird's-eye-view template (Sec. 3.2), the OSM raster around a position prior becomes neural
map features and a log-prior (Sec. 3.1); the template is matched exhaustively over position and yaw (Sec. 3.3),
trained with the negative log-likelihood of the true pose (Sec. 3.4); consecutive frames are fused (Sec. 3.5).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from torch import nn

from maploc.api import Dataset, Method
from maploc.config import DataConfig, TrainConfig, at_least, greater_than, in_range
from maploc.types import Pose2, PoseEstimate, Sample

from .data import BlockSplit, CropError, north_up_crop, prior_offset, raster_of, xy_of
from .geometry import RectificationError, gravity_rectify
from .matching import expectation_pose, fuse_log_volumes
from .model import BEVOSMModel, ModelConfig

__all__ = ["AugmentConfig", "BEVOSMConfig", "BEVOSMMethod"]


@attrs.frozen(kw_only=True)
class SearchConfig:
    """Where and how finely the pose is searched.

    Attributes:
        crop_m: side of the north-up map crop searched around the position prior, metres.
        max_offset_m: the prior is the true position plus a uniform offset in ``[-max, max]^2`` metres (a GPS-like
            prior, drawn reproducibly from the query name); training crops are offset the same way.
        num_yaws_train: yaw bins in training (OrienterNet: 64; the CPU default 32 halves the matching cost, which
            dominates a training step).
        num_yaws_eval: yaw bins at evaluation (OrienterNet: 256).
        window: half-size (cells, yaw bins) of the expectation around the argmax.
        max_tilt_deg: largest camera roll/pitch that gravity rectification accepts (beyond: a counted failure).
        seed: seed of the prior offsets.
        rot90: training augmentation (OrienterNet's code has it as an option): each training crop is turned by a
            random multiple of 90 degrees, the target cell and yaw with it, so that the model cannot learn the
            headings of the training route as a yaw prior (a route driven one way teaches "always east").
    """

    crop_m: float = attrs.field(default=64.0, validator=greater_than(0))
    max_offset_m: float = attrs.field(default=16.0, validator=at_least(0))
    num_yaws_train: int = attrs.field(default=32, validator=at_least(4))
    num_yaws_eval: int = attrs.field(default=256, validator=at_least(4))
    window: int = attrs.field(default=2, validator=at_least(0))
    max_tilt_deg: float = attrs.field(default=30.0, validator=in_range(0, 89))
    seed: int = attrs.field(default=0, validator=at_least(0))
    rot90: bool = False


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

    Attributes:
        frames: frames fused (1 = off): the query and the ``frames - 1`` before it in its traversal.
        odometry_noise_m: standard deviation of the noise added to each relative position, metres.
        odometry_noise_deg: standard deviation of the noise added to each relative yaw, degrees.
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
        split: the spatial block split (training views stay out of test blocks by a guard band).
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
    split: BlockSplit = BlockSplit(block_m=150.0, test_every=3)
    train: TrainConfig = TrainConfig(epochs=0, max_steps=1500, batch_size=4, lr=2e-3, log_every=50)
    data: DataConfig = DataConfig(image_height=96)


def road_snap(crop: np.ndarray, centre_x: float, centre_y: float, cell_m: float) -> tuple[float, float]:
    """The non-learned baseline: the position prior (the crop centre) moved to the nearest OSM ``road`` cell of the
    crop, map-frame ``(x, y)`` metres (the centre itself when the crop has no road). Street-level cameras are on
    roads, so this is what a map-matching GPS filter would give from the same prior and map.

    Args:
        crop: ``(C, S, S)`` north-up class raster (:func:`.data.north_up_crop`, maploc-osm's class order).
        centre_x, centre_y: the crop centre, metres.
        cell_m: cell size, metres.
    """
    from maploc_osm import CLASS_NAMES

    size = crop.shape[-1]
    rows, cols = np.nonzero(crop[CLASS_NAMES.index("road")])
    if not len(rows):
        return centre_x, centre_y
    mid = size / 2 - 0.5
    k = int(np.argmin((rows - mid) ** 2 + (cols - mid) ** 2))
    return xy_of(float(rows[k]), float(cols[k]), centre_x, centre_y, size, cell_m)


class _Subset(torch.utils.data.Dataset):
    def __init__(self, data: Any, indices: list[int]) -> None:
        self.data, self.indices = data, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.data[self.indices[i]]

    def __repr__(self) -> str:
        return f"{self.data!r}[{len(self.indices)} views outside the test blocks' guard band]"


def _condition(sequence: str | None) -> str:
    return sequence.split("_", 1)[1] if sequence and "_" in sequence else "all"


class BEVOSMMethod(Method[BEVOSMConfig]):
    """Image -> BEV, OSM raster -> neural map, exhaustive matching over (yaw, y, x) (OrienterNet)."""

    name: ClassVar[str] = "bev_osm"
    Config = BEVOSMConfig
    presets_package: ClassVar[str | None] = "maploc_bev_osm.presets"
    default_dataset: ClassVar[str] = "sim-city"
    #: 41 training views (one route, one heading per street) were memorised and position was not learned in held-out
    #: blocks; 12 extra routes give 329 views in every direction (README, "Main job"). Autumn is rendered so that
    #: the main job evaluates per condition with night and autumn, as trained by day only.
    dataset_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "sim-city": {"train_routes": 12, "conditions": ["day", "night", "autumn"]}
    }
    metric_family: ClassVar[str] = "se2"
    localize_batch_size: ClassVar[int] = 1
    conformance_dataset: ClassVar[str] = "bev-osm-synthetic"
    conformance_overrides: ClassVar[tuple[str, ...]] = (
        "model.cell_m=2.0", "model.bev_depth_m=8.0", "search.crop_m=32.0", "search.max_offset_m=4.0",
        "search.num_yaws_train=8", "search.num_yaws_eval=16", "train.batch_size=2", "data.image_height=48",
        "split.block_m=1000.0", "split.test_every=2", "split.guard_m=0.5", "fusion.frames=2", "data.frames=8",
    )  # fmt: skip

    def __init__(self, config: BEVOSMConfig) -> None:
        super().__init__(config)
        self.raster: Any = None
        self._history: list[dict[str, Any]] = []
        self.train_views = 0

    # ---- model and training --------------------------------------------------------------------------------------
    @property
    def crop_cells(self) -> int:
        return max(2, round(self.config.search.crop_m / self.config.model.cell_m))

    def configure_model(self) -> nn.Module:
        from maploc_osm import CLASS_NAMES

        return BEVOSMModel(len(CLASS_NAMES), self.config.model)

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None) -> Any:
        """Trains on the views of ``train_data`` whose training footprint stays out of the test blocks."""
        self.raster = raster_of(train_data, self.config.model.cell_m)
        if not self.trains:
            return None
        footprint = (self.config.search.crop_m / 2 + self.config.search.max_offset_m) * math.sqrt(2)
        keep = []
        for i in range(len(train_data)):
            pose2 = train_data.metadata(i).pose2
            if pose2 is not None and self.config.split.trainable(pose2.x, pose2.y, footprint):
                keep.append(i)
        self.train_views = len(keep)
        if not keep:
            from maploc.errors import ConfigError

            raise ConfigError("no training view lies outside the test blocks' guard band; enlarge split.block_m")
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
    def build_map(self, map_data: Dataset) -> None:
        """Loads the OSM raster of the map the queries were taken in (crops are cut per query)."""
        self.raster = raster_of(map_data, self.config.model.cell_m)
        self._history = []

    def localize(self, queries: Sequence[Sample]) -> list[PoseEstimate]:
        return [self._localize_one(q) for q in queries]

    def _localize_one(self, q: Sample) -> PoseEstimate:
        assert self.model is not None and self.raster is not None, "configure_model and build_map come first"
        t0 = time.perf_counter()
        cfg, size = self.config, self.crop_cells
        cell = cfg.model.cell_m
        if q.pose2 is None or q.T_cam2world is None:
            return PoseEstimate.failed(time.perf_counter() - t0, reason="no position prior (pose2)")
        ox, oy = prior_offset(q.name, cfg.search.max_offset_m, cfg.search.seed)
        cx, cy = q.pose2.x + ox, q.pose2.y + oy
        try:
            image, K, _ = gravity_rectify(q.image, q.camera.K.float(), q.T_cam2world.R.float(), cfg.search.max_tilt_deg)
            crop = north_up_crop(self.raster, cx, cy, size)
        except (RectificationError, CropError) as exc:
            self._history = []
            return PoseEstimate.failed(time.perf_counter() - t0, reason=str(exc), condition=_condition(q.sequence))
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(image[None].to(device), K[None].to(device), torch.from_numpy(crop)[None].to(device),
                             cfg.search.num_yaws_eval)  # fmt: skip
        log_volume = out["log_volume"][0].cpu()
        pose, _ = expectation_pose(log_volume[None], cfg.search.window)
        row, col, yaw = pose[0].tolist()
        x, y = xy_of(float(row), float(col), cx, cy, size, cell)
        log_prior = out["map"]["log_prior"][0].cpu()
        pr, pc = divmod(int(log_prior.argmax()), size)
        prior_xy = xy_of(pr, pc, cx, cy, size, cell)
        fused = self._fuse(q, log_volume, (cx, cy))
        extras: dict[str, Any] = {
            "condition": _condition(q.sequence), "crop_centre": (cx, cy), "prior_xy": prior_xy,
            "road_snap_xy": road_snap(crop, cx, cy, cell),
            "max_log_prob": float(log_volume.max()), "fused": fused, "sequence": q.sequence,
        }  # fmt: skip
        return PoseEstimate(pose2=Pose2(x=x, y=y, yaw=float(yaw)), confidence=float(log_volume.max().exp()),
                            seconds=time.perf_counter() - t0, extras=extras)  # fmt: skip

    def _fuse(self, q: Sample, log_volume: torch.Tensor, centre: tuple[float, float]) -> tuple[float, float, float]:
        """Fused pose of the query with its previous frames (odometry = true relative poses plus seeded noise)."""
        cfg = self.config
        entry = {"sequence": q.sequence, "t": q.timestamp, "pose2": q.pose2, "log_volume": log_volume,
                 "centre": centre}  # fmt: skip
        hist = [h for h in self._history if h["sequence"] == q.sequence and q.timestamp is not None
                and h["t"] is not None and 0 < q.timestamp - h["t"] < cfg.fusion.frames]  # fmt: skip
        self._history = ([*hist, entry])[-cfg.fusion.frames:] if cfg.fusion.frames > 1 else []
        frames = [*hist, entry]
        size = self.crop_cells
        if len(frames) > 1:
            last = q.pose2
            assert last is not None
            digest = hashlib.sha256(f"odometry:{cfg.search.seed}:{q.name}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            rel = []
            for h in frames:
                dx, dy = h["pose2"].x - last.x, h["pose2"].y - last.y
                c, s = math.cos(last.yaw), math.sin(last.yaw)
                fwd, left = c * dx + s * dy, -s * dx + c * dy
                dyaw = h["pose2"].yaw - last.yaw
                if h is not entry:
                    fwd += rng.normal(0, cfg.fusion.odometry_noise_m)
                    left += rng.normal(0, cfg.fusion.odometry_noise_m)
                    dyaw += math.radians(rng.normal(0, cfg.fusion.odometry_noise_deg))
                rel.append((fwd, left, dyaw))
            fused = fuse_log_volumes(torch.stack([h["log_volume"] for h in frames]), torch.tensor(rel),
                                     cfg.model.cell_m, torch.tensor([h["centre"] for h in frames]))  # fmt: skip
        else:
            fused = log_volume
        (row, col, yaw) = expectation_pose(fused[None], cfg.search.window)[0][0].tolist()
        x, y = xy_of(row, col, centre[0], centre[1], size, cfg.model.cell_m)
        return (x, y, yaw)

    # ---- reporting -----------------------------------------------------------------------------------------------
    def extra_metrics(self, map_data: Dataset, queries: Sequence[Any], estimates: Sequence[PoseEstimate],
                      metrics: Mapping[str, float]) -> Mapping[str, float]:  # fmt: skip
        from .report import baseline_metrics

        return baseline_metrics(self.config, queries, estimates, self.train_views)

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        from .report import report_sections

        return report_sections(self.config, metrics)

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        from .plots import write_plots

        return write_plots(self, run_dir, queries, estimates)


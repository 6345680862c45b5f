"""The ``loc2vec`` method: triplet embeddings of OSM tiles, and localization of a tile by nearest neighbour.

Reference: Loc2Vec (Sentiance, 2018): a ResNet maps a 12-channel rendering of the map around a location to a
16-D unit vector; it is trained with an online-mined triplet loss so that tiles of the same place (shifted by
a few metres, turned) embed close together and tiles of distant places far apart.

Life of a run (``maploc run --method loc2vec``, on the ``osm-tiles`` dataset of :mod:`~maploc_loc2vec.data`):

1. ``fit``: the core engine trains :class:`~maploc_loc2vec.model.Loc2VecNet` on ``train`` triplets with
   :func:`~maploc_loc2vec.mining.triplet_loss` (default ``supcon``, the supervised contrastive loss over every
   pair of tiles of the batch; or batch-hard / semi-hard triplet mining;
   positives within ``positive_radius_m`` and ``positive_max_rotation_deg`` of each other, negatives beyond a
   negative radius that may shrink during training: ``loss.final_negative_radius_m``), validating on ``val``.
2. ``build_map``: every location of the reference grid (``map`` split) is rendered at ``eval.headings``
   headings and indexed (faiss, :mod:`~maploc_loc2vec.index`) by the learned embedding and by the baselines on
   the same tiles: raw tiles, raw tiles PCA-reduced to the embedding's dimension, and both north-up only. The
   dataset's spatial split is saved as ``RUN/split.json`` (the core then scores only queries in test blocks).
3. ``localize``: each query tile (random position in the evaluated blocks, random rotation) is described and its
   ``eval.top_k`` best locations are returned by every index; the estimate's ``retrieval`` (map indices, cosine
   similarities) is the learned embedding's at ``eval.headings`` headings.
4. ``variants``: the other indexes' rankings of the same queries (``learned_north_up``; the baselines
   ``raw_pca``, ``raw``, ``raw_north_up``), which the core scores in the same table as the method, beside the
   exact chance row, at ``eval.distance_threshold_m`` (25 m: ``recall_at_N``) and ``eval.fine_threshold_m``
   (10 m: ``recall_at_N_within_10m``).
5. ``report_sections`` (:mod:`~maploc_loc2vec.report`): the split, the index sizes of every row, the held-out
   triplet accuracy and the validation figures of training (no recall: the core's tables have them).
6. ``plots``: PCA and t-SNE of the reference embeddings, a nearest-neighbour grid, an interpolation strip and
   a map of the block split (:mod:`~maploc_loc2vec.plots`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maploc.api import Dataset, Method, RunContext, SampleMeta, Variant
from maploc.config import DataConfig, TrainConfig, at_least, greater_than
from maploc.errors import ConfigError, DataError
from maploc.files import atomic_write_text
from maploc.types import PoseEstimate, Retrieval, Sample

from .channels import dominant_channel, unpack_tiles
from .index import HeadingIndex, Pca, heading_yaws, raw_tile_descriptors, render_at_headings, rows_at_heading
from .mining import triplet_labels, triplet_loss
from .model import Loc2VecNet, ModelConfig
from .report import index_table, split_summary, training_summary

__all__ = ["LossConfig", "EvalConfig", "Loc2VecConfig", "Loc2VecMethod", "raw_tile_descriptors", "VARIANTS"]

#: The rows loc2vec adds beside its own (``learned``: the embedding at ``eval.headings`` headings): index key ->
#: whether it is a baseline (raw tiles) or another output of the method (the embedding indexed north up only).
VARIANTS: dict[str, bool] = {"learned_north_up": False, "raw_pca": True, "raw": True, "raw_north_up": True}


@attrs.frozen(kw_only=True)
class LossConfig:
    """The triplet loss.

    Attributes:
        margin: triplet margin, in embedding distance (unit vectors: distances in ``[0, 2]``); > 0.
        mining: ``supcon`` (default: the supervised contrastive loss over the positive / negative masks,
            Khosla et al. 2020), ``batch-hard`` (Hermans et al. 2017) or ``semi-hard`` (FaceNet); see
            :mod:`~maploc_loc2vec.mining`. On Helsinki, from a random start at ``train.lr=1e-3``, batch-hard
            collapsed (every embedding equal, loss = margin) within 50 steps; see the README for measurements. Positives / negatives come from the tiles' positions and headings and
            the dataset's ``positive_radius_m`` / ``negative_radius_m`` / ``positive_max_rotation_deg``.
        temperature: temperature of ``supcon``; > 0.
        final_negative_radius_m: distance curriculum: the negative radius of the in-batch mining shrinks
            linearly from the dataset's ``negative_radius_m`` at the first step to this at the last
            (``train.max_steps``), so that late steps also push apart places 20-50 m apart; ``0`` = no curriculum.
            Must stay above the dataset's ``positive_radius_m``.
    """

    margin: float = attrs.field(default=0.3, validator=greater_than(0))
    mining: Literal["batch-hard", "semi-hard", "supcon"] = "supcon"
    temperature: float = attrs.field(default=0.1, validator=greater_than(0))
    final_negative_radius_m: float = attrs.field(default=0.0, validator=at_least(0))


@attrs.frozen(kw_only=True)
class EvalConfig:
    """Mapping, localization and reporting.

    Attributes:
        distance_threshold_m: the core's primary threshold: a retrieved reference location within this distance
            (metres) of the query's true position is correct for ``recall_at_N``. > 0. At most the success
            radius of the dataset's spatial split (25 m: the training guard band is sized for it).
        fine_threshold_m: the core's second threshold (metres), giving ``recall_at_N_within_<d>m``; > 0, at most
            the split's success radius like ``distance_threshold_m``. The README's headline figures are R@1 within
            10 m (``recall_at_1_within_10m``) and R@5 within 25 m (``recall_at_5``).
        top_k: reference locations retrieved per query (``PoseEstimate.retrieval``); >= 1.
        headings: H, the headings at which every reference location is indexed (``pi/2 + 2 pi h / H``; 1 =
            north up only), for the learned embedding and the raw-tile baselines alike; >= 1.
        baselines: also index and report the raw-tile baselines.
        baseline_px: side in pixels of the raw-tile descriptor (``K x baseline_px^2`` values); >= 1.
        pca_dim: dimension of the PCA-reduced raw-tile baseline (``0`` = the embedding's, ``model.embedding_dim``).
        pca_whiten: whiten the PCA baseline (divide each component by its standard deviation).
        embed_batch_size: tiles embedded at once; >= 1.
        map_chunk: reference locations rendered at once (``map_chunk x headings`` tiles in memory); >= 1.
        plots: write the plots.
        plot_queries: queries shown in the nearest-neighbour grid.
        projection_points: reference embeddings shown in the PCA / t-SNE plots (a random subset).
        interpolation_steps: tiles of the interpolation strip.
    """

    distance_threshold_m: float = attrs.field(default=25.0, validator=greater_than(0))
    fine_threshold_m: float = attrs.field(default=10.0, validator=greater_than(0))
    top_k: int = attrs.field(default=20, validator=at_least(1))
    headings: int = attrs.field(default=8, validator=at_least(1))
    baselines: bool = True
    baseline_px: int = attrs.field(default=16, validator=at_least(1))
    pca_dim: int = attrs.field(default=0, validator=at_least(0))
    pca_whiten: bool = False
    embed_batch_size: int = attrs.field(default=256, validator=at_least(1))
    map_chunk: int = attrs.field(default=64, validator=at_least(1))
    plots: bool = True
    plot_queries: int = attrs.field(default=6, validator=at_least(1))
    projection_points: int = attrs.field(default=1000, validator=at_least(10))
    interpolation_steps: int = attrs.field(default=8, validator=at_least(2))


@attrs.frozen(kw_only=True)
class Loc2VecConfig:
    """Config of ``loc2vec`` (the ``default`` preset is the main job on the Helsinki map).

    Attributes:
        model: the network.
        loss: the triplet loss and mining.
        eval: mapping, localization and reporting.
        train: generic training settings (the engine's). A ``train`` sample is one triplet; every tile of a
            batch of ``batch_size`` triplets (``3 x batch_size`` tiles) is mined as an anchor. The learning rate
            decays to 0 along a cosine over ``max_steps``.
        data: dataset options (``image_height`` = side of the colour pictures in ``Sample.image``).
    """

    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    eval: EvalConfig = EvalConfig()
    train: TrainConfig = TrainConfig(
        epochs=1, max_steps=300, batch_size=32, lr=1e-3, checkpoint_every=100, log_every=10, val_every=100
    )
    data: DataConfig = DataConfig()


def _packed_tiles(samples: Sequence[Any], key: str) -> np.ndarray:
    return np.stack([np.asarray(s.extras[key]) for s in samples])


class Loc2VecMethod(Method[Loc2VecConfig]):
    """Loc2Vec (see the module docstring)."""

    name: ClassVar[str] = "loc2vec"
    Config = Loc2VecConfig
    presets_package: ClassVar[str | None] = "maploc_loc2vec.presets"
    default_dataset: ClassVar[str] = "osm-tiles"
    metric_family: ClassVar[str] = "retrieval"
    localize_batch_size: ClassVar[int] = 100
    conformance_dataset: ClassVar[str] = "osm-tiles-synthetic"
    conformance_overrides: ClassVar[tuple[str, ...]] = (
        "train.batch_size=4", "train.max_steps=4", "train.val_every=0", "train.checkpoint_every=2",
        "model.backbone=test_resnet", "model.input_px=32", "eval.projection_points=60", "eval.plot_queries=2",
        "eval.headings=4",
    )

    def __init__(self, config: Loc2VecConfig) -> None:
        super().__init__(config)
        self.last_stats: dict[str, float] = {}
        self.map_data: Any = None
        self.indexes: dict[str, HeadingIndex] = {}
        self.context = RunContext()
        self.split_saved: Path | None = None
        #: per variant key, query name -> the estimate of that index (filled by ``localize``)
        self._variant_estimates: dict[str, dict[str, PoseEstimate]] = {}
        #: query name -> whether its held-out triplet is ordered correctly by the embedding
        self.triplet_correct: dict[str, bool] = {}

    # -- training ------------------------------------------------------------------------------------------------
    def configure_model(self) -> nn.Module:
        return Loc2VecNet(self.config.model)

    def configure_optimizers(self, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
        """Adam at ``train.lr`` with a cosine decay to 0 over ``train.max_steps`` (constant when it is 0)."""
        optimizer = torch.optim.Adam(model.parameters(), lr=self.config.train.lr)
        steps = self.config.train.max_steps
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps) if steps > 0 else None
        return optimizer, scheduler

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Triplet samples -> one batch of ``3B`` tiles.

        Returns:
            ``tiles`` ``(3B, K, S, S)`` uint8 in {0, 1} (anchors, then positives, then negatives); ``xy``
            ``(3B, 2)`` float64 centres in metres; ``yaw`` ``(3B,)`` float64 headings in radians; ``pairs`` /
            ``negatives`` ``(B, 2)`` int64 index pairs of the dataset's anchor-positive / anchor-negative tiles;
            ``positive_radius_m``, ``negative_radius_m``, ``max_rotation_rad`` (floats); ``name`` (B str).

        Raises:
            DataError: a sample is not a triplet of the ``osm-tiles`` layout.
        """
        try:
            k = int(samples[0].extras["num_channels"])
            packed = np.concatenate([_packed_tiles(samples, key) for key in ("tile", "positive_tile", "negative_tile")])
            poses = [s.pose2 for s in samples] + [s.extras["positive_pose2"] for s in samples] + [
                s.extras["negative_pose2"] for s in samples]
            radii = (float(samples[0].extras["positive_radius_m"]), float(samples[0].extras["negative_radius_m"]))
            rotation = math.radians(float(samples[0].extras.get("positive_max_rotation_deg", 180.0)))
        except (KeyError, AttributeError) as e:
            raise DataError(
                f"loc2vec trains on triplet samples of the osm-tiles layout (extras 'tile', 'positive_tile', "
                f"'negative_tile', ...); sample {samples[0].name!r} lacks {e}"
            ) from None
        b = len(samples)
        idx = torch.arange(b)
        return {
            "tiles": torch.from_numpy(unpack_tiles(packed, k)),
            "xy": torch.tensor([[p.x, p.y] for p in poses], dtype=torch.float64),
            "yaw": torch.tensor([float(p.yaw) for p in poses], dtype=torch.float64),
            "pairs": torch.stack([idx, idx + b], 1),
            "negatives": torch.stack([idx, idx + 2 * b], 1),
            "positive_radius_m": radii[0],
            "negative_radius_m": radii[1],
            "max_rotation_rad": rotation,
            "name": [s.name for s in samples],
        }

    def fit(self, engine: Any, train_data: Dataset, val_data: Dataset | None = None,
            context: RunContext = RunContext()) -> Any:
        """The core engine's loop (:meth:`maploc.api.Method.fit`), after checking the eval thresholds against the
        training split's success radius (:meth:`check_thresholds`), so that a bad threshold fails before training.

        Raises:
            ConfigError: a threshold above the split's success radius.
        """
        self.check_thresholds(getattr(train_data, "blocks", None))
        return super().fit(engine, train_data, val_data, context)

    def negative_radius_at(self, step: int, dataset_radius_m: float, positive_radius_m: float) -> float:
        """The in-batch negative radius (metres) at optimizer step ``step`` (the distance curriculum of
        :attr:`LossConfig.final_negative_radius_m`)."""
        final = self.config.loss.final_negative_radius_m
        total = self.config.train.max_steps
        if final <= 0 or total <= 1:
            return dataset_radius_m
        final = max(final, positive_radius_m + 1e-6)
        f = min(1.0, max(0.0, step / (total - 1)))
        return dataset_radius_m + f * (final - dataset_radius_m)

    def _loss(self, model: nn.Module, batch: dict[str, Any], step: int | None = None,
              ) -> tuple[Tensor, Tensor, dict[str, float]]:
        embeddings = model(batch["tiles"])
        negative_radius = batch["negative_radius_m"]
        if step is not None:
            negative_radius = self.negative_radius_at(step, negative_radius, batch["positive_radius_m"])
        labels = triplet_labels(batch["xy"], batch["positive_radius_m"], negative_radius,
                                pairs=batch["pairs"], negatives=batch["negatives"], yaw=batch.get("yaw"),
                                max_rotation_rad=batch.get("max_rotation_rad", math.pi))
        loss, stats = triplet_loss(embeddings, labels, self.config.loss.margin, self.config.loss.mining,
                                    self.config.loss.temperature)
        stats["negative_radius_m"] = float(negative_radius)
        return loss, embeddings, stats

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> dict[str, Any]:
        """The mined triplet loss, with the mining statistics (logged as ``train/mining/...``)."""
        loss, _, self.last_stats = self._loss(model, batch, step=batch_idx)
        return {"loss": loss, **{f"mining/{k}": v for k, v in self.last_stats.items()}}

    def loss(self, outputs: Any, batch: Any) -> Tensor:
        """The mined triplet loss of embeddings ``outputs`` ``(3B, D)`` of ``batch`` (see :meth:`collate`)."""
        labels = triplet_labels(batch["xy"], batch["positive_radius_m"], batch["negative_radius_m"],
                                pairs=batch["pairs"], negatives=batch["negatives"], yaw=batch.get("yaw"),
                                max_rotation_rad=batch.get("max_rotation_rad", math.pi))
        return triplet_loss(outputs, labels, self.config.loss.margin, self.config.loss.mining,
                            self.config.loss.temperature)[0]

    def validation_step(self, model: nn.Module, batch: Any, batch_idx: int) -> dict[str, float]:
        """``val_loss`` and ``val_triplet_accuracy`` (percent of the dataset's triplets with ``d(a, p) < d(a, n)``)."""
        with torch.no_grad():
            loss, e, _ = self._loss(model, batch)
            b = len(batch["name"])
            d_ap = (e[:b] - e[b : 2 * b]).norm(dim=1)
            d_an = (e[:b] - e[2 * b :]).norm(dim=1)
        return {"val_loss": float(loss), "val_triplet_accuracy": 100.0 * float((d_ap < d_an).float().mean())}

    # -- mapping and localization --------------------------------------------------------------------------------
    def _model(self) -> Loc2VecNet:
        if self.model is None:
            raise RuntimeError("loc2vec: configure_model was not called")
        return self.model  # type: ignore[return-value]

    def _embed(self, tiles: np.ndarray | Tensor) -> Tensor:
        return self._model().embed(torch.as_tensor(tiles), self.config.eval.embed_batch_size)

    def _raw(self, tiles: Tensor) -> np.ndarray:
        return raw_tile_descriptors(tiles, self.config.eval.baseline_px).numpy()

    def _describe_chunk(self, tiles: Tensor, baselines: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Learned embeddings and raw-tile descriptors of ``(N, K, S, S)`` tiles, area-reducing them once (to
        ``model.input_px``) for both when the sizes allow (area of area = area for integer factors)."""
        size, px = self.config.model.input_px, self.config.eval.baseline_px
        if size and tiles.shape[-1] % size == 0 and size % px == 0:
            pooled = F.avg_pool2d(tiles.float(), tiles.shape[-1] // size)
            raw = raw_tile_descriptors(pooled, px).numpy() if baselines else None
            return self._embed(pooled).numpy(), raw
        return self._embed(tiles).numpy(), self._raw(tiles) if baselines else None

    def check_thresholds(self, split: Any) -> None:
        """Checks that ``eval.distance_threshold_m`` and ``eval.fine_threshold_m`` do not exceed the success radius
        of ``split`` (a :class:`maploc.data.split.SpatialSplit`; ``None``: nothing to check).

        Raises:
            ConfigError: a threshold above the success radius (the guard band would not keep training tiles from
                counting as positives of a query).
        """
        if split is None:
            return
        cfg = self.config.eval
        largest = max(cfg.distance_threshold_m, cfg.fine_threshold_m)
        if largest > split.success_radius_m:
            raise ConfigError(
                f"loc2vec: eval thresholds up to {largest:g} m exceed the spatial split's success radius "
                f"{split.success_radius_m:g} m (its guard band of {split.guard_m:.1f} m is sized for it); use "
                f"eval.distance_threshold_m and eval.fine_threshold_m <= {split.success_radius_m:g}"
            )

    def save_split(self, map_data: Dataset, context: RunContext) -> Path | None:
        """Saves the dataset's spatial split (``map_data.blocks``, a :class:`maploc.data.split.SpatialSplit`) as
        ``context.run_dir / "split.json"`` (atomically), so that the core scores only the queries inside its test
        blocks. The ``osm-tiles`` queries are drawn inside the test blocks already (the core then reports 0
        queries outside); with ``data.eval_blocks=val`` (a development run on the val blocks) nothing is saved,
        since no query lies in a test block.

        Returns:
            The written path, or ``None`` (no run folder, no split, or a val-block evaluation).

        Raises:
            ConfigError: ``eval.distance_threshold_m`` or ``eval.fine_threshold_m`` exceeds the split's success
                radius (its guard band would not keep training tiles from counting as positives of a query).
        """
        split = getattr(map_data, "blocks", None)
        if split is None:
            return None
        self.check_thresholds(split)
        if context.run_dir is None or getattr(map_data, "eval_region", "test") != "test":
            return None
        path = Path(context.run_dir) / "split.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(split.to_dict()))
        return path

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Describes every reference location at ``eval.headings`` headings and indexes it (faiss), for the
        learned embedding and the raw-tile baselines (see :mod:`~maploc_loc2vec.index`), and saves the spatial
        split (:meth:`save_split`).

        ``map_data`` is an :class:`~maploc_loc2vec.data.OsmTileDataset` ``map`` split (tiles rendered in chunks
        with its ``render`` method), or any dataset whose samples carry a packed ``extras["tile"]`` and ``pose2``
        (then only north up: ``eval.headings`` is taken as 1).

        Raises:
            DataError: an empty map, or samples without tiles or positions.
            ConfigError: thresholds beyond the split's success radius (:meth:`save_split`).
        """
        cfg = self.config.eval
        n = len(map_data)
        if n == 0:
            raise DataError("loc2vec: the map split is empty")
        self.context = context
        log = context.logger
        self.split_saved = self.save_split(map_data, context)
        self._variant_estimates = {}
        self.triplet_correct = {}
        t0 = time.perf_counter()
        names = list(map_data.names())
        can_render = hasattr(map_data, "render") and hasattr(map_data, "positions")
        headings = cfg.headings if can_render else 1
        if not can_render and cfg.headings > 1:
            log.warning("loc2vec: %r cannot render tiles at other headings; indexing north up only", map_data)
        yaws = heading_yaws(headings)
        learned, raw, dominant = [], [], []
        if can_render:
            xy = np.asarray(map_data.positions(), np.float64)
            for start in range(0, n, cfg.map_chunk):
                tiles = torch.from_numpy(render_at_headings(map_data.render, xy[start : start + cfg.map_chunk], yaws))
                emb, descriptors = self._describe_chunk(tiles, cfg.baselines)
                learned.append(emb)
                if descriptors is not None:
                    raw.append(descriptors)
                dominant.append(dominant_channel(tiles[::headings].numpy()))
        else:
            samples = [map_data[i] for i in range(n)]
            if any(s.pose2 is None or "tile" not in s.extras for s in samples):
                raise DataError("loc2vec: map samples need pose2 and a packed extras['tile']")
            xy = np.array([[s.pose2.x, s.pose2.y] for s in samples])  # type: ignore[union-attr]
            k = int(samples[0].extras["num_channels"])
            for start in range(0, n, cfg.map_chunk):
                tiles = torch.from_numpy(unpack_tiles(_packed_tiles(samples[start : start + cfg.map_chunk], "tile"), k))
                learned.append(self._embed(tiles).numpy())
                if cfg.baselines:
                    raw.append(self._raw(tiles))
                dominant.append(dominant_channel(tiles.numpy()))
        t_learned = time.perf_counter() - t0
        all_learned = np.concatenate(learned).astype(np.float32)
        north = rows_at_heading(n, headings)
        model_bytes = sum(p.numel() * p.element_size() for p in self._model().parameters())
        embed = lambda t: self._embed(t).numpy()  # noqa: E731
        self.indexes = {
            "learned": HeadingIndex.create("learned", f"loc2vec, {headings} headings", headings, all_learned, embed,
                                           model_bytes),
        }
        if headings > 1:
            self.indexes["learned_north_up"] = HeadingIndex.create(
                "learned_north_up", "loc2vec, north up only", 1, all_learned[north], embed, model_bytes)
        if cfg.baselines:
            all_raw = np.concatenate(raw)
            del raw
            dim = cfg.pca_dim or self.config.model.embedding_dim
            pca = Pca.fit(all_raw, min(dim, *all_raw.shape), whiten=cfg.pca_whiten)
            self.indexes["raw_pca"] = HeadingIndex.create(
                "raw_pca", f"raw tiles PCA-{pca.components.shape[0]}, {headings} headings", headings, pca(all_raw),
                lambda t: pca(self._raw(t)), pca.nbytes)
            self.indexes["raw"] = HeadingIndex.create("raw", f"raw tiles, {headings} headings", headings, all_raw,
                                                      self._raw)
            if headings > 1:
                self.indexes["raw_north_up"] = HeadingIndex.create("raw_north_up", "raw tiles, north up only", 1,
                                                                   all_raw[north], self._raw)
            del all_raw
        self.map_embeddings = all_learned[north]
        self.map_dominant = np.concatenate(dominant)
        self.map_xy = xy
        self.map_names = names
        self.map_data = map_data
        self.index = (self.indexes.get("learned_north_up") or self.indexes["learned"]).index  # north up, for plots
        log.info("indexed %d reference locations x %d headings in %.1f s (learned embedding %.1f s)", n, headings,
                 time.perf_counter() - t0, t_learned)

    def query_tiles(self, queries: Sequence[Sample], key: str = "tile") -> Tensor:
        """The unpacked tiles ``(Q, K, S, S)`` uint8 of query samples (``key``: ``tile``, ``positive_tile``...)."""
        k = int(queries[0].extras["num_channels"])
        return torch.from_numpy(unpack_tiles(_packed_tiles(queries, key), k))

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """The ``eval.top_k`` best reference locations of each query tile by every index.

        Returns:
            One estimate per query: ``retrieval`` = the learned embedding's ranking at ``eval.headings`` headings
            (map indices, best first; scores = cosine similarity at the location's best heading),
            ``confidence`` = the top score, ``seconds`` = descriptor + search time per query of that index, and
            ``extras["triplet_correct"]`` (a CSV column) = whether the query's held-out triplet is ordered
            correctly by the embedding (``d(a, p) < d(a, n)``; absent without a triplet). The other indexes'
            rankings are kept for :meth:`variants`. A query without a tile gets ``PoseEstimate.failed()``.

        Raises:
            RuntimeError: :meth:`build_map` has not run.
        """
        if not self.indexes:
            raise RuntimeError("loc2vec: build_map must run before localize")
        self.context = context
        usable = [i for i, q in enumerate(queries) if "tile" in q.extras and "num_channels" in q.extras]
        out: list[PoseEstimate] = [PoseEstimate.failed() for _ in queries]
        if not usable:
            return out
        batch = [queries[i] for i in usable]
        tiles = self.query_tiles(batch)
        k = self.config.eval.top_k
        found: dict[str, list[list[int]]] = {}
        scores: dict[str, list[list[float]]] = {}
        seconds: dict[str, float] = {}
        for key, index in self.indexes.items():
            found[key], scores[key], seconds[key] = index.query_ranked(tiles, k)
        emb = self._embed(tiles)
        correct: list[bool | None] = [None] * len(batch)
        with_triplets = [j for j, q in enumerate(batch) if "positive_tile" in q.extras and "negative_tile" in q.extras]
        if with_triplets:
            trip = [batch[j] for j in with_triplets]
            e_p = self._embed(self.query_tiles(trip, "positive_tile"))
            e_n = self._embed(self.query_tiles(trip, "negative_tile"))
            e_a = emb[with_triplets]
            ok = (e_a - e_p).norm(dim=1) < (e_a - e_n).norm(dim=1)
            for j, c in zip(with_triplets, ok.tolist()):
                correct[j] = bool(c)
        def estimate(key: str, j: int, extras: Mapping[str, Any]) -> PoseEstimate:
            ranked, values = found[key][j], scores[key][j]
            return PoseEstimate(success=bool(ranked), retrieval=Retrieval(indices=ranked, scores=values),
                                confidence=values[0] if values else None, seconds=seconds[key], extras=extras)

        for j, i in enumerate(usable):
            name = batch[j].name
            extras = {} if correct[j] is None else {"triplet_correct": correct[j]}
            if correct[j] is not None:
                self.triplet_correct[name] = bool(correct[j])
            out[i] = estimate("learned", j, extras)
            for key in found:
                if key != "learned":
                    self._variant_estimates.setdefault(key, {})[name] = estimate(key, j, {})
        return out

    def variants(self, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate],
                 context: RunContext = RunContext()) -> dict[str, Variant]:
        """The other indexes' rankings of the same queries, on the same reference tiles (:data:`VARIANTS`):
        ``learned_north_up`` (the embedding, reference indexed north up only) and the baselines ``raw_pca`` (raw
        tiles PCA-reduced to the embedding's dimension, ``eval.headings`` headings: the same index size),
        ``raw`` (raw tiles, ``K x baseline_px^2`` values, ``eval.headings`` headings) and ``raw_north_up``.
        A query :meth:`localize` did not rank (no tile) is a failed estimate.
        """
        out: dict[str, Variant] = {}
        for key, baseline in VARIANTS.items():
            if key not in self.indexes:
                continue
            ix = self.indexes[key]
            ranked = self._variant_estimates.get(key, {})
            out[key] = Variant(
                estimates=[ranked.get(q.name) or PoseEstimate.failed() for q in queries], baseline=baseline,
                description=f"{ix.label}: {ix.dim}-D descriptors, index {ix.index_bytes / 2**20:.2f} MiB (float32)",
            )
        return out

    # -- reporting -----------------------------------------------------------------------------------------------
    def index_info(self) -> dict[str, dict[str, Any]]:
        """Per index key: ``label``, ``dim``, ``headings``, ``index_bytes``, ``model_bytes``."""
        return {key: {"label": ix.label, "dim": ix.dim, "headings": ix.headings, "index_bytes": ix.index_bytes,
                      "model_bytes": ix.model_bytes} for key, ix in self.indexes.items()}

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        """Method-specific sections below the core's recall table (:mod:`~maploc_loc2vec.report`): the spatial
        split, the index of every row (dimension, headings, bytes, query time), and training (held-out
        triplet accuracy of the queries, validation figures from ``metrics.jsonl`` of this run, or of the run
        that wrote the evaluated checkpoint)."""
        sections = []
        if self.map_data is not None and getattr(self.map_data, "blocks", None) is not None:
            sections.append(("Spatial split", split_summary(self.map_data, self.split_saved, metrics)))
        if self.indexes:
            sections.append(("Indexes (same reference tiles and queries for every row)",
                             index_table(self.index_info(), metrics)))
        jsonl = [Path(run_dir) / "metrics.jsonl"]
        if self.context.source_run_dir is not None:
            jsonl.append(Path(self.context.source_run_dir) / "metrics.jsonl")
        sections.append(("Training", training_summary(self.triplet_correct, next((p for p in jsonl if p.is_file()),
                                                                                   None))))
        return sections

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """PCA / t-SNE of the reference embeddings, nearest-neighbour grid, interpolation strip, split map."""
        if not self.config.eval.plots or not self.indexes:
            return []
        from .plots import write_plots

        return write_plots(self, Path(run_dir), queries, estimates)

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
   the same tiles: raw tiles, raw tiles PCA-reduced to the embedding's dimension, and both north-up only.
3. ``localize``: each query tile (random position in the test blocks, random rotation) is described and its
   ``eval.top_k`` best locations are returned per method; ``extras["retrieved"]`` (ranked map names, scored by
   the core's ``retrieval`` family) is the learned embedding's at ``eval.headings`` headings.
4. ``extra_metrics`` / ``report_sections`` (:mod:`~maploc_loc2vec.report`): recalls within 10 m and 25 m, index
   bytes and query time of every method, the held-out triplet accuracy, and the comparison table.
5. ``plots``: PCA and t-SNE of the reference embeddings, a nearest-neighbour grid, an interpolation strip and
   a map of the block split (:mod:`~maploc_loc2vec.plots`).
"""

from __future__ import annotations

import logging
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

from maploc.api import Dataset, Method
from maploc.config import DataConfig, TrainConfig, at_least, greater_than
from maploc.errors import DataError
from maploc.types import PoseEstimate, Sample

from .channels import dominant_channel, unpack_tiles
from .index import HeadingIndex, Pca, heading_yaws, raw_tile_descriptors, render_at_headings, rows_at_heading
from .mining import triplet_labels, triplet_loss
from .model import Loc2VecNet, ModelConfig
from .report import format_table, loc2vec_metrics

__all__ = ["LossConfig", "EvalConfig", "Loc2VecConfig", "Loc2VecMethod", "raw_tile_descriptors"]

log = logging.getLogger(__name__)


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
        distance_threshold_m: a retrieved reference location is correct within this distance (metres) for the
            core's ``recall_at_N``; the method also reports 10 m and 25 m. > 0.
        top_k: reference locations retrieved per query (``extras["retrieved"]``); >= 1.
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

    def build_map(self, map_data: Dataset) -> None:
        """Describes every reference location at ``eval.headings`` headings and indexes it (faiss), for the
        learned embedding and the raw-tile baselines (see :mod:`~maploc_loc2vec.index`).

        ``map_data`` is an :class:`~maploc_loc2vec.data.OsmTileDataset` ``map`` split (tiles rendered in chunks
        with its ``render`` method), or any dataset whose samples carry a packed ``extras["tile"]`` and ``pose2``
        (then only north up: ``eval.headings`` is taken as 1).

        Raises:
            DataError: an empty map, or samples without tiles or positions.
        """
        cfg = self.config.eval
        n = len(map_data)
        if n == 0:
            raise DataError("loc2vec: the map split is empty")
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
                "learned_north_up", "loc2vec, north up", 1, all_learned[north], embed, model_bytes)
        if cfg.baselines:
            all_raw = np.concatenate(raw)
            del raw
            dim = cfg.pca_dim or self.config.model.embedding_dim
            pca = Pca.fit(all_raw, min(dim, *all_raw.shape), whiten=cfg.pca_whiten)
            self.indexes["raw_pca"] = HeadingIndex.create(
                "raw_pca", f"raw tiles PCA-{pca.components.shape[0]}", headings, pca(all_raw),
                lambda t: pca(self._raw(t)), pca.nbytes)
            self.indexes["raw"] = HeadingIndex.create("raw", "raw tiles", headings, all_raw, self._raw)
            if headings > 1:
                self.indexes["raw_north_up"] = HeadingIndex.create("raw_north_up", "raw tiles, north up", 1,
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

    def localize(self, queries: Sequence[Sample]) -> list[PoseEstimate]:
        """Best reference locations of each query tile by every indexed method; ``extras["retrieved"]`` is the
        learned embedding's at ``eval.headings`` headings, ``extras["loc2vec"]`` holds every method's retrieved
        positions (``retrieved_xy[key]``, metres) and seconds per query (``seconds[key]``), and whether the
        query's held-out triplet is ordered correctly (``triplet_correct``).

        A query without a tile gets ``PoseEstimate.failed()``.
        """
        if not self.indexes:
            raise RuntimeError("loc2vec: build_map must run before localize")
        usable = [i for i, q in enumerate(queries) if "tile" in q.extras and "num_channels" in q.extras]
        out: list[PoseEstimate] = [PoseEstimate.failed() for _ in queries]
        if not usable:
            return out
        batch = [queries[i] for i in usable]
        tiles = self.query_tiles(batch)
        k = self.config.eval.top_k
        found: dict[str, list[list[int]]] = {}
        seconds: dict[str, float] = {}
        for key, index in self.indexes.items():
            found[key], seconds[key] = index.query(tiles, k)
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
        for j, i in enumerate(usable):
            ranked = found["learned"][j]
            out[i] = PoseEstimate(
                success=True,
                confidence=float(-np.linalg.norm(emb[j].numpy() - self.map_embeddings[ranked[0]])) if ranked else None,
                seconds=seconds["learned"],
                extras={
                    "retrieved": [self.map_names[r] for r in ranked],
                    "loc2vec": {
                        "retrieved_xy": {key: self.map_xy[f[j]].tolist() for key, f in found.items()},
                        "seconds": dict(seconds),
                        "triplet_correct": correct[j],
                    },
                },
            )
        return out

    # -- reporting -----------------------------------------------------------------------------------------------
    def index_info(self) -> dict[str, dict[str, float]]:
        """Per indexed method: ``dim``, ``headings``, ``index_bytes``, ``model_bytes``."""
        return {key: {"dim": ix.dim, "headings": ix.headings, "index_bytes": ix.index_bytes,
                      "model_bytes": ix.model_bytes} for key, ix in self.indexes.items()}

    def extra_metrics(self, map_data: Dataset, queries: Sequence[Any], estimates: Sequence[PoseEstimate],
                      metrics: Mapping[str, float]) -> dict[str, float]:
        """Recalls within 10 / 25 m, index bytes and query time of every method, triplet accuracy
        (:func:`~maploc_loc2vec.report.loc2vec_metrics`)."""
        extra = loc2vec_metrics(queries, estimates, self.index_info())
        return {k: v for k, v in extra.items() if k not in metrics}

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        """The learned-vs-baselines table (:func:`~maploc_loc2vec.report.format_table`)."""
        if "learned_recall_at_1_within_10m" not in metrics:
            return []
        h = int(metrics.get("learned_headings", 1))
        return [(f"Loc2Vec vs raw-tile baselines, same grid and queries, H = {h} (recall within distance)",
                 format_table(metrics))]

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """PCA / t-SNE of the reference embeddings, nearest-neighbour grid, interpolation strip, split map."""
        if not self.config.eval.plots or not self.indexes:
            return []
        from .plots import write_plots

        return write_plots(self, Path(run_dir), queries, estimates)

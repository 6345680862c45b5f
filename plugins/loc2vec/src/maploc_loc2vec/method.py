"""The ``loc2vec`` method: triplet embeddings of OSM tiles, and localization of a tile by nearest neighbour.

Reference: Loc2Vec (Sentiance, 2018): a ResNet maps a 12-channel rendering of the map around a location to a
16-D unit vector; it is trained with an online-mined triplet loss so that tiles of the same place (shifted by
a few metres, any rotation) embed close together and tiles of distant places far apart.

Life of a run (``maploc run --method loc2vec``, on the ``osm-tiles`` dataset of :mod:`~maploc_loc2vec.data`):

1. ``fit``: the core engine trains :class:`~maploc_loc2vec.model.Loc2VecNet` on ``train`` triplets with
   :func:`~maploc_loc2vec.mining.triplet_loss` (batch-hard or semi-hard mining over every tile of the batch).
2. ``build_map``: the reference grid (``map`` split: north-up tiles every 5 m over the held-out test blocks) is
   embedded and put in a faiss ``IndexFlatL2``; the non-learned baseline (zero-mean, unit-norm raw tiles
   area-reduced to ``eval.baseline_px`` pixels, the tiny-image descriptor of Torralba et al., TPAMI 2008) in a
   faiss ``IndexFlatIP``.
3. ``localize``: each query tile (random position in the test blocks, random rotation) is embedded and its
   ``eval.top_k`` nearest reference tiles are returned (``extras["retrieved"]``, ranked map names; the core's
   ``retrieval`` family scores them at ``eval.distance_threshold_m``). ``extras["loc2vec"]`` also carries the
   positions retrieved by the embedding and by the baseline, and whether the query's held-out triplet is
   ordered correctly; the ``maploc-loc2vec`` hook (:mod:`~maploc_loc2vec.hooks`) turns them into
   ``recall_at_{1,5}_within_{10,25}m``, ``baseline_recall_at_{1,5}_within_{10,25}m`` and ``triplet_accuracy``
   in ``metrics.json``.
4. ``plots``: PCA and t-SNE of the reference embeddings, a nearest-neighbour grid, an interpolation strip and
   a map of the block split (:mod:`~maploc_loc2vec.plots`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maploc.api import Dataset, Method
from maploc.config import DataConfig, TrainConfig
from maploc.errors import DataError
from maploc.types import PoseEstimate, Sample

from .channels import dominant_channel, unpack_tiles
from .mining import triplet_labels, triplet_loss
from .model import Loc2VecNet, ModelConfig

__all__ = ["LossConfig", "EvalConfig", "Loc2VecConfig", "Loc2VecMethod", "raw_tile_descriptors"]

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class LossConfig:
    """The triplet loss.

    Attributes:
        margin: triplet margin, in embedding distance (unit vectors: distances in ``[0, 2]``).
        mining: ``batch-hard`` (Hermans et al. 2017) or ``semi-hard`` (FaceNet); see
            :mod:`~maploc_loc2vec.mining`. Positives / negatives come from the tiles' positions and the
            dataset's ``positive_radius_m`` / ``negative_radius_m``.
    """

    margin: float = 0.3
    mining: Literal["batch-hard", "semi-hard"] = "batch-hard"


@attrs.frozen(kw_only=True)
class EvalConfig:
    """Mapping, localization and reporting.

    Attributes:
        distance_threshold_m: a retrieved reference tile is correct within this distance (metres) for the
            core's ``recall_at_N``; the hook also reports 10 m and 25 m.
        top_k: reference tiles retrieved per query (``extras["retrieved"]``).
        baseline_px: side in pixels of the raw-tile baseline descriptor (``K x baseline_px^2`` values).
        embed_batch_size: tiles embedded at once.
        plots: write the plots.
        plot_queries: queries shown in the nearest-neighbour grid.
        projection_points: reference embeddings shown in the PCA / t-SNE plots (a random subset).
        interpolation_steps: tiles of the interpolation strip.
    """

    distance_threshold_m: float = 25.0
    top_k: int = 20
    baseline_px: int = 16
    embed_batch_size: int = 128
    plots: bool = True
    plot_queries: int = 6
    projection_points: int = 1000
    interpolation_steps: int = 8


@attrs.frozen(kw_only=True)
class Loc2VecConfig:
    """Config of ``loc2vec`` (the ``default`` preset is the main job on the Helsinki map).

    Attributes:
        model: the network.
        loss: the triplet loss and mining.
        eval: mapping, localization and reporting.
        train: generic training settings (the engine's). A ``train`` sample is one triplet; every tile of a
            batch of ``batch_size`` triplets (``3 x batch_size`` tiles) is mined as an anchor.
        data: dataset options (``image_height`` = side of the colour pictures in ``Sample.image``).
    """

    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    eval: EvalConfig = EvalConfig()
    train: TrainConfig = TrainConfig(
        epochs=1, max_steps=60, batch_size=16, lr=1e-3, checkpoint_every=20, log_every=5
    )
    data: DataConfig = DataConfig()


def raw_tile_descriptors(tiles: Tensor, size_px: int) -> Tensor:
    """The non-learned baseline descriptor: area-reduced raw tiles, zero-mean and unit-norm.

    Args:
        tiles: ``(N, K, S, S)`` binary tiles (any dtype).
        size_px: side of the reduced tiles in pixels.

    Returns:
        ``(N, K * size_px^2)`` float32 with unit L2 norm (all-zero rows for blank tiles).
    """
    x = F.interpolate(tiles.float(), size=(size_px, size_px), mode="area").flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return F.normalize(x, dim=1)


def _packed_tiles(samples: Sequence[Sample], key: str) -> np.ndarray:
    return np.stack([np.asarray(s.extras[key]) for s in samples])


class Loc2VecMethod(Method[Loc2VecConfig]):
    """Loc2Vec (see the module docstring)."""

    name: ClassVar[str] = "loc2vec"
    Config = Loc2VecConfig
    presets_package: ClassVar[str | None] = "maploc_loc2vec.presets"
    default_dataset: ClassVar[str] = "osm-tiles"
    metric_family: ClassVar[str] = "retrieval"
    localize_batch_size: ClassVar[int] = 64
    conformance_dataset: ClassVar[str] = "osm-tiles-synthetic"
    conformance_overrides: ClassVar[tuple[str, ...]] = (
        "train.batch_size=4", "model.backbone=test_resnet", "model.input_px=32", "eval.projection_points=60",
        "eval.plot_queries=2",
    )

    def __init__(self, config: Loc2VecConfig) -> None:
        super().__init__(config)
        self.last_stats: dict[str, float] = {}
        self.map_data: Any = None

    # -- training ------------------------------------------------------------------------------------------------
    def configure_model(self) -> nn.Module:
        return Loc2VecNet(self.config.model)

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Triplet samples -> one batch of ``3B`` tiles.

        Returns:
            ``tiles`` ``(3B, K, S, S)`` uint8 in {0, 1} (anchors, then positives, then negatives); ``xy``
            ``(3B, 2)`` float64 centres in metres; ``pairs`` / ``negatives`` ``(B, 2)`` int64 index pairs of the
            dataset's anchor-positive / anchor-negative tiles; ``positive_radius_m``, ``negative_radius_m``
            (floats); ``name`` (list of B str).

        Raises:
            DataError: a sample is not a triplet of the ``osm-tiles`` layout.
        """
        try:
            k = int(samples[0].extras["num_channels"])
            packed = np.concatenate([_packed_tiles(samples, key) for key in ("tile", "positive_tile", "negative_tile")])
            poses = [s.pose2 for s in samples] + [s.extras["positive_pose2"] for s in samples] + [
                s.extras["negative_pose2"] for s in samples]
            radii = (float(samples[0].extras["positive_radius_m"]), float(samples[0].extras["negative_radius_m"]))
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
            "pairs": torch.stack([idx, idx + b], 1),
            "negatives": torch.stack([idx, idx + 2 * b], 1),
            "positive_radius_m": radii[0],
            "negative_radius_m": radii[1],
            "name": [s.name for s in samples],
        }

    def _loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor, dict[str, float]]:
        embeddings = model(batch["tiles"])
        labels = triplet_labels(batch["xy"], batch["positive_radius_m"], batch["negative_radius_m"],
                                pairs=batch["pairs"], negatives=batch["negatives"])
        loss, stats = triplet_loss(embeddings, labels, self.config.loss.margin, self.config.loss.mining)
        return loss, embeddings, stats

    def training_step(self, model: nn.Module, batch: Any, batch_idx: int) -> Tensor:
        loss, _, self.last_stats = self._loss(model, batch)
        return loss

    def loss(self, outputs: Any, batch: Any) -> Tensor:
        """The mined triplet loss of embeddings ``outputs`` ``(3B, D)`` of ``batch`` (see :meth:`collate`)."""
        labels = triplet_labels(batch["xy"], batch["positive_radius_m"], batch["negative_radius_m"],
                                pairs=batch["pairs"], negatives=batch["negatives"])
        return triplet_loss(outputs, labels, self.config.loss.margin, self.config.loss.mining)[0]

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

    def build_map(self, map_data: Dataset) -> None:
        """Embeds the reference tiles and indexes them (faiss), with the raw-tile baseline.

        ``map_data`` is an :class:`~maploc_loc2vec.data.OsmTileDataset` ``map`` split (tiles rendered in chunks
        with its ``tiles`` method), or any dataset whose samples carry a packed ``extras["tile"]`` and ``pose2``.

        Raises:
            DataError: an empty map, or samples without tiles or positions.
        """
        import faiss

        n = len(map_data)
        if n == 0:
            raise DataError("loc2vec: the map split is empty")
        t0 = time.perf_counter()
        names = list(map_data.names())
        embeddings, baseline, dominant = [], [], []
        chunk = 512
        if hasattr(map_data, "tiles") and hasattr(map_data, "positions"):
            xy = np.asarray(map_data.positions(), np.float64)
            for start in range(0, n, chunk):
                tiles = torch.from_numpy(map_data.tiles(range(start, min(n, start + chunk))))
                embeddings.append(self._embed(tiles))
                baseline.append(raw_tile_descriptors(tiles, self.config.eval.baseline_px))
                dominant.append(dominant_channel(tiles.numpy()))
        else:
            samples = [map_data[i] for i in range(n)]
            if any(s.pose2 is None or "tile" not in s.extras for s in samples):
                raise DataError("loc2vec: map samples need pose2 and a packed extras['tile']")
            xy = np.array([[s.pose2.x, s.pose2.y] for s in samples])  # type: ignore[union-attr]
            k = int(samples[0].extras["num_channels"])
            for start in range(0, n, chunk):
                tiles = torch.from_numpy(unpack_tiles(_packed_tiles(samples[start : start + chunk], "tile"), k))
                embeddings.append(self._embed(tiles))
                baseline.append(raw_tile_descriptors(tiles, self.config.eval.baseline_px))
                dominant.append(dominant_channel(tiles.numpy()))
        self.map_embeddings = torch.cat(embeddings).numpy().astype(np.float32)
        self.map_baseline = torch.cat(baseline).numpy().astype(np.float32)
        self.map_dominant = np.concatenate(dominant)
        self.map_xy = xy
        self.map_names = names
        self.map_data = map_data
        self.index = faiss.IndexFlatL2(self.map_embeddings.shape[1])
        self.index.add(self.map_embeddings)
        self.baseline_index = faiss.IndexFlatIP(self.map_baseline.shape[1])
        self.baseline_index.add(self.map_baseline)
        log.info("indexed %d reference tiles in %.1f s", n, time.perf_counter() - t0)

    def query_tiles(self, queries: Sequence[Sample], key: str = "tile") -> Tensor:
        """The unpacked tiles ``(Q, K, S, S)`` uint8 of query samples (``key``: ``tile``, ``positive_tile``...)."""
        k = int(queries[0].extras["num_channels"])
        return torch.from_numpy(unpack_tiles(_packed_tiles(queries, key), k))

    def localize(self, queries: Sequence[Sample]) -> list[PoseEstimate]:
        """Nearest reference tiles of each query tile (learned embedding; the baseline rides along in extras).

        A query without a tile gets ``PoseEstimate.failed()``.
        """
        if not hasattr(self, "index"):
            raise RuntimeError("loc2vec: build_map must run before localize")
        usable = [i for i, q in enumerate(queries) if "tile" in q.extras and "num_channels" in q.extras]
        out: list[PoseEstimate] = [PoseEstimate.failed() for _ in queries]
        if not usable:
            return out
        batch = [queries[i] for i in usable]
        t0 = time.perf_counter()
        k = min(self.config.eval.top_k, len(self.map_names))
        emb = self._embed(self.query_tiles(batch))
        dist, order = self.index.search(emb.numpy().astype(np.float32), k)
        seconds = (time.perf_counter() - t0) / len(batch)  # the learned localization only (embed + search)
        base = raw_tile_descriptors(self.query_tiles(batch), self.config.eval.baseline_px).numpy()
        _, base_order = self.baseline_index.search(base.astype(np.float32), k)
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
            ranked = order[j]
            out[i] = PoseEstimate(
                success=True,
                confidence=float(-dist[j, 0]),
                seconds=seconds,
                extras={
                    "retrieved": [self.map_names[int(r)] for r in ranked],
                    "loc2vec": {
                        "retrieved_xy": self.map_xy[ranked].tolist(),
                        "baseline_retrieved_xy": self.map_xy[base_order[j]].tolist(),
                        "triplet_correct": correct[j],
                    },
                },
            )
        return out

    # -- reporting -----------------------------------------------------------------------------------------------
    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """PCA / t-SNE of the reference embeddings, nearest-neighbour grid, interpolation strip, split map."""
        if not self.config.eval.plots or not hasattr(self, "index"):
            return []
        from .plots import write_plots

        return write_plots(self, Path(run_dir), queries, estimates)

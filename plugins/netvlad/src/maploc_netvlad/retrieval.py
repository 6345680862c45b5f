"""What ``netvlad`` and ``mobilenetvlad`` share: encoding, the map index, localization by retrieval, reporting.

A query takes the pose of its best map image (``T_cam2world`` and ``pose2``); ``extras["retrieved"]`` lists the
top-k map names for the ``retrieval`` metric family.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from maploc.api import Dataset, Method, SampleMeta
from maploc.errors import DataError
from maploc.types import PoseEstimate, Sample

from .index import MapIndex
from .training import positions_of

__all__ = ["RetrievalMethod", "condition_of"]

log = logging.getLogger(__name__)


def condition_of(sample: Sample | SampleMeta) -> str:
    """The query's condition: ``extras["condition"]`` when the dataset gives it, else the part of the sequence
    name after its first ``_`` (sim-city's ``t1_night``), else the sequence name (``""`` -> ``all``)."""
    extras = getattr(sample, "extras", None) or {}
    if "condition" in extras:
        return str(extras["condition"])
    seq = sample.sequence or ""
    return seq.split("_", 1)[1] if "_" in seq else (seq or "all")


class RetrievalMethod(Method[Any]):
    """Base of the global-descriptor methods (subclasses build ``self.model``, a ``GlobalDescriptorNet``)."""

    metric_family: ClassVar[str] = "retrieval"
    default_dataset: ClassVar[str] = "sim-city"
    localize_batch_size: ClassVar[int] = 16
    conformance_dataset: ClassVar[str] = "sim-city"
    #: whether build_map learns PCA whitening on the map (the teacher) or not (the student's projection).
    whiten_on_map: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.index: MapIndex | None = None
        self.map_meta: list[SampleMeta] = []
        self.map_thumbnails: torch.Tensor | None = None
        self.map_descriptors: np.ndarray | None = None
        self.query_log: list[dict[str, Any]] = []
        self.timing = {"map_encode_s": 0.0, "map_images": 0, "query_encode_s": 0.0, "search_s": 0.0, "queries": 0}
        self.map_data: Dataset | None = None
        #: the saved index folder build_map reused (``None``: the map was encoded)
        self.reused_index: Path | None = None

    # ---- encoding --------------------------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        assert self.model is not None
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, images: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> ``(B, D)`` float32 CPU descriptors (``raw``: NetVLAD before whitening)."""
        assert self.model is not None, "configure_model was not called"
        self.model.eval()
        x = images.to(self._device())
        out = self.model.vlad(x) if raw else self.model(x)
        return out.float().cpu()

    def _index_dir(self) -> Path | None:
        from maploc.engine.runner import RUN_DIR_ENV

        run_dir = self.run_dir or os.environ.get(RUN_DIR_ENV)
        return Path(run_dir) / "index" if run_dir else None

    def _saved_index(self, names: list[str], fingerprint: str) -> Path | None:
        """The index folder to reuse: ``index.load_from`` when set; else, under ``maploc eval --checkpoint
        RUN/checkpoints/X.ckpt``, ``RUN/index`` when it was built by these very weights (the model fingerprint
        saved in its ``index.json``) from this map (the same image names); else ``None`` (the map is encoded)."""
        if self.config.index.load_from is not None:
            return Path(self.config.index.load_from)
        if self.checkpoint_run_dir is None:
            return None
        folder = Path(self.checkpoint_run_dir) / "index"
        if not (folder / "index.json").is_file():
            log.info("no saved map index in %s: encoding the map", folder)
            return None
        try:
            saved = MapIndex.load(folder)
        except DataError as e:
            log.warning("not reusing %s (%s): encoding the map", folder, e)
            return None
        if saved.info.get("model_fingerprint") != fingerprint:
            log.info("%s was built by other weights than %s: encoding the map", folder, "this checkpoint")
            return None
        if saved.names != names:
            log.info("%s was built from another map (%d images): encoding the map", folder, len(saved.names))
            return None
        return folder

    # ---- map -------------------------------------------------------------------------------------------------------
    def build_map(self, map_data: Dataset) -> None:
        """Encodes the map, learns the PCA whitening on it (teacher), builds the faiss index and saves it to
        ``RUN/index`` (or loads ``index.load_from``).

        Raises:
            DataError: empty map, a map image without pose (unless the dataset gives index ground truth), images of different sizes (names both), a saved index
                of another dimension or another map (names the file).
        """
        from maploc.methods.nn_retrieval import thumbnail_descriptors

        if len(map_data) == 0:
            raise DataError(f"the map split of {map_data!r} is empty")
        self.map_data = map_data
        self.map_meta = [map_data.metadata(i) for i in range(len(map_data))]
        # index ground truth (two-pass layouts: PlaceMeta.matching_queries) needs no positions
        missing = [m.name for m in self.map_meta
                   if m.T_cam2world is None and m.pose2 is None and not hasattr(m, "matching_queries")]
        if missing:
            raise DataError(f"{map_data!r}: map image {missing[0]!r} has no pose (T_cam2world or pose2)")
        cfg = self.config
        assert self.model is not None
        fingerprint = self.model.fingerprint()  # before the whitening is learned: the checkpoint's weights
        names = [m.name for m in self.map_meta]
        load_from = self._saved_index(names, fingerprint)
        self.reused_index = load_from
        batch, raw, thumbs, first = [], [], [], None
        t_encode = 0.0

        def flush() -> None:
            nonlocal t_encode
            if batch:
                images = torch.stack(batch)
                thumbs.append(thumbnail_descriptors(images, 32))
                if load_from is None:
                    t0 = time.perf_counter()
                    raw.append(self.encode(images, raw=self.whiten_on_map))
                    t_encode += time.perf_counter() - t0
                batch.clear()

        for i in range(len(map_data)):
            s = map_data[i]
            if first is None:
                first = s
            elif s.image.shape != first.image.shape:
                raise DataError(
                    f"{map_data!r}: map image {s.name!r} is {tuple(s.image.shape[1:])} but {first.name!r} is "
                    f"{tuple(first.image.shape[1:])}; set data.image_height to resize them alike"
                )
            batch.append(s.image.float())
            if len(batch) == cfg.encode_batch_size:
                flush()
        flush()
        self.map_thumbnails = torch.cat(thumbs)
        if load_from is not None:
            folder = Path(load_from)
            self._load_whitening(folder)
            self.index = MapIndex.load(folder, expected_dim=self.model.descriptor_dim)
            if self.index.names != names:
                raise DataError(f"{folder / 'index.json'} was built from another map ({len(self.index.names)} images, "
                                f"first {self.index.names[:1]}); this map has {len(names)} (first {names[:1]})")
            self.map_descriptors = None
            log.info("reusing the map index %s (%d images)", folder, len(names))
            return
        descriptors = torch.cat(raw)
        if self.whiten_on_map and cfg.model.whitening_dim > 0:
            kept = self.model.whitening.fit(descriptors.to(self._device()), cfg.model.whitening_dim)
            descriptors = self.model.whitening(descriptors.to(self._device())).cpu()
            log.info("PCA whitening learned on %d map descriptors: %d dimensions", len(descriptors), kept)
        self.map_descriptors = descriptors.numpy()
        ic = cfg.index
        self.index = MapIndex(descriptors.shape[1], ic.kind, nlist=ic.nlist, m=ic.pq_subquantizers, nbits=ic.pq_bits,
                              nprobe=ic.nprobe).build(self.map_descriptors, names)
        self.index.info["model_fingerprint"] = fingerprint
        self.timing["map_encode_s"] = t_encode
        self.timing["map_images"] = len(map_data)
        folder = self._index_dir()
        if folder is not None:
            self.index.save(folder)
            self._save_whitening(folder)

    def _save_whitening(self, folder: Path) -> None:
        import io

        from maploc.files import atomic_write_bytes

        assert self.model is not None
        w = self.model.whitening
        if w.fitted:
            buf = io.BytesIO()
            np.savez(buf, mean=w.mean.cpu().numpy(), projection=w.projection.cpu().numpy())
            atomic_write_bytes(folder / "whitening.npz", buf.getvalue())

    def _load_whitening(self, folder: Path) -> None:
        assert self.model is not None
        path = folder / "whitening.npz"
        if not self.whiten_on_map or not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as z:
                mean, projection = torch.from_numpy(z["mean"]), torch.from_numpy(z["projection"])
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: unreadable whitening ({e})") from None
        w = self.model.whitening
        w.mean, w.projection = mean.to(self._device()), projection.to(self._device())

    # ---- queries ---------------------------------------------------------------------------------------------------
    def localize(self, queries: Sequence[Sample]) -> list[PoseEstimate]:
        from maploc.methods.nn_retrieval import thumbnail_descriptors

        if self.index is None:
            raise DataError("build_map was not called (the map index is empty)")
        try:
            images = torch.stack([q.image.float() for q in queries])
        except RuntimeError:  # sizes differ inside the batch: encode one by one
            images = None
        t0 = time.perf_counter()
        if images is not None:
            desc = self.encode(images)
        else:
            desc = torch.cat([self.encode(q.image.float()[None]) for q in queries])
        t1 = time.perf_counter()
        try:
            scores, order = self.index.search(desc.numpy(), self.config.index.top_k)
        except DataError as e:
            log.warning("query search failed: %s", e)
            return [PoseEstimate.failed(reason=str(e)) for _ in queries]
        t2 = time.perf_counter()
        self.timing["query_encode_s"] += t1 - t0
        self.timing["search_s"] += t2 - t1
        self.timing["queries"] += len(queries)
        thumbs = (thumbnail_descriptors(images, 32) if images is not None
                  else torch.cat([thumbnail_descriptors(q.image.float()[None], 32) for q in queries]))
        out = []
        for j, q in enumerate(queries):
            top = [int(i) for i in order[j] if i >= 0]
            self.query_log.append({"name": q.name, "condition": condition_of(q), "descriptor": desc[j].numpy(),
                                   "thumbnail": thumbs[j], "xyz": positions_of(q)})
            if not top:
                out.append(PoseEstimate.failed(reason="no map image retrieved"))
                continue
            best = self.map_meta[top[0]]
            out.append(PoseEstimate(
                T_cam2world=best.T_cam2world, pose2=best.pose2, success=True, confidence=float(scores[j, 0]),
                extras={"retrieved": [self.index.names[i] for i in top]},
            ))
        return out

    # ---- reporting -------------------------------------------------------------------------------------------------
    def extra_metrics(self, map_data: Dataset, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate],
                      metrics: Mapping[str, float]) -> Mapping[str, float]:
        """Recall@1/5/10/20 within ``eval.distance_threshold_m`` and ``eval.fine_threshold_m`` per condition and
        on the held-out blocks, the same for ``nn-retrieval`` on the same queries and map, and timings."""
        from .report import retrieval_breakdown

        self.breakdown = retrieval_breakdown(self, queries, estimates)
        return self.breakdown.metrics

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        from .report import sections

        return sections(self, metrics)

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        from .plots import retrieval_plots

        try:
            return retrieval_plots(self, Path(run_dir), queries, estimates)
        except Exception as e:  # a plot never fails a finished run
            log.warning("plots failed: %s", e)
            return []


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)

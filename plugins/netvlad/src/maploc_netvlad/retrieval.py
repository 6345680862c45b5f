"""What ``netvlad`` and ``mobilenetvlad`` share: encoding, the map index, localization by retrieval, the thumbnail
baseline, the spatial split of the run, reporting.

A query takes the pose of its best map image (``T_cam2world`` and ``pose2``); ``PoseEstimate.retrieval`` ranks the
``index.top_k`` best map images (indices into the map split, cosine scores) for the core's ``retrieval`` family.
Beside it, :meth:`RetrievalMethod.variants` returns the baseline ``thumbnails``: the core's ``nn-retrieval``
descriptors (:func:`maploc.methods.nn_retrieval.thumbnail_descriptors`, 32 px wide, grayscale) of the same map and
queries, ranked to the same ``top_k``, so that the core scores both in one table with its ``chance`` row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from maploc.api import Dataset, Method, RunContext, SampleMeta, Variant
from maploc.data.split import SpatialSplit
from maploc.errors import DataError
from maploc.types import PoseEstimate, Retrieval, Sample

from .index import MapIndex

__all__ = ["RetrievalMethod", "THUMBNAIL_WIDTH"]

log = logging.getLogger(__name__)

#: width (pixels) of the ``thumbnails`` baseline's descriptors: the core's ``nn-retrieval`` default
THUMBNAIL_WIDTH = 32


class RetrievalMethod(Method[Any]):
    """Base of the global-descriptor methods (subclasses build ``self.model``, a ``GlobalDescriptorNet``).

    Attributes:
        split: the run's spatial split (built by ``fit``, or read from the checkpoint's run by ``build_map``), or
            ``None`` (no split: every query is scored).
        index: the faiss map index (after ``build_map``).
        map_meta: the map split's metadata, in map order.
        map_thumbnails: ``(M, D)`` thumbnail descriptors of the map (the ``thumbnails`` baseline).
        map_descriptors: ``(M, D')`` the method's map descriptors (``None`` when a saved index was reused).
        query_log: per localized query name: its descriptor ``(D',)`` and thumbnail ``(D,)``.
        reused_index: the saved index folder ``build_map`` reused (``None``: the map was encoded).
    """

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
        self.query_log: dict[str, dict[str, Any]] = {}
        self.timing = {"map_encode_s": 0.0, "map_images": 0, "query_encode_s": 0.0, "search_s": 0.0, "queries": 0}
        self.map_data: Dataset | None = None
        self.reused_index: Path | None = None
        self.split: SpatialSplit | None = None
        self.context = RunContext()
        self.fit_summary: dict[str, Any] = {}
        #: validation-block summary lines for the report (see :meth:`variants`)
        self.validation: list[str] = []
        #: the evaluated queries' metadata and the thumbnail estimates (for the plots)
        self.scored: tuple[list[SampleMeta], list[PoseEstimate], list[PoseEstimate]] | None = None

    # ---- the spatial split -----------------------------------------------------------------------------------------
    def _make_split(self, train_data: Dataset, context: RunContext) -> SpatialSplit | None:
        """Builds the run's split from the map split of ``train_data``'s dataset, saves it as
        ``context.run_dir / "split.json"`` and logs it (``None`` with ``split.block_size_m=0``)."""
        from .split import build_split, map_split_of, save_split

        if self.config.split.block_size_m <= 0:
            return None
        map_data = map_split_of(train_data)
        split = build_split([map_data.metadata(i) for i in range(len(map_data))], self.config)
        assert split is not None
        save_split(split, context.run_dir)
        context.logger.info("spatial split: %s", split.describe())
        return split

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

    def index_dir(self) -> Path | None:
        """``RUN/index`` of the run in progress (``None`` when driven by hand)."""
        run_dir = self.context.run_dir
        return Path(run_dir) / "index" if run_dir is not None else None

    def _saved_index(self, names: list[str], fingerprint: str) -> Path | None:
        """The index folder to reuse: ``index.load_from`` when set; else, under ``maploc eval --checkpoint
        RUN/checkpoints/X.ckpt`` (``context.source_run_dir`` = ``RUN``), ``RUN/index`` when it was built by these
        very weights (the model fingerprint saved in its ``index.json``) from this map (the same image names); else
        ``None`` (the map is encoded)."""
        if self.config.index.load_from is not None:
            return Path(self.config.index.load_from)
        source = self.context.source_run_dir
        if source is None:
            return None
        folder = Path(source) / "index"
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
    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Encodes the map, learns the PCA whitening on it (teacher), builds the faiss index and saves it to
        ``context.run_dir / "index"`` (or loads ``index.load_from``, or the checkpoint's run's index). Under
        ``maploc eval --checkpoint``, also saves the checkpoint's run's ``split.json`` into this run's folder (the
        split those weights were trained with), so that the core scores the same queries.

        Raises:
            DataError: empty map, a map image without pose (unless the dataset gives index ground truth), images
                of different sizes (names both), a saved index of another dimension or another map (names the
                file), a malformed saved split.
        """
        from maploc.methods.nn_retrieval import thumbnail_descriptors

        from .split import load_split, save_split

        self.context = context
        if len(map_data) == 0:
            raise DataError(f"the map split of {map_data!r} is empty")
        self.map_data = map_data
        self.map_meta = [map_data.metadata(i) for i in range(len(map_data))]
        # index ground truth (two-pass layouts: PlaceMeta.matching_queries) needs no positions
        missing = [m.name for m in self.map_meta
                   if m.T_cam2world is None and m.pose2 is None and not hasattr(m, "matching_queries")]
        if missing:
            raise DataError(f"{map_data!r}: map image {missing[0]!r} has no pose (T_cam2world or pose2)")
        if self.split is None and context.source_run_dir is not None:
            self.split = load_split(context.source_run_dir)
            if self.split is not None:
                save_split(self.split, context.run_dir)
                context.logger.info("spatial split of %s: %s", context.source_run_dir, self.split.describe())
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
                thumbs.append(thumbnail_descriptors(images, THUMBNAIL_WIDTH))
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
        folder = self.index_dir()
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
    def _estimate(self, top: Sequence[int], scores: Sequence[float]) -> PoseEstimate:
        """The estimate of one query from its ranked map rows (best first) and their scores."""
        if not len(top):
            return PoseEstimate.failed(reason="no map image retrieved")
        best = self.map_meta[int(top[0])]
        return PoseEstimate(T_cam2world=best.T_cam2world, pose2=best.pose2, success=True, confidence=float(scores[0]),
                            retrieval=Retrieval(indices=top, scores=scores))

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """Encodes the queries, searches the faiss index for the ``index.top_k`` best map images of each, and keeps
        each query's thumbnail for the ``thumbnails`` baseline. A failed search fails the batch's queries (never
        raises)."""
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
        thumbs = (thumbnail_descriptors(images, THUMBNAIL_WIDTH) if images is not None
                  else torch.cat([thumbnail_descriptors(q.image.float()[None], THUMBNAIL_WIDTH) for q in queries]))
        out = []
        for j, q in enumerate(queries):
            valid = order[j] >= 0  # IVF-PQ pads with -1 when fewer entries are found
            self.query_log[q.name] = {"descriptor": desc[j].numpy(), "thumbnail": thumbs[j]}
            out.append(self._estimate(order[j][valid].tolist(), scores[j][valid].tolist()))
        return out

    # ---- variants, report, plots -----------------------------------------------------------------------------------
    def thumbnail_estimates(self, queries: Sequence[SampleMeta]) -> list[PoseEstimate]:
        """The ``thumbnails`` baseline: the core's ``nn-retrieval`` descriptors of the same queries ranked against
        the same map by cosine similarity, to the same ``index.top_k``.

        Raises:
            DataError: a query was not localized by this method (no thumbnail of it).
        """
        assert self.map_thumbnails is not None, "build_map was not called"
        missing = [q.name for q in queries if q.name not in self.query_log]
        if missing:
            raise DataError(f"query {missing[0]!r} was not localized: no thumbnail for the baseline")
        if not queries:
            return []
        qt = torch.stack([self.query_log[q.name]["thumbnail"] for q in queries])
        sim = qt @ self.map_thumbnails.T
        k = min(self.config.index.top_k, sim.shape[1])
        scores, order = sim.topk(k, dim=1)
        return [self._estimate(order[i].tolist(), scores[i].tolist()) for i in range(len(queries))]

    def variants(self, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate],
                 context: RunContext = RunContext()) -> Mapping[str, Variant]:
        """The baseline ``thumbnails`` (see :meth:`thumbnail_estimates`). Also notes, for the report, the recall of
        both on the queries in validation blocks (never trained on, not scored by the core: for choosing
        defaults)."""
        thumbs = self.thumbnail_estimates(queries)
        self.scored = (list(queries), list(estimates), thumbs)
        self.validation = self._validation_lines(queries, estimates, thumbs)
        return {"thumbnails": Variant(
            estimates=thumbs, baseline=True,
            description=f"the core's nn-retrieval descriptors ({THUMBNAIL_WIDTH}-px grayscale thumbnails) of the same "
                        f"map and queries, top {self.config.index.top_k}",
        )}

    def _validation_lines(self, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate],
                          thumbs: Sequence[PoseEstimate]) -> list[str]:
        """One line per row: recall@1/5 (core's retrieval family, primary threshold) on the val-block queries."""
        from maploc.evaluation import evaluate

        from .split import positions

        if self.split is None or not queries or self.split.counts()["val"] == 0:
            return []
        val = np.flatnonzero(self.split.mask(positions(queries), "val", guarded=False))
        if val.size == 0:
            return ["validation blocks hold no evaluated query"]
        d = self.config.eval.distance_threshold_m
        qs = [queries[i] for i in val]
        lines = [f"{val.size} queries in validation blocks (not scored above; for choosing defaults), recall within "
                 f"{d:g} m:"]
        for label, rows in ((self.name, estimates), ("thumbnails", thumbs)):
            m = evaluate("retrieval", qs, [rows[i] for i in val], map_samples=self.map_meta,
                         distance_threshold_m=d).metrics
            lines.append(f"  {label}: R@1 {m['recall_at_1']:.1f} %, R@5 {m['recall_at_5']:.1f} %")
        return lines

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        from .report import sections

        return sections(self)

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        from .plots import retrieval_plots

        try:
            return retrieval_plots(self, Path(run_dir), queries)
        except Exception as e:  # a plot never fails a finished run
            log.warning("plots failed: %s", e)
            return []

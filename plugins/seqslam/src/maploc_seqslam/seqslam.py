"""The ``seqslam`` method: SeqSLAM (Milford & Wyeth, ICRA 2012) with the OpenSeqSLAM2 uniqueness
ratio for precision-recall, and single-frame matching (``ds = 1``) as the ``single_frame`` baseline.

Pipeline (:mod:`maploc_seqslam.search` has the algorithm and its conventions): every image is
down-sampled to ``image_width x image_height`` grey and patch-normalised; ``build_map`` stores the
reference descriptors; ``localize`` receives the queries in traversal order, computes their
difference rows against every reference (mean absolute difference), enhances them along the
reference axis and runs the streaming sequence search (history cut where the query sequence
changes). Each estimate's ``retrieval`` holds the top-5 references (map indices, best first) with
scores ``1 - S / S_second`` (higher is better); the first is the match and ``confidence = 1 - mu``
(uniqueness ratio). :meth:`SeqSLAM.variants` returns the same search with ``ds = 1`` on the same
enhanced rows as the baseline ``single_frame``; the core scores both per condition.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from maploc.api import Dataset, Method, RunContext, SampleMeta, Variant
from maploc.config import DataConfig, at_least
from maploc.errors import ConfigError
from maploc.types import PoseEstimate, Sample
from maploc_seqslam import common
from maploc_seqslam.search import (
    SearchParams,
    SequenceSearch,
    difference_rows,
    enhance_rows,
    preprocess_images,
)

__all__ = ["SeqSLAM", "SeqSLAMConfig", "StreamingMatcher", "plot_all", "pick_device"]


def _check_velocities(instance: Any, attribute: Any, value: float) -> None:
    if instance.v_min > instance.v_max:
        raise ConfigError(f"v_min ({instance.v_min}) must be <= v_max ({instance.v_max})")


@attrs.frozen(kw_only=True)
class SeqSLAMConfig:
    """Config of ``seqslam`` (parameter names as in Milford & Wyeth 2012 / OpenSeqSLAM).

    Attributes:
        image_width / image_height: down-sampled image size in pixels (paper: 64 x 32).
        patch_size: patch-normalisation patch side in pixels (0 = off).
        ds: sequence length ``d_s`` in frames.
        r_window: local contrast enhancement window ``R_window`` (reference frames).
        v_min / v_max / v_step: trajectory velocities (reference frames per query frame).
        uniqueness_window: frames around the best match excluded from the second-best score.
        single_frame: also return ``ds = 1`` matching as the ``single_frame`` baseline (scored
            beside the method in the same tables).
        query_chunk: queries per difference-matrix / search chunk.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        eval: evaluation settings.
        data: dataset options.
    """

    image_width: int = attrs.field(default=64, validator=at_least(4))
    image_height: int = attrs.field(default=32, validator=at_least(4))
    patch_size: int = attrs.field(default=8, validator=at_least(0))
    ds: int = attrs.field(default=10, validator=at_least(1))
    r_window: int = attrs.field(default=10, validator=at_least(0))
    v_min: float = attrs.field(default=0.8, validator=at_least(0.0))
    v_max: float = attrs.field(default=1.2, validator=[at_least(0.0), _check_velocities])
    v_step: float = attrs.field(default=0.1, validator=at_least(1e-3))
    uniqueness_window: int = attrs.field(default=10, validator=at_least(0))
    single_frame: bool = True
    query_chunk: int = attrs.field(default=64, validator=at_least(1))
    device: str = "auto"
    eval: common.EvalConfig = common.EvalConfig()
    data: DataConfig = DataConfig()

    def search_params(self, ds: int | None = None) -> SearchParams:
        return SearchParams(ds=self.ds if ds is None else ds, r_window=self.r_window, v_min=self.v_min,
                            v_max=self.v_max, v_step=self.v_step, uniqueness_window=self.uniqueness_window)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class StreamingMatcher:
    """Shared by SeqSLAM and DeepSeqSLAM: keeps the search state between ``localize`` batches, the
    single-frame baseline's estimates and the rows kept for plots.

    Args:
        keep_rows: how many query rows of the difference (score) matrix to keep for the plot.
    """

    def __init__(self, keep_rows: int) -> None:
        self.keep_rows = keep_rows
        self.last_sequence: str | None = None
        self.raw: list[np.ndarray] = []
        self.enhanced: list[np.ndarray] = []
        self.matches: list[int] = []
        self.query_names: list[str] = []
        #: the single-frame baseline's estimates, in query order (see ``Method.variants``)
        self.single: list[PoseEstimate] = []

    def starts(self, samples: Sequence[Sample]) -> list[bool]:
        """``True`` for each sample that starts a new query sequence (the search history is cut)."""
        out = []
        for s in samples:
            out.append(s.sequence != self.last_sequence)
            self.last_sequence = s.sequence
        return out

    def keep(self, names: Sequence[str], raw: torch.Tensor | None, enhanced: torch.Tensor, best: torch.Tensor) -> None:
        """Keeps the first ``keep_rows`` query rows (``(B, M)``) and matches for the plot."""
        room = self.keep_rows - len(self.query_names)
        if room <= 0:
            return
        n = min(room, len(names))
        self.query_names.extend(names[:n])
        if raw is not None:
            self.raw.append(raw[:n].float().cpu().numpy())
        self.enhanced.append(enhanced[:n].float().cpu().numpy())
        self.matches.extend(int(b) for b in best[:n])


def single_frame_variants(stream: StreamingMatcher | None, estimates: Sequence[PoseEstimate],
                          description: str) -> dict[str, Variant]:
    """The ``single_frame`` baseline collected during ``localize`` (none when it was off).

    Raises:
        RuntimeError: if its estimates do not match the method's one to one (``localize`` was
            called on other queries than those evaluated).
    """
    if stream is None or not stream.single:
        return {}
    if len(stream.single) != len(estimates):
        raise RuntimeError(f"{len(stream.single)} single-frame estimates for {len(estimates)} queries: "
                           "build_map must be called before localizing the evaluated queries")
    return {common.SINGLE_FRAME: Variant(estimates=list(stream.single), baseline=True, description=description)}


class SeqSLAM(Method[SeqSLAMConfig]):
    """SeqSLAM sequence matching; see the module docstring."""

    name: ClassVar[str] = "seqslam"
    Config = SeqSLAMConfig
    presets_package: ClassVar[str | None] = "maploc_seqslam.presets.seqslam"
    default_dataset: ClassVar[str] = "sim-city"
    metric_family: ClassVar[str] = "sequence"
    localize_batch_size: ClassVar[int] = 64
    conformance_dataset: ClassVar[str] = "synthetic-room"
    conformance_overrides: ClassVar[tuple[str, ...]] = ("ds=2", "r_window=2", "uniqueness_window=1")

    def __init__(self, config: SeqSLAMConfig) -> None:
        super().__init__(config)
        config.search_params()  # raises ConfigError early on bad velocities
        self.device = pick_device(config.device)
        self._refs: torch.Tensor | None = None
        self._map: Dataset | None = None

    def describe(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images -> ``(B, image_height * image_width)`` float32 descriptors."""
        c = self.config
        return preprocess_images(images.to(self.device), c.image_width, c.image_height, c.patch_size)

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Describes every reference frame (in order) and resets the sequence search.

        Raises:
            ConfigError: if ``ds`` is longer than the reference traversal.
        """
        n = len(map_data)
        self.config.search_params().check_length(n)
        descs = []
        for start in range(0, n, self.config.query_chunk):
            batch = [map_data[i] for i in range(start, min(n, start + self.config.query_chunk))]
            descs.append(self.describe(torch.stack([s.image for s in batch])))
        self._refs = torch.cat(descs)
        self._map = map_data
        self._map_metas = [map_data.metadata(i) for i in range(n)]
        self._search = SequenceSearch(self.config.search_params(), n, self.device)
        self._single = SequenceSearch(self.config.search_params(ds=1), n, self.device) if self.config.single_frame else None
        self._stream = StreamingMatcher(self.config.eval.plot_max_queries if n <= self.config.eval.plot_max_refs else 0)

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """Matches consecutive queries (call in traversal order; a new ``sequence`` restarts the
        search). The single-frame matches of the same rows are kept for :meth:`variants`."""
        assert self._refs is not None, "build_map was not called"
        t0 = time.perf_counter()
        starts = self._stream.starts(queries)
        q = self.describe(torch.stack([s.image for s in queries]))
        raw = difference_rows(q, self._refs)
        enhanced = enhance_rows(raw, self.config.r_window)
        result = self._search.push(enhanced, starts)
        single = self._single.push(enhanced, starts) if self._single is not None else None
        self._stream.keep([s.name for s in queries], raw, enhanced, result.best)
        seconds = (time.perf_counter() - t0) / len(queries)
        if single is not None:
            self._stream.single.extend(common.estimate(single, b, seconds) for b in range(len(queries)))
        return [common.estimate(result, b, seconds) for b in range(len(queries))]

    def variants(self, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate],
                 context: RunContext = RunContext()) -> Mapping[str, Variant]:
        """``single_frame``: the same search with ``ds = 1`` on the same enhanced difference rows
        (a baseline; none with ``single_frame=false``)."""
        return single_frame_variants(
            getattr(self, "_stream", None), estimates,
            "ds=1: the best single frame of the same enhanced difference rows (no sequence)")

    def plots(self, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
        """PR curves per condition (the method and its single-frame baseline, scored by the core),
        the difference matrix (raw, enhanced) with the ground truth and the matches, and example
        matched frames."""
        return plot_all(self, run_dir, queries, estimates)


def plot_all(method: Any, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
    """The plots both methods write (see :meth:`SeqSLAM.plots`): the ground truth is the core's
    (:func:`maploc.evaluation.evaluate.truth_matrix`, ``eval.distance_threshold_m``); with a spatial split
    (``method.split``) the PR curves keep the queries the core scores (those in test blocks)."""
    from maploc.evaluation.evaluate import truth_matrix

    paths: list[Path] = []
    map_metas = getattr(method, "_map_metas", None)
    stream = getattr(method, "_stream", None)
    if map_metas is None or stream is None or not estimates:
        return paths
    threshold = method.config.eval.distance_threshold_m
    metas = [queries.metadata(i) for i in range(len(estimates))]
    rows = {method.name: list(estimates)}
    if len(stream.single) == len(estimates):
        rows[common.SINGLE_FRAME] = stream.single
    title, pr_metas = f"{method.name}: precision-recall", metas
    split = getattr(method, "split", None)
    if split is not None:  # the queries the core scores: those in the spatial split's test blocks
        from maploc_seqslam.split import positions

        keep = np.asarray(split.mask(positions(metas), "test"), dtype=bool)
        if keep.any():
            pr_metas = [m for m, k in zip(metas, keep) if k]
            rows = {name: [e for e, k in zip(r, keep) if k] for name, r in rows.items()}
            title += " (test-block queries)"
    curves = common.pr_curves(map_metas, pr_metas, rows, threshold)
    paths.append(common.plot_pr_curves(run_dir, curves, method.name, title))
    if stream.query_names:
        n = len(stream.query_names)
        truth = truth_matrix(metas[:n], map_metas, threshold)
        raw = np.concatenate(stream.raw) if stream.raw else None
        paths.append(common.plot_difference_matrix(
            run_dir, raw, np.concatenate(stream.enhanced), truth, np.asarray(stream.matches),
            f"{method.name}, first {n} queries"))
    k = method.config.eval.examples
    if k and method._map is not None:
        pairs = common.example_pairs(queries, method._map, map_metas, estimates, threshold, k)
        path = common.plot_examples(run_dir, pairs, threshold)
        if path is not None:
            paths.append(path)
    return paths

"""SeqSLAM's image preprocessing, difference matrix, contrast enhancement and sequence search,
vectorised in PyTorch (any device) and chunked so that memory stays bounded.

Reference: M. Milford and G. Wyeth, "SeqSLAM: Visual route-based navigation for sunny summer days
and stormy winter nights", ICRA 2012: Sec. III-A (image difference matrix of down-sampled,
patch-normalised images, sum of absolute differences), III-B (local contrast enhancement of the
difference vectors, Eq. 1-2) and III-C (search over straight trajectories of length ``ds`` with
velocities ``V_min .. V_max``, Eq. 3-4); the uniqueness ratio used to sweep precision-recall
follows OpenSeqSLAM2 (Talbot et al., ACRA 2018): the best trajectory score over the best one
outside a window of ``R_window`` frames around it.

Conventions (shared by :mod:`maploc_seqslam.reference_loop`, which must give identical matches):

* difference ``D[i, j]`` = mean absolute difference of the descriptors of query ``i`` and
  reference ``j`` (lower = more similar);
* enhanced row ``D^[i, j] = (D[i, j] - mean_w) / max(std_w, eps) + c`` over the reference window
  ``j - r_window // 2 .. j + r_window // 2`` (clipped at the ends; population std), computed in
  float64 from cumulative sums. ``c = sqrt(n - 1)`` with ``n = 2 (r_window // 2) + 1`` is the
  largest magnitude a z-score over ``n`` values (population std) can take, so ``D^ >= 0`` whatever the data: a
  constant that changes no argmin but keeps the scores non-negative, which the uniqueness ratio
  needs (``r_window = 0``: no enhancement, ``c = 0``);
* the trajectory through query ``i`` with velocity ``v`` that ends at reference ``j`` visits
  reference ``clip(j - round(v * s), 0, M - 1)`` at query ``i - s``, ``s = 0 .. L - 1``, where
  ``L = min(ds, frames of the same query sequence up to i)`` (the search looks back only, so it
  runs online); ``round`` is half-up, computed once by :func:`trajectory_offsets`;
* score ``S[i, j] = min_v sum_s D^[i - s, ...]`` (float32, summed in ``s`` order), best match
  ``j* = argmin_j S`` (first on ties), uniqueness ratio ``mu = S[j*] / min_{|j - j*| >
  uniqueness_window} S`` and confidence ``1 - mu`` in ``[0, 1]`` (higher = more unique).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maploc.config import at_least, greater_than
from maploc.errors import ConfigError

__all__ = [
    "SearchParams", "SearchResult", "SequenceSearch", "preprocess_images", "difference_rows",
    "enhance_rows", "enhancement_offset", "trajectory_offsets", "velocities", "uniqueness",
]

#: Floor of the local standard deviation in the contrast enhancement.
STD_EPS = 1e-6


@attrs.frozen(kw_only=True)
class SearchParams:
    """Parameters of the sequence search, named as in Milford & Wyeth (2012) and OpenSeqSLAM.

    Attributes:
        ds: sequence length ``d_s`` in query frames (``1`` = single-frame matching).
        r_window: local contrast enhancement window ``R_window`` in reference frames.
        v_min / v_max / v_step: trajectory velocities ``V_min .. V_max`` in steps of ``V_step``
            (reference frames per query frame).
        uniqueness_window: reference frames on each side of the best match excluded when taking
            the second-best score of the uniqueness ratio.
    """

    ds: int = attrs.field(default=10, validator=at_least(1))
    r_window: int = attrs.field(default=10, validator=at_least(0))
    v_min: float = attrs.field(default=0.8, validator=greater_than(0))
    v_max: float = attrs.field(default=1.2, validator=greater_than(0))
    v_step: float = attrs.field(default=0.1, validator=greater_than(0))
    uniqueness_window: int = attrs.field(default=10, validator=at_least(0))

    def __attrs_post_init__(self) -> None:
        if self.v_min > self.v_max:
            raise ConfigError(f"v_min ({self.v_min}) must be <= v_max ({self.v_max})")

    def check_length(self, num_refs: int, what: str = "the reference traversal") -> None:
        """Raises ConfigError when ``ds`` is longer than the traversal."""
        if self.ds > num_refs:
            raise ConfigError(f"ds={self.ds} (sequence length) is longer than {what} ({num_refs} frames)")


def velocities(params: SearchParams) -> np.ndarray:
    """The velocities ``V_min, V_min + V_step, ... <= V_max`` (float64)."""
    n = int(math.floor((params.v_max - params.v_min) / params.v_step + 1e-9)) + 1
    return params.v_min + params.v_step * np.arange(n, dtype=np.float64)


def trajectory_offsets(params: SearchParams) -> np.ndarray:
    """``(V, ds)`` int64: ``round_half_up(v * s)``, the reference offset at ``s`` frames back."""
    v = velocities(params)[:, None]
    s = np.arange(params.ds, dtype=np.float64)[None, :]
    return np.floor(v * s + 0.5).astype(np.int64)


def preprocess_images(images: Tensor, width: int = 64, height: int = 32, patch_size: int = 8) -> Tensor:
    """Down-sampled, grey, patch-normalised images (Milford & Wyeth 2012, Sec. III-A).

    Args:
        images: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.
        width / height: the down-sampled size in pixels (area averaging).
        patch_size: side of the square patches normalised to zero mean and unit standard deviation
            (a flat patch becomes 0); ``0`` disables patch normalisation. Must divide both sizes.

    Returns:
        ``(B, height * width)`` float32 descriptors.

    Raises:
        ConfigError: if ``patch_size`` does not divide ``width`` and ``height``.
    """
    if patch_size and (width % patch_size or height % patch_size):
        raise ConfigError(f"patch_size={patch_size} must divide the image size {width}x{height}")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    grey = (images * weights[None, :, None, None]).sum(1, keepdim=True)
    small = F.adaptive_avg_pool2d(grey, (height, width)).float()
    if patch_size:
        B = small.shape[0]
        p = small.reshape(B, height // patch_size, patch_size, width // patch_size, patch_size)
        mean = p.mean(dim=(2, 4), keepdim=True)
        std = p.std(dim=(2, 4), keepdim=True, unbiased=False)
        p = torch.where(std > 1e-6, (p - mean) / std.clamp_min(1e-6), torch.zeros_like(p))
        small = p.reshape(B, 1, height, width)
    return small.reshape(small.shape[0], -1)


def difference_rows(query: Tensor, refs: Tensor, ref_chunk: int = 4096) -> Tensor:
    """Rows of the difference matrix: mean absolute difference (SAD / P) of descriptors.

    Args:
        query: ``(B, P)`` query descriptors.
        refs: ``(M, P)`` reference descriptors (same dtype and device).
        ref_chunk: references per ``cdist`` call (bounds the working memory).

    Returns:
        ``(B, M)`` differences, dtype of the inputs.
    """
    P = query.shape[1]
    out = torch.empty(query.shape[0], refs.shape[0], dtype=query.dtype, device=query.device)
    for start in range(0, refs.shape[0], ref_chunk):
        stop = min(start + ref_chunk, refs.shape[0])
        out[:, start:stop] = torch.cdist(query, refs[start:stop], p=1.0) / P
    return out


def enhance_rows(rows: Tensor, r_window: int) -> Tensor:
    """Local contrast enhancement of difference rows along the reference axis (Sec. III-B).

    Args:
        rows: ``(B, M)`` differences (one row per query).
        r_window: window length in reference frames (half-width ``r_window // 2``, clipped at the
            traversal ends); ``0`` returns the rows shifted only.

    Returns:
        ``(B, M)`` float32 enhanced rows, each shifted so that its minimum is ``0``.
    """
    d = rows.double()
    if r_window > 0 and rows.shape[1] > 1:
        B, M = d.shape
        h = r_window // 2
        j = torch.arange(M, device=d.device)
        n = ((j + h + 1).clamp_max(M) - (j - h).clamp_min(0)).to(d.dtype)

        def window_sums(x: Tensor) -> Tensor:
            # c[k] = sum of x[:k]; window sum = c[min(j+h+1, M)] - c[max(j-h, 0)], by slicing
            c = torch.cat([torch.zeros(B, 1, dtype=x.dtype, device=x.device), x.cumsum(1)], 1)
            upper = torch.cat([c, c[:, -1:].expand(B, h)], 1)[:, h + 1:h + 1 + M]
            lower = torch.cat([c[:, :1].expand(B, h), c], 1)[:, :M]
            return upper - lower

        mean = window_sums(d) / n
        var = (window_sums(d * d) / n - mean * mean).clamp_min(0.0)
        d = (d - mean) / var.sqrt().clamp_min(STD_EPS) + enhancement_offset(r_window)
    return d.float()


def enhancement_offset(r_window: int) -> float:
    """``c = sqrt(n - 1)``, ``n = 2 (r_window // 2) + 1``: the bound of ``|z|`` over a window of
    ``n`` values (population std), added to the enhanced rows so that they are ``>= 0``."""
    n = 2 * (r_window // 2) + 1
    return math.sqrt(n - 1)


@attrs.frozen(kw_only=True, eq=False)
class SearchResult:
    """Matches of a batch of queries.

    Attributes:
        best: ``(B,)`` int64 best reference index ``j*``.
        confidence: ``(B,)`` float64 ``1 - S[j*] / S_second`` in ``[0, 1]``.
        topk: ``(B, k)`` int64 reference indices of the ``k`` lowest scores, best first.
        ratio: ``(B,)`` float64 uniqueness ratio ``mu = S[j*] / S_second``.
        topk_scores: ``(B, k)`` float64 ``1 - S[j] / S_second`` of the ``topk`` references (higher
            is better; the first equals ``confidence``, the others can be negative): the scores of
            the ranked list a predictions file holds.
    """

    best: Tensor
    confidence: Tensor
    topk: Tensor
    ratio: Tensor
    topk_scores: Tensor


def uniqueness(scores: Tensor, window: int, k: int = 5) -> SearchResult:
    """Best match, uniqueness ratio and top-``k`` of ``(B, M)`` scores (lower is better, ``>= 0``).

    ``S_second`` is the best score outside ``window`` frames of the best; when every reference lies
    inside the window (``S_second = inf``) the ratio is 0 (confidence 1), when ``S_second = 0`` it
    is 1 (confidence 0).
    """
    B, M = scores.shape
    best = scores.argmin(dim=1)
    s_best = scores.gather(1, best[:, None])[:, 0].double()
    j = torch.arange(M, device=scores.device)
    outside = (j[None, :] - best[:, None]).abs() > window
    masked = torch.where(outside, scores, torch.full_like(scores, math.inf))
    s_second = masked.min(dim=1).values.double()
    ratio = torch.where(s_second > 0, s_best / s_second, torch.ones_like(s_best))
    ratio = torch.where(torch.isinf(s_second), torch.zeros_like(ratio), ratio)
    topk = scores.topk(min(k, M), dim=1, largest=False).indices
    topk[:, 0] = best
    confidence = 1.0 - ratio
    second = s_second[:, None]
    ranked = 1.0 - scores.gather(1, topk).double() / torch.where(second > 0, second, torch.ones_like(second))
    ranked = torch.where(second > 0, ranked, torch.zeros_like(ranked))  # S_second = inf: 1 - 0 = 1 above
    ranked[:, 0] = confidence
    return SearchResult(best=best, confidence=confidence, topk=topk, ratio=ratio, topk_scores=ranked)


class SequenceSearch:
    """Streaming sequence search over a fixed reference traversal (Sec. III-C).

    Feed enhanced difference rows of the queries in traversal order with :meth:`push`; each call
    returns the matches of its rows, using up to ``ds - 1`` earlier rows of the same query sequence
    (kept between calls). Memory: the history ``(ds - 1, M)`` plus about ``max_elements`` floats
    of working rows, whatever the lengths (queries are processed in chunks).

    Args:
        params: the search parameters.
        num_refs: ``M``, the reference traversal length.
        device: where the search runs.
        max_elements: bound on the working floats, ``queries x (ds + 2) x M`` per chunk.

    Raises:
        ConfigError: if ``ds`` is longer than the reference traversal.
    """

    def __init__(self, params: SearchParams, num_refs: int, device: torch.device | str = "cpu",
                 max_elements: int = 1 << 22, topk: int = 5) -> None:
        params.check_length(num_refs)
        self.params = params
        self.num_refs = num_refs
        self.device = torch.device(device)
        # (V, ds) the trajectory ending at j visits reference clip(j - offsets[v, s], 0, M - 1)
        # s frames back: a shift of the row by offsets[v, s], clamped at reference 0
        self.offsets = trajectory_offsets(params)
        self.max_elements = max_elements
        self.topk = topk
        self.reset()

    def reset(self) -> None:
        """Forgets the history (call at the start of a new query sequence)."""
        self._history = torch.zeros(0, self.num_refs, device=self.device)

    def push(self, rows: Tensor, sequence_starts: Sequence[bool] | Tensor | None = None) -> SearchResult:
        """Matches ``(B, M)`` enhanced rows of consecutive queries.

        Args:
            rows: ``(B, M)`` float32 enhanced difference rows (:func:`enhance_rows`).
            sequence_starts: ``(B,)`` bool, ``True`` where a query starts a new sequence (the
                history is cut there); default: none.

        Returns:
            the :class:`SearchResult` of the ``B`` queries.
        """
        rows = rows.to(self.device, torch.float32)
        B, M = rows.shape
        if M != self.num_refs:
            raise ValueError(f"rows have {M} references, expected {self.num_refs}")
        starts = torch.zeros(B, dtype=torch.bool) if sequence_starts is None else torch.as_tensor(
            list(sequence_starts) if not isinstance(sequence_starts, Tensor) else sequence_starts, dtype=torch.bool)
        ds = self.params.ds
        # frames available in the current sequence, for each query (history included)
        available = torch.empty(B, dtype=torch.long)
        run = self._history.shape[0]
        for b in range(B):
            run = 1 if bool(starts[b]) else run + 1
            available[b] = run
        lengths = available.clamp_max(ds).to(self.device)
        stacked = torch.cat([self._history, rows], 0)
        H = self._history.shape[0]
        V = int(self.offsets.shape[0])
        chunk = max(1, self.max_elements // max(1, (ds + 2) * M))
        scores = torch.empty(B, M, device=self.device)
        zero = torch.zeros((), device=self.device)
        for start in range(0, B, chunk):
            stop = min(start + chunk, B)
            pos = torch.arange(start, stop, device=self.device) + H
            rows = []  # rows[s]: (b, M) the rows s frames back, zero where the sequence is shorter
            for s in range(ds):
                valid = lengths[start:stop] > s
                if not bool(valid.any()):
                    break
                row = stacked[(pos - s).clamp_min(0)]
                rows.append(row if bool(valid.all()) else torch.where(valid[:, None], row, zero))
            best = torch.full((stop - start, M), math.inf, device=self.device)
            acc = torch.empty(stop - start, M, device=self.device)
            for v in range(V):
                acc.zero_()
                for s, row in enumerate(rows):
                    o = min(int(self.offsets[v, s]), M)
                    if o == 0:
                        acc += row
                    else:
                        acc[:, o:] += row[:, :M - o]
                        acc[:, :o] += row[:, :1]
                torch.minimum(best, acc, out=best)
            scores[start:stop] = best
        keep = int(min(ds - 1, int(available[-1]))) if B else 0
        self._history = stacked[stacked.shape[0] - keep:] if keep > 0 else stacked[:0]
        return uniqueness(scores, self.params.uniqueness_window, self.topk)

"""A straightforward per-query NumPy implementation of SeqSLAM's matching: the speed baseline of
:mod:`maploc_seqslam.search` in ``benchmarks/bench_seqslam.py`` (same conventions, see that module's
docstring; the two must give identical matches). One query at a time: its difference row, contrast
enhancement, then a loop over velocities and sequence steps. It is not the tests' oracle: that is a
self-contained NumPy implementation in ``tests/test_search.py``, against which this loop is checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maploc_seqslam.search import STD_EPS, SearchParams, enhancement_offset, trajectory_offsets

__all__ = ["seqslam_loop"]


def _enhance(d: np.ndarray, r_window: int) -> np.ndarray:
    d = d.astype(np.float64)
    M = d.shape[0]
    if r_window > 0 and M > 1:
        h = r_window // 2
        c1 = np.concatenate([[0.0], np.cumsum(d)])
        c2 = np.concatenate([[0.0], np.cumsum(d * d)])
        j = np.arange(M)
        lo, hi = np.maximum(j - h, 0), np.minimum(j + h + 1, M)
        n = (hi - lo).astype(np.float64)
        mean = (c1[hi] - c1[lo]) / n
        var = np.maximum((c2[hi] - c2[lo]) / n - mean * mean, 0.0)
        d = (d - mean) / np.maximum(np.sqrt(var), STD_EPS) + enhancement_offset(r_window)
    return d.astype(np.float32)


def seqslam_loop(
    query: np.ndarray, refs: np.ndarray, params: SearchParams, sequence_starts: Sequence[bool] | None = None,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """SeqSLAM matches of every query, one query at a time.

    Args:
        query: ``(N, P)`` query descriptors, in traversal order.
        refs: ``(M, P)`` reference descriptors.
        params: the search parameters.
        sequence_starts: ``(N,)`` bool, ``True`` where a query starts a new sequence.
        dtype: dtype of the difference computation (``np.float64`` for exact comparisons).

    Returns:
        ``(best, confidence)``: ``(N,)`` int64 best reference index and ``(N,)`` float64
        confidence ``1 - mu``.
    """
    query = np.asarray(query, dtype=dtype)
    refs = np.asarray(refs, dtype=dtype)
    N, M = query.shape[0], refs.shape[0]
    params.check_length(M)
    offsets = trajectory_offsets(params)
    j = np.arange(M)
    best = np.zeros(N, dtype=np.int64)
    confidence = np.zeros(N, dtype=np.float64)
    history: list[np.ndarray] = []
    for i in range(N):
        if sequence_starts is not None and sequence_starts[i]:
            history = []
        d = np.abs(refs - query[i]).mean(axis=1)
        history.append(_enhance(d, params.r_window))
        history = history[-params.ds:]
        L = len(history)
        score = np.empty((offsets.shape[0], M), dtype=np.float32)
        for v in range(offsets.shape[0]):
            acc = np.zeros(M, dtype=np.float32)
            for s in range(L):
                acc += history[L - 1 - s][np.clip(j - offsets[v, s], 0, M - 1)]
            score[v] = acc
        s_j = score.min(axis=0)
        b = int(np.argmin(s_j))
        outside = np.abs(j - b) > params.uniqueness_window
        second = float(s_j[outside].min()) if outside.any() else np.inf
        first = float(s_j[b])
        if np.isinf(second):
            ratio = 0.0
        elif second > 0:
            ratio = first / second
        else:
            ratio = 1.0
        best[i], confidence[i] = b, 1.0 - ratio
    return best, confidence

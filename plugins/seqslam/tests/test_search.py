"""SeqSLAM's vectorised search against a self-contained NumPy oracle written from the paper, and its bad-input
errors.

The oracle (:func:`seqslam_oracle`) calls nothing of ``maploc_seqslam`` (it reads the fields of a ``SearchParams``
only): Milford & Wyeth, ICRA 2012, Sec. III-A
(difference matrix: mean absolute difference of the descriptors), III-B (local contrast enhancement, Eq. 1-2: each
difference normalised by the mean and standard deviation of the ``R_window`` differences around it along the
reference axis) and III-C (straight trajectories of ``d_s`` frames at velocities ``V_min .. V_max``, Eq. 3-4, the
score the sum of the enhanced differences they visit), plus the conventions the module docstring of
:mod:`maploc_seqslam.search` states (the search looks back from the ending reference, the offset ``sqrt(n - 1)``
that keeps the enhanced rows non-negative, OpenSeqSLAM2's uniqueness ratio), each computed here the plain way:
window statistics by ``np.mean``/``np.std`` over slices, offsets by ``floor(v s + 0.5)``, one query, velocity,
step and reference at a time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maploc.errors import ConfigError
from maploc_seqslam.reference_loop import seqslam_loop  # the benchmark's loop, checked against the oracle
from maploc_seqslam.search import (
    SearchParams,
    SequenceSearch,
    difference_rows,
    enhance_rows,
    enhancement_offset,
    preprocess_images,
    trajectory_offsets,
    velocities,
)


def _traversals(M: int, N: int, P: int, start: int, speed: float, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(M, P))
    path = np.clip(np.round(start + speed * np.arange(N)).astype(int), 0, M - 1)
    query = refs[path] + rng.normal(scale=noise, size=(N, P))
    return refs, query, path


def _velocities(v_min: float, v_max: float, v_step: float) -> list[float]:
    out, k = [], 0
    while v_min + k * v_step <= v_max + 1e-9:
        out.append(v_min + k * v_step)
        k += 1
    return out


def _enhanced(d: np.ndarray, r_window: int) -> np.ndarray:
    """Eq. 1-2: ``(D_j - mean_w) / std_w`` over the window of ``r_window // 2`` on each side (clipped at the ends,
    population std floored at 1e-6), plus ``sqrt(n - 1)``, ``n = 2 (r_window // 2) + 1``."""
    if r_window == 0 or d.shape[0] == 1:
        return d.copy()
    h = r_window // 2
    out = np.empty_like(d)
    for j in range(d.shape[0]):
        w = d[max(0, j - h):j + h + 1]
        out[j] = (d[j] - w.mean()) / max(w.std(), 1e-6) + math.sqrt(2 * h)
    return out


def seqslam_oracle(query: np.ndarray, refs: np.ndarray, params: SearchParams,
                   starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best reference, confidence ``1 - mu`` and the ``(N, M)`` trajectory scores, in float64, one loop per
    quantity. The trajectory ending at reference ``j`` with velocity ``v`` visits ``clip(j - floor(v s + 0.5))`` at
    ``s`` frames back, for up to ``ds`` frames of the same query sequence."""
    query, refs = np.asarray(query, np.float64), np.asarray(refs, np.float64)
    N, M = query.shape[0], refs.shape[0]
    D = np.array([[np.abs(query[i] - refs[j]).sum() / query.shape[1] for j in range(M)] for i in range(N)])
    E = np.stack([_enhanced(D[i], params.r_window) for i in range(N)])
    vs = _velocities(params.v_min, params.v_max, params.v_step)
    best, conf, scores = np.zeros(N, np.int64), np.zeros(N), np.zeros((N, M))
    first = 0  # first query of the current sequence
    for i in range(N):
        if starts is not None and starts[i]:
            first = i
        L = min(params.ds, i - first + 1)
        for j in range(M):
            scores[i, j] = min(sum(E[i - s, min(max(j - math.floor(v * s + 0.5), 0), M - 1)] for s in range(L))
                               for v in vs)
        b = int(np.argmin(scores[i]))
        others = [scores[i, j] for j in range(M) if abs(j - b) > params.uniqueness_window]
        second = min(others) if others else math.inf
        mu = 0.0 if math.isinf(second) else (scores[i, b] / second if second > 0 else 1.0)
        best[i], conf[i] = b, 1.0 - mu
    return best, conf, scores


def _torch_matches(refs, query, params, starts, chunk: int, dtype=torch.float64, max_elements=1 << 23):
    search = SequenceSearch(params, refs.shape[0], max_elements=max_elements)
    best, conf = [], []
    for s in range(0, query.shape[0], chunk):
        rows = difference_rows(torch.tensor(query[s:s + chunk], dtype=dtype), torch.tensor(refs, dtype=dtype),
                               ref_chunk=37)
        r = search.push(enhance_rows(rows, params.r_window), starts[s:s + chunk])
        best.append(r.best)
        conf.append(r.confidence)
    return torch.cat(best).numpy(), torch.cat(conf).numpy()


CASES = [
    (SearchParams(), 17, 1 << 23),
    (SearchParams(ds=5, r_window=4, v_min=0.5, v_max=1.5, v_step=0.25, uniqueness_window=3), 64, 3000),
    (SearchParams(ds=1, r_window=0), 7, 1 << 23),
    (SearchParams(ds=12, v_min=1.0, v_max=1.0), 1, 1 << 23),
]


def _case_data():
    refs, query, _ = _traversals(M=157, N=90, P=24, start=11, speed=1.1, noise=1.2, seed=3)
    starts = np.zeros(90, dtype=bool)
    starts[[0, 40, 41, 77]] = True  # several sequences, one of a single frame
    return refs, query, starts


@pytest.mark.parametrize(("params", "chunk", "max_elements"), CASES)
def test_search_equals_the_paper_oracle(params: SearchParams, chunk: int, max_elements: int) -> None:
    refs, query, starts = _case_data()
    best_o, conf_o, _ = seqslam_oracle(query, refs, params, starts)
    best_t, conf_t = _torch_matches(refs, query, params, starts, chunk, max_elements=max_elements)
    np.testing.assert_array_equal(best_t, best_o)
    np.testing.assert_allclose(conf_t, conf_o, atol=1e-5)
    assert ((conf_o >= 0) & (conf_o <= 1)).all()


@pytest.mark.parametrize("params", [CASES[0][0], CASES[1][0]])
def test_benchmark_loop_equals_the_paper_oracle(params: SearchParams) -> None:
    """``reference_loop.seqslam_loop`` (the per-query baseline of ``benchmarks/bench_seqslam.py``) matches too."""
    refs, query, starts = _case_data()
    best_o, conf_o, _ = seqslam_oracle(query, refs, params, starts)
    best_l, conf_l = seqslam_loop(query, refs, params, starts, dtype=np.float64)
    np.testing.assert_array_equal(best_l, best_o)
    np.testing.assert_allclose(conf_l, conf_o, atol=1e-5)


def test_oracle_on_a_hand_computed_case() -> None:
    """The oracle itself on numbers checked by hand: 4 references, 2 queries, no enhancement, ds = 2, v = 1."""
    refs = np.array([[0.0], [1.0], [2.0], [3.0]])
    query = np.array([[1.0], [2.5]])  # near reference 1, then between 2 and 3
    best, conf, scores = seqslam_oracle(query, refs, SearchParams(ds=2, r_window=0, v_min=1.0, v_max=1.0,
                                                                  uniqueness_window=0))
    # query 0 alone: |1 - j| ; query 1: |2.5 - j| + |1 - (j - 1 clipped)|
    np.testing.assert_allclose(scores, [[1.0, 0.0, 1.0, 2.0], [3.5, 2.5, 0.5, 1.5]])
    assert best.tolist() == [1, 2]
    np.testing.assert_allclose(conf, [1.0, 1.0 - 0.5 / 1.5])  # mu = best / best elsewhere: 0 / 1, 0.5 / 1.5


def test_float32_matches_the_oracle() -> None:
    refs, query, _ = _traversals(M=300, N=120, P=48, start=20, speed=1.0, noise=1.0, seed=0)
    params = SearchParams()
    starts = np.zeros(120, dtype=bool)
    best_o, _, scores = seqslam_oracle(query, refs, params, starts)
    best_t, _ = _torch_matches(refs, query, params, starts, 32, dtype=torch.float32)
    # float32 rounding may only swap near-ties: the oracle's score at the float32 match is its minimum
    rows = np.arange(120)
    np.testing.assert_allclose(scores[rows, best_t], scores[rows, best_o], rtol=1e-5)
    assert (best_t == best_o).mean() > 0.98


def test_sequence_beats_single_frame_on_a_noisy_route() -> None:
    refs, query, path = _traversals(M=400, N=200, P=16, start=30, speed=1.0, noise=1.5, seed=1)
    starts = np.zeros(200, dtype=bool)
    seq, _ = _torch_matches(refs, query, SearchParams(ds=10), starts, 64, dtype=torch.float32)
    single, _ = _torch_matches(refs, query, SearchParams(ds=1), starts, 64, dtype=torch.float32)
    ok_seq = (np.abs(seq - path) <= 2)[10:].mean()
    ok_single = (np.abs(single - path) <= 2)[10:].mean()
    assert ok_seq > 0.9 and ok_seq > ok_single + 0.2, (ok_seq, ok_single)


def test_trajectory_offsets_and_velocities() -> None:
    p = SearchParams(ds=4, v_min=0.8, v_max=1.2, v_step=0.1)
    np.testing.assert_allclose(velocities(p), [0.8, 0.9, 1.0, 1.1, 1.2])
    offsets = trajectory_offsets(p)
    assert offsets.shape == (5, 4)
    np.testing.assert_array_equal(offsets[2], [0, 1, 2, 3])
    np.testing.assert_array_equal(offsets[0], [0, 1, 2, 2])  # 0.8 * 2 = 1.6 -> 2, 2.4 -> 2
    np.testing.assert_array_equal(offsets[4], [0, 1, 2, 4])  # 1.2 * 3 = 3.6 -> 4


def test_enhanced_rows_are_non_negative_z_scores() -> None:
    rows = torch.rand(5, 50, dtype=torch.float64) ** 4
    out = enhance_rows(rows, 10)
    assert out.dtype == torch.float32 and (out >= -1e-5).all()
    # an extreme value in its window reaches the bound: one spike among equal values
    spike = torch.zeros(1, 11, dtype=torch.float64)
    spike[0, 5] = -1.0
    assert float(enhance_rows(spike, 10)[0, 5]) == pytest.approx(0.0, abs=1e-6)
    assert enhancement_offset(10) == pytest.approx(10**0.5)


def test_preprocess_images_patch_normalised() -> None:
    images = torch.rand(2, 3, 48, 80)
    d = preprocess_images(images, 64, 32, 8)
    assert d.shape == (2, 2048)
    patches = d.view(2, 4, 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(2, 32, 64)
    np.testing.assert_allclose(patches.mean(-1).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(patches.std(-1, unbiased=False).numpy(), 1, atol=1e-3)
    with pytest.raises(ConfigError, match="patch_size=7 must divide"):
        preprocess_images(images, 64, 32, 7)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"v_min \(1.5\) must be <= v_max \(1.2\)"):
        SearchParams(v_min=1.5)
    with pytest.raises(ConfigError, match=r"ds=10 \(sequence length\) is longer than the reference traversal \(8 frames\)"):
        SequenceSearch(SearchParams(ds=10), 8)
    refs, query, _ = _traversals(M=8, N=4, P=4, start=0, speed=1.0, noise=0.1, seed=0)
    with pytest.raises(ConfigError, match="ds=10"):
        seqslam_loop(query, refs, SearchParams(ds=10))

"""SeqSLAM's vectorised search against the per-query NumPy loop, and its bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maploc.errors import ConfigError
from maploc_seqslam.reference_loop import seqslam_loop
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


@pytest.mark.parametrize(
    ("params", "chunk", "max_elements"),
    [
        (SearchParams(), 17, 1 << 23),
        (SearchParams(ds=5, r_window=4, v_min=0.5, v_max=1.5, v_step=0.25, uniqueness_window=3), 64, 3000),
        (SearchParams(ds=1, r_window=0), 7, 1 << 23),
        (SearchParams(ds=12, v_min=1.0, v_max=1.0), 1, 1 << 23),
    ],
)
def test_identical_to_numpy_loop(params: SearchParams, chunk: int, max_elements: int) -> None:
    refs, query, _ = _traversals(M=157, N=90, P=24, start=11, speed=1.1, noise=1.2, seed=3)
    starts = np.zeros(90, dtype=bool)
    starts[[0, 40, 41, 77]] = True  # several sequences, one of a single frame
    best_np, conf_np = seqslam_loop(query, refs, params, starts, dtype=np.float64)
    best_t, conf_t = _torch_matches(refs, query, params, starts, chunk, max_elements=max_elements)
    np.testing.assert_array_equal(best_t, best_np)
    np.testing.assert_allclose(conf_t, conf_np, atol=1e-6)
    assert ((conf_np >= 0) & (conf_np <= 1)).all()


def test_float32_matches_numpy_loop() -> None:
    refs, query, _ = _traversals(M=300, N=120, P=48, start=20, speed=1.0, noise=1.0, seed=0)
    params = SearchParams()
    starts = np.zeros(120, dtype=bool)
    best_np, _ = seqslam_loop(query, refs, params, starts)
    best_t, _ = _torch_matches(refs, query, params, starts, 32, dtype=torch.float32)
    np.testing.assert_array_equal(best_t, best_np)


def test_sequence_beats_single_frame_on_a_noisy_route() -> None:
    refs, query, path = _traversals(M=400, N=200, P=16, start=30, speed=1.0, noise=1.5, seed=1)
    starts = np.zeros(200, dtype=bool)
    seq, _ = seqslam_loop(query, refs, SearchParams(ds=10), starts)
    single, _ = seqslam_loop(query, refs, SearchParams(ds=1), starts)
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

"""Reference indexes at H headings and the raw-tile / PCA baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc_loc2vec.data import SyntheticTileDataset
from maploc_loc2vec.index import (
    HeadingIndex,
    Pca,
    dedupe_locations,
    dedupe_scored,
    heading_yaws,
    raw_tile_descriptors,
    render_at_headings,
    rows_at_heading,
)


def test_heading_yaws_start_north_up_and_are_evenly_spaced():
    yaws = heading_yaws(8)
    assert yaws[0] == pytest.approx(math.pi / 2)
    np.testing.assert_allclose(np.diff(yaws), 2 * math.pi / 8)
    assert heading_yaws(1).tolist() == [math.pi / 2]
    with pytest.raises(ValueError):
        heading_yaws(0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-1, 40), min_size=1, max_size=30), st.integers(1, 8), st.integers(1, 10))
def test_dedupe_keeps_rank_order_and_distinct_locations(rows, headings, k):
    found = dedupe_locations(np.array([rows]), headings, k)[0]
    assert len(found) == len(set(found)) <= k
    expected: list[int] = []
    for r in rows:
        if r < 0:
            break
        if r // headings not in expected and len(expected) < k:
            expected.append(r // headings)
    assert found == expected


def test_dedupe_scored_keeps_each_locations_best_heading_score():
    rows = np.array([[9, 8, 3, 2, 17, -1, 5]])
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.0, 0.1]], np.float32)
    found, values = dedupe_scored(rows, scores, 4, 10)
    assert found == [[2, 0, 4]]  # rows 9, 8 -> location 2; 3, 2 -> 0; 17 -> 4; -1 ends the list
    np.testing.assert_allclose(values[0], [0.9, 0.7, 0.5])
    assert dedupe_scored(rows, scores, 4, 2) == ([[2, 0]], [[values[0][0], values[0][1]]])


def test_area_of_area_is_area():
    tiles = (torch.rand(3, 12, 128, 128) < 0.3).to(torch.uint8)
    pooled = F.avg_pool2d(tiles.float(), 4)
    torch.testing.assert_close(raw_tile_descriptors(pooled, 16), raw_tile_descriptors(tiles, 16))


def test_a_query_at_an_indexed_heading_finds_its_own_location_first():
    ref = SyntheticTileDataset(None, "map")
    xy = ref.positions()[:40]
    headings = 4
    yaws = heading_yaws(headings)
    tiles = torch.from_numpy(render_at_headings(ref.render, xy, yaws))
    assert tiles.shape[0] == 40 * headings
    # row l * H + h is location l at heading h
    torch.testing.assert_close(tiles[5 * headings + 2], torch.from_numpy(ref.render(np.array([[*xy[5], yaws[2]]]))[0]))
    describe = lambda t: raw_tile_descriptors(t, 16).numpy()  # noqa: E731
    index = HeadingIndex.create("raw", "raw", headings, describe(tiles), describe)
    assert index.locations == 40 and index.index_bytes == 40 * headings * index.dim * 4
    queries = tiles[[3 * headings + 1, 17 * headings + 3, 30 * headings]]
    found, seconds = index.query(queries, 5)
    assert [f[0] for f in found] == [3, 17, 30] and all(len(f) == 5 for f in found) and seconds > 0
    ranked, scores, _ = index.query_ranked(queries, 5)
    assert ranked == found
    for values in scores:  # cosine similarities, best first; the exact heading's own tile scores 1
        assert values[0] == pytest.approx(1.0, abs=1e-5) and values == sorted(values, reverse=True)
    north = HeadingIndex.create("raw_north_up", "raw", 1, describe(tiles)[rows_at_heading(40, headings)], describe)
    assert north.search(describe(tiles[[17 * headings]]), 1) == [[17]]


def test_pca_projection_is_orthonormal_and_unit_norm():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 20)) @ rng.normal(size=(20, 50))
    pca = Pca.fit(x, 6)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(6), atol=1e-4)
    y = pca(x)
    assert y.shape == (300, 6) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    assert pca.nbytes == (50 + 6 * 50) * 4
    white = Pca.fit(x, 6, whiten=True)
    proj = (x - white.mean) @ white.components.T
    np.testing.assert_allclose(proj.std(0), 1.0, rtol=0.05)
    with pytest.raises(ValueError, match="principal components"):
        Pca.fit(x[:4], 6)

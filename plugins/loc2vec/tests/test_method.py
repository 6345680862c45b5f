"""The method's outputs under the evaluation protocol: Retrieval of map indices with scores, the baselines as
variants, the saved spatial split, the thresholds the split allows, the val-block development evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from maploc.api import RunContext, SampleMeta
from maploc.config import apply_overrides
from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError
from maploc.evaluation.scoring import query_xy
from maploc.types import Sample
from maploc_loc2vec.data import SyntheticTileDataset, SyntheticTileOptions
from maploc_loc2vec.method import VARIANTS, Loc2VecConfig, Loc2VecMethod

OVERRIDES = ["eval.headings=2", "eval.top_k=5", "eval.plots=false"]


def _method(*overrides: str) -> Loc2VecMethod:
    torch.manual_seed(0)
    method = Loc2VecMethod(apply_overrides(Loc2VecConfig(), [*OVERRIDES, *overrides]))
    method.model = method.configure_model().eval()
    return method


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A method with an untrained model and its map built on the synthetic city (grid every 20 m)."""
    run_dir = tmp_path_factory.mktemp("run")
    options = SyntheticTileOptions(grid_step_m=20.0, num_queries=6)
    map_data = SyntheticTileDataset(None, "map", options=options)
    queries = SyntheticTileDataset(None, "query", options=options)
    method = _method()
    method.build_map(map_data, RunContext(run_dir=run_dir))
    return method, map_data, queries, run_dir


def test_build_map_saves_the_datasets_split_and_every_query_is_in_a_test_block(mapped):
    method, map_data, queries, run_dir = mapped
    saved = SpatialSplit.from_dict(json.loads((run_dir / "split.json").read_text()))
    np.testing.assert_array_equal(saved.assignment, map_data.blocks.assignment)
    assert (saved.guard_m, saved.val_guard_m) == (map_data.blocks.guard_m, map_data.blocks.val_guard_m)
    assert saved.val_guard_m < saved.guard_m  # two different bands: train-to-val and to test
    xy = np.array([query_xy(queries.metadata(i)) for i in range(len(queries))])
    assert saved.mask(xy, "test").all()  # the core leaves no query out
    assert method.split_saved == run_dir / "split.json"


def test_localize_returns_ranked_map_indices_with_scores(mapped):
    method, map_data, queries, _ = mapped
    batch = [queries[i] for i in range(4)]
    no_tile = map_data[0]  # a reference sample carries no tile: the query fails
    estimates = method.localize([*batch, no_tile], RunContext())
    assert len(estimates) == 5 and not estimates[4].success and estimates[4].retrieval is None
    for e in estimates[:4]:
        r = e.retrieval
        assert e.success and len(r) == 5 and len(set(r.indices)) == 5
        assert all(0 <= i < len(map_data) for i in r.indices)
        assert list(r.scores) == sorted(r.scores, reverse=True) and r.scores[0] <= 1.0 + 1e-5
        assert e.confidence == r.scores[0]
        assert set(e.extras) == {"triplet_correct"} and isinstance(e.extras["triplet_correct"], bool)
    # the learned ranking is the learned index's own search of the query tiles
    index = method.indexes["learned"]
    found, scores = index.rank(index.describe(method.query_tiles(batch)), 5)
    assert [list(e.retrieval.indices) for e in estimates[:4]] == found
    np.testing.assert_allclose([e.retrieval.scores for e in estimates[:4]], scores, rtol=1e-6)


def test_triplet_correct_on_constructed_triplets_with_known_answers(mapped):
    """``triplet_correct`` (the held-out triplet accuracy's rows) on triplets whose answer is known for any
    embedding that is a function of its input and tells two different tiles apart: positive = the anchor tile
    itself (``d(a, p) = 0``): true; negative = the anchor tile: false. A collapsed or input-ignoring embedding
    (every distance equal) gets the first wrong, one compared the other way round the second."""
    import attrs

    method, _, queries, _ = mapped
    batch = [queries[i] for i in range(4)]
    same_positive = [attrs.evolve(q, extras={**q.extras, "positive_tile": q.extras["tile"]}) for q in batch]
    same_negative = [attrs.evolve(q, extras={**q.extras, "positive_tile": q.extras["negative_tile"],
                                             "negative_tile": q.extras["tile"]}) for q in batch]  # fmt: skip
    assert [e.extras["triplet_correct"] for e in method.localize(same_positive, RunContext())] == [True] * 4
    assert [e.extras["triplet_correct"] for e in method.localize(same_negative, RunContext())] == [False] * 4


def test_variants_are_the_other_indexes_in_query_order(mapped):
    method, map_data, queries, _ = mapped
    batch = [queries[i] for i in range(4)]
    no_tile = map_data[1]
    estimates = method.localize([*batch, no_tile])
    metas = [SampleMeta.of(s) for s in [*batch, no_tile]]
    variants = method.variants(metas[::-1], estimates[::-1])
    assert set(variants) == set(VARIANTS) == {"learned_north_up", "raw_pca", "raw", "raw_north_up"}
    assert [k for k, v in variants.items() if v.baseline] == ["raw_pca", "raw", "raw_north_up"]
    assert "PCA-16, 2 headings" in variants["raw_pca"].description
    tiles = method.query_tiles(batch)
    for key, variant in variants.items():
        assert len(variant.estimates) == 5 and not variant.estimates[0].success  # the query without a tile
        index = method.indexes[key]
        found, _ = index.rank(index.describe(tiles), 5)
        assert [list(e.retrieval.indices) for e in variant.estimates[1:]] == found[::-1], key
    # raw tiles at 2 headings and north up only rank differently (the headings matter)
    assert [e.retrieval.indices for e in variants["raw"].estimates[1:]] != [
        e.retrieval.indices for e in variants["raw_north_up"].estimates[1:]]


def test_no_baselines_no_variants_but_the_north_up_embedding():
    options = SyntheticTileOptions(grid_step_m=40.0, num_queries=2)
    method = _method("eval.baselines=false")
    method.build_map(SyntheticTileDataset(None, "map", options=options))
    queries = SyntheticTileDataset(None, "query", options=options)
    estimates = method.localize([queries[0], queries[1]])
    metas = [queries.metadata(0), queries.metadata(1)]
    assert set(method.variants(metas, estimates)) == {"learned_north_up"}
    assert method.split_saved is None  # no run folder: nothing written


@pytest.mark.parametrize("key", ["eval.distance_threshold_m", "eval.fine_threshold_m"])
def test_a_threshold_beyond_the_splits_success_radius_is_an_error(tmp_path, key):
    map_data = SyntheticTileDataset(None, "map", options=SyntheticTileOptions(grid_step_m=40.0))
    assert map_data.blocks.success_radius_m == 25.0
    method = _method(f"{key}=30")
    with pytest.raises(ConfigError, match="exceed the spatial split's success radius 25 m"):
        method.build_map(map_data, RunContext(run_dir=tmp_path))
    assert not (tmp_path / "split.json").exists()

    class NoEngine:  # fit must fail before it reaches the engine
        def fit(self, *args, **kwargs):
            raise AssertionError("trained with a threshold beyond the success radius")

    with pytest.raises(ConfigError, match="success radius"):
        method.fit(NoEngine(), SyntheticTileDataset(None, "train"))
    assert _method(f"{key}=25").check_thresholds(map_data.blocks) is None  # 25 m itself is allowed


def test_val_block_evaluation_stays_in_val_blocks_and_saves_no_split(tmp_path):
    options = SyntheticTileOptions(grid_step_m=20.0, num_queries=8, eval_blocks="val")
    map_data = SyntheticTileDataset(None, "map", options=options)
    queries = SyntheticTileDataset(None, "query", options=options)
    blocks = map_data.blocks
    assert (blocks.split_of(map_data.positions()) == 1).all() and (blocks.split_of(queries.positions()) == 1).all()
    test_map = SyntheticTileDataset(None, "map", options=SyntheticTileOptions(grid_step_m=20.0))
    np.testing.assert_array_equal(test_map.blocks.assignment, blocks.assignment)  # the same split
    method = _method()
    method.build_map(map_data, RunContext(run_dir=tmp_path))
    assert method.split_saved is None and not (tmp_path / "split.json").exists()
    with pytest.raises(ConfigError, match="val_fraction > 0"):
        SyntheticTileOptions(eval_blocks="val", val_fraction=0.0)


def test_localize_before_build_map_is_an_error():
    method = _method()
    sample = SyntheticTileDataset(None, "query", options=SyntheticTileOptions(num_queries=1))[0]
    assert isinstance(sample, Sample)
    with pytest.raises(RuntimeError, match="build_map must run before localize"):
        method.localize([sample])

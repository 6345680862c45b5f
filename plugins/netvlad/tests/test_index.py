"""The faiss map index: search, save / load round trip, bad input."""

import numpy as np
import pytest

from maploc.errors import ConfigError, DataError
from maploc_netvlad.index import MapIndex


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_round_trip(tmp_path, kind):
    x = _unit(2000, 32)
    names = [f"m{i}" for i in range(len(x))]
    index = MapIndex(32, kind, nlist=16, m=8, nprobe=16).build(x, names)
    q = x[:50] + 0.01 * _unit(50, 32, seed=1)
    s0, i0 = index.search(q, 5)
    if kind == "flat":
        assert (i0[:, 0] == np.arange(50)).all()
    else:
        assert (i0[:, 0] == np.arange(50)).mean() > 0.8
    loaded = MapIndex.load(index.save(tmp_path / "index"), expected_dim=32)
    s1, i1 = loaded.search(q, 5)
    assert loaded.names == names and loaded.kind == kind
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_allclose(s0, s1)


def test_dimension_mismatch_names_the_file(tmp_path):
    MapIndex(16).build(_unit(10, 16), [str(i) for i in range(10)]).save(tmp_path)
    with pytest.raises(DataError, match=r"index\.faiss holds 16-d descriptors but this model produces 8-d"):
        MapIndex.load(tmp_path, expected_dim=8)
    with pytest.raises(DataError, match="dimension 16"):
        MapIndex.load(tmp_path).search(_unit(2, 8), 1)


def test_bad_input():
    with pytest.raises(DataError, match="at least one descriptor"):
        MapIndex(8).build(np.zeros((0, 8), np.float32), [])
    with pytest.raises(DataError, match="empty"):
        MapIndex(8).search(_unit(1, 8), 1)
    with pytest.raises(ConfigError, match="must divide"):
        MapIndex(10, "ivfpq", m=4)
    with pytest.raises(DataError, match="not found"):
        MapIndex.load("/nonexistent-index-folder")

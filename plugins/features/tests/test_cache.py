"""FeatureCache: one file per image and extractor configuration; a second run reads instead of extracting,
another option value is another folder, and bad names or files are refused with the file named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from maploc_features import LocalFeatures
from maploc_features.cache import FeatureCache

from maploc.errors import ConfigError, DataError
from maploc.plugins import load_component


def _feats(n: int = 5, extractor: str = "sift") -> LocalFeatures:
    rng = np.random.default_rng(n)
    return LocalFeatures(keypoints=rng.uniform(0, 9, (n, 2)), descriptors=rng.normal(size=(n, 8)),
                         scores=rng.uniform(size=n), image_size=(10, 10), scale=0.5, extractor=extractor)


def test_second_run_reads_instead_of_extracting(tmp_path, fountain_small):
    extractor = load_component("encoders", "sift")(max_keypoints=100, resize_max=300)
    calls = []

    def extract():
        calls.append(1)
        return extractor.extract(fountain_small)

    first = FeatureCache.for_extractor(tmp_path, extractor).get_or_extract("seq-01/0000.jpg", extract)
    again = FeatureCache.for_extractor(tmp_path, load_component("encoders", "sift")(max_keypoints=100, resize_max=300))
    second = again.get_or_extract("seq-01/0000.jpg", extract)
    assert len(calls) == 1 and "seq-01/0000.jpg" in again
    np.testing.assert_array_equal(first.descriptors, second.descriptors)
    assert again.path("seq-01/0000.jpg") == again.folder / "seq-01" / "0000.jpg.npz"
    meta = json.loads((again.folder / "cache.json").read_text())
    assert meta["extractor"] == "sift" and meta["options"]["resize_max"] == 300


def test_other_options_are_another_folder(tmp_path):
    a = FeatureCache(tmp_path, "sift", {"resize_max": 1024, "max_keypoints": 4096})
    same = FeatureCache(tmp_path, "sift", {"max_keypoints": 4096, "resize_max": 1024})  # key order is irrelevant
    other = FeatureCache(tmp_path, "sift", {"resize_max": 1536, "max_keypoints": 4096})
    xfeat = FeatureCache(tmp_path, "xfeat", {"resize_max": 1024, "max_keypoints": 4096})
    assert a.folder == same.folder and len({a.folder, other.folder, xfeat.folder}) == 3
    a.save("img.jpg", _feats())
    assert "img.jpg" in a and "img.jpg" in same and "img.jpg" not in other
    assert other.load("img.jpg") is None


def test_refusals(tmp_path):
    cache = FeatureCache(tmp_path, "sift", {})
    for bad in ("../x.jpg", "/abs.jpg", "a//b.jpg", ""):
        with pytest.raises(DataError, match="image name"):
            cache.path(bad)
    with pytest.raises(ValueError, match="xfeat"):
        cache.save("a.jpg", _feats(extractor="xfeat"))
    with pytest.raises(ConfigError, match="JSON"):
        FeatureCache(tmp_path, "sift", {"resize_max": object()})
    with pytest.raises(ConfigError):
        FeatureCache(tmp_path, "", {})
    cache.path("broken.jpg").parent.mkdir(parents=True, exist_ok=True)
    cache.path("broken.jpg").write_bytes(b"not an npz")
    with pytest.raises(DataError, match="broken.jpg.npz") as info:
        cache.load("broken.jpg")
    assert "\n" not in str(info.value)
    # a file of another extractor under this cache's name (copied by hand) is refused, not used
    _feats(extractor="xfeat").save(cache.path("copied.jpg"))
    with pytest.raises(DataError, match="'xfeat'"):
        cache.load("copied.jpg")

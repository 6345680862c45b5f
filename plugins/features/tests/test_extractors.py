"""The extractors ``sift``, ``xfeat`` and ``aliked``: shapes and dtypes, keypoints in the given image's pixels
whatever the internal resize, the keypoint cap, option checks, the batch form, and the LocalFeatures file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from maploc_features import LocalFeatures

from maploc.errors import ConfigError
from maploc.plugins import load_component

DIMS = {"sift": 128, "xfeat": 64, "aliked": 128}


@pytest.fixture(params=sorted(DIMS))
def extractor_name(request):
    if request.param == "aliked":
        request.getfixturevalue("lightglue_weights")
    return request.param


def _make(name: str, **options):
    if name != "sift":
        options.setdefault("device", "cpu")
    return load_component("encoders", name)(**options)


def test_shapes_dtypes_and_bounds(extractor_name, fountain_small):
    ex = _make(extractor_name, max_keypoints=300)
    f = ex.extract(fountain_small)
    _, h, w = fountain_small.shape
    assert isinstance(f, LocalFeatures) and f.extractor == extractor_name and ex.name == extractor_name
    assert 50 <= len(f) <= 300, len(f)
    assert f.keypoints.dtype == np.float32 and f.keypoints.shape == (len(f), 2)
    assert f.descriptors.dtype == np.float32 and f.descriptors.shape == (len(f), DIMS[extractor_name])
    assert f.scores.dtype == np.float32 and f.scores.shape == (len(f),)
    assert ex.descriptor_dim == DIMS[extractor_name]
    assert f.image_size == (w, h) and f.scale == 1.0
    assert np.isfinite(f.keypoints).all() and np.isfinite(f.descriptors).all()
    assert (f.keypoints >= -0.5).all() and (f.keypoints[:, 0] <= w - 0.5).all() and (f.keypoints[:, 1] <= h - 0.5).all()
    assert (np.diff(f.scores) <= 0).all()  # strongest first
    norms = np.linalg.norm(f.descriptors, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)  # RootSIFT / L2-normalised learned descriptors


def test_keypoints_come_back_in_the_given_pixels(extractor_name, fountain_small):
    """The image enlarged 2x and shrunk back inside (``resize_max``) gives the keypoints of the small image,
    mapped exactly to the large one: x2 = 2 (x + 0.5) - 0.5."""
    import cv2

    ex_small = _make(extractor_name, max_keypoints=200)
    small = ex_small.extract(fountain_small)
    rgb = fountain_small.permute(1, 2, 0).numpy()
    big = torch.from_numpy(cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)).permute(2, 0, 1).clamp(0, 1)
    ex_big = _make(extractor_name, max_keypoints=200, resize_max=max(fountain_small.shape[1:]))
    large = ex_big.extract(big)
    assert large.image_size == (2 * small.image_size[0], 2 * small.image_size[1]) and large.scale == pytest.approx(0.5)
    expected = 2 * (small.keypoints.astype(np.float64) + 0.5) - 0.5
    d = np.linalg.norm(large.keypoints[:, None].astype(np.float64) - expected[None], axis=2).min(1)
    assert np.median(d) < 1.0 and np.mean(d < 2.0) > 0.7, (np.median(d), np.mean(d < 2.0))


@pytest.mark.parametrize("name", ["sift", "xfeat"])
def test_max_keypoints_caps_and_keeps_the_strongest(name, fountain_small):
    many = _make(name, max_keypoints=400).extract(fountain_small)
    few = _make(name, max_keypoints=50).extract(fountain_small)
    assert len(few) == 50 and len(many) > 50
    assert few.scores.min() >= np.sort(many.scores)[::-1][60] - 1e-6


def test_sift_root_sift_and_contrast_threshold(fountain_small):
    raw = _make("sift", root_sift=False, max_keypoints=None).extract(fountain_small)
    root = _make("sift", root_sift=True, max_keypoints=None).extract(fountain_small)
    np.testing.assert_array_equal(raw.keypoints, root.keypoints)
    l1 = raw.descriptors / raw.descriptors.sum(1, keepdims=True)
    np.testing.assert_allclose(root.descriptors, np.sqrt(l1), atol=1e-6)
    weak = _make("sift", max_keypoints=None, contrast_threshold=0.01).extract(fountain_small)
    assert len(weak) > len(raw)


@pytest.mark.parametrize("name,options,what", [
    ("sift", {"max_keypoints": 0}, "max_keypoints"),
    ("sift", {"resize_max": -5}, "resize_max"),
    ("sift", {"contrast_threshold": 0}, "contrast_threshold"),
    ("sift", {"root_sift": "yes"}, "root_sift"),
    ("xfeat", {"max_keypoints": None}, "max_keypoints"),
    ("xfeat", {"detection_threshold": 2.0}, "detection_threshold"),
    ("xfeat", {"device": "tpu"}, "device"),
])
def test_bad_options_are_one_line_config_errors(name, options, what):
    with pytest.raises(ConfigError, match=what) as info:
        _make(name, **options)
    assert "\n" not in str(info.value)


def test_bad_image_is_refused(fountain_small):
    ex = _make("sift")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        ex.extract(fountain_small[:1])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        ex.extract((fountain_small * 255).to(torch.uint8))


def test_batch_forward_pads(fountain_small):
    ex = _make("xfeat", max_keypoints=100)
    out = ex(torch.stack([fountain_small, fountain_small.flip(-1)]))
    assert out["keypoints"].shape[0] == 2 and out["descriptors"].shape[-1] == 64
    single = ex.extract(fountain_small)
    torch.testing.assert_close(out["keypoints"][0, : len(single)], torch.from_numpy(single.keypoints))


def test_local_features_save_load_round_trip(tmp_path, fountain_small):
    f = _make("sift", max_keypoints=100, resize_max=300).extract(fountain_small)
    f.save(tmp_path / "a.npz")
    g = LocalFeatures.load(tmp_path / "a.npz")
    for field in ("keypoints", "descriptors", "scores"):
        np.testing.assert_array_equal(getattr(f, field), getattr(g, field))
    assert (g.image_size, g.scale, g.extractor) == (f.image_size, f.scale, "sift")
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]  # no temporary left


def test_options_describe_the_configuration():
    ex = _make("sift", max_keypoints=123, resize_max=640, root_sift=False)
    assert ex.options() == {"max_keypoints": 123, "resize_max": 640, "contrast_threshold": 0.04, "root_sift": False}

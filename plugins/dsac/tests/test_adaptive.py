"""The test-time adaptive stop of the DSAC* RANSAC (maploc_dsac.solvers.adaptive): the RANSAC bound,
fewer minimal sets where the data allow it, the same estimate quality, none of it in training."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from maploc_dsac.solvers import DSACRansac
from maploc_dsac.solvers.adaptive import required_minimal_sets

# The scenes of test_ransac.py (tests are not a package: load the sibling module by path).
_spec = importlib.util.spec_from_file_location("_dsac_test_ransac", Path(__file__).with_name("test_ransac.py"))
assert _spec is not None and _spec.loader is not None
_scenes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_scenes)
make_scene, rotation_error_deg = _scenes.make_scene, _scenes.rotation_error_deg


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_required_minimal_sets_is_the_ransac_bound():
    eps = torch.tensor([1.0, 0.5, 0.2, 0.0], dtype=torch.float64)
    need = required_minimal_sets(eps, 4, 0.99)
    assert float(need[0]) == 1.0
    assert math.isclose(float(need[1]), math.log(0.01) / math.log(1 - 0.5**4), rel_tol=1e-9)  # 71.4
    assert math.isclose(float(need[2]), math.log(0.01) / math.log(1 - 0.2**4), rel_tol=1e-9)  # 2876
    assert math.isinf(float(need[3]))


def _batch(ratios, seed0=200, n=600):
    scenes = [make_scene(seed0 + i, n=n, outlier_ratio=r, noise_px=1.0) for i, r in enumerate(ratios)]
    return scenes, {k: torch.stack([s[k] for s in scenes]) for k in ("scene", "pixels", "K")}


def test_adaptive_stop_draws_fewer_sets_when_outliers_are_rare_and_stays_accurate():
    ratios = [0.0, 0.0, 0.3, 0.5, 0.8]
    scenes, b = _batch(ratios)
    seeds = torch.arange(len(ratios)) + 3
    full = DSACRansac("rgb")(b["scene"], b["pixels"], b["K"], seed=seeds)
    fast = DSACRansac("rgb", adaptive_confidence=0.999)(b["scene"], b["pixels"], b["K"], seed=seeds)
    assert fast.success.all() and full.success.all()
    # At 0 % outliers the first round (8 hypotheses) suffices: far fewer minimal sets.
    assert (fast.num_minimal_sets[:2] * 4 <= full.num_minimal_sets[:2]).all(), (fast.num_minimal_sets, full.num_minimal_sets)
    assert (fast.num_minimal_sets <= full.num_minimal_sets * 5 // 4 + 20).all()
    for i, s in enumerate(scenes):
        for res in (full, fast):
            rot = rotation_error_deg(res.R_cam2world[i], s["R_c2w"])
            trans = float((res.t_cam2world[i] - s["t_c2w"]).norm())
            assert rot < 0.1 and trans < 0.01, (i, ratios[i], rot, trans)


def test_adaptive_stop_falls_back_to_all_hypotheses():
    """An image whose first round does not satisfy the bound is solved with all H hypotheses: with a
    confidence so high that no first round suffices, the result equals the non-adaptive one."""
    _, b = _batch([0.5, 0.6], seed0=220, n=400)
    seeds = torch.tensor([1, 2])
    full = DSACRansac("rgb", num_hypotheses=32)(b["scene"], b["pixels"], b["K"], seed=seeds)
    strict = DSACRansac("rgb", num_hypotheses=32, adaptive_confidence=1 - 1e-15)(b["scene"], b["pixels"], b["K"], seed=seeds)
    torch.testing.assert_close(strict.R_cam2world, full.R_cam2world, rtol=0, atol=1e-12)
    torch.testing.assert_close(strict.t_cam2world, full.t_cam2world, rtol=0, atol=1e-12)
    assert torch.equal(strict.hypothesis_index, full.hypothesis_index)  # the same hypotheses, in the same order


def test_training_ignores_the_adaptive_stop():
    _, b = _batch([0.0], seed0=230, n=200)
    out = DSACRansac("rgb", num_hypotheses=16, adaptive_confidence=0.99).expectation(
        b["scene"], b["pixels"], b["K"], seed=0
    )
    assert out.probabilities.shape == (1, 16) and bool(out.valid.all())


def test_bad_confidence_is_an_error():
    with pytest.raises(ValueError, match="adaptive_confidence"):
        DSACRansac("rgb", adaptive_confidence=1.0)


def test_method_uses_the_adaptive_stop_at_test_time_only():
    from maploc.config import apply_overrides
    from maploc.errors import ConfigError
    from maploc_dsac.config import DSACConfig
    from maploc_dsac.method import DSACMethod

    method = DSACMethod(apply_overrides(DSACConfig(), ["ransac.adaptive_confidence=0.99"]))
    assert method._ransac(train=False, height=480).adaptive_confidence == 0.99
    assert method._ransac(train=True, height=480).adaptive_confidence is None
    assert DSACMethod(DSACConfig())._ransac(train=False, height=480).adaptive_confidence is None  # DSAC* default
    with pytest.raises(ConfigError, match="adaptive_confidence"):
        apply_overrides(DSACConfig(), ["ransac.adaptive_confidence=1.0"])

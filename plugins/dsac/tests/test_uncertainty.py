"""TransPose's uncertainty: KFNet's Gaussian NLL (gradcheck, minimiser), the exclusion of uncertain
cells in RANSAC (sampling and scoring never use them; a no-op when off), calibration, and the
appearance augmentation / mixing of the renders."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc_dsac.losses import cell_centres
from maploc_dsac.solvers import DSACRansac
from maploc_dsac.transpose.config import RenderAugmentConfig
from maploc_dsac.transpose.mixing import MixedDataset, augment_render, mixed_length
from maploc_dsac.transpose.uncertainty import calibration, gaussian_nll_loss, uncertainty_exclusion_mask


def test_gaussian_nll_gradcheck():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    target = torch.randn(2, 3, 2, 3, dtype=torch.float64, generator=g)
    log_var = torch.randn(2, 1, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    valid = torch.rand(2, 2, 3, generator=g) > 0.3
    assert torch.autograd.gradcheck(lambda p, s: gaussian_nll_loss(p, target, valid, s), (pred, log_var))
    assert torch.autograd.gradgradcheck(lambda p, s: gaussian_nll_loss(p, target, valid, s), (pred, log_var))


def test_gaussian_nll_value_and_minimiser():
    """``1.5 s + |e|^2 exp(-s) / 2``, minimised at ``exp(s) = |e|^2 / 3`` (KFNet Eq. 2)."""
    pred = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    target = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64).view(1, 3, 1, 1)  # |e|^2 = 1.69
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    s = torch.tensor(0.5, dtype=torch.float64)
    loss = gaussian_nll_loss(pred, target, valid, s.view(1, 1, 1, 1))
    assert float(loss) == pytest.approx(1.5 * 0.5 + 0.5 * 1.69 * math.exp(-0.5))
    s_star = torch.tensor(math.log(1.69 / 3), dtype=torch.float64, requires_grad=True)
    gaussian_nll_loss(pred, target, valid, s_star.view(1, 1, 1, 1)).backward()
    assert abs(float(s_star.grad)) < 1e-12
    # invalid cells do not count; no valid cell: 0, still differentiable
    none = gaussian_nll_loss(pred.requires_grad_(), target, ~valid, s.view(1, 1, 1, 1))
    assert float(none.detach()) == 0.0
    none.backward()


def test_gaussian_nll_rejects_bad_shapes():
    with pytest.raises(ValueError, match="log_variance"):
        gaussian_nll_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool),
                          torch.zeros(1, 2, 2, 2))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 60), st.floats(0.0, 0.9), st.integers(0, 10_000))
def test_exclusion_mask_drops_the_most_uncertain_fraction(B, N, fraction, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, N, generator=g)
    valid = torch.rand(B, N, generator=g) > 0.2
    keep = uncertainty_exclusion_mask(s, fraction, valid)
    assert not bool((keep & ~valid).any())
    for b in range(B):
        n = int(valid[b].sum())
        dropped = valid[b] & ~keep[b]
        assert int(dropped.sum()) == math.ceil(n * fraction - 1e-6)
        if bool(dropped.any()) and bool(keep[b].any()):
            assert float(s[b][dropped].min()) >= float(s[b][keep[b]].max())


def test_exclusion_off_is_a_no_op_and_bad_fraction_raises():
    s = torch.randn(2, 1, 3, 4)
    assert bool(uncertainty_exclusion_mask(s, 0.0).all())
    with pytest.raises(ValueError, match="exclude_fraction"):
        uncertainty_exclusion_mask(s, 1.0)


def _scene(seed: int, h: int = 6, w: int = 8):
    """A camera at the origin looking at points 2-4 m away, with every third cell an outlier."""
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[20.0, 0, 32], [0, 20.0, 24], [0, 0, 1]])
    uv = cell_centres(h, w).reshape(-1, 2)
    depth = 2 + 2 * torch.rand(uv.shape[0], generator=g)
    pts = torch.stack([(uv[:, 0] - 32) / 20 * depth, (uv[:, 1] - 24) / 20 * depth, depth], -1)
    outlier = torch.arange(uv.shape[0]) % 3 == 0
    pts[outlier] += torch.randn(int(outlier.sum()), 3, generator=g)
    return pts[None], uv[None], K[None], outlier[None]


def test_excluded_cells_are_never_sampled_nor_scored():
    """With the exclusion mask, the RANSAC's inliers never hold an excluded cell, and the outliers
    (flagged most uncertain) are gone: the pose is exact. Without it, the inliers include them."""
    pts, uv, K, outlier = _scene(0)
    log_var = torch.where(outlier, torch.full_like(outlier, 2.0, dtype=torch.float32), torch.zeros(outlier.shape))
    keep = uncertainty_exclusion_mask(log_var, float(outlier.float().mean()))
    assert torch.equal(keep, ~outlier)
    ransac = DSACRansac("rgb", num_hypotheses=32, inlier_threshold=0.5)
    with_mask = ransac(pts, uv, K, mask=keep, seed=3)
    assert bool(with_mask.success[0])
    assert not bool((with_mask.inliers & outlier).any())
    torch.testing.assert_close(with_mask.t_cam2world[0], torch.zeros(3), atol=1e-3, rtol=0)
    # the same exclusion through non-finite coordinates (what TransPoseMethod.predict does)
    nan_pts = torch.where(keep[..., None], pts, torch.full_like(pts, float("nan")))
    via_nan = ransac(nan_pts, uv, K, seed=3)
    assert torch.equal(via_nan.inliers, with_mask.inliers)
    # a huge inlier threshold: every unmasked cell is an inlier, so the masks show in the inliers
    loose = DSACRansac("rgb", num_hypotheses=8, inlier_threshold=1e4)
    assert bool(loose(pts, uv, K, mask=keep, seed=3).inliers[outlier].sum() == 0)
    assert bool(loose(pts, uv, K, seed=3).inliers[outlier].all())


def test_calibration_of_a_monotone_relation():
    sigma = np.repeat(np.linspace(0.01, 0.2, 5), 10)  # constant within each bin: rms = sqrt(3) sigma exactly
    c = calibration(sigma, math.sqrt(3) * sigma, bins=5)
    assert c["spearman"] == pytest.approx(1.0)
    assert len(c["bins"]) == 5
    for _sigma, rms, predicted, cells in c["bins"]:
        assert rms == pytest.approx(predicted, rel=1e-9) and cells == 10
    assert math.isnan(calibration(np.array([0.1]), np.array([0.2]))["spearman"])
    sigma = np.linspace(0.01, 0.2, 50)
    anti = calibration(sigma, 1.0 - sigma)
    assert anti["spearman"] == pytest.approx(-1.0)


def test_render_augmentation():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 24, 32, generator=g)
    assert augment_render(image, RenderAugmentConfig(enabled=False)) is image
    out = augment_render(image, RenderAugmentConfig(blur_probability=1.0), generator=g)
    assert out.shape == image.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float((out - image).abs().mean()) > 0.01
    # blur only (no jitter, no noise) lowers the high-frequency energy
    blur = augment_render(image, RenderAugmentConfig(brightness=0, contrast=0, saturation=0, blur_probability=1.0,
                                                     noise_std=0.0), generator=g)
    assert float(blur.diff(dim=-1).abs().mean()) < 0.8 * float(image.diff(dim=-1).abs().mean())


@attrs.frozen
class _Sample:
    image: torch.Tensor
    name: str


class _Fake:
    def __init__(self, n: int, tag: str) -> None:
        self.n, self.tag = n, tag

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> _Sample:
        return _Sample(image=torch.full((3, 4, 4), 0.5), name=f"{self.tag}{i}")


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_mixing_schedule(fraction):
    real, synth = _Fake(6, "r"), _Fake(40, "s")
    mixed = MixedDataset(real, synth, fraction, RenderAugmentConfig(enabled=False))
    assert len(mixed) == mixed_length(6, 40, fraction)
    names = [mixed[i].name for i in range(len(mixed))]
    n_syn = sum(n.startswith("s") for n in names)
    assert n_syn == round(fraction * len(mixed))
    if 0 < fraction < 1:
        assert {f"r{i}" for i in range(6)} <= set(names) and {f"s{i}" for i in range(40)} <= set(names)
    assert MixedDataset(real, [], 0.5, RenderAugmentConfig()).fraction == 0.0
    with pytest.raises(IndexError):
        mixed[len(mixed)]


def test_render_augmentation_applies_to_renders_only_unless_all():
    real, synth = _Fake(2, "r"), _Fake(2, "s")
    only = MixedDataset(real, synth, 0.5, RenderAugmentConfig(noise_std=0.1))
    everything = MixedDataset(real, synth, 0.5, RenderAugmentConfig(noise_std=0.1, apply_to="all"))
    for mixed, real_changed in ((only, False), (everything, True)):
        for i in range(len(mixed)):
            changed = not torch.equal(mixed[i].image, torch.full((3, 4, 4), 0.5))
            assert changed == (mixed.is_synthetic(i) or real_changed)

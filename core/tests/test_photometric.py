"""maploc.data.photometric: input normalisation modes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc.data.photometric import INPUT_NORMS, normalize_images


def test_modes():
    assert INPUT_NORMS == ("imagenet", "per_image")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_imagenet_equals_old_formula(dtype):
    images = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)).to(dtype)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = (images - mean) / std
    out = normalize_images(images, "imagenet")
    assert out.dtype == expected.dtype
    assert torch.equal(out, expected)


def test_per_image_standardises_each_plane():
    images = torch.rand(3, 3, 8, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = normalize_images(images, "per_image")
    assert out.shape == images.shape and out.dtype == torch.float64
    torch.testing.assert_close(out.mean(dim=(2, 3)), torch.zeros(3, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), correction=0), torch.ones(3, 3, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    # one image's normalisation does not depend on the other images of the batch
    torch.testing.assert_close(normalize_images(images[1:2], "per_image"), out[1:2])


def test_per_image_constant_channel_is_zero():
    images = torch.full((1, 3, 4, 4), 0.3)
    out = normalize_images(images, "per_image")
    assert torch.isfinite(out).all() and out.abs().max() < 1e-3


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16),
       gain=st.lists(st.floats(0.05, 20.0), min_size=3, max_size=3),
       offset=st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3))
def test_per_image_invariant_to_per_channel_affine(seed, gain, offset):
    """Invariant up to the variance floor: ``a x + b`` is normalised by ``sqrt(a^2 v + eps)`` against ``x`` by
    ``sqrt(v + eps)``, so the outputs differ by at most about ``|z| eps / (2 v min(1, a^2))`` (``z`` the output)."""
    from maploc.data.photometric import PER_IMAGE_EPS

    images = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    a = torch.tensor(gain, dtype=torch.float64).view(1, 3, 1, 1)
    b = torch.tensor(offset, dtype=torch.float64).view(1, 3, 1, 1)
    ref = normalize_images(images, "per_image")
    var = images.var(dim=(2, 3), correction=0, keepdim=True)
    bound = 1.1 * ref.abs() * PER_IMAGE_EPS / (2 * var * torch.clamp(a, max=1.0) ** 2) + 1e-9  # 10 % margin
    assert bool(((normalize_images(a * images + b, "per_image") - ref).abs() <= bound).all())


def test_imagenet_is_not_exposure_invariant():  # what per_image fixes: a darker image gives a different input
    images = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(normalize_images(0.35 * images, "imagenet"), normalize_images(images, "imagenet"))


@pytest.mark.parametrize("bad", [torch.rand(3, 4, 4), torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4, 4),
                                 torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.rand(1, 3, 0, 4)])
def test_bad_images(bad):
    with pytest.raises(ValueError, match="images|pixel"):
        normalize_images(bad, "per_image")


def test_bad_mode():
    with pytest.raises(ValueError, match="imagenet.*per_image.*'perimage'"):
        normalize_images(torch.rand(1, 3, 4, 4), "perimage")

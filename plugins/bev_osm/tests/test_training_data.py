"""What bev_osm trains on: the sim-city training routes it asks for by default (a per-dataset default that never
reaches another dataset), and the photometric augmentation of its training images."""

from __future__ import annotations

import pytest
import torch

from maploc.config import apply_overrides
from maploc.errors import ConfigError
from maploc_bev_osm.method import AugmentConfig, BEVOSMConfig, BEVOSMMethod


def test_sim_city_training_routes_are_a_per_dataset_default(maploc_main) -> None:
    assert BEVOSMMethod.dataset_defaults["sim-city"]["train_routes"] >= 1
    status, out, err = maploc_main("config", "show", "--method", "bev_osm")
    assert status == 0, err
    assert f"data.train_routes: {BEVOSMMethod.dataset_defaults['sim-city']['train_routes']}" in out
    status, out, err = maploc_main("config", "show", "--method", "bev_osm", "-o", "data.train_routes=0")
    assert status == 0 and "data.train_routes: 0" in out, err
    # another dataset never sees the key (mgl has no train_routes: it would be an unknown-key error)
    status, out, err = maploc_main("config", "show", "--method", "bev_osm", "--dataset", "mgl")
    assert status == 0, err
    assert "train_routes" not in out


def test_augmentation_off_is_the_identity_and_on_stays_in_range() -> None:
    images = torch.rand(6, 3, 12, 16)
    assert torch.equal(AugmentConfig(photometric=False).apply(images), images)
    out = AugmentConfig().apply(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out, images)


def test_augmentation_exposure_range() -> None:
    """Without gamma, gains and noise, each image is scaled by a factor in [min_brightness, 1.2], independently."""
    images = torch.full((64, 3, 4, 4), 0.5)
    aug = AugmentConfig(min_brightness=0.25, max_gamma=1.0, channel_gain=0.0, noise_std=0.0)
    ratio = aug.apply(images, torch.Generator().manual_seed(1)).mean(dim=(1, 2, 3)) / 0.5
    assert float(ratio.min()) >= 0.25 - 1e-6 and float(ratio.max()) <= 1.2 + 1e-6
    assert float(ratio.min()) < 0.5 and float(ratio.max()) > 0.9  # the range is used, per image
    # darkening and brightening gamma both occur
    gamma = AugmentConfig(min_brightness=1.0, max_gamma=3.0, channel_gain=0.0, noise_std=0.0)
    g = gamma.apply(images, torch.Generator().manual_seed(2)).mean(dim=(1, 2, 3)) / 0.5
    assert float(g.min()) < 0.8 and float(g.max()) > 1.1


def test_augmentation_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="augment.min_brightness"):
        apply_overrides(BEVOSMConfig(), ["augment.min_brightness=1.5"])
    with pytest.raises(ConfigError, match="augment.max_gamma"):
        apply_overrides(BEVOSMConfig(), ["augment.max_gamma=0.5"])

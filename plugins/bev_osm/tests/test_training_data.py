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
    assert torch.equal(AugmentConfig().apply(images), images)  # off by default (README: it cost position)
    out = AugmentConfig(photometric=True).apply(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out, images)


def test_augmentation_exposure_range() -> None:
    """Without gamma, gains and noise, each image is scaled by a factor in [min_brightness, 1.2], independently."""
    images = torch.full((64, 3, 4, 4), 0.5)
    aug = AugmentConfig(photometric=True, min_brightness=0.25, max_gamma=1.0, channel_gain=0.0, noise_std=0.0)
    ratio = aug.apply(images, torch.Generator().manual_seed(1)).mean(dim=(1, 2, 3)) / 0.5
    assert float(ratio.min()) >= 0.25 - 1e-6 and float(ratio.max()) <= 1.2 + 1e-6
    assert float(ratio.min()) < 0.5 and float(ratio.max()) > 0.9  # the range is used, per image
    # darkening and brightening gamma both occur
    gamma = AugmentConfig(photometric=True, min_brightness=1.0, max_gamma=3.0, channel_gain=0.0, noise_std=0.0)
    g = gamma.apply(images, torch.Generator().manual_seed(2)).mean(dim=(1, 2, 3)) / 0.5
    assert float(g.min()) < 0.8 and float(g.max()) > 1.1


def test_augmentation_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="augment.min_brightness"):
        apply_overrides(BEVOSMConfig(), ["augment.min_brightness=1.5"])
    with pytest.raises(ConfigError, match="augment.max_gamma"):
        apply_overrides(BEVOSMConfig(), ["augment.max_gamma=0.5"])


def test_road_snap_baseline_moves_the_prior_to_the_nearest_road() -> None:
    import numpy as np

    from maploc_bev_osm.method import road_snap
    from maploc_osm import CLASS_NAMES

    crop = np.zeros((len(CLASS_NAMES), 9, 9), np.uint8)
    assert road_snap(crop, 10.0, 20.0, 1.0) == (10.0, 20.0)  # no road: the prior itself
    crop[CLASS_NAMES.index("road"), 2, :] = 1  # a road two cells north of the centre cell (row 4)
    crop[CLASS_NAMES.index("building"), 4, 5] = 1  # other classes are not roads
    x, y = road_snap(crop, 10.0, 20.0, 1.0)
    assert (x, y) == pytest.approx((10.0, 22.0))
    crop[CLASS_NAMES.index("road"), :, 7] = 1  # a road three cells east: the northern one stays nearer
    assert road_snap(crop, 10.0, 20.0, 2.0) == pytest.approx((10.0, 24.0))


def test_report_compares_with_road_snap() -> None:
    from types import SimpleNamespace

    from maploc.types import Pose2, PoseEstimate
    from maploc_bev_osm.report import baseline_metrics, report_sections

    config = BEVOSMConfig()
    queries = [SimpleNamespace(pose2=Pose2(x=float(i), y=0.0, yaw=0.0), sequence="t1_day") for i in range(4)]
    extras = {"crop_centre": (0.0, 10.0), "prior_xy": (0.0, 6.0), "road_snap_xy": (0.0, 2.0), "fused": (0.0, 0.0, 0.0)}
    estimates = [PoseEstimate(pose2=Pose2(x=q.pose2.x, y=0.0, yaw=0.0), extras=extras) for q in queries]
    metrics = baseline_metrics(config, queries, estimates, train_views=3)
    assert metrics["all/road_snap/recall_3m"] == 75.0  # (i, 0) against (0, 2): within 3 m for i = 0, 1, 2
    assert metrics["all/position_prior/recall_5m"] == 0.0 and "all/road_snap/recall_5deg" not in metrics
    text = report_sections(config, metrics)[0][1]
    assert "road_snap" in text and "nearest OSM road" in text

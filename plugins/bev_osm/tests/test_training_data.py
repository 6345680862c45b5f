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


def test_variants_baselines_and_the_prior_columns() -> None:
    """Each query writes its prior (``prior_x_m``, ``prior_y_m``, ``prior_halfwidth_m`` = the square it guarantees,
    the per-sequence drifting offset); ``variants`` gives the fused output and the baselines from the same priors
    and map; a failed query fails in every variant."""
    import math

    import numpy as np

    from maploc.api import SampleMeta
    from maploc.types import PoseEstimate
    from maploc_bev_osm.baselines import admissible_cells, road_direction_yaw
    from maploc_bev_osm.data import cell_of, north_up_crop, sequence_prior_offset
    from maploc_bev_osm.method import random_yaw, road_snap
    from maploc_bev_osm.report import admissible_chance, report_sections
    from maploc_bev_osm.synthetic import SyntheticBEVOSM

    tiny = ["model.cell_m=2.0", "model.bev_depth_m=8.0", "search.crop_m=32.0", "search.max_offset_m=6.0",
            "search.num_yaws_eval=8", "fusion.frames=3", "fusion.odometry_noise_m=0", "fusion.odometry_noise_deg=0",
            "split.held_out=false"]  # fmt: skip
    method = BEVOSMMethod(apply_overrides(BEVOSMConfig(), tiny))
    method.model = method.configure_model().eval()
    data = SyntheticBEVOSM(None, "query", image_height=48)
    method.build_map(data)
    queries = [data[i] for i in range(4)]
    assert len({q.sequence for q in queries}) == 1
    estimates = method.localize(queries)
    metas = [SampleMeta.of(q) for q in queries]
    offsets = [sequence_prior_offset(q.sequence, q.timestamp, 6.0) for q in queries]
    for q, e, (ox, oy) in zip(queries, estimates, offsets):
        assert e.success and e.extras["prior_halfwidth_m"] == 6.0
        assert (e.extras["prior_x_m"], e.extras["prior_y_m"]) == pytest.approx((q.pose2.x + ox, q.pose2.y + oy))
        assert abs(e.extras["prior_x_m"] - q.pose2.x) <= 6.0 and abs(e.extras["prior_y_m"] - q.pose2.y) <= 6.0
    variants = method.variants(metas, estimates)
    assert set(variants) == {"fused", "fused_prior", "fused_road_snap", "road_snap", "road_direction",
                             "admissible_random", "prior_only"}  # fmt: skip
    assert not variants["fused"].baseline and all(v.baseline for k, v in variants.items() if k != "fused")
    for k, q in enumerate(queries):
        # exact odometry: the mean of the window's priors moved to the query = truth + the mean of their offsets
        window = offsets[max(0, k - 2):k + 1]
        mean = np.mean(window, axis=0)
        p = variants["fused_prior"].estimates[k].pose2
        assert (p.x, p.y) == pytest.approx((q.pose2.x + mean[0], q.pose2.y + mean[1]), abs=1e-4)
        fs = variants["fused_road_snap"].estimates[k].pose2
        fcrop = north_up_crop(method.raster, p.x, p.y, method.crop_cells, require_features=False)
        assert (fs.x, fs.y) == pytest.approx(road_snap(fcrop, p.x, p.y, 2.0), abs=1e-6)
        cx, cy = estimates[k].extras["prior_x_m"], estimates[k].extras["prior_y_m"]
        crop = north_up_crop(method.raster, cx, cy, method.crop_cells)
        snap = road_snap(crop, cx, cy, 2.0)
        s = variants["road_snap"].estimates[k].pose2
        assert (s.x, s.y) == pytest.approx(snap) and s.yaw == pytest.approx(random_yaw(q.name))
        d = variants["road_direction"].estimates[k].pose2
        want = road_direction_yaw(crop, 5.0)
        assert (d.x, d.y) == pytest.approx(snap) and d.yaw == pytest.approx(random_yaw(q.name) if want is None else want)
        a = variants["admissible_random"].estimates[k]
        rows, cols = admissible_cells(crop, 6.0, 2.0)
        r, c = cell_of(a.pose2.x, a.pose2.y, cx, cy, method.crop_cells, 2.0)
        assert any(abs(r - rr) < 1e-6 and abs(c - cc) < 1e-6 for rr, cc in zip(rows, cols))
        assert 0.0 <= a.extras["expected_recall_1m"] <= a.extras["expected_recall_5m"] <= 100.0
    assert math.isfinite(variants["fused"].estimates[3].pose2.yaw)
    failed = method.variants(metas, [PoseEstimate.failed(), *estimates[1:]])
    assert all(not v.estimates[0].success and v.estimates[1].success for v in failed.values())
    text = report_sections(method, {})[0][1]
    assert "half-side 6 m" in text and "every query is scored" in text and "Admissible chance" in text
    mean5 = np.mean([variants["admissible_random"].estimates[k].extras["expected_recall_5m"] for k in range(4)])
    assert admissible_chance(method)["recall_5m"] == pytest.approx(mean5)
    single = BEVOSMMethod(apply_overrides(BEVOSMConfig(), [*tiny, "fusion.frames=1"]))
    single._side = method._side
    assert set(single.variants(metas, estimates)) == {"road_snap", "road_direction", "admissible_random", "prior_only"}

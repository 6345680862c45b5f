"""Bad input at localization: a prior outside the map raster, a crop without any OSM feature, a camera tilted
beyond rectification: each is a counted failure with its reason, never a crash; the run goes on."""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch

from maploc.config import apply_overrides
from maploc.types import Pose, Pose2
from maploc_bev_osm.method import BEVOSMConfig, BEVOSMMethod
from maploc_bev_osm.synthetic import SyntheticBEVOSM, camera_pose, synthetic_raster

TINY = ["model.cell_m=2.0", "model.bev_depth_m=8.0", "search.crop_m=32.0", "search.max_offset_m=0.0",
        "search.num_yaws_eval=8", "fusion.frames=1"]  # fmt: skip


def _method(raster):
    method = BEVOSMMethod(apply_overrides(BEVOSMConfig(), TINY))
    method.model = method.configure_model().eval()
    method.raster = raster
    return method


def _moved(sample, x, y, yaw=0.3, T=None):
    return attrs.evolve(sample, pose2=Pose2(x=x, y=y, yaw=yaw), T_cam2world=T if T is not None else camera_pose(x, y, yaw))


def test_bad_queries_are_counted_failures_and_good_ones_still_run():
    raster = synthetic_raster(2.0)
    method = _method(raster)
    sample = SyntheticBEVOSM(None, "query", image_height=48)[0]
    pitched = camera_pose(0.0, 1.0, 0.3)
    pitch = torch.tensor([[1.0, 0, 0], [0, math.cos(0.8), -math.sin(0.8)], [0, math.sin(0.8), math.cos(0.8)]])
    tilted = Pose(R=pitched.R @ pitch, t=pitched.t)  # 46 degrees of pitch
    queries = [_moved(sample, 5000.0, 0.0), _moved(sample, 0.0, 1.0, T=tilted), _moved(sample, 0.0, 1.0)]
    out = method.localize(queries)
    assert [e.success for e in out] == [False, False, True]
    assert "outside the map raster" in out[0].extras["reason"]
    assert out[0].extras["prior_x_m"] == 5000.0  # the prior is written for a failed query too (max offset 0 here)
    assert "prior_halfwidth_m" not in out[0].extras  # a zero offset guarantees no region: the prior is exact
    assert "roll/pitch" in out[1].extras["reason"]
    assert out[2].pose2 is not None and math.isfinite(out[2].pose2.x)


def test_crop_without_osm_features_is_a_counted_failure():
    raster = synthetic_raster(2.0)
    empty = attrs.evolve(raster, packed=np.zeros_like(raster.packed)) if attrs.has(type(raster)) else None
    if empty is None:
        from maploc_osm import MapRaster

        empty = MapRaster(georef=raster.georef, packed=np.zeros_like(raster.packed), source=None)
    method = _method(empty)
    sample = SyntheticBEVOSM(None, "query", image_height=48)[0]
    (est,) = method.localize([_moved(sample, 0.0, 1.0)])
    assert not est.success and "no OSM feature" in est.extras["reason"]

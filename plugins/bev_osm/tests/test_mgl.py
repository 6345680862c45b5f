"""``mgl``: OrienterNet's Mapillary Geo-Localization dump layout, with fixtures written here in that exact layout."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from maploc.errors import DataError
from maploc_bev_osm.mgl import MGLDataset
from maploc_bev_osm.synthetic import camera_pose

from .conftest import ORIGIN


def _write_location(root, city_osm, *, model="PINHOLE", splits=False):
    """``root/<data_dir>/{loc/dump.json, loc/images/*.jpg, osm/city.osm}`` as the reference's prepare step writes."""
    from maploc_osm import GeoReference

    geo = GeoReference.from_origin(*ORIGIN)
    loc = root / "mgl" / "loc"
    (loc / "images").mkdir(parents=True)
    (root / "mgl" / "osm").mkdir()
    shutil.copy(city_osm, root / "mgl" / "osm" / "city.osm")
    dump, truth = {}, {}
    for s, seq in enumerate(["seqA", "seqB", "seqC"]):
        cams = {"cam1": {"id": "cam1", "model": model, "width": 64, "height": 48, "params": [40.0, 41.0, 31.5, 23.5]}}
        views = {}
        for i in range(3):
            x, y, yaw = -30.0 + 20 * i, 10.0 * s - 5, 0.3 + 0.9 * s
            view_id = f"{1000 * (s + 1) + i}_undistorted"
            T = camera_pose(x, y, yaw, 1.7)
            lat, lon = geo.xy_to_latlon([x, y]).tolist()
            views[view_id] = {"camera_id": "cam1", "latlong": [lat, lon], "t_c2w": [x, y, 1.7],
                              "R_c2w": T.R.double().tolist(), "roll_pitch_yaw": [0.0, 0.0, 90 - math.degrees(yaw)],
                              "capture_time": 1_600_000_000_000 + i, "gps_position": [lat, lon, 10.0],
                              "compass_angle": 90 - math.degrees(yaw), "index": i}  # fmt: skip
            img = np.full((48, 64, 3), 40 * s + 10 * i, np.uint8)
            cv2.imwrite(str(loc / "images" / f"{view_id}.jpg"), img)
            truth[view_id] = (x, y, yaw)
        dump[seq] = {"views": views, "cameras": cams}
    (loc / "dump.json").write_text(json.dumps(dump))
    if splits:
        table = {"train": {"loc": [1000, 1001, 1002, 2000]}, "val": {"loc": [3000, 3001, 3002]}}
        (root / "mgl" / "splits_MGL_13loc.json").write_text(json.dumps(table))
    return loc, truth


def test_reads_the_reference_layout(tmp_path, city_osm, monkeypatch):
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    loc, truth = _write_location(tmp_path, city_osm, splits=True)
    train, query = MGLDataset(loc, "train"), MGLDataset(loc, "query")
    assert len(train) == 4 and len(query) == 3
    query.validate()
    for ds in (train, query):
        for k in range(len(ds)):
            meta = ds.metadata(k)
            x, y, yaw = truth[meta.name]
            # latlong projected into the dataset's frame (centred at the views' mean latlong): same shape as truth
            assert meta.pose2.yaw == pytest.approx(yaw, abs=1e-5)
            assert meta.T_cam2world.t[2].item() == pytest.approx(1.7)
    # relative positions survive the projection (frames differ by the origin only)
    a, b = train.metadata(0), train.metadata(1)
    assert math.hypot(a.pose2.x - b.pose2.x, a.pose2.y - b.pose2.y) == pytest.approx(20.0, abs=0.01)
    sample = query[0]
    assert sample.image.shape == (3, 48, 64) and sample.sequence == "seqC"
    # MGL has no capture conditions: one condition for all (not one per sequence), in samples and metadata alike
    assert sample.condition == query.metadata(0).condition == "default" and "condition" not in sample.extras
    assert torch.allclose(sample.camera.K, torch.tensor([[40.0, 0, 31.5], [0, 41.0, 23.5], [0, 0, 1]]))
    raster = query.map_raster(1.0)
    assert raster.mask("building").any() and raster.georef.origin_lat == pytest.approx(query.origin[0])
    # the map frame of the raster and of the poses agree: a view's position maps to a road cell (views are on y=...)
    assert MGLDataset(loc, "query", image_height=24)[0].image.shape == (3, 24, 32)


def test_sequence_split_without_splits_file(tmp_path, city_osm):
    loc, _ = _write_location(tmp_path, city_osm)
    train, query = MGLDataset(loc, "train"), MGLDataset(loc, "query")
    assert len(train) + len(query) == 9 and len(query) >= 3
    assert not {m.sequence for m in map(train.metadata, range(len(train)))} & {
        m.sequence for m in map(query.metadata, range(len(query)))}


def test_bad_layouts_are_clear_errors(tmp_path, city_osm):
    with pytest.raises(DataError, match="dump.json"):
        MGLDataset(tmp_path, "train")
    loc, _ = _write_location(tmp_path / "a", city_osm, model="SIMPLE_RADIAL")
    with pytest.raises(DataError, match="PINHOLE"):
        MGLDataset(loc, "train")
    loc, _ = _write_location(tmp_path / "b", city_osm)
    shutil.rmtree(tmp_path / "b" / "mgl" / "osm")
    with pytest.raises(DataError, match="no OSM file"):
        MGLDataset(loc, "train").map_raster(1.0)
    (loc / "images" / "1000_undistorted.jpg").unlink()
    with pytest.raises(DataError, match="image not found"):
        for split in ("train", "query"):
            MGLDataset(loc, split).validate()

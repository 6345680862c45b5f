"""The ``osm-tiles`` datasets: tiles from a real OSM file, channels, determinism, options, bad input."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import torch

from maploc.errors import ConfigError, DataError
from maploc.types import Sample
from maploc_loc2vec.channels import (
    CHANNEL_SETS,
    channel_names,
    dominant_channel,
    pack_tiles,
    render_rgb,
    to_channel_raster,
    unpack_tiles,
)
from maploc_loc2vec.data import OsmTileDataset, SyntheticTileDataset, TileOptions
from maploc_osm import CLASS_NAMES, MapRaster, load_map_raster

SMALL = TileOptions(tile_px=32, block_size_m=100.0, grid_step_m=10.0, num_queries=10, train_samples=50, val_samples=8,
                    preview_px=16)


def test_city_osm_splits_have_the_documented_layout(city_dir):
    data = {s: OsmTileDataset(city_dir, s, options=SMALL) for s in ("train", "val", "map", "query")}
    assert len(data["train"]) == 50 and len(data["val"]) == 8 and len(data["query"]) == 10
    assert data["train"].channel_names == channel_names("loc2vec12")
    blocks = data["train"].blocks
    assert blocks.rows == blocks.cols == 6  # 600 m map - 2 x 22.6 m margin = 555 m, blocks of ~100 m

    s = data["train"][3]
    assert isinstance(s, Sample) and s.image.shape == (3, 16, 16) and 0 <= float(s.image.min()) <= float(s.image.max()) <= 1
    assert s.extras["tile"].shape == (2, 32, 32) and s.extras["tile"].dtype == torch.uint8
    a = unpack_tiles(s.extras["tile"], 12)
    assert a.shape == (12, 32, 32) and set(np.unique(a)) <= {0, 1} and a.any()
    # the triplet obeys the radii
    p, n = s.extras["positive_pose2"], s.extras["negative_pose2"]
    assert math.hypot(p.x - s.pose2.x, p.y - s.pose2.y) <= 10.0
    assert math.hypot(n.x - s.pose2.x, n.y - s.pose2.y) >= 50.0
    # the packed tile is the crop of the raster at the sample's pose
    np.testing.assert_array_equal(a, data["train"].render(np.array([[s.pose2.x, s.pose2.y, s.pose2.yaw]]))[0])

    ref = data["map"][0]
    assert "tile" not in ref.extras and ref.pose2.yaw == pytest.approx(math.pi / 2)
    grid = data["map"].positions()
    assert len(grid) == len(data["map"]) > 0
    # reference grid every 10 m: nearest neighbours 10 m apart
    d = np.hypot(*(grid[:, None] - grid[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert d.min(1).min() == pytest.approx(10.0)
    assert (data["map"].blocks.split_of(grid) == 2).all()
    assert (data["map"].blocks.split_of(data["query"].positions()) == 2).all()


def test_samples_are_a_pure_function_of_the_index(city_dir):
    a = OsmTileDataset(city_dir, "train", options=SMALL)
    b = OsmTileDataset(city_dir, "train", options=SMALL)
    s1, s2 = a[7], b[7]
    assert s1.pose2 == s2.pose2 and torch.equal(s1.extras["negative_tile"], s2.extras["negative_tile"])
    assert a[8].pose2 != s1.pose2
    # another seed gives other triplets; the split does not change
    c = OsmTileDataset(city_dir, "train", options=attrs.evolve(SMALL, seed=1))
    assert c[7].pose2 != s1.pose2
    np.testing.assert_array_equal(c.blocks.assignment, a.blocks.assignment)
    with pytest.raises(IndexError):
        a[50]
    with pytest.raises(ValueError, match="unknown split"):
        OsmTileDataset(city_dir, "test", options=SMALL)


def test_options_come_from_data_keys_checked_strictly(city_dir):
    from maploc.config import structure_dataset_options

    options = structure_dataset_options(OsmTileDataset, {"tile_px": 32, "block_size_m": 100, "num_queries": 7})
    data = OsmTileDataset(city_dir, "query", options=options)
    assert data.options.tile_px == 32 and len(data) == 7
    with pytest.raises(ConfigError, match=r"unknown config key 'data.tile_size'.*data.tile_px"):
        structure_dataset_options(OsmTileDataset, {"tile_size": 32})
    with pytest.raises(ConfigError, match="num_queries"):
        structure_dataset_options(OsmTileDataset, {"num_queries": 0})
    with pytest.raises(ConfigError, match="positive_max_rotation_deg"):
        structure_dataset_options(OsmTileDataset, {"positive_max_rotation_deg": 200})
    with pytest.raises(ConfigError, match="negative_radius_m"):
        TileOptions(positive_radius_m=20.0, negative_radius_m=10.0)
    with pytest.raises(TypeError, match="TileOptions"):
        SyntheticTileDataset(None, "query", options=TileOptions())  # the synthetic set has its own Options class
    assert OsmTileDataset.splits == ("train", "map", "query", "val")


def test_positive_heading_stays_within_the_rotation_tolerance(city_dir):
    for degrees in (22.5, 180.0):
        data = OsmTileDataset(city_dir, "train", options=attrs.evolve(SMALL, positive_max_rotation_deg=degrees))
        diffs = []
        for i in range(50):
            poses = data.poses(i)
            diffs.append(abs((poses[1, 2] - poses[0, 2] + math.pi) % (2 * math.pi) - math.pi))
        assert max(diffs) <= math.radians(degrees) + 1e-9
        assert max(diffs) > math.radians(degrees) * 0.6  # the tolerance is used, not collapsed to 0


def test_metadata_is_the_samples_pose_without_rendering(city_dir):
    for split in ("map", "query"):
        data = OsmTileDataset(city_dir, split, options=SMALL)
        meta, sample = data.metadata(3), data[3]
        assert meta.name == sample.name and meta.pose2 == sample.pose2
    data.validate()


def test_too_small_area_is_a_clear_error(tmp_path, monkeypatch, write_osm):
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    folder.mkdir()
    write_osm(folder / "tiny.osm", size_m=120.0, street_every_m=40.0)
    with pytest.raises(DataError, match=r"too small for tiles of 128 m"):
        OsmTileDataset(folder, "train")  # 128 m tiles need 90.5 m of map around each centre
    with pytest.raises(DataError, match=r"block\(s\).*too few"):
        OsmTileDataset(folder, "train", options=TileOptions(tile_px=32, block_size_m=100.0))
    with pytest.raises(DataError, match="no OpenStreetMap file"):
        OsmTileDataset(tmp_path / "cache", "train")


def test_negative_distance_larger_than_the_split_is_an_error(city_dir):
    with pytest.raises(DataError, match="negative distance"):
        OsmTileDataset(city_dir, "query", options=attrs.evolve(SMALL, negative_radius_m=2000.0))


def test_channel_raster_is_the_or_of_its_classes(city_dir):
    raster = load_map_raster(city_dir / "city.osm", 1.0)
    channels = to_channel_raster(raster, "loc2vec12", rows_per_chunk=37)  # odd chunks: the loop is exercised
    labels = raster.labels
    for name, classes in CHANNEL_SETS["loc2vec12"]:
        expected = np.zeros(labels.shape[1:], bool)
        for c in classes:
            expected |= labels[CLASS_NAMES.index(c)] == 1
        np.testing.assert_array_equal(channels.mask(name), expected, err_msg=name)
    assert channels.mask("building").any() and channels.mask("road").any() and channels.mask("green").any()
    # the 'classes' set is the raster itself, 'groups' the three OrienterNet groups
    np.testing.assert_array_equal(to_channel_raster(raster, "classes").labels, labels)
    assert channel_names("groups") == ("areas", "ways", "points")
    with pytest.raises(ValueError, match="unknown channel set"):
        to_channel_raster(raster, "rgb")


def test_every_class_is_in_one_channel_at_most():
    used = [c for _, classes in CHANNEL_SETS["loc2vec12"] for c in classes]
    assert len(used) == len(set(used))
    assert set(used) <= set(CLASS_NAMES)
    assert set(CLASS_NAMES) - set(used) == {"building_outline"}  # documented: the edges of building areas


def test_pack_unpack_render_and_dominant():
    rng = np.random.default_rng(0)
    tiles = (rng.random((4, 12, 8, 8)) < 0.3).astype(np.uint8)
    packed = pack_tiles(tiles)
    assert packed.shape == (4, 2, 8, 8)
    np.testing.assert_array_equal(unpack_tiles(packed, 12), tiles)
    np.testing.assert_array_equal(packed, np.packbits(tiles, axis=1, bitorder="little"))
    names = channel_names("loc2vec12")
    rgb = render_rgb(tiles, names)
    assert rgb.shape == (4, 3, 8, 8) and rgb.dtype == torch.float32
    # the last set channel wins a pixel: a pixel with only 'road' set is the road colour
    one = np.zeros((1, 12, 2, 2), np.uint8)
    one[0, names.index("road"), 0, 0] = 1
    one[0, names.index("building"), 0, 1] = 1
    one[0, names.index("road"), 0, 1] = 1
    img = render_rgb(one, names)[0]
    assert torch.allclose(img[:, 0, 0], torch.tensor([0x3B, 0x3B, 0x3B]) / 255.0)
    assert torch.allclose(img[:, 0, 1], img[:, 0, 0])
    assert torch.allclose(img[:, 1, 1], torch.tensor([247, 247, 242]) / 255.0)
    assert render_rgb(tiles, names, 4).shape == (4, 3, 4, 4)
    dom = np.zeros((3, 12, 4, 4), np.uint8)
    dom[0, 5, :3] = 1
    dom[0, 2, :1] = 1
    dom[1, 0] = 1
    assert dominant_channel(dom).tolist() == [5, 0, -1]


def test_synthetic_dataset_needs_no_files():
    data = SyntheticTileDataset(None, "query")
    assert SyntheticTileDataset.needs_root is False
    s = data[0]
    assert s.extras["tile"].shape == (2, 64, 64)
    assert isinstance(data.raster, MapRaster) and data.raster.source.startswith("synthetic")

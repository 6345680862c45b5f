"""loc2vec's spatial block split (the core's SpatialSplit with loc2vec's guards): no training tile overlaps a
held-out block; the sampling obeys the split."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
from shapely.geometry import Polygon, box

from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError, DataError
from maploc_loc2vec.blocks import SPLIT_CODES, LocationSampler
from maploc_loc2vec.data import SUCCESS_RADIUS_M, SyntheticTileDataset, TileOptions


def loc2vec_split(extent, *, tile_radius_m, block_size_m, val_fraction=0.1, test_fraction=0.1, seed=0):
    """The split as :class:`~maploc_loc2vec.data.OsmTileDataset` builds it with default guards."""
    r = tile_radius_m
    return SpatialSplit.build(extent, block_size_m=block_size_m, success_radius_m=SUCCESS_RADIUS_M, footprint_m=r,
                              margin_m=r, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                              guard_m=max(2 * r + 1, SUCCESS_RADIUS_M + r), val_guard_m=r + 1)


def footprint(x: float, y: float, yaw: float, side_m: float) -> Polygon:
    """The square a tile of side ``side_m`` covers, centred at (x, y), turned by ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    h = side_m / 2
    corners = [(x + c * u - s * v, y + s * u + c * v) for u, v in ((-h, -h), (h, -h), (h, h), (-h, h))]
    return Polygon(corners)


def test_footprint_helper_can_detect_an_overlap():
    block = box(0, 0, 100, 100)
    assert footprint(-60, 50, 0.0, 128).intersects(block)  # 60 m from the block: the 64 m half-side reaches in
    assert not footprint(-65, 50, 0.0, 128).intersects(block)
    # turned by 45 deg a corner reaches 90.5 m from the centre
    assert not footprint(-80, 50, 0.0, 128).intersects(block)
    assert footprint(-80, 50, math.pi / 4, 128).intersects(block)


def test_no_training_or_val_tile_overlaps_a_held_out_block():
    data = SyntheticTileDataset(None, "train")
    val = SyntheticTileDataset(None, "val")
    side = data.options.tile_px * data.options.resolution_m
    test_blocks = [box(*r) for r in data.blocks.rects("test")]
    val_blocks = [box(*r) for r in data.blocks.rects("val")]
    assert test_blocks and val_blocks
    checked = 0
    for i in range(150):
        for x, y, yaw in data.poses(i):  # anchor, positive and negative
            tile = footprint(x, y, yaw, side)
            assert not any(tile.intersects(b) for b in test_blocks + val_blocks), (i, x, y, yaw)
            checked += 1
    for i in range(40):
        for x, y, yaw in val.poses(i):
            assert not any(footprint(x, y, yaw, side).intersects(b) for b in test_blocks)
    assert checked == 450
    # and the guard is not wasteful: some training tiles come within 10 m of touching a held-out block
    xy = np.concatenate([data.poses(i)[:, :2] for i in range(150)])
    gaps = np.minimum(data.blocks.distance_to(xy, "test"), data.blocks.distance_to(xy, "val")) - side / math.sqrt(2)
    assert gaps.min() >= 0 and gaps.min() < 10


def test_split_codes_of_the_reference_grid_and_queries():
    grid = SyntheticTileDataset(None, "map").positions()
    queries = SyntheticTileDataset(None, "query").positions()
    blocks = SyntheticTileDataset(None, "map").blocks
    assert (blocks.split_of(grid) == SPLIT_CODES["test"]).all()
    assert (blocks.split_of(queries) == SPLIT_CODES["test"]).all()
    # queries are off the grid (random positions), not grid points
    d = np.hypot(*(queries[:, None] - grid[None]).transpose(2, 0, 1)).min(1)
    assert (d > 1e-6).all()


def test_block_assignment_counts_spread_and_determinism():
    extent = (-500.0, -800.0, 500.0, 800.0)
    b = loc2vec_split(extent, tile_radius_m=90.5, block_size_m=250, val_fraction=0.1, test_fraction=0.1, seed=0)
    assert (b.rows, b.cols) == (6, 3)
    assert [(b.assignment == c).sum() for c in (0, 1, 2)] == [14, 2, 2]
    held = np.argwhere(b.assignment > 0)
    for i in range(len(held)):
        for j in range(i + 1, len(held)):
            assert np.abs(held[i] - held[j]).max() > 1, "held-out blocks touch"
    # the assignment BlockSplit (loc2vec's own split before the core's) gave this map: kept
    np.testing.assert_array_equal(np.argwhere(b.assignment == 2), [[1, 1], [4, 0]])
    np.testing.assert_array_equal(np.argwhere(b.assignment == 1), [[3, 2], [5, 2]])
    again = loc2vec_split(extent, tile_radius_m=90.5, block_size_m=250, seed=0)
    np.testing.assert_array_equal(again.assignment, b.assignment)
    other = loc2vec_split(extent, tile_radius_m=90.5, block_size_m=250, seed=3)
    assert not np.array_equal(other.assignment, b.assignment)
    assert b.split_of(np.array([[0.0, 0.0], [1e4, 0.0]]))[1] == -1


def test_guard_band_that_eats_the_training_area_is_an_error():
    # 3 x 3 blocks of 60 m with a 90 m guard: the val/test bands cover every training block
    b = loc2vec_split((0, 0, 361, 361), tile_radius_m=90.5, block_size_m=60, val_fraction=0.2, test_fraction=0.2)
    with pytest.raises(DataError, match="no room for a train tile"):
        LocationSampler(b, "train")


def test_sampler_radii():
    b = loc2vec_split((0, 0, 800, 800), tile_radius_m=20, block_size_m=150, seed=1)
    sampler = LocationSampler(b, "train")
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = sampler.sample(rng)[0]
        p = sampler.sample_near(rng, a, 10.0)
        n = sampler.sample_far(rng, a, 50.0)
        assert np.hypot(*(p - a)) <= 10.0 and np.hypot(*(n - a)) >= 50.0
        assert b.allowed(np.stack([a, p, n]), "train").all()
    with pytest.raises(DataError, match="too small for the negative distance"):
        sampler.sample_far(rng, a, 5000.0)


def _footprints(poses: np.ndarray, side: float) -> list[Polygon]:
    return [footprint(x, y, yaw, side) for x, y, yaw in poses]


def _assert_no_test_tile_overlaps_a_training_tile(data_cls, root, options=None, n_train=200, map_stride=1):
    """Training tiles (anchor, positive, negative) against query tiles at their own and 8 further rotations and
    reference tiles at 8 headings: exact rotated squares, no intersection allowed."""
    from shapely import STRtree

    train = data_cls(root, "train", options=options)
    queries = data_cls(root, "query", options=options)
    ref = data_cls(root, "map", options=options)
    side = train.options.tile_px * train.options.resolution_m
    train_poses = np.concatenate([train.poses(i) for i in range(n_train)])
    tree = STRtree(_footprints(train_poses, side))
    test_poses = [queries.poses(i)[0] for i in range(len(queries))]
    turns = np.linspace(0, 2 * math.pi, 9)[:-1] + 0.3
    test_poses += [(x, y, yaw + t) for x, y, yaw in list(test_poses) for t in turns]
    test_poses += [(x, y, math.pi / 2 + t) for x, y in ref.positions()[::map_stride] for t in turns]
    hits = tree.query(_footprints(np.asarray(test_poses), side), predicate="intersects")
    assert hits.size == 0, f"{hits.shape[1]} (test tile, training tile) pairs overlap"
    # the guard is not wasteful: some training tile comes within 10 m of a tile centred on a test block's edge
    gaps = train.blocks.distance_to(train_poses[:, :2], "test") - side * math.sqrt(2)
    assert gaps.min() >= 0 and gaps.min() < 10
    return len(train_poses), len(test_poses)


def test_no_query_or_reference_tile_at_any_rotation_overlaps_a_training_tile():
    n_train, n_test = _assert_no_test_tile_overlaps_a_training_tile(SyntheticTileDataset, None)
    assert n_train == 600 and n_test > 1000


@pytest.mark.data
def test_helsinki_default_split_keeps_queries_off_the_training_tiles():
    from maploc.data.fetch import fetch
    from maploc_loc2vec.data import OsmTileDataset

    root = fetch("helsinki-osm", progress=lambda s: None)
    _assert_no_test_tile_overlaps_a_training_tile(OsmTileDataset, root, n_train=400, map_stride=7)


def test_the_dataset_split_is_the_core_split_with_loc2vecs_guards():
    data = SyntheticTileDataset(None, "train")
    r = data.options.tile_radius_m  # 64 px at 1 m: 45.25 m
    split = data.blocks
    assert isinstance(split, SpatialSplit)
    assert split.success_radius_m == SUCCESS_RADIUS_M == 25.0 and split.footprint_m == pytest.approx(r)
    assert split.guard_m == pytest.approx(2 * r + 1)  # 91.5 m > 25 m + r: today's guard kept
    assert split.val_guard_m == pytest.approx(r + 1)
    assert split.region == pytest.approx((-320 + r, -320 + r, 320 - r, 320 - r))
    # small tiles: 25 m + r is the larger (32 px: r = 22.6 m, 2 r + 1 = 46.3 m < 47.6 m)
    small = TileOptions(tile_px=32)
    assert small.test_guard == pytest.approx(SUCCESS_RADIUS_M + small.tile_radius_m)
    assert TileOptions().test_guard == pytest.approx(2 * TileOptions().tile_radius_m + 1)
    # an explicit guard below success radius + half-diagonal is refused, naming the option
    with pytest.raises(ConfigError, match=r"data.test_guard_m \(60 m\) is below .* = 70.3 m"):
        SyntheticTileDataset(None, "train", options=attrs.evolve(data.options, test_guard_m=60.0))
    ok = SyntheticTileDataset(None, "train", options=attrs.evolve(data.options, test_guard_m=100.0))
    assert ok.blocks.guard_m == 100.0

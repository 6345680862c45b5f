"""Oracle tests of the pose conventions: a BEV template cut from the map raster itself at a known pose (the BEV a
perfect image encoder would give), matched against the map with identity encoders, must give back that pose
exactly; and the training target cell of ``collate`` must be where that oracle peaks."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc.types import Pose2
from maploc_bev_osm.data import north_up_crop, xy_of
from maploc_bev_osm.matching import correlate_fft, expectation_pose, log_softmax_volume, rotate_templates


def _random_raster(n: int = 200, seed: int = 0):
    """A :class:`maploc_osm.MapRaster` whose cells hold random classes (no two places look alike), 1 m cells,
    centred at the map origin."""
    from maploc_osm import CLASS_NAMES, GeoReference, MapRaster

    rng = np.random.default_rng(seed)
    labels = np.zeros((n, n, len(CLASS_NAMES)), np.uint8)
    labels[..., :6] = rng.random((n, n, 6)) < 0.3
    packed = np.packbits(labels, axis=-1, bitorder="little")
    georef = GeoReference.from_origin(60.17, 24.94).with_raster(resolution_m=1.0, x_min=-n / 2, y_max=n / 2,
                                                                 height=n, width=n)  # fmt: skip
    return MapRaster(georef=georef, packed=packed, source=None)


RASTER = _random_raster()
RASTER_USED = torch.ones(RASTER.num_classes, dtype=torch.bool)
RASTER_USED[6:] = False


def _oracle_template(raster, x, y, yaw, half, used):
    """The template in the BEV layout (camera at cell (n, n), forward = row 0 side), front half and a disk only
    (what the BEV grid in front of the camera covers; a disk so that every rotation keeps the same support),
    classes as +-1 so that empty classes are evidence too."""
    s = 2 * half + 1
    crop = torch.from_numpy(raster.crop(x, y, yaw, s).astype(np.float64))[used] * 2 - 1
    i, j = torch.meshgrid(torch.arange(s) - half, torch.arange(s) - half, indexing="ij")
    support = ((i**2 + j**2) <= (half - 1) ** 2) & (i <= 0)
    return crop * support


def _identity_map(raster, cx, cy, size):
    crop = torch.from_numpy(north_up_crop(raster, cx, cy, size).astype(np.float64))
    used = crop.flatten(1).any(1)
    return crop[used] * 2 - 1, used


@settings(max_examples=12, deadline=None)
@given(k=st.integers(0, 63), row=st.integers(14, 49), col=st.integers(14, 49), cx=st.floats(-40, 40),
       cy=st.floats(-40, 40))  # fmt: skip
def test_map_template_recovers_the_pose_exactly(k, row, col, cx, cy):
    size, half, n_yaw = 64, 12, 64
    cx, cy = float(round(cx)), float(round(cy))
    x, y = xy_of(row, col, cx, cy, size, 1.0)  # a cell centre of the crop
    yaw = 2 * math.pi * k / n_yaw
    m, used = _identity_map(RASTER, cx, cy, size)
    t = _oracle_template(RASTER, x, y, yaw, half, used)
    vol = log_softmax_volume(correlate_fft(m[None], rotate_templates(t[None], n_yaw)))
    _, arg = expectation_pose(vol, 0)
    assert arg[0].tolist() == [k, row, col]


def test_yaw_sign_and_axes_are_distinguished():
    """Mirror images of the pose (yaw -> -yaw, pi - yaw; row/column swapped) do not score as high."""
    size, half, n_yaw, row, col, k = 64, 12, 64, 20, 41, 5
    m, used = _identity_map(RASTER, 3.0, -7.0, size)
    x, y = xy_of(row, col, 3.0, -7.0, size, 1.0)
    t = _oracle_template(RASTER, x, y, 2 * math.pi * k / n_yaw, half, used)
    scores = correlate_fft(m[None], rotate_templates(t[None], n_yaw))[0]
    best = scores[k, row, col]
    for kk, rr, cc in [(n_yaw - k, row, col), (n_yaw // 2 - k, row, col), (k, col, row), (k, size - 1 - row, col)]:
        assert scores[kk % n_yaw, rr, cc] < best - 1


def test_training_target_cell_is_where_the_oracle_peaks():
    """``collate``'s crop and ``gt_cell`` (the NLL target) agree with the oracle's argmax over that crop."""
    from maploc.config import apply_overrides
    from maploc_bev_osm.method import BEVOSMConfig, BEVOSMMethod
    from maploc_bev_osm.synthetic import SyntheticBEVOSM

    cfg = apply_overrides(BEVOSMConfig(), ["search.crop_m=48.0", "search.max_offset_m=10.0", "search.num_yaws_train=32",
                                           "model.cell_m=1.0"])  # fmt: skip
    method = BEVOSMMethod(cfg)
    data = SyntheticBEVOSM(None, "train")
    method.raster = RASTER
    torch.manual_seed(0)
    for index in (1, 4, 9 % len(data)):
        sample = data[index]
        # on a raster cell centre, so that the nearest-neighbour crops are not at a rounding tie; yaw off its bin
        p = sample.pose2
        sample = attrs.evolve(sample, pose2=Pose2(x=math.floor(p.x) + 0.5, y=math.floor(p.y) + 0.5, yaw=p.yaw + 0.03))
        batch = method.collate([sample])
        k, row, col = batch["gt_cell"][0].tolist()
        raster = batch["raster"][0].double()
        used = raster.flatten(1).any(1)
        m = raster[used] * 2 - 1
        yaw = 2 * math.pi * k / 32  # the target's yaw bin (the true yaw rounded to the bin)
        t = _oracle_template(method.raster, sample.pose2.x, sample.pose2.y, yaw, 10, used)
        vol = log_softmax_volume(correlate_fft(m[None], rotate_templates(t[None], 32)))
        _, arg = expectation_pose(vol, 0)
        assert arg[0].tolist() == [k, row, col]
        assert abs(((sample.pose2.yaw - yaw) + math.pi) % (2 * math.pi) - math.pi) <= math.pi / 32 + 1e-9


def test_training_crop_offsets_follow_the_torch_seed():
    """The random crop offsets of ``collate`` come from torch's seeded generator (the engine seeds it from
    ``--seed``): the same seed gives the same targets, another seed other ones."""
    from maploc_bev_osm.method import BEVOSMConfig, BEVOSMMethod
    from maploc_bev_osm.synthetic import SyntheticBEVOSM

    method = BEVOSMMethod(BEVOSMConfig())
    method.raster = RASTER
    data = SyntheticBEVOSM(None, "train")
    samples = [data[i] for i in range(len(data))]

    def targets(seed: int) -> list[list[int]]:
        torch.manual_seed(seed)
        return method.collate(samples)["gt_cell"].tolist() + method.collate(samples)["gt_cell"].tolist()

    assert targets(3) == targets(3)
    assert targets(3) != targets(4)


@pytest.mark.parametrize("size", [63, 64])
def test_cell_centres_round_trip(size):
    from maploc_bev_osm.data import cell_of

    for row, col in [(0, 0), (size - 1, 3), (17, size // 2)]:
        x, y = xy_of(row, col, 12.5, -3.0, size, 0.5)
        assert cell_of(x, y, 12.5, -3.0, size, 0.5) == pytest.approx((row, col))


def test_rot90_augmentation_keeps_the_target_where_the_oracle_peaks():
    """With ``search.rot90`` the turned crop, target cell and target yaw still agree with the oracle."""
    from maploc.config import apply_overrides
    from maploc_bev_osm.method import BEVOSMConfig, BEVOSMMethod
    from maploc_bev_osm.synthetic import SyntheticBEVOSM

    cfg = apply_overrides(BEVOSMConfig(), ["search.crop_m=48.0", "search.max_offset_m=10.0",
                                           "search.num_yaws_train=32", "search.rot90=true"])  # fmt: skip
    method = BEVOSMMethod(cfg)
    method.raster = RASTER
    data = SyntheticBEVOSM(None, "train")
    p = data[3].pose2
    sample = attrs.evolve(data[3], pose2=Pose2(x=math.floor(p.x) + 0.5, y=math.floor(p.y) + 0.5, yaw=p.yaw))
    turns = set()
    for _ in range(12):
        batch = method.collate([sample])
        k, row, col = batch["gt_cell"][0].tolist()
        raster = batch["raster"][0].double()
        m = raster[RASTER_USED] * 2 - 1
        # the oracle template is the same whatever the turn: the camera sees the same world
        t = _oracle_template(RASTER, sample.pose2.x, sample.pose2.y, sample.pose2.yaw, 10, RASTER_USED)
        vol = log_softmax_volume(correlate_fft(m[None], rotate_templates(t[None], 32)))
        _, arg = expectation_pose(vol, 0)
        assert arg[0].tolist() == [k, row, col]
        turns.add(round(((2 * math.pi * k / 32 - sample.pose2.yaw) % (2 * math.pi)) / (math.pi / 2)) % 4)
    assert len(turns) >= 3  # the turns are drawn

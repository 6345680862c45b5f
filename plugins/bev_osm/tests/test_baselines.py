"""Each baseline and the evaluation prior do what they are named for (:mod:`maploc_bev_osm.baselines`,
:func:`maploc_bev_osm.data.sequence_prior_offset`, the noisy odometry of ``fused``), on synthetic rasters whose
answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maploc_bev_osm.baselines import admissible_cells, admissible_draw, admissible_recall, road_direction_yaw
from maploc_bev_osm.data import cell_of, sequence_prior_offset, xy_of
from maploc_osm import CLASS_NAMES

ROAD = CLASS_NAMES.index("road")


def _crop_with_road(size: int, yaw: float, width: float = 1.5) -> np.ndarray:
    """A crop with one straight road of heading ``yaw`` (radians from east) through the centre."""
    crop = np.zeros((len(CLASS_NAMES), size, size), np.uint8)
    mid = size / 2 - 0.5
    r, c = np.mgrid[0:size, 0:size]
    x, y = c - mid, -(r - mid)  # cell offsets east and north
    dist = np.abs(-math.sin(yaw) * x + math.cos(yaw) * y)  # distance to the line through the centre
    crop[ROAD] = dist <= width
    return crop


def _yaw_error_deg(a: float, b: float) -> float:
    return abs(math.degrees((a - b + math.pi) % (2 * math.pi) - math.pi))


def _assert_yaw_along_the_road(direction) -> None:
    """``direction(crop)`` gives the heading of one straight road, choosing the eastward direction."""
    for deg in (0.0, 20.0, 45.0, 70.0, 90.0, 120.0, 160.0):
        crop = _crop_with_road(33, math.radians(deg))
        want = math.radians(deg if deg <= 90.0 else deg - 180.0)  # the eastward one of the two directions
        got = direction(crop)
        assert got is not None and _yaw_error_deg(got, want) < 3.0, (deg, got)


def test_road_direction_is_the_direction_of_a_straight_road() -> None:
    _assert_yaw_along_the_road(road_direction_yaw)
    empty = np.zeros((len(CLASS_NAMES), 9, 9), np.uint8)
    assert road_direction_yaw(empty) is None  # no road: no direction (the variant then draws a random yaw)
    # a road offset from the centre: the direction of the road nearest the prior, not the other one
    crop = _crop_with_road(33, 0.0)
    crop[ROAD, :, 30] = 1  # a north-south road 14 cells east
    assert _yaw_error_deg(road_direction_yaw(crop), 0.0) < 3.0


def test_the_road_direction_check_fails_on_a_broken_baseline() -> None:
    """The check above is not vacuous: a direction read off the transposed raster (rows for columns) fails it."""
    with pytest.raises(AssertionError):
        _assert_yaw_along_the_road(lambda crop: road_direction_yaw(np.ascontiguousarray(crop.transpose(0, 2, 1))))
    with pytest.raises(ValueError, match="class crop"):
        road_direction_yaw(np.zeros((3, 9, 9), np.uint8))  # not a class raster


def test_sequence_prior_is_shared_within_a_sequence_and_differs_across() -> None:
    # no drift: one constant offset per sequence
    a = [sequence_prior_offset("seq-a", i, 16.0, drift_step_m=0.0) for i in range(50)]
    assert all(o == a[0] for o in a)
    b = sequence_prior_offset("seq-b", 0, 16.0, drift_step_m=0.0)
    assert math.hypot(a[0][0] - b[0], a[0][1] - b[1]) > 0.1
    # drift: consecutive frames differ by about one step (0.5 m), far less than independent uniform draws would
    w = np.array([sequence_prior_offset("seq-a", i, 16.0, drift_step_m=0.5, drift_max_m=4.0) for i in range(300)])
    steps = np.abs(np.diff(w, axis=0))
    assert 0 < np.median(steps) < 1.0 and steps.max() < 3.0
    assert np.ptp(w, axis=0).max() > 1.0  # it does drift
    assert np.ptp(w, axis=0).max() <= 8.0 + 1e-9  # within the walk's bound (2 x 4 m)
    # the order of the queries does not matter
    assert sequence_prior_offset("seq-a", 123, 16.0) == tuple(w[123])
    # always inside the prior's square, also with a bound larger than half the square
    offs = np.array([sequence_prior_offset(f"s{k}", i, 6.0, drift_step_m=3.0, drift_max_m=50.0)
                     for k in range(40) for i in (0, 7, 500)])  # fmt: skip
    assert np.abs(offs).max() <= 6.0
    # different sequences: independent base offsets spread over the square
    bases = np.array([sequence_prior_offset(f"s{k}", 0, 16.0) for k in range(200)])
    assert np.abs(bases).max() > 8.0 and abs(bases.mean()) < 2.0


def test_admissible_draws_lie_on_road_cells_and_the_expected_recall_is_exact() -> None:
    size, cell = 21, 1.0
    crop = np.zeros((len(CLASS_NAMES), size, size), np.uint8)
    crop[ROAD, 10, :] = 1  # an east-west road through the centre row
    crop[ROAD, 2, :] = 1  # a road outside the 6 m square: never drawn
    rows, cols = admissible_cells(crop, 6.0, cell)
    assert set(rows.tolist()) == {10} and sorted(cols.tolist()) == list(range(4, 17))  # 13 cells in the square
    draws = np.array([admissible_draw(crop, 0.0, 0.0, cell, 6.0, f"q{k}") for k in range(2000)])
    r, c = cell_of(draws[:, 0], draws[:, 1], 0.0, 0.0, size, cell)
    assert np.all(crop[ROAD, np.rint(r).astype(int), np.rint(c).astype(int)] == 1)
    assert np.all(np.abs(r - 10) < 1e-9) and np.abs(draws[:, 0]).max() <= 6.0
    assert np.abs(draws[:, 2]).max() <= math.pi and np.ptp(draws[:, 2]) > 5.0  # uniform yaw
    truth = xy_of(10.0, 10.0, 0.0, 0.0, size, cell)  # the truth on the road, at the centre
    exact = admissible_recall(crop, 0.0, 0.0, cell, 6.0, truth, (1.0, 3.0, 5.0))
    assert exact == pytest.approx([100 * 3 / 13, 100 * 7 / 13, 100 * 11 / 13])
    hit = np.hypot(draws[:, 0] - truth[0], draws[:, 1] - truth[1])
    assert float(np.mean(hit <= 3.0)) * 100 == pytest.approx(exact[1], abs=4.0)
    # no road in the square: uniform over the square's cells (as the core's chance row)
    crop[ROAD, 10, :] = 0
    rows, cols = admissible_cells(crop, 6.0, cell)
    assert len(rows) == 13 * 13


def _method(*overrides: str):
    from maploc.config import apply_overrides
    from maploc_bev_osm.method import BEVOSMConfig, BEVOSMMethod

    tiny = ["model.cell_m=2.0", "model.bev_depth_m=8.0", "search.crop_m=32.0", "search.max_offset_m=6.0",
            "search.num_yaws_eval=8", "fusion.frames=3", "split.held_out=false", *overrides]  # fmt: skip
    return BEVOSMMethod(apply_overrides(BEVOSMConfig(), tiny))


def test_fused_prior_with_exact_odometry_and_a_constant_offset_is_truth_plus_the_offset() -> None:
    from maploc.api import SampleMeta
    from maploc_bev_osm.synthetic import SyntheticBEVOSM

    method = _method("search.prior_drift_m=0", "fusion.odometry_noise_m=0", "fusion.odometry_noise_deg=0")
    method.model = method.configure_model().eval()
    data = SyntheticBEVOSM(None, "query", image_height=48)
    method.build_map(data)
    queries = [data[i] for i in range(4)]
    estimates = method.localize(queries)
    variants = method.variants([SampleMeta.of(q) for q in queries], estimates)
    ox, oy = sequence_prior_offset(queries[0].sequence, 0, 6.0, drift_step_m=0.0)
    for q, e, f in zip(queries, estimates, variants["fused_prior"].estimates):
        assert (e.extras["prior_x_m"], e.extras["prior_y_m"]) == pytest.approx((q.pose2.x + ox, q.pose2.y + oy))
        assert (f.pose2.x, f.pose2.y) == pytest.approx((q.pose2.x + ox, q.pose2.y + oy), abs=1e-6)


def test_fusion_odometry_is_noisy_drifts_and_is_reproducible() -> None:
    from maploc.types import Pose2

    # a car driving east 5 m per frame, turning left 10 deg per frame
    poses, x, y, yaw = [], 0.0, 0.0, 0.0
    for _ in range(4):
        poses.append(Pose2(x=x, y=y, yaw=yaw))
        x, y, yaw = x + 5 * math.cos(yaw), y + 5 * math.sin(yaw), yaw + math.radians(10)
    frames = [{"pose2": p, "t": float(i)} for i, p in enumerate(poses)]
    last = poses[-1]
    c, s = math.cos(last.yaw), math.sin(last.yaw)
    truth = [(c * (p.x - last.x) + s * (p.y - last.y), -s * (p.x - last.x) + c * (p.y - last.y), p.yaw - last.yaw)
             for p in poses]  # fmt: skip
    exact = _method("fusion.odometry_noise_m=0", "fusion.odometry_noise_deg=0")._relative_poses("s", frames)
    assert np.allclose(exact, truth, atol=1e-9)
    noisy = _method()  # default: odometry noise on
    assert noisy.config.fusion.odometry_noise_m > 0 and noisy.config.fusion.odometry_noise_deg > 0
    rel = noisy._relative_poses("s", frames)
    assert rel == noisy._relative_poses("s", frames) and rel[-1] == (0.0, 0.0, 0.0)
    assert not np.allclose(rel, truth, atol=1e-3)
    # drift: the error of a frame's relative position grows with the steps back (mean over sequences)
    err = np.mean([[math.hypot(a[0] - b[0], a[1] - b[1]) for a, b in zip(noisy._relative_poses(f"s{k}", frames), truth)]
                   for k in range(300)], axis=0)  # fmt: skip
    assert err[0] > err[1] > err[2] > 0.0 and err[3] == 0.0


def test_admissible_baseline_with_an_exact_prior() -> None:
    """A zero half-side (``search.max_offset_m=0``): no cell centre in the square; the draw is the prior itself."""
    crop = np.zeros((len(CLASS_NAMES), 8, 8), np.uint8)
    crop[ROAD] = 1
    assert len(admissible_cells(crop, 0.0, 1.0)[0]) == 0
    x, y, _ = admissible_draw(crop, 3.0, 4.0, 1.0, 0.0, "q")
    assert (x, y) == (3.0, 4.0)
    assert admissible_recall(crop, 3.0, 4.0, 1.0, 0.0, (3.0, 6.0), (1.0, 3.0)) == [0.0, 100.0]

"""maploc.data.split.SpatialSplit: the guard property on random maps, the defaults, errors, determinism, saving.

The guard property is checked against an independent distance (clamping a point into a rectangle, not the
module's ``max(x0 - x, x - x1, 0)``) and against points sampled inside the blocks, corners included.
``test_the_property_checks_can_fail`` shows that the same checks find a leak when the guard is too small.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from maploc.data.split import OUTSIDE, SPLIT_CODES, SPLIT_NAMES, SpatialSplit
from maploc.errors import ConfigError, DataError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 1e-6  # metres: rounding of block edges (x0 + col * width) against floor((x - x0) / width)


def rect_distance(xy: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """``(N, R)`` distance from each point to each rectangle, by clamping the point into the rectangle."""
    cx = np.clip(xy[:, None, 0], rects[None, :, 0], rects[None, :, 2])
    cy = np.clip(xy[:, None, 1], rects[None, :, 1], rects[None, :, 3])
    return np.hypot(xy[:, None, 0] - cx, xy[:, None, 1] - cy)


def points_in(rects: np.ndarray, rng: np.random.Generator, per_rect: int = 30) -> np.ndarray:
    """Random points in each rectangle plus its four corners and edge midpoints."""
    out = []
    for x0, y0, x1, y1 in rects:
        u = rng.random((per_rect, 2))
        out.append(np.stack([x0 + u[:, 0] * (x1 - x0), y0 + u[:, 1] * (y1 - y0)], axis=1))
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        out.append(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1], [xm, y0], [xm, y1], [x0, ym], [x1, ym]]))
    return np.concatenate(out) if out else np.zeros((0, 2))


def leaks(split: SpatialSplit, guard: float, rng: np.random.Generator, near: str = "train", far: str = "test") -> int:
    """How many (``near`` allowed point, ``far`` block point) pairs are closer than ``guard`` (both checks)."""
    grid = split.candidates(near, step_m=max(split.block_width_m, split.block_height_m) / 25.0)
    x0, y0, x1, y1 = split.region
    random = rng.uniform((x0, y0), (x1, y1), size=(3000, 2))
    near_xy = np.concatenate([grid, random[split.allowed(random, near)]])
    rects = split.rects(far)
    exact = int((rect_distance(near_xy, rects) < guard - EPS).sum()) if len(rects) else 0
    far_xy = points_in(rects, rng)
    far_xy = far_xy[split.split_of(far_xy) == SPLIT_CODES[far]] if len(far_xy) else far_xy
    d = np.hypot(*(near_xy[:, None] - far_xy[None]).transpose(2, 0, 1)) if len(far_xy) else np.zeros((0,))
    return exact + int((d < guard - EPS).sum())


@st.composite
def split_args(draw):
    block = draw(st.floats(20.0, 800.0))
    cols, rows = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    assume(rows * cols >= 4)
    margin = draw(st.sampled_from([0.0, draw(st.floats(0.0, 60.0))]))
    x_min, y_min = draw(st.floats(-1e4, 1e4)), draw(st.floats(-1e4, 1e4))
    width = cols * block * draw(st.floats(0.85, 1.15)) + 2 * margin
    height = rows * block * draw(st.floats(0.85, 1.15)) + 2 * margin
    return dict(
        extent=(x_min, y_min, x_min + width, y_min + height),
        block_size_m=block,
        success_radius_m=draw(st.floats(0.0, 50.0)),
        footprint_m=draw(st.floats(0.0, 100.0)),
        val_fraction=draw(st.sampled_from([0.0, 0.1, 0.2])),
        test_fraction=draw(st.sampled_from([0.1, 0.2, 0.3])),
        seed=draw(st.integers(0, 2**31 - 1)),
        margin_m=margin,
    )


def build(args: dict) -> SpatialSplit:
    try:
        return SpatialSplit.build(args["extent"], **{k: v for k, v in args.items() if k != "extent"})
    except DataError:  # too few blocks for the fractions (e.g. 2 x 2 with val and test): not this test's subject
        assume(False)
        raise


@SETTINGS
@given(split_args(), st.integers(0, 2**32 - 1))
def test_train_and_val_keep_the_guard_from_test_and_train_from_val(args, seed):
    split = build(args)
    rng = np.random.default_rng(seed)
    guard = args["success_radius_m"] + args["footprint_m"]
    assert split.guard_m == pytest.approx(guard) and split.val_guard_m == split.guard_m
    assert leaks(split, guard, rng, "train", "test") == 0
    assert leaks(split, guard, rng, "val", "test") == 0
    assert leaks(split, guard, rng, "train", "val") == 0
    # test samples are those inside test blocks (no guard); val samples those inside val blocks, off the test guard
    pts = rng.uniform(split.region[:2], split.region[2:], size=(500, 2))
    np.testing.assert_array_equal(split.allowed(pts, "test"), split.split_of(pts) == SPLIT_CODES["test"])
    expected_val = (split.split_of(pts) == SPLIT_CODES["val"]) & (rect_distance(pts, split.rects("test")).min(
        axis=1, initial=np.inf) >= guard - EPS)
    np.testing.assert_array_equal(split.allowed(pts, "val"), expected_val)
    # an allowed train point is in a train block and the module's distance agrees with the clamped one
    train = split.allowed(pts, "train")
    assert (split.split_of(pts[train]) == SPLIT_CODES["train"]).all()
    for name in SPLIT_NAMES:
        rects = split.rects(name)
        expected = rect_distance(pts, rects).min(axis=1) if len(rects) else np.full(len(pts), np.inf)
        np.testing.assert_allclose(split.distance_to(pts, name), expected, atol=1e-9)


@SETTINGS
@given(split_args(), st.floats(0.0, 60.0))
def test_an_explicit_guard_below_success_plus_footprint_is_refused(args, extra):
    need = args["success_radius_m"] + args["footprint_m"]
    assume(need > 1e-3)
    with pytest.raises(ConfigError, match=r"guard_m .* is below success_radius_m \+ footprint_m"):
        SpatialSplit.build(args["extent"], **{k: v for k, v in args.items() if k != "extent"}, guard_m=need * 0.99)
    kw = {k: v for k, v in args.items() if k != "extent"}
    try:
        split = SpatialSplit.build(args["extent"], **kw, guard_m=need + extra)
    except DataError:
        return
    assert split.guard_m == need + extra


def test_the_guard_message_says_both_values_and_the_fix():
    with pytest.raises(ConfigError) as e:
        SpatialSplit.build((0, 0, 1000, 1000), block_size_m=200, success_radius_m=25, footprint_m=10, guard_m=10)
    msg = str(e.value)
    assert "\n" not in msg
    assert "guard_m (10 m)" in msg and "25 + 10 = 35 m" in msg and "set it >= 35" in msg


def test_the_property_checks_can_fail():
    """The checks above find leaks when the guard is smaller than the radius they check (here guard 0)."""
    rng = np.random.default_rng(0)
    split = SpatialSplit.build((0, 0, 1000, 1000), block_size_m=200, success_radius_m=0, val_fraction=0.1)
    assert split.guard_m == 0
    assert leaks(split, 25.0, rng, "train", "test") > 0
    assert leaks(split, 25.0, rng, "val", "test") > 0
    assert leaks(split, 25.0, rng, "train", "val") > 0
    assert leaks(split, 0.0, rng, "train", "test") == 0
    # a smaller val guard (allowed) leaks train samples toward val blocks, never toward test blocks
    split = SpatialSplit.build((0, 0, 1000, 1000), block_size_m=200, success_radius_m=25, val_guard_m=5)
    assert leaks(split, 25.0, rng, "train", "val") > 0 and leaks(split, 25.0, rng, "train", "test") == 0


@SETTINGS
@given(split_args())
def test_same_seed_same_assignment_other_seeds_usually_differ(args):
    a, b = build(args), build(args)
    assert a == b and np.array_equal(a.assignment, b.assignment)
    n = a.rows * a.cols
    counts = a.counts()
    assert counts["test"] == max(1, round(args["test_fraction"] * n))
    assert counts["val"] == (max(1, round(args["val_fraction"] * n)) if args["val_fraction"] else 0)
    assert counts["train"] == n - counts["test"] - counts["val"]
    others = [build({**args, "seed": args["seed"] + k}).assignment for k in range(1, 9)]
    # 8 other seeds all giving this exact assignment: only when the grid allows very few assignments
    if math.comb(n, counts["test"]) * math.comb(n - counts["test"], counts["val"]) >= 20:
        assert any(not np.array_equal(o, a.assignment) for o in others)


def test_held_out_blocks_do_not_touch_while_possible():
    split = SpatialSplit.build((0, 0, 2000, 2000), block_size_m=200, success_radius_m=25, val_fraction=0.1,
                               test_fraction=0.1)
    held = np.argwhere(split.assignment > 0)
    assert len(held) == 20 and split.counts() == {"train": 80, "val": 10, "test": 10}
    for i in range(len(held)):
        for j in range(i + 1, len(held)):
            assert np.abs(held[i] - held[j]).max() > 1, "held-out blocks touch"
    # 2 x 2 blocks: both held-out blocks must touch; the assignment still completes
    small = SpatialSplit.build((0, 0, 400, 400), block_size_m=200, success_radius_m=0, val_fraction=0.25,
                               test_fraction=0.25)
    assert small.counts() == {"train": 2, "val": 1, "test": 1}


@SETTINGS
@given(split_args())
def test_to_dict_from_dict_round_trip_through_json(args):
    split = build(args)
    again = SpatialSplit.from_dict(json.loads(json.dumps(split.to_dict())))
    assert again == split and again.describe() == split.describe()
    pts = np.random.default_rng(0).uniform(np.array(split.region[:2]) - 50, np.array(split.region[2:]) + 50, (300, 2))
    for name in SPLIT_NAMES:
        np.testing.assert_array_equal(again.allowed(pts, name), split.allowed(pts, name))
    other = SpatialSplit.from_dict({**split.to_dict(), "seed": split.seed + 1})
    assert other != split  # equality sees every field


def test_from_dict_rejects_what_is_not_a_saved_split():
    d = SpatialSplit.build((0, 0, 1000, 1000), block_size_m=250, success_radius_m=25).to_dict()
    with pytest.raises(DataError, match="not a saved SpatialSplit"):
        SpatialSplit.from_dict({**d, "format": "other"})
    with pytest.raises(DataError, match="malformed"):
        SpatialSplit.from_dict({k: v for k, v in d.items() if k != "guard_m"})
    with pytest.raises(DataError, match="malformed"):
        SpatialSplit.from_dict({**d, "rows": 3})
    with pytest.raises(DataError, match="codes"):
        SpatialSplit.from_dict({**d, "assignment": [[5] * d["cols"]] * d["rows"]})
    with pytest.raises(ConfigError, match="below success_radius_m"):
        SpatialSplit.from_dict({**d, "guard_m": 3.0})


def test_split_of_codes_names_and_outside():
    split = SpatialSplit.build((0, 0, 1000, 600), block_size_m=200, success_radius_m=10, footprint_m=5, margin_m=50)
    assert split.region == (50.0, 50.0, 950.0, 550.0) and (split.rows, split.cols) == (2, 4)
    assert split.block_width_m == 225 and split.block_height_m == 250
    pts = np.array([[60.0, 60.0], [10.0, 300.0], [949.0, 549.0], [500.0, 551.0], [950.0, 550.0]])
    codes = split.split_of(pts)
    assert codes.dtype == np.int8 and codes[1] == codes[3] == OUTSIDE
    assert codes[0] == split.assignment[0, 0] and codes[2] == codes[4] == split.assignment[1, 3]
    names = split.split_of(pts, names=True)
    assert names[1] == "" and names[0] == SPLIT_NAMES[codes[0]]
    assert split.split_of(np.array([60.0, 60.0]))[0] == codes[0]  # a single point
    assert split.split_of(np.zeros((0, 2))).shape == (0,)
    for name in SPLIT_NAMES:
        assert not split.allowed(pts[[1, 3]], name).any()  # outside the region: no split
        np.testing.assert_array_equal(split.mask(pts, name, guarded=False), codes == SPLIT_CODES[name])
        np.testing.assert_array_equal(split.mask(pts, name), split.allowed(pts, name))
    with pytest.raises(ValueError, match="unknown split"):
        split.allowed(pts, "query")
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        split.split_of(np.zeros((3, 3)))
    # candidates: grid points, all allowed; rects tile the region
    cand = split.candidates("train", 10.0)
    assert len(cand) and split.allowed(cand, "train").all()
    areas = sum(((r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])).sum() for r in map(split.rects, SPLIT_NAMES))
    assert areas == pytest.approx(900 * 500)
    line = split.describe()
    assert "\n" not in line and "2 x 4 blocks of 225 x 250 m" in line and "guard 15.0 m" in line


def test_from_points_takes_the_bounding_box_and_holds_out_occupied_blocks():
    # an L-shaped route: most blocks of its bounding box are empty
    t = np.linspace(0, 1, 400)
    route = np.concatenate([np.stack([t * 2000, np.zeros_like(t)], 1), np.stack([np.full_like(t, 2000), t * 2000], 1)])
    for seed in range(10):
        split = SpatialSplit.from_points(route, block_size_m=200, success_radius_m=25, seed=seed)
        assert split.region == pytest.approx((-1, -1, 2001, 2001))
        codes = split.split_of(route)
        for name in ("val", "test"):
            for r0, c0 in np.argwhere(split.assignment == SPLIT_CODES[name]):
                in_block = (split.split_of(route) >= 0) & np.all(
                    np.floor((route - split.region[:2]) / [split.block_width_m, split.block_height_m]) == [c0, r0], 1)
                assert in_block.any(), f"{name} block ({r0}, {c0}) holds no route point"
        assert (codes == SPLIT_CODES["test"]).any() and split.allowed(route, "train").any()
    # a straight north-south route: the pad keeps the region non-empty (one column of blocks)
    line = np.stack([np.zeros(50), np.linspace(0, 3000, 50)], 1)
    split = SpatialSplit.from_points(line, block_size_m=300, success_radius_m=25)
    assert split.cols == 1 and split.rows == 10
    with pytest.raises(DataError, match="at least one position"):
        SpatialSplit.from_points(np.zeros((0, 2)), block_size_m=300, success_radius_m=25)
    with pytest.raises(DataError, match="only 2 occupied block"):  # 2 occupied blocks of 100: no train left
        SpatialSplit.from_points([[0, 0], [1, 1], [1000, 1000]], block_size_m=100, success_radius_m=25, pad_m=0)
    assert SpatialSplit.from_points([[0, 0], [1, 1], [1000, 1000]], block_size_m=100, success_radius_m=25,
                                    val_fraction=0).counts() == {"train": 99, "val": 0, "test": 1}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(block_size_m=0), ConfigError, "block_size_m must be > 0"),
        (dict(block_size_m=float("nan")), ConfigError, "block_size_m must be > 0"),
        (dict(success_radius_m=-1), ConfigError, "success_radius_m must be >= 0"),
        (dict(footprint_m=-1), ConfigError, "footprint_m must be >= 0"),
        (dict(margin_m=-5), ConfigError, "margin_m must be >= 0"),
        (dict(test_fraction=0), ConfigError, "fractions"),
        (dict(val_fraction=1.0), ConfigError, "fractions"),
        (dict(val_fraction=0.5, test_fraction=0.5), ConfigError, "fractions"),
        (dict(val_guard_m=-1), ConfigError, "val_guard_m must be >= 0"),
        (dict(margin_m=500), DataError, "too small for a margin of 500 m"),
        (dict(block_size_m=1000), DataError, "holds only 1 block"),
    ],
)
def test_bad_values_raise_one_line_errors(kwargs, error, match):
    args = dict(block_size_m=200.0, success_radius_m=25.0) | kwargs
    with pytest.raises(error, match=match) as e:
        SpatialSplit.build((0, 0, 1000, 1000), **args)
    assert "\n" not in str(e.value)


def test_import_stays_free_of_torch():
    code = "import sys, maploc.data.split; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_outside_admits_training_positions_beyond_the_region_only_under_the_guards(seed):
    """``allowed(xy, "train", outside=True)``: positions in no block (extra training routes beyond the map frames'
    bounding box) are admitted when strictly farther than the guards from every test and val block; inside the
    region nothing changes; other splits refuse the flag."""
    rng = np.random.default_rng(seed)
    map_xy = np.stack([np.linspace(0, 600, 150), rng.uniform(-5, 5, 150)], axis=1)
    split = SpatialSplit.from_points(map_xy, block_size_m=60, success_radius_m=25, footprint_m=0, seed=seed % 7)
    x0, y0, x1, y1 = split.region
    pts = rng.uniform([x0 - 200, y0 - 200], [x1 + 200, y1 + 200], size=(2000, 2))
    plain, wide = split.allowed(pts, "train"), split.allowed(pts, "train", outside=True)
    inside = split.split_of(pts) != OUTSIDE
    np.testing.assert_array_equal(wide[inside], plain[inside])
    out = ~inside
    expected = out & (split.distance_to(pts, "test") > split.guard_m) & (split.distance_to(pts, "val") > split.val_guard_m)
    np.testing.assert_array_equal(wide[out], expected[out])
    assert not plain[out].any() and expected.any()  # without the flag nothing outside is admitted
    with pytest.raises(ValueError, match="train split only"):
        split.allowed(pts, "val", outside=True)

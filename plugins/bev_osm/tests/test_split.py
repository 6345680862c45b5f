"""The spatial split of bev_osm (core :class:`maploc.data.split.SpatialSplit` over the map raster): training views
stay out of the guard bands, ``split.json`` is saved for the core, and not saved when there is nothing held out
(``split.held_out=false``, or a checkpoint evaluated on a map it was not trained on)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from maploc.api import RunContext
from maploc.config import apply_overrides
from maploc.data.split import SpatialSplit
from maploc_bev_osm.method import MAP_FILE, BEVOSMConfig, BEVOSMMethod
from maploc_bev_osm.synthetic import SyntheticBEVOSM, SyntheticOptions

TINY = ["model.cell_m=2.0", "model.bev_depth_m=8.0", "search.crop_m=32.0", "search.max_offset_m=4.0",
        "split.block_m=40.0", "split.seed=8"]  # fmt: skip


class _Engine:
    """Records what the method hands to ``engine.fit``."""

    def fit(self, method, train_data, val_data=None):
        self.train_data = train_data
        return "fitted"


def _method(*extra: str) -> BEVOSMMethod:
    method = BEVOSMMethod(apply_overrides(BEVOSMConfig(), [*TINY, *extra]))
    method.model = method.configure_model()
    return method


def _data(split: str) -> SyntheticBEVOSM:
    return SyntheticBEVOSM(None, split, options=SyntheticOptions(frames=20))


def test_training_views_keep_out_of_the_guard_bands(tmp_path):
    method, engine, data = _method(), _Engine(), _data("train")
    assert method.fit(engine, data, None, RunContext(run_dir=tmp_path)) == "fitted"
    split = method.split
    # footprint: half-diagonal of the 32 m crop plus the 4 m offset; success radius 5 m (recall_5m)
    assert split.footprint_m == pytest.approx((16 + 4) * math.sqrt(2)) and split.success_radius_m == 5.0
    kept = [engine.train_data[i].pose2 for i in range(len(engine.train_data))]
    xy = np.array([[p.x, p.y] for p in kept])
    assert len(kept) == method.train_views == 5 and method.train_candidates == 20
    assert (split.distance_to(xy, "test") >= split.guard_m).all()
    assert (split.distance_to(xy, "val") >= split.val_guard_m).all()
    everything = np.array([[data.metadata(i).pose2.x, data.metadata(i).pose2.y] for i in range(len(data))])
    assert (split.distance_to(everything, "test") < split.guard_m).sum() >= 10  # the guard did remove views
    assert json.loads((tmp_path / MAP_FILE).read_text())["georef"]  # the map it trained on


def test_no_split_without_held_out_blocks(tmp_path):
    method, engine = _method("split.held_out=false"), _Engine()
    method.fit(engine, _data("train"), None, RunContext(run_dir=tmp_path))
    assert len(engine.train_data) == 20 and method.split is None
    (tmp_path / "split.json").write_text("{}")  # left by an earlier run into the same folder
    method.build_map(_data("map"), RunContext(run_dir=tmp_path))
    assert not (tmp_path / "split.json").exists()


def test_split_json_is_saved_and_rebuilt_for_the_same_map_only(tmp_path):
    train_run, same, other = tmp_path / "train", tmp_path / "same", tmp_path / "other"
    for d in (train_run, same, other):
        d.mkdir()
    method = _method()
    method.fit(_Engine(), _data("train"), None, RunContext(run_dir=train_run))
    method.build_map(_data("map"), RunContext(run_dir=train_run))
    saved = SpatialSplit.from_dict(json.loads((train_run / "split.json").read_text()))
    assert saved == method.split
    # `maploc eval --checkpoint` on the same map: a fresh method rebuilds the very same split
    _method().build_map(_data("map"), RunContext(run_dir=same, source_run_dir=train_run))
    assert (same / "split.json").read_text() == (train_run / "split.json").read_text()
    # ... on another map (another georeference in the training run's bev_osm_map.json): every query is scored
    record = json.loads((train_run / MAP_FILE).read_text())
    record["georef"]["origin_lat"] += 0.5
    (train_run / MAP_FILE).write_text(json.dumps(record))
    again = _method()
    again.build_map(_data("map"), RunContext(run_dir=other, source_run_dir=train_run))
    assert again.split is None and not (other / "split.json").exists()


def test_val_region_scores_the_val_block_queries_only(tmp_path):
    """``python -m maploc_bev_osm.val_region RUN``: the run's predictions, scored on the queries in its val blocks."""
    import yaml

    from maploc.evaluation.scoring import Manifest, write_run_predictions
    from maploc.types import Pose2, PoseEstimate
    from maploc_bev_osm.val_region import main, score_val_region

    queries, maps = _data("query"), _data("map")
    metas = [queries.metadata(i) for i in range(len(queries))]  # x = -40 .. 36 m, y = 1.5 m
    assignment = np.zeros((5, 5), np.int8)
    assignment[2, 1], assignment[2, 3] = 1, 2  # val: x in [-60, -20) m; test: x in [20, 60) m
    split = SpatialSplit(region=(-100, -100, 100, 100), rows=5, cols=5, assignment=assignment, guard_m=5.0,
                         val_guard_m=5.0, success_radius_m=5.0)  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps(split.to_dict()))
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "bev_osm", "dataset": "bev-osm-synthetic",
                                                     "config": {"data": {"options": {"frames": 20}}}}))  # fmt: skip
    in_val = split.mask(np.array([[m.pose2.x, m.pose2.y] for m in metas]), "val")
    estimates = [PoseEstimate(pose2=Pose2(x=m.pose2.x + (0.0 if v else 10.0), y=m.pose2.y, yaw=m.pose2.yaw))
                 for m, v in zip(metas, in_val)]  # fmt: skip
    manifest = Manifest(family="se2", method="bev_osm", dataset="bev-osm-synthetic", num_queries=len(metas))
    write_run_predictions(run / "predictions", manifest, [m.name for m in metas],
                          [maps.metadata(i).name for i in range(len(maps))], estimates, {})  # fmt: skip
    result = score_val_region(run, say=lambda s: None)
    assert result.metrics["num_queries"] == int(in_val.sum()) == 5  # x = -40, -36, ..., -24
    assert result.metrics["recall_1m"] == 100.0  # the test-block queries (10 m off) are not among them
    assert result.metrics["num_queries_outside_val_region"] == 15
    assert "validation (for choosing defaults" in (run / "val_region" / "report.txt").read_text()
    assert main([str(tmp_path / "nothing")]) == 2

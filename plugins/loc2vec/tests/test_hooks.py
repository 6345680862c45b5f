"""The plugin's hooks: extra metrics from the estimates' extras, and the report section."""

from __future__ import annotations

import math

import pytest

from maploc.types import Camera, Pose2, PoseEstimate, Sample
from maploc_loc2vec import hooks


def _query(x: float, y: float) -> Sample:
    import torch

    return Sample(image=torch.zeros(3, 4, 4), camera=Camera.from_focal(1.0, 4, 4), pose2=Pose2(x=x, y=y, yaw=0.0))


def _estimate(learned, baseline, correct=True) -> PoseEstimate:
    return PoseEstimate(extras={"retrieved": [], "loc2vec": {
        "retrieved_xy": learned, "baseline_retrieved_xy": baseline, "triplet_correct": correct}})


def test_extra_metrics_count_hits_within_10_and_25_m():
    queries = [_query(0, 0), _query(100, 100), _query(200, 0), _query(300, 0)]
    estimates = [
        _estimate([[5, 0], [50, 0]], [[40, 0]] * 5),  # learned: top-1 within 10 m; baseline: miss
        _estimate([[200, 100], [120, 100], [1, 1], [1, 1], [100, 109]], [[120, 100]]),  # learned: 5th within 10 m
        _estimate([[300, 0]] * 4 + [[215, 0]], [[210, 0]], correct=False),  # 5th within 25 m; baseline top-1 10 m
        PoseEstimate.failed(),
    ]
    m = hooks.maploc_extra_metrics(family="retrieval", queries=queries, estimates=estimates, metrics={})
    assert m["recall_at_1_within_10m"] == 25.0
    assert m["recall_at_5_within_10m"] == 50.0
    assert m["recall_at_1_within_25m"] == 25.0
    assert m["recall_at_5_within_25m"] == 75.0
    assert m["baseline_recall_at_1_within_10m"] == 25.0
    assert m["baseline_recall_at_1_within_25m"] == 50.0
    assert m["triplet_accuracy"] == pytest.approx(100 * 2 / 3) and m["num_triplets"] == 3


def test_hooks_ignore_other_methods():
    other = [PoseEstimate(extras={"retrieved": ["a"]})]
    assert hooks.maploc_extra_metrics(family="retrieval", queries=[_query(0, 0)], estimates=other, metrics={}) is None
    assert hooks.maploc_extra_metrics(family="se2", queries=[], estimates=[], metrics={}) is None
    assert hooks.maploc_report_sections(run_dir=".", metrics={}, method_name="netvlad") is None


def test_report_section_is_a_learned_vs_baseline_table():
    queries = [_query(0, 0)]
    metrics = hooks.loc2vec_metrics(queries, [_estimate([[3, 0]], [[30, 0]])])
    (title, body), = hooks.maploc_report_sections(run_dir=".", metrics=metrics, method_name="loc2vec")
    assert "baseline" in title
    lines = body.splitlines()
    assert lines[1].startswith("loc2vec (learned)") and "100.0%" in lines[1]
    assert lines[2].startswith("raw-tile baseline") and lines[2].count("0.0%") == 4
    assert "100.0% (1 triplets)" in lines[3]
    assert math.isnan(hooks.loc2vec_metrics(queries, [PoseEstimate.failed()])["triplet_accuracy"])

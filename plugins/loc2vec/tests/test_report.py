"""Loc2Vec's own metrics (every method's recalls, index size, query time) and the report table."""

from __future__ import annotations

import math

import pytest

from maploc.api import SampleMeta
from maploc.types import Pose2, PoseEstimate
from maploc_loc2vec.report import format_table, loc2vec_metrics


def _query(x: float, y: float) -> SampleMeta:
    return SampleMeta(name="q", pose2=Pose2(x=x, y=y, yaw=0.0))


def _estimate(learned, raw, correct=True, seconds=(0.002, 0.001)) -> PoseEstimate:
    return PoseEstimate(extras={"retrieved": [], "loc2vec": {
        "retrieved_xy": {"learned": learned, "raw": raw},
        "seconds": {"learned": seconds[0], "raw": seconds[1]}, "triplet_correct": correct}})


def test_metrics_count_hits_within_10_and_25_m_per_method():
    queries = [_query(0, 0), _query(100, 100), _query(200, 0), _query(300, 0)]
    estimates = [
        _estimate([[5, 0], [50, 0]], [[40, 0]] * 5),  # learned: top-1 within 10 m; raw: miss
        _estimate([[200, 100], [120, 100], [1, 1], [1, 1], [100, 109]], [[120, 100]]),  # learned: 5th within 10 m
        _estimate([[300, 0]] * 4 + [[215, 0]], [[210, 0]], correct=False),  # 5th within 25 m; raw top-1 10 m
        PoseEstimate.failed(),
    ]
    info = {"learned": {"dim": 16, "headings": 8, "index_bytes": 512, "model_bytes": 100}}
    m = loc2vec_metrics(queries, estimates, info)
    assert m["recall_at_1_within_10m"] == m["learned_recall_at_1_within_10m"] == 25.0
    assert m["recall_at_5_within_10m"] == 50.0
    assert m["recall_at_1_within_25m"] == 25.0
    assert m["recall_at_5_within_25m"] == 75.0
    assert m["raw_recall_at_1_within_10m"] == 25.0
    assert m["raw_recall_at_1_within_25m"] == 50.0
    assert m["learned_query_ms"] == pytest.approx(2.0) and m["raw_query_ms"] == pytest.approx(1.0)
    assert m["learned_index_bytes"] == 512 and m["learned_headings"] == 8
    assert m["triplet_accuracy"] == pytest.approx(100 * 2 / 3) and m["num_triplets"] == 3
    assert "raw_pca_recall_at_1_within_10m" not in m  # a method no estimate carries is not reported


def test_table_has_a_row_per_method_with_size_time_and_recalls():
    metrics = loc2vec_metrics([_query(0, 0)], [_estimate([[3, 0]], [[30, 0]])],
                              {"learned": {"dim": 16, "headings": 8, "index_bytes": 2**20, "model_bytes": 2**21},
                               "raw": {"dim": 3072, "headings": 8, "index_bytes": 3 * 2**20, "model_bytes": 0}})
    lines = format_table(metrics).splitlines()
    assert "index MiB" in lines[0] and "ms/query" in lines[0] and "R@5 25m" in lines[0]
    assert lines[1].startswith("loc2vec, H headings") and "1.00" in lines[1] and "2.00" in lines[1]
    assert lines[1].count("100.0%") == 4
    assert lines[2].startswith("raw tiles, H headings") and " 3072 " in lines[2] and lines[2].count("0.0%") == 4
    assert "100.0% (1 triplets)" in lines[3]
    assert math.isnan(loc2vec_metrics([_query(0, 0)], [PoseEstimate.failed()])["triplet_accuracy"])

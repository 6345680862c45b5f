"""Tests of maploc.evaluation: hand-computed metrics of every family, evaluate(), the report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from maploc.evaluation import (
    FAMILIES,
    average_precision,
    evaluate,
    format_metrics_table,
    plot_error_cdf,
    plot_pr_curve,
    plot_recall_at_n,
    plot_se2_recall,
    pose6dof_metrics,
    precision_recall,
    retrieval_metrics,
    se2_metrics,
    sequence_metrics,
    write_metrics_json,
    write_report,
    write_results_csv,
)

approx = pytest.approx

# --------------------------------------------------------------------------------------------
# pose6dof
# --------------------------------------------------------------------------------------------


def test_pose6dof_hand_computed():
    # q0 within every threshold; q1 misses 1cm/1deg only; q2 (0.2 m, 3 deg) is within 25 cm but
    # not 2 deg, so recall_25cm_2deg needs both; q3 failed although its (ignored) errors are 0.
    m = pose6dof_metrics(
        rotation_error_deg=[0.5, 1.5, 3.0, 0.0],
        translation_error_m=[0.005, 0.015, 0.2, 0.0],
        success=[True, True, True, False],
        seconds=[0.1, 0.2, 0.3, 0.4],
    )
    assert m["num_queries"] == 4
    assert m["num_failed"] == 1
    # medians include the failure as +inf: sorted [0.5, 1.5, 3, inf] and [0.5, 1.5, 20, inf] cm
    assert m["median_rotation_deg"] == approx(2.25)
    assert m["median_translation_cm"] == approx(10.75)
    assert m["recall_1cm_1deg"] == approx(25.0)
    assert m["recall_2cm_2deg"] == approx(50.0)
    assert m["recall_5cm_1deg"] == approx(25.0)  # q1 is within 5 cm but 1.5 deg off
    assert m["recall_5cm_5deg"] == approx(50.0)
    assert m["recall_10cm_10deg"] == approx(50.0)
    assert m["recall_25cm_2deg"] == approx(50.0)
    assert m["recall_50cm_5deg"] == approx(75.0)
    assert m["recall_1m_5deg"] == approx(75.0)
    assert m["recall_5m_10deg"] == approx(75.0)
    assert m["time_per_query_ms"] == approx(250.0)
    assert list(m) == [
        "num_queries", "num_failed", "median_translation_cm", "median_rotation_deg", "recall_1cm_1deg",
        "recall_2cm_2deg", "recall_5cm_1deg", "recall_5cm_5deg", "recall_10cm_10deg", "recall_25cm_2deg",
        "recall_50cm_5deg", "recall_1m_5deg", "recall_5m_10deg", "time_per_query_ms",
    ]
    assert all(type(v) in (int, float) for v in m.values())
    assert type(m["num_queries"]) is int and type(m["recall_1cm_1deg"]) is float


def test_pose6dof_threshold_inclusive_and_nan_is_wrong():
    m = pose6dof_metrics([5.0, float("nan")], [0.05, 0.0], [True, True], [0.0, 0.0])
    assert m["recall_5cm_5deg"] == approx(50.0)  # 0.05 m / 5 deg counts; nan never does
    assert m["recall_2cm_2deg"] == approx(0.0)
    assert m["num_failed"] == 0  # a nan error is wrong, not a failure


def test_pose6dof_half_failed_median_is_inf():
    m = pose6dof_metrics([1.0, 2.0, 0.0, 0.0], [0.01, 0.02, 0.0, 0.0], [True, True, False, False], [1, 1, 1, 1])
    assert m["median_rotation_deg"] == math.inf
    assert m["median_translation_cm"] == math.inf
    assert m["num_failed"] == 2
    assert m["recall_5m_10deg"] == approx(50.0)
    assert m["time_per_query_ms"] == approx(1000.0)


def test_pose6dof_empty_and_shape_errors():
    m = pose6dof_metrics([], [], [], [])
    assert m["num_queries"] == 0 and m["recall_5cm_5deg"] == 0.0 and math.isnan(m["median_rotation_deg"])
    with pytest.raises(ValueError, match="translation_error_m"):
        pose6dof_metrics([1.0, 2.0], [0.1], [True, True], [0.0, 0.0])


# --------------------------------------------------------------------------------------------
# se2
# --------------------------------------------------------------------------------------------


def test_se2_hand_computed():
    m = se2_metrics(
        position_error_m=[0.5, 2.0, 4.0, 0.0],
        yaw_error_deg=[4.5, 0.5, 2.0, 0.0],
        success=[True, True, True, False],
        seconds=[0.01, 0.02, 0.03, 0.05],
    )
    assert m["num_queries"] == 4 and m["num_failed"] == 1
    assert (m["recall_1m"], m["recall_3m"], m["recall_5m"]) == approx((25.0, 50.0, 75.0))
    assert (m["recall_1deg"], m["recall_3deg"], m["recall_5deg"]) == approx((25.0, 50.0, 75.0))
    assert m["median_position_error_m"] == approx(3.0)  # [0.5, 2, 4, inf]
    assert m["median_yaw_error_deg"] == approx(3.25)  # [0.5, 2, 4.5, inf]
    assert m["time_per_query_ms"] == approx(25.0)
    assert set(m) == {
        "num_queries", "num_failed", "recall_1m", "recall_3m", "recall_5m", "recall_1deg", "recall_3deg",
        "recall_5deg", "median_position_error_m", "median_yaw_error_deg", "time_per_query_ms",
    }


# --------------------------------------------------------------------------------------------
# retrieval
# --------------------------------------------------------------------------------------------


def test_retrieval_recall_at_n_hand_computed():
    hits = np.zeros((4, 5), dtype=bool)
    hits[0, 0] = True  # found at rank 1
    hits[1, 2] = True  # found at rank 3
    # q2: nothing within the threshold
    hits[3, 0] = True  # would count, but the query failed
    m = retrieval_metrics(hits, [True, True, True, False], [0.001] * 4)
    assert m["recall_at_1"] == approx(25.0)
    assert m["recall_at_5"] == approx(50.0)
    assert m["recall_at_10"] == approx(50.0)
    assert m["recall_at_20"] == approx(50.0)
    assert m["num_failed"] == 1
    assert m["time_per_query_ms"] == approx(1.0)
    m = retrieval_metrics(hits, [True] * 4, [0.0] * 4, ns=(1, 2, 3))
    assert (m["recall_at_1"], m["recall_at_2"], m["recall_at_3"]) == approx((50.0, 50.0, 75.0))
    assert "recall_at_5" not in m
    with pytest.raises(ValueError):
        retrieval_metrics(hits, [True] * 4, [0.0] * 4, ns=(0,))


# --------------------------------------------------------------------------------------------
# precision-recall and sequence
# --------------------------------------------------------------------------------------------


def test_precision_recall_perfect_ranking():
    p, r, t = precision_recall([0.7, 0.9, 0.8], [True, True, True])
    np.testing.assert_allclose(p, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(r, [1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(t, [0.9, 0.8, 0.7])
    assert average_precision(p, r) == approx(1.0)
    m, _ = sequence_metrics([0.7, 0.9, 0.8], [True, True, True], [True] * 3, [0.0] * 3)
    assert m["pr_auc"] == approx(1.0)
    assert m["recall_at_100_precision"] == approx(100.0)


def test_precision_recall_interleaved():
    scores, correct = [0.9, 0.8, 0.7, 0.6], [True, False, True, False]
    p, r, _ = precision_recall(scores, correct)  # every query has a true match: 4 positives
    np.testing.assert_allclose(p, [1.0, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(r, [0.25, 0.25, 0.5, 0.5])
    assert average_precision(p, r) == approx(0.25 + 0.25 * 2 / 3)
    # the classification convention (positives = correct matches) gives sklearn's AP
    p, r, _ = precision_recall(scores, correct, num_positives=2)
    assert average_precision(p, r) == approx((1.0 + 2 / 3) / 2)
    m, curves = sequence_metrics(scores, correct, [True] * 4, [0.0] * 4)
    assert m["pr_auc"] == approx(0.25 + 0.25 * 2 / 3)
    assert m["recall_at_100_precision"] == approx(25.0)
    np.testing.assert_allclose(curves["thresholds"], [0.9, 0.8, 0.7, 0.6])


def test_precision_recall_ties_are_one_threshold():
    p, r, t = precision_recall([0.9, 0.9, 0.5], [True, False, True])
    np.testing.assert_allclose(t, [0.9, 0.5])
    np.testing.assert_allclose(p, [0.5, 2 / 3])
    np.testing.assert_allclose(r, [1 / 3, 2 / 3])
    m, _ = sequence_metrics([0.9, 0.9, 0.5], [True, False, True], [True] * 3, [0.0] * 3)
    assert m["recall_at_100_precision"] == 0.0
    assert m["pr_auc"] == approx(1 / 6 + 2 / 9)


def test_precision_recall_errors_and_empty():
    with pytest.raises(ValueError, match="num_positives"):
        precision_recall([0.5, 0.4], [True, True], num_positives=1)
    with pytest.raises(ValueError, match="finite"):
        precision_recall([float("nan")], [True])
    p, r, t = precision_recall([], [])
    assert p.size == r.size == t.size == 0
    assert average_precision(p, r) == 0.0


def test_sequence_failures_and_true_matches():
    scores, correct = [0.9, float("nan"), 0.7, 0.8], [True, False, True, False]
    success = [True, False, True, True]
    m, _ = sequence_metrics(scores, correct, success, [0.1, 0.2, 0.3, 0.4])
    assert m["num_failed"] == 1
    assert m["pr_auc"] == approx(0.25 + 0.25 * 2 / 3)  # failed query: a positive never found
    assert m["recall_at_100_precision"] == approx(25.0)
    assert m["time_per_query_ms"] == approx(250.0)
    m, _ = sequence_metrics(scores, correct, success, [0.0] * 4, has_true_match=[True, True, True, False])
    assert m["pr_auc"] == approx(1 / 3 + 1 / 3 * 2 / 3)
    assert m["recall_at_100_precision"] == approx(100 / 3)


# --------------------------------------------------------------------------------------------
# evaluate(): samples and estimates
# --------------------------------------------------------------------------------------------


def _sample(name, t=None, yaw_deg=None, xy=None, R=None):
    import torch

    from maploc.types import Camera, Pose, Pose2, Sample

    T = None
    if t is not None:
        T = Pose(R=torch.eye(3, dtype=torch.float64) if R is None else R, t=torch.tensor(t, dtype=torch.float64))
    pose2 = Pose2(x=xy[0], y=xy[1], yaw=math.radians(yaw_deg or 0.0)) if xy is not None else None
    return Sample(image=torch.zeros(3, 3, 4), camera=Camera.from_focal(10.0, 4, 3), T_cam2world=T, pose2=pose2,
                  name=name)


def _rot_z(deg):
    import torch

    a = math.radians(deg)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


def test_evaluate_pose6dof():
    import torch

    from maploc.types import Pose, PoseEstimate

    queries = [_sample("a", t=[1.0, 2.0, 3.0]), _sample("b", t=[0.0, 0.0, 0.0])]
    est = PoseEstimate(T_cam2world=Pose(R=_rot_z(3.0).float(), t=torch.tensor([1.0, 2.02, 3.0])), num_inliers=7,
                       confidence=0.5, seconds=0.02)
    res = evaluate("pose6dof", queries, [est, PoseEstimate.failed(seconds=0.04)])
    m = res.metrics
    assert m["num_queries"] == 2 and m["num_failed"] == 1
    assert m["recall_5cm_5deg"] == approx(50.0)
    assert m["recall_2cm_2deg"] == approx(0.0)  # 3 deg
    assert m["median_translation_cm"] == math.inf
    assert m["time_per_query_ms"] == approx(30.0)
    assert len(res.rows) == 2
    row = res.rows[0]
    assert row["name"] == "a" and row["success"] is True
    assert row["rotation_error_deg"] == approx(3.0, abs=1e-3)
    assert row["translation_error_cm"] == approx(2.0, abs=1e-3)
    assert row["est_qw"] == approx(math.cos(math.radians(1.5)), abs=1e-6)
    assert row["est_qz"] == approx(math.sin(math.radians(1.5)), abs=1e-6)
    assert (row["est_ty"], row["gt_ty"], row["gt_qw"]) == approx((2.02, 2.0, 1.0), abs=1e-6)
    assert row["num_inliers"] == 7 and row["confidence"] == 0.5 and row["seconds"] == approx(0.02)
    failed = res.rows[1]
    assert failed["success"] is False and math.isnan(failed["est_qw"]) and failed["translation_error_cm"] == math.inf
    np.testing.assert_allclose(res.curves["translation_error_cm"], [2.0, np.inf], atol=1e-3)


def test_evaluate_errors():
    from maploc.types import PoseEstimate

    with pytest.raises(ValueError, match="pose6dof.*se2.*retrieval.*sequence"):
        evaluate("bogus", [], [])
    with pytest.raises(ValueError, match="'nogt'"):
        evaluate("pose6dof", [_sample("nogt")], [PoseEstimate.failed()])
    with pytest.raises(ValueError, match="'nogt2'"):
        evaluate("se2", [_sample("nogt2", t=[0.0, 0.0, 0.0])], [PoseEstimate.failed()])
    with pytest.raises(ValueError, match="estimates"):
        evaluate("se2", [_sample("x", xy=(0, 0))], [])
    assert FAMILIES == ("pose6dof", "se2", "retrieval", "sequence")


def test_evaluate_se2_wraps_yaw():
    from maploc.types import Pose2, PoseEstimate

    queries = [_sample("a", xy=(0.0, 0.0), yaw_deg=179.0), _sample("b", xy=(1.0, 1.0))]
    ests = [PoseEstimate(pose2=Pose2(x=3.0, y=4.0, yaw=math.radians(-179.0)), seconds=0.1), PoseEstimate.failed()]
    res = evaluate("se2", queries, ests)
    assert res.rows[0]["position_error_m"] == approx(5.0)
    assert res.rows[0]["yaw_error_deg"] == approx(2.0)
    assert res.rows[0]["est_yaw_deg"] == approx(-179.0) and res.rows[0]["gt_yaw_deg"] == approx(179.0)
    assert res.metrics["recall_5m"] == approx(50.0) and res.metrics["recall_3m"] == 0.0
    assert res.metrics["recall_3deg"] == approx(50.0) and res.metrics["recall_1deg"] == 0.0
    assert res.metrics["num_failed"] == 1 and res.rows[1]["position_error_m"] == math.inf


def _r(names):
    """A ranked retrieval of map samples named ``m<index>``."""
    from maploc.types import Retrieval

    return Retrieval(indices=[int(n[1:]) for n in names])


def _map(xs):
    return [_sample(f"m{i}", t=[x, 0.0, 0.0]) for i, x in enumerate(xs)]


def test_evaluate_retrieval():
    from maploc.types import PoseEstimate

    map_samples = _map([0.0, 10.0, 50.0, 100.0])
    queries = [_sample("q0", t=[1.0, 0.0, 0.0]), _sample("q1", t=[100.0, 0.0, 3.0]), _sample("q2", t=[50.0, 0.0, 0.0])]
    ests = [
        PoseEstimate(retrieval=_r(["m2", "m1", "m0"])),  # true match (1 m) at rank 3
        PoseEstimate(retrieval=_r(["m3"])),  # 3 m away: hit at rank 1
        PoseEstimate.failed(retrieved=["m2"]),  # failed: never a hit
    ]
    res = evaluate("retrieval", queries, ests, map_samples=map_samples, distance_threshold_m=5.0)
    m = res.metrics
    assert m["recall_at_1"] == approx(100 / 3)
    assert m["recall_at_5"] == approx(200 / 3)
    assert m["recall_at_20"] == approx(200 / 3)
    assert m["num_failed"] == 1
    assert [r["first_hit_rank"] for r in res.rows] == [3, 1, None]
    assert res.rows[0]["top1"] == "m2" and res.rows[0]["top1_distance_m"] == approx(49.0)
    np.testing.assert_allclose(res.curves["recall_at_n"][:4], [100 / 3, 100 / 3, 200 / 3, 200 / 3])
    # a smaller threshold turns q1's 3 m match into a miss
    res = evaluate("retrieval", queries, ests, map_samples=map_samples, distance_threshold_m=2.0)
    assert res.metrics["recall_at_1"] == 0.0 and res.metrics["recall_at_5"] == approx(100 / 3)
    with pytest.raises(ValueError, match="map index 99"):
        evaluate("retrieval", queries[:1], [PoseEstimate(retrieval=_r(["m99"]))], map_samples=map_samples)
    with pytest.raises(ValueError, match="map_samples"):
        evaluate("retrieval", queries, ests)
    with pytest.raises(ValueError, match="'nogt'"):
        evaluate("retrieval", [_sample("nogt")], [PoseEstimate.failed()], map_samples=map_samples)


def test_evaluate_retrieval_map_positions_in_2d():
    from maploc.types import PoseEstimate

    map_samples = [_sample("m0", xy=(0.0, 0.0)), _sample("m1", xy=(30.0, 40.0))]
    queries = [_sample("q", xy=(30.0, 30.0))]
    res = evaluate("retrieval", queries, [PoseEstimate(retrieval=_r(["m0", "m1"]))], map_samples=map_samples,
                   distance_threshold_m=10.0)
    assert res.rows[0]["top1_distance_m"] == approx(math.hypot(30.0, 30.0))
    assert res.metrics["recall_at_1"] == 0.0 and res.metrics["recall_at_5"] == approx(100.0)


def test_evaluate_sequence():
    from maploc.types import PoseEstimate

    map_samples = _map([0.0, 10.0, 20.0, 30.0])
    queries = [_sample(f"q{i}", t=[x, 0.0, 0.0]) for i, x in enumerate([0.0, 10.0, 20.0, 30.0])]
    ests = [
        PoseEstimate(confidence=0.9, retrieval=_r(["m0"])),
        PoseEstimate(confidence=0.8, retrieval=_r(["m3"])),  # 20 m (2 frames) away
        PoseEstimate(confidence=0.7, retrieval=_r(["m2"])),
        PoseEstimate.failed(),
    ]
    res = evaluate("sequence", queries, ests, map_samples=map_samples, distance_threshold_m=5.0)
    assert res.metrics["pr_auc"] == approx(0.25 + 0.25 * 2 / 3)
    assert res.metrics["recall_at_100_precision"] == approx(25.0)
    assert res.metrics["num_failed"] == 1
    assert [r["correct"] for r in res.rows] == [True, False, True, False]
    assert res.rows[1]["match"] == "m3" and res.rows[1]["match_distance_m"] == approx(20.0)
    res = evaluate("sequence", queries, ests, map_samples=map_samples, distance_threshold_m=5.0, frame_tolerance=2)
    assert res.metrics["pr_auc"] == approx(0.75)
    assert res.metrics["recall_at_100_precision"] == approx(75.0)
    # frame indices alone (no positions anywhere): q0 -> m0 is correct, q1 -> m0 is not
    no_pos = [_sample("q0"), _sample("q1")]
    ests2 = [PoseEstimate(confidence=0.9, retrieval=_r(["m0"])),
             PoseEstimate(confidence=0.5, retrieval=_r(["m0"]))]
    res = evaluate("sequence", no_pos, ests2, map_samples=[_sample("m0"), _sample("m1")], frame_tolerance=0)
    assert [r["correct"] for r in res.rows] == [True, False]
    assert res.metrics["pr_auc"] == approx(0.5) and res.metrics["recall_at_100_precision"] == approx(50.0)
    with pytest.raises(ValueError, match="'q0'"):
        evaluate("sequence", no_pos, ests2, map_samples=map_samples)
    with pytest.raises(ValueError, match="confidence"):
        evaluate("sequence", queries[:1], [PoseEstimate(retrieval=_r(["m0"]))], map_samples=map_samples)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 2000


def test_write_metrics_json_and_csv(tmp_path):
    metrics = {"num_queries": 3, "median_translation_cm": math.inf, "recall_5cm_5deg": 33.5}
    path = write_metrics_json(tmp_path / "metrics.json", metrics)
    data = json.loads(path.read_text())
    assert list(data) == list(metrics)
    assert data == {"num_queries": 3, "median_translation_cm": None, "recall_5cm_5deg": 33.5}
    rows = [{"name": "a", "success": True, "err": 1.5}, {"name": "b", "success": False, "extra": None}]
    path = write_results_csv(tmp_path / "results.csv", rows)
    with path.open(newline="") as f:
        read = list(csv.DictReader(f))
    assert read == [
        {"name": "a", "success": "true", "err": "1.5", "extra": ""},
        {"name": "b", "success": "false", "err": "", "extra": ""},
    ]


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    path = write_metrics_json(tmp_path / "metrics.json", {"a": 1})
    with pytest.raises(ValueError):
        write_metrics_json(path, {"a": "not a number"})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_format_metrics_table():
    table = format_metrics_table({"num_queries": 12, "recall_5cm_5deg": 87.5, "median_rotation_deg": math.inf})
    lines = table.splitlines()
    assert lines == [
        "num_queries              12",
        "recall_5cm_5deg      87.500",
        "median_rotation_deg     inf",
    ]
    assert format_metrics_table({}) == ""


def test_plots_are_pngs(tmp_path):
    _assert_png(plot_error_cdf(tmp_path / "a.png", [1.0, 3.0, np.inf], [0.5, 2.0, np.inf], "t"))
    _assert_png(plot_error_cdf(tmp_path / "b.png", [np.inf], [np.inf], "all failed"))
    _assert_png(plot_se2_recall(tmp_path / "c.png", [0.5, 4.0], [1.0, 10.0], "se2"))
    _assert_png(plot_pr_curve(tmp_path / "d.png", [1.0, 0.5], [0.5, 0.5], 0.5, "pr"))
    _assert_png(plot_recall_at_n(tmp_path / "e.png", [1, 2, 3], [10.0, 20.0, 30.0], "r@n"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png", "d.png", "e.png"]


def test_write_report_every_family(tmp_path):
    from maploc.types import Pose2, PoseEstimate

    map_samples = _map([0.0, 10.0])
    queries = [_sample(f"q{i}", t=[10.0 * i, 0.0, 0.0], xy=(10.0 * i, 0.0)) for i in range(2)]
    retrieval_ests = [PoseEstimate(confidence=0.9, retrieval=_r(["m0", "m1"])),
                      PoseEstimate(confidence=0.3, retrieval=_r(["m0"]))]
    cases = {
        "pose6dof": ([PoseEstimate(T_cam2world=queries[0].T_cam2world), PoseEstimate.failed()], "error_cdf.png"),
        "se2": ([PoseEstimate(pose2=Pose2(x=1.0, y=0.0, yaw=0.1)), PoseEstimate.failed()], "error_cdf.png"),
        "retrieval": (retrieval_ests, "recall_at_n.png"),
        "sequence": (retrieval_ests, "pr_curve.png"),
    }
    for family, (ests, plot) in cases.items():
        run_dir = tmp_path / family / "run"
        result = evaluate(family, queries, ests, map_samples=map_samples, distance_threshold_m=5.0)
        paths = write_report(run_dir, result, family, title=family)
        assert [p.name for p in paths] == ["metrics.json", "results.csv", plot]
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(["metrics.json", "results.csv", plot])
        data = json.loads((run_dir / "metrics.json").read_text())
        assert list(data) == list(result.metrics)
        assert data["num_queries"] == 2 and {"num_failed", "time_per_query_ms"} <= set(data)
        with (run_dir / "results.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["name"] for r in rows] == ["q0", "q1"]
        _assert_png(run_dir / plot)
    with pytest.raises(ValueError, match="known families"):
        write_report(tmp_path / "x", result, "bogus")

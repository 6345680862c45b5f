"""The evaluation protocol: predictions files, scoring from them, reference rows, `maploc evaluate`."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc.api import SampleMeta, Variant
from maploc.evaluation import reference as ref
from maploc.evaluation.predictions import PredictionsError, infer_family, read_predictions, write_predictions
from maploc.evaluation.scoring import Manifest, score_run, write_run_predictions
from maploc.types import Pose, Pose2, PoseEstimate, Retrieval


# -- reference rows ----------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 6), data=st.data())
def test_random_ranking_recall_equals_enumeration(m, data):
    """The closed form against every permutation of a small map."""
    hits = data.draw(st.lists(st.integers(0, m), min_size=1, max_size=3))
    ns = [1, 2, 5]
    got = ref.random_ranking_recall(hits, m, ns)
    for a, n in enumerate(ns):
        total = 0.0
        for h in hits:
            truth = [True] * h + [False] * (m - h)
            perms = list(itertools.permutations(range(m)))
            total += sum(any(truth[j] for j in p[:n]) for p in perms) / len(perms)
        assert got[a] == pytest.approx(100.0 * total / len(hits), abs=1e-9)


def test_random_ranking_recall_of_sim_city_like_spacing():
    """Map frames 4 m apart, 25 m radius: about 13 true matches in a 100-frame map (R@1 ~ 13 %)."""
    hits = np.full(50, 13)
    r1, r5 = ref.random_ranking_recall(hits, 100, [1, 5])
    assert r1 == pytest.approx(13.0)
    assert r5 == pytest.approx(100 * (1 - np.prod([(87 - k) / (100 - k) for k in range(5)])))
    with pytest.raises(ValueError, match="hit counts"):
        ref.random_ranking_recall([101], 100, [1])


@pytest.mark.parametrize("shape", ["disk", "square"])
def test_uniform_region_recall_matches_monte_carlo(shape):
    rng = np.random.default_rng(0)
    gt = rng.uniform(-5, 5, (6, 2))
    prior = rng.uniform(-5, 5, (6, 2))
    size = rng.uniform(3, 12, 6)
    thresholds = [1.0, 3.0, 5.0, 30.0]
    exact = ref.uniform_region_recall(gt, prior, size, thresholds, shape=shape)
    n = 400_000
    mc = []
    for d in thresholds:
        p = []
        for g, c, s in zip(gt, prior, size):
            if shape == "disk":
                r = s * np.sqrt(rng.random(n))
                a = rng.uniform(0, 2 * np.pi, n)
                pts = c + np.stack([r * np.cos(a), r * np.sin(a)], 1)
            else:
                pts = c + rng.uniform(-s, s, (n, 2))
            p.append(np.mean(np.hypot(*(pts - g).T) <= d))
        mc.append(100 * np.mean(p))
    np.testing.assert_allclose(exact, mc, atol=0.3)
    assert exact[-1] == pytest.approx(100.0) if shape == "disk" else exact[-1] > 99
    median = ref.uniform_region_median(gt, prior, size, shape=shape)
    assert ref.uniform_region_recall(gt, prior, size, [median], shape=shape)[0] == pytest.approx(50.0, abs=0.05)


def test_yaw_chance_and_coverage():
    np.testing.assert_allclose(ref.yaw_chance_recall([1, 5, 180, 360]), [100 / 180, 500 / 180, 100, 100])
    rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    t, r = ref.coverage_errors(np.stack([rz, np.eye(3)]), np.array([[0.9, 0.0, 0.0], [0.0, 0.0, 0.03]]),
                               np.stack([np.eye(3), rz]), np.array([[0.0, 0, 0], [1.0, 0, 0]]))
    np.testing.assert_allclose(t, [[0.9, 0.1], [0.03, np.hypot(1.0, 0.03)]], atol=1e-12)
    np.testing.assert_allclose(r, [[90.0, 0.0], [0.0, 90.0]], atol=1e-6)
    m = ref.coverage_metrics(t, r, [("recall_5cm_5deg", 0.05, 5.0), ("recall_1m_1deg", 1.0, 1.0)])
    # query 0: the near camera (0.1 m) is 90 deg off, the aligned one 0.9 m away; query 1: 3 cm, aligned
    assert m["median_translation_cm"] == pytest.approx(6.5) and m["median_rotation_deg"] == pytest.approx(0.0)
    assert m["recall_5cm_5deg"] == 50.0 and m["recall_1m_1deg"] == 100.0


# -- predictions files -------------------------------------------------------------------------------------------
def _random_pose(rng: np.random.Generator) -> Pose:
    q = torch.tensor(rng.normal(size=4), dtype=torch.float64)
    return Pose.from_quaternion(q / q.norm(), torch.tensor(rng.normal(size=3) * 5, dtype=torch.float64))


def test_pose6dof_round_trip_is_exact_and_world_to_camera(tmp_path):
    rng = np.random.default_rng(1)
    poses = [_random_pose(rng) for _ in range(3)]
    ests = [PoseEstimate(T_cam2world=poses[0], num_inliers=40, seconds=0.5, extras={"note": "x", "list": [1]}),
            PoseEstimate.failed(0.25), PoseEstimate(T_cam2world=poses[2], confidence=0.7)]
    txt, csv_path = write_predictions(tmp_path / "m.txt", "pose6dof", ["a", "b", "c"], ests)
    lines = [x for x in txt.read_text().splitlines() if not x.startswith("#")]
    assert [x.split()[0] for x in lines] == ["a", "c"]  # a failed query has no line
    T_w2c = poses[0].inverse()
    values = [float(v) for v in lines[0].split()[1:]]
    np.testing.assert_allclose(values[:4], T_w2c.quaternion().numpy(), atol=1e-12)
    np.testing.assert_allclose(values[4:], T_w2c.t.numpy(), atol=1e-12)
    header = csv_path.read_text().splitlines()[0].split(",")
    assert "note" in header and "list" not in header  # scalar extras are columns
    back, rows = read_predictions(txt, "pose6dof", ["a", "b", "c"])
    assert [e.success for e in back] == [True, False, True] and back[0].num_inliers == 40
    assert torch.allclose(back[0].T_cam2world.matrix(), poses[0].matrix(), atol=1e-12)
    assert back[1].seconds == 0.25 and rows[0]["note"] == "x"
    assert infer_family(txt) == "pose6dof"


def test_retrieval_and_se2_round_trip(tmp_path):
    ests = [PoseEstimate(retrieval=Retrieval(indices=[2, 0], scores=[0.9, 0.1])), PoseEstimate.failed()]
    txt, _ = write_predictions(tmp_path / "r.txt", "retrieval", ["q0", "q1"], ests, map_names=["m0", "m1", "m2"])
    assert [x for x in txt.read_text().splitlines() if not x.startswith("#")] == ["q0 m2 0.9", "q0 m0 0.1"]
    back, _ = read_predictions(txt, "retrieval", ["q0", "q1"], map_names=["m0", "m1", "m2"])
    assert back[0].retrieval.indices == (2, 0) and back[0].confidence == 0.9 and not back[1].success
    se2 = [PoseEstimate(pose2=Pose2(x=1.5, y=-2.0, yaw=0.3), extras={"prior_x_m": 1.0})]
    txt, _ = write_predictions(tmp_path / "s.txt", "se2", ["q0"], se2)
    back, rows = read_predictions(txt, "se2", ["q0"])
    assert back[0].pose2.yaw == pytest.approx(0.3, abs=1e-15) and rows[0]["prior_x_m"] == "1.0"


@pytest.mark.parametrize("text, message", [
    ("a 1 0 0 0 1 2\n", r"m\.txt:2: 7 columns, expected 8"),
    ("zz 1 0 0 0 1 2 3\n", r"m\.txt:2: query 'zz' is not a query"),
    ("a 1 0 0 0 nan 2 3\n", r"m\.txt:2: column 'tx' is nan"),
    ("a 1 0 0 0 x 2 3\n", r"m\.txt:2: column 'tx' is 'x', not a number"),
    ("a 0.9 0 0 0 1 2 3\n", r"m\.txt:2: quaternion norm 0\.9"),
    ("a 1 0 0 0 1 2 3\na 1 0 0 0 1 2 3\n", r"m\.txt:3: query 'a' appears twice"),
    ("", r"query 'a' has no prediction line"),
])
def test_bad_predictions_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "m.txt"
    path.write_text("# maploc predictions (pose6dof): name qw qx qy qz tx ty tz\n" + text)
    with pytest.raises(PredictionsError, match=message):
        read_predictions(path, "pose6dof", ["a"])


def test_missing_query_is_a_failure_only_when_written_as_failed(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a 1 0 0 0 1 2 3\n")
    with pytest.raises(PredictionsError, match="'b' has no prediction line"):
        read_predictions(path, "pose6dof", ["a", "b"])
    (tmp_path / "m.csv").write_text("name,success\na,true\nb,false\n")
    back, _ = read_predictions(path, "pose6dof", ["a", "b"])
    assert [e.success for e in back] == [True, False]
    (tmp_path / "m.csv").write_text("name,success\na,false\nb,false\n")
    with pytest.raises(PredictionsError, match="'a' is written as failed but m.txt line 1"):
        read_predictions(path, "pose6dof", ["a", "b"])


# -- scoring -----------------------------------------------------------------------------------------------------
def _metas(xs, prefix, conditions=None):
    return [SampleMeta(name=f"{prefix}{i}", pose2=Pose2(x=x, y=0.0, yaw=0.0),
                       condition=(conditions[i] if conditions else "")) for i, x in enumerate(xs)]


def test_scoring_retrieval_variants_conditions_and_chance(tmp_path):
    map_metas = _metas(np.arange(0, 100, 4.0), "m")  # 25 frames, 4 m apart
    queries = _metas([10.0, 50.0, 90.0, 30.0], "q", ["day", "day", "night", "night"])
    best = [int(round(q.pose2.x / 4)) for q in queries]
    method = [PoseEstimate(retrieval=Retrieval(indices=[b, 0], scores=[1.0, 0.5])) for b in best]
    method[3] = PoseEstimate(retrieval=Retrieval(indices=[0], scores=[0.2]))  # 30 m away: a miss within 25 m
    baseline = [PoseEstimate(retrieval=Retrieval(indices=[24], scores=[1.0])) for _ in queries]
    manifest = Manifest(family="retrieval", method="mine", dataset="fake", num_queries=4,
                        distance_thresholds_m=(25.0, 10.0))
    write_run_predictions(tmp_path / "predictions", manifest, [q.name for q in queries], [m.name for m in map_metas],
                          method, {"far": Variant(estimates=baseline, baseline=True)})
    result = score_run(tmp_path / "predictions", queries, map_metas)
    m = result.metrics
    assert m["recall_at_1"] == 75.0 and m["night/recall_at_1"] == 50.0 and m["day/recall_at_1"] == 100.0
    assert m["far:recall_at_1"] == 25.0  # frame 24 (96 m) is within 25 m of the query at 90 m only
    # chance: hits within 25 m of each query among the 25 map frames
    hits = [sum(abs(x.pose2.x - q.pose2.x) <= 25 for x in map_metas) for q in queries]
    assert m["chance:recall_at_1"] == pytest.approx(100 * np.mean(np.array(hits) / 25))
    hits10 = [sum(abs(x.pose2.x - q.pose2.x) <= 10 for x in map_metas) for q in queries[2:]]
    assert m["chance:night/recall_at_1_within_10m"] == pytest.approx(100 * np.mean(np.array(hits10) / 25))
    assert "chance (reference)" in result.tables and "far (baseline)" in result.tables
    assert "condition night" in result.tables
    # the curve of the chance row is there for the plot
    assert result.curves["chance_recall_at_n"][0] == pytest.approx(m["chance:recall_at_1"])


def test_scoring_se2_prior_and_admissible_region_chance(tmp_path):
    queries = _metas([0.0, 10.0], "q")
    ests = [PoseEstimate(pose2=Pose2(x=q.pose2.x + 2.0, y=0.0, yaw=0.0),
                         extras={"prior_x_m": q.pose2.x + 6.0, "prior_y_m": 0.0, "prior_halfwidth_m": 8.0})
            for q in queries]
    manifest = Manifest(family="se2", method="bev", dataset="fake", num_queries=2)
    write_run_predictions(tmp_path / "predictions", manifest, [q.name for q in queries], [], ests, {})
    m = score_run(tmp_path / "predictions", queries, []).metrics
    assert m["median_position_error_m"] == pytest.approx(2.0) and m["recall_3m"] == 100.0
    assert m["prior:median_position_error_m"] == pytest.approx(6.0) and m["prior:recall_5m"] == 0.0
    expected = ref.uniform_region_recall([[0, 0]], [[6, 0]], [8.0], [5.0], shape="square")[0]
    assert m["chance:recall_5m"] == pytest.approx(expected) and m["chance:recall_5deg"] == pytest.approx(500 / 180)


# -- the CLI: maploc run writes predictions, maploc evaluate reproduces metrics.json ------------------------------
def test_evaluate_reproduces_metrics_json_and_rejects_bad_files(maploc_main, tmp_path):
    run = tmp_path / "run"
    status, _, err = maploc_main("run", "--method", "nn-retrieval", "--dataset", "synthetic-room", "--out", str(run),
                                 "--no-progress")
    assert status == 0, err
    files = sorted(p.name for p in (run / "predictions").iterdir())
    assert files == ["manifest.json", "nn-retrieval.csv", "nn-retrieval.txt"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert "coverage:median_translation_cm" in metrics  # the 6-DoF reference row
    out = tmp_path / "rescored"
    status, stdout, err = maploc_main("evaluate", str(run), "--out", str(out))
    assert status == 0, err
    assert (out / "metrics.json").read_text() == (run / "metrics.json").read_text()
    assert "coverage (reference)" in stdout
    # a lone file of another tool, scored against the dataset
    status, _, err = maploc_main("evaluate", "--predictions", str(run / "predictions" / "nn-retrieval.txt"),
                                 "--dataset", "synthetic-room", "--out", str(tmp_path / "lone"))
    assert status == 0, err
    lone = json.loads((tmp_path / "lone" / "metrics.json").read_text())
    assert lone["median_translation_cm"] == metrics["median_translation_cm"]
    # a corrupt line: one line naming the file and line, exit 2, nothing written
    txt = run / "predictions" / "nn-retrieval.txt"
    lines = txt.read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0]
    txt.write_text("\n".join(lines) + "\n")
    status, _, err = maploc_main("evaluate", str(run), "--out", str(tmp_path / "bad"))
    assert status == 2
    assert err.strip().count("\n") == 0 and "nn-retrieval.txt:3: 7 columns" in err
    assert not (tmp_path / "bad" / "metrics.json").exists()
    assert math.isfinite(metrics["median_translation_cm"])


def test_evaluate_needs_a_run_or_a_file(maploc_main, tmp_path):
    status, _, err = maploc_main("evaluate")
    assert status == 2 and "give a run folder" in err
    status, _, err = maploc_main("evaluate", str(tmp_path))
    assert status == 2 and "config.yaml does not exist" in err
    Path(tmp_path / "p.txt").write_text("a b\n")
    status, _, err = maploc_main("evaluate", "--predictions", str(tmp_path / "p.txt"), "--dataset", "synthetic-room")
    assert status == 2 and "p.txt:1: 2 columns" in err


def test_frame_tolerance_keeps_split_positions_per_condition(tmp_path):
    """A frame-aligned set (Nordland-like, no positions): query i matches map frame i, also when the
    queries are scored per condition (a subset keeps its positions in the whole query split)."""
    map_metas = [SampleMeta(name=f"m{i}") for i in range(8)]
    queries = [SampleMeta(name=f"q{i}", condition="a" if i < 4 else "b") for i in range(8)]
    ests = [PoseEstimate(retrieval=Retrieval(indices=[i], scores=[1.0]), confidence=1.0) for i in range(8)]
    manifest = Manifest(family="sequence", method="seq", dataset="fake", num_queries=8, frame_tolerance=0)
    write_run_predictions(tmp_path / "predictions", manifest, [q.name for q in queries], [m.name for m in map_metas],
                          ests, {})
    m = score_run(tmp_path / "predictions", queries, map_metas).metrics
    assert m["recall_at_1"] == 100.0 and m["a/recall_at_1"] == 100.0 and m["b/recall_at_1"] == 100.0
    assert m["chance:b/recall_at_1"] == pytest.approx(100 / 8)


def test_a_given_split_replaces_the_runs_own_and_radii_replace_the_manifests(tmp_path):
    """``score_run(split=...)`` scores only that split's test-block queries even when the run saved
    none (how `maploc bench` scores an untrained method beside a learned one); ``distance_thresholds_m``
    replaces the manifest's radii, and a sequence run gets R@1 at the second radius."""
    from maploc.data.split import SpatialSplit

    map_metas = _metas(np.arange(0, 400, 4.0), "m")  # 100 frames along x, 4 m apart
    queries = _metas(np.arange(2, 380, 8.0), "q")  # 48 queries between the map frames
    # each query's estimate: the map frame 14 m ahead of it: a hit within 25 m, a miss within 10 m
    ests = [PoseEstimate(retrieval=Retrieval(indices=[int(q.pose2.x // 4) + 4], scores=[1.0]),
                         confidence=1.0) for q in queries]
    manifest = Manifest(family="sequence", method="seq", dataset="fake", num_queries=48, distance_thresholds_m=(10.0,))
    write_run_predictions(tmp_path / "predictions", manifest, [q.name for q in queries], [m.name for m in map_metas],
                          ests, {})
    own = score_run(tmp_path / "predictions", queries, map_metas).metrics
    assert own["num_queries"] == 48 and "num_queries_outside_test_region" not in own
    assert own["recall_at_1"] == 0.0  # 14 m > 10 m

    split = SpatialSplit.from_points(np.array([[m.pose2.x, 0.0] for m in map_metas]), block_size_m=60,
                                     success_radius_m=25, footprint_m=0, val_fraction=0.1, test_fraction=0.2, seed=0)
    xy = np.array([[q.pose2.x, 0.0] for q in queries])
    in_test = int(np.count_nonzero(split.mask(xy, "test")))
    assert 0 < in_test < 48
    (tmp_path / "other.json").write_text(json.dumps(split.to_dict()))
    for given in (split, tmp_path / "other.json"):
        m = score_run(tmp_path / "predictions", queries, map_metas, split=given,
                      distance_thresholds_m=(25.0, 10.0)).metrics
        assert m["num_queries"] == in_test and m["num_queries_outside_test_region"] == 48 - in_test
        assert m["recall_at_1"] == 100.0 and m["recall_at_1_within_10m"] == 0.0
        assert 0.0 < m["chance:recall_at_1_within_10m"] < m["chance:recall_at_1"]
    with pytest.raises(Exception, match="not found"):
        score_run(tmp_path / "predictions", queries, map_metas, split=tmp_path / "missing.json")


def test_admissible_chance_is_the_mean_of_the_expected_recalls_a_variant_wrote(tmp_path):
    """A variant whose every row carries expected_recall_<d>m gives the core's admissible_chance row:
    their mean over the scored queries (per condition too), beside a uniform yaw."""
    queries = _metas([0.0, 10.0, 20.0], "q", ["day", "night", "night"])
    ests = [PoseEstimate(pose2=Pose2(x=q.pose2.x, y=0.0, yaw=0.0)) for q in queries]
    expected = [(10.0, 30.0, 50.0), (20.0, 40.0, 60.0), (0.0, 20.0, 100.0)]
    draws = [PoseEstimate(pose2=Pose2(x=q.pose2.x + 7, y=0.0, yaw=0.0),
                          extras={f"expected_recall_{d:g}m": v for d, v in zip((1, 3, 5), e)})
             for q, e in zip(queries, expected)]
    manifest = Manifest(family="se2", method="bev", dataset="fake", num_queries=3)
    write_run_predictions(tmp_path / "predictions", manifest, [q.name for q in queries], [], ests,
                          {"admissible_random": Variant(estimates=draws, baseline=True)})
    result = score_run(tmp_path / "predictions", queries, [])
    m = result.metrics
    assert m["admissible_chance:recall_1m"] == pytest.approx(10.0)
    assert m["admissible_chance:recall_5m"] == pytest.approx(70.0)
    assert m["admissible_chance:night/recall_3m"] == pytest.approx(30.0)
    assert m["admissible_chance:recall_5deg"] == pytest.approx(500 / 180)
    assert "admissible_chance (reference)" in result.tables
    # without the columns on every row there is no such row
    draws[1] = PoseEstimate(pose2=Pose2(x=17.0, y=0.0, yaw=0.0))
    write_run_predictions(tmp_path / "p2", manifest, [q.name for q in queries], [], ests,
                          {"admissible_random": Variant(estimates=draws, baseline=True)})
    assert not any(k.startswith("admissible_chance:") for k in score_run(tmp_path / "p2", queries, []).metrics)

"""A training run with the spatial split, then ``maploc eval --checkpoint RUN/checkpoints/last.ckpt``: the run saves
``split.json`` (the core scores only test-block queries), the evaluation saves the same split, reuses ``RUN/index``
by itself (no ``index.load_from``) and gives the same metrics; an index of other weights is not reused."""

import json

import pytest

from maploc_netvlad.method import _CONFORMANCE

pytest.importorskip("maploc_simcity")

# The tiny conformance render (one traversal by day and night, 12 frames 4 m apart: a 44 m route) is too short for a
# 25 m guard: thresholds of 4 m (primary) and 2 m make the success radius 4 m, and 8 m blocks split the route.
SPLIT = ["eval.distance_threshold_m=4", "eval.fine_threshold_m=2", "split.block_size_m=8",
         "mining.positive_radius_m=3", "mining.negative_radius_m=8"]


# netvlad only: mobilenetvlad shares this code path (RetrievalMethod.build_map), and its evaluation from a checkpoint
# is part of its conformance test; one more distillation run here would cost ~40 s of the plugin's test budget
def test_eval_reuses_the_training_runs_index_and_split(tmp_path, request, caplog):
    import logging

    from maploc.cli import main

    request.getfixturevalue("needs_render")
    overrides = [*_CONFORMANCE, "mining.num_negatives=2", "model.num_clusters=8", "train.batch_size=2",
                 "train.max_steps=2", *SPLIT]
    args = [x for o in overrides for x in ("-o", o)]
    train_dir, eval_dir, again_dir = tmp_path / "train", tmp_path / "eval", tmp_path / "again"
    assert main(["run", "--method", "netvlad", "--no-progress", "--out", str(train_dir), *args]) == 0
    trained = json.loads((train_dir / "metrics.json").read_text())
    split = json.loads((train_dir / "split.json").read_text())
    assert split["success_radius_m"] == 4.0 and split["guard_m"] == 4.0
    # 12 night queries: the core scored those in the test block and reported the others
    assert 0 < trained["num_queries"] < 12
    assert trained["num_queries"] + trained["num_queries_outside_test_region"] == 12
    report = (train_dir / "report.txt").read_text()
    assert "thumbnails (baseline)" in report and "chance (reference)" in report and "test blocks" in report
    saved = json.loads((train_dir / "index" / "index.json").read_text())
    assert len(saved["info"]["model_fingerprint"]) == 16
    ckpt = train_dir / "checkpoints" / "last.ckpt"
    with caplog.at_level(logging.INFO, logger="maploc_netvlad"):
        assert main(["eval", "--checkpoint", str(ckpt), "--no-progress", "--out", str(eval_dir)]) == 0
    assert any("reusing the map index" in r.getMessage() and str(train_dir / "index") in r.getMessage()
               for r in caplog.records)
    assert json.loads((eval_dir / "split.json").read_text()) == split  # the split the weights were trained with
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert set(evaluated) == set(trained)
    for key, value in trained.items():
        if not key.endswith("time_per_query_ms"):
            assert evaluated[key] == pytest.approx(value), key
    assert "reused from" in (eval_dir / "report.txt").read_text()
    # an index built by other weights is not reused: the map is encoded again
    (train_dir / "index" / "index.json").write_text(
        json.dumps(dict(saved, info={"model_fingerprint": "0" * 16})) + "\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="maploc_netvlad"):
        assert main(["eval", "--checkpoint", str(ckpt), "--no-progress", "--out", str(again_dir)]) == 0
    assert any("built by other weights" in r.getMessage() for r in caplog.records)
    assert "encode time per map image" in (again_dir / "report.txt").read_text()

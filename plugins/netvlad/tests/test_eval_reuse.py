"""``maploc eval --checkpoint RUN/checkpoints/last.ckpt`` reuses RUN/index by itself (no ``index.load_from``)."""

import json

import pytest

from maploc_netvlad.method import _CONFORMANCE

pytest.importorskip("maploc_simcity")


# netvlad only: mobilenetvlad shares this code path (RetrievalMethod.build_map), and its evaluation from a checkpoint
# is part of its conformance test; one more distillation run here would cost ~40 s of the plugin's test budget
@pytest.mark.parametrize("method", ["netvlad"])
def test_eval_reuses_the_training_runs_index(tmp_path, method, request, caplog):
    import logging

    from maploc.cli import main

    request.getfixturevalue("needs_render")
    extra = {"netvlad": ["mining.num_negatives=2", "model.num_clusters=8", "train.batch_size=2"],
             "mobilenetvlad": ["model.num_clusters=8", "model.descriptor_dim=16", "train.batch_size=4",
                               "teacher.train.max_steps=2", "teacher.train.batch_size=2",
                               "teacher.model.num_clusters=8", "teacher.split.block_size_m=0",
                               "teacher.mining.num_negatives=2"]}[method]
    overrides = [*_CONFORMANCE, *extra, "train.max_steps=2", "data.max_queries=6"]
    args = [x for o in overrides for x in ("-o", o)]
    train_dir, eval_dir, again_dir = tmp_path / "train", tmp_path / "eval", tmp_path / "again"
    assert main(["run", "--method", method, "--no-progress", "--out", str(train_dir), *args]) == 0
    trained = json.loads((train_dir / "metrics.json").read_text())
    saved = json.loads((train_dir / "index" / "index.json").read_text())
    assert len(saved["info"]["model_fingerprint"]) == 16
    if method == "mobilenetvlad":
        assert (train_dir / "teacher.ckpt").is_file()  # the teacher it distilled from is kept beside the student
    ckpt = train_dir / "checkpoints" / "last.ckpt"
    with caplog.at_level(logging.INFO, logger="maploc_netvlad"):
        assert main(["eval", "--checkpoint", str(ckpt), "--no-progress", "--out", str(eval_dir)]) == 0
    assert any("reusing the map index" in r.getMessage() and str(train_dir / "index") in r.getMessage()
               for r in caplog.records)
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert "map_encode_ms_per_image" not in evaluated  # the map was not encoded
    for n in (1, 5, 10):
        assert evaluated[f"recall_at_{n}"] == pytest.approx(trained[f"recall_at_{n}"])
    assert "reused from" in (eval_dir / "report.txt").read_text()
    # an index built by other weights is not reused: the map is encoded again
    (train_dir / "index" / "index.json").write_text(
        json.dumps(dict(saved, info={"model_fingerprint": "0" * 16})) + "\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="maploc_netvlad"):
        assert main(["eval", "--checkpoint", str(ckpt), "--no-progress", "--out", str(again_dir)]) == 0
    assert any("built by other weights" in r.getMessage() for r in caplog.records)
    assert "map_encode_ms_per_image" in json.loads((again_dir / "metrics.json").read_text())

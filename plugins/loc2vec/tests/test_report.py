"""Loc2Vec's own report sections: split, index sizes and query time per row, training figures (no recall)."""

from __future__ import annotations

import json
from pathlib import Path

from maploc_loc2vec.data import SyntheticTileDataset
from maploc_loc2vec.report import index_table, read_validation, split_summary, training_summary

INFO = {
    "learned": {"label": "loc2vec, 8 headings", "dim": 16, "headings": 8, "index_bytes": 2**20, "model_bytes": 2**21},
    "raw": {"label": "raw tiles, 8 headings", "dim": 3072, "headings": 8, "index_bytes": 3 * 2**20, "model_bytes": 0},
}


def test_index_table_has_a_row_per_index_named_like_the_core_rows():
    lines = index_table(INFO, {"time_per_query_ms": 1.5, "raw:time_per_query_ms": 12.25}).splitlines()
    assert "index MiB" in lines[0] and "ms/query" in lines[0] and "recall" not in lines[0].lower()
    assert lines[1].split()[0] == "loc2vec" and lines[1].split()[-4:] == ["8", "1.00", "2.00", "1.50"]
    assert lines[2].split()[0] == "raw" and lines[2].split()[-5:] == ["3072", "8", "3.00", "0.00", "12.25"]
    assert len(lines) == 3
    # a row whose time the core did not report shows nan, not another row's time
    assert index_table(INFO, {}).splitlines()[2].endswith("nan")


def _jsonl(path: Path) -> Path:
    records = [{"step": 1, "epoch": 0, "train/loss": 2.0},
               {"step": 100, "val/val_loss": 0.5, "val/val_triplet_accuracy": 96.875},
               {"step": 101, "epoch": 0, "train/loss": 1.0},
               {"step": 200, "val/val_loss": 0.25, "val/val_triplet_accuracy": 100.0}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n", encoding="utf-8")
    return path


def test_training_summary_gives_the_triplet_accuracy_and_every_validation_record(tmp_path):
    path = _jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in read_validation(path)] == [100, 200]
    text = training_summary({"q0": True, "q1": False, "q2": True, "q3": True}, path)
    assert "75.0% (4 triplets)" in text
    assert "step 100: triplet accuracy 96.9%, loss 0.5" in text and "step 200: triplet accuracy 100.0%" in text
    assert read_validation(None) == [] and read_validation(tmp_path / "missing.jsonl") == []
    assert "no metrics.jsonl" in training_summary({}, None)


def test_split_summary_says_where_the_queries_are_and_what_the_core_left_out(tmp_path):
    test_map = SyntheticTileDataset(None, "map")
    text = split_summary(test_map, tmp_path / "split.json", {"num_queries_outside_test_region": 0})
    assert test_map.blocks.describe() in text and "in the test blocks" in text
    assert "left 0 queries outside" in text
    from maploc_loc2vec.data import SyntheticTileOptions

    val_map = SyntheticTileDataset(None, "map", options=SyntheticTileOptions(eval_blocks="val"))
    text = split_summary(val_map, None, {})
    assert "in the val blocks" in text and "not the test result" in text and "split saved" not in text

"""The core's conformance suite on the ``loc2vec`` method (file-free ``osm-tiles-synthetic`` dataset): training,
checkpoint, eval from the checkpoint with the same metrics, ``maploc evaluate RUN`` reproducing metrics.json."""

import json

import numpy as np

from maploc.data.split import SpatialSplit
from maploc.testing.conformance import check_dataset, check_method
from maploc_loc2vec.data import SyntheticTileDataset
from maploc_loc2vec.method import VARIANTS


def test_loc2vec_conformance(tmp_path):
    metrics = check_method("loc2vec", tmp_path)
    out = tmp_path / "conformance-loc2vec"
    assert metrics["num_queries"] == 4
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    # the baselines and the north-up embedding are scored by the core, at 25 m and 10 m, beside the chance row
    manifest = json.loads((out / "predictions" / "manifest.json").read_text())
    assert manifest["distance_thresholds_m"] == [25.0, 10.0]
    assert {k: v["baseline"] for k, v in manifest["variants"].items()} == VARIANTS
    for row in ("", *(f"{k}:" for k in VARIANTS), "chance:"):
        for name in ("recall_at_1", "recall_at_5", "recall_at_1_within_10m", "recall_at_5_within_10m"):
            assert f"{row}{name}" in metrics, f"{row}{name}"
    for row in ("", *(f"{k}:" for k in VARIANTS), "chance:"):  # within 10 m is never above within 25 m
        assert metrics[f"{row}recall_at_5_within_10m"] <= metrics[f"{row}recall_at_5"], row
    # raw tiles at the indexed headings are near template matches: far above the exact random ranking
    assert metrics["raw:recall_at_5"] >= metrics["chance:recall_at_5"] + 50, metrics
    assert 0 < metrics["chance:recall_at_1"] < metrics["chance:recall_at_5"] < 50
    # the dataset's split is saved; every query lies in its test blocks, so the core leaves none out
    split = SpatialSplit.from_dict(json.loads((out / "split.json").read_text()))
    np.testing.assert_array_equal(split.assignment, SyntheticTileDataset(None, "map").blocks.assignment)
    assert metrics["num_queries_outside_test_region"] == 0
    assert (tmp_path / "conformance-loc2vec-eval" / "split.json").read_text() == (out / "split.json").read_text()
    # the held-out triplet of each query is a column of the method's predictions CSV
    header, *rows = (out / "predictions" / "loc2vec.csv").read_text().splitlines()
    assert header.split(",")[-1] == "triplet_correct" and len(rows) == 4
    assert all(r.split(",")[-1] in ("true", "false") for r in rows)
    report = (out / "report.txt").read_text()
    assert "raw_pca (baseline)" in report and "chance (reference)" in report and "learned_north_up " in report
    assert "== Spatial split ==" in report and "left 0 queries outside" in report
    assert "== Indexes" in report and "held-out triplet accuracy of the query triplets" in report
    for name in ("embeddings_pca.png", "embeddings_tsne.png", "nearest_neighbours.png", "interpolation.png",
                 "split.png"):
        assert (out / name).stat().st_size > 1000, name


def test_synthetic_dataset_conformance():
    check_dataset("osm-tiles-synthetic")

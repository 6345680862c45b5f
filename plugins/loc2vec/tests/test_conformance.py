"""The core's conformance suite on the ``loc2vec`` method (file-free ``osm-tiles-synthetic`` dataset)."""

import json

from maploc.testing.conformance import check_dataset, check_method


def test_loc2vec_conformance(tmp_path):
    metrics = check_method("loc2vec", tmp_path)
    assert metrics["num_queries"] == 4
    # extra_metrics adds every method's recalls, index size and query time, and the triplet accuracy
    saved = json.loads((tmp_path / "conformance-loc2vec" / "metrics.json").read_text())
    for key in ("recall_at_1_within_10m", "raw_pca_recall_at_5_within_25m", "raw_query_ms", "learned_index_bytes",
                "triplet_accuracy"):
        assert key in saved and key in metrics
    assert metrics["num_triplets"] == 4
    for name in ("embeddings_pca.png", "embeddings_tsne.png", "nearest_neighbours.png", "interpolation.png",
                 "split.png"):
        assert (tmp_path / "conformance-loc2vec" / name).stat().st_size > 1000, name


def test_synthetic_dataset_conformance():
    check_dataset("osm-tiles-synthetic")

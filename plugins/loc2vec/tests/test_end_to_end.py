"""The main job on the real Helsinki map (fetched on first use), shortened: slow and needs the sample data.

The learned embedding is compared with the fair baseline at equal dimension: raw tiles PCA-reduced to the
embedding's 16 dimensions, indexed like it at 8 headings, on the same reference grid and queries. (Raw tiles at
full dimension, 3072 values, are also reported; see the README for where they still win.)
"""

from __future__ import annotations

import json

import pytest

from maploc.engine import EngineConfig
from maploc.engine.runner import RunSpec, execute

METHODS = ("learned", "learned_north_up", "raw", "raw_pca", "raw_north_up")


@pytest.mark.slow
@pytest.mark.data
def test_helsinki_main_job_beats_raw_tiles_at_equal_dimension(tmp_path):
    out = tmp_path / "run"
    result = execute(
        RunSpec(method="loc2vec", overrides=("train.max_steps=60", "data.grid_step_m=10", "eval.projection_points=300"),
                out=out, engine=EngineConfig(progress=False)),
        say=lambda s: None,
    )
    m = result.metrics
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["num_queries"] == 300 and saved["num_triplets"] == 300
    for key in METHODS:  # every method on the same grid and queries
        assert f"{key}_recall_at_5_within_25m" in saved and f"{key}_query_ms" in saved, key
    assert m["learned_headings"] == m["raw_pca_headings"] == m["raw_headings"] == 8
    assert m["learned_dim"] == m["raw_pca_dim"] == 16
    assert m["learned_index_bytes"] == m["raw_pca_index_bytes"]  # equal index size
    # the learned embedding against raw tiles reduced to its dimension, both at 8 headings
    assert m["recall_at_5_within_25m"] > m["raw_pca_recall_at_5_within_25m"] + 5, m
    assert m["recall_at_1_within_25m"] > m["raw_pca_recall_at_1_within_25m"], m
    assert m["triplet_accuracy"] > 75.0, m
    assert m["recall_at_5"] == m["recall_at_5_within_25m"]  # the core's threshold is eval.distance_threshold_m=25
    for name in ("embeddings_pca.png", "embeddings_tsne.png", "nearest_neighbours.png", "interpolation.png",
                 "split.png", "recall_at_n.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "last.ckpt").is_file()
    report = (out / "report.txt").read_text()
    assert "Loc2Vec vs raw-tile baselines" in report and "raw tiles PCA, H headings" in report

"""The main job on the real Helsinki map (fetched on first use), shortened: slow and needs the sample data."""

from __future__ import annotations

import json

import pytest

from maploc.engine import EngineConfig
from maploc.engine.runner import RunSpec, execute


@pytest.mark.slow
@pytest.mark.data
def test_helsinki_main_job_beats_the_raw_tile_baseline(tmp_path):
    out = tmp_path / "run"
    result = execute(
        RunSpec(method="loc2vec", overrides=("train.max_steps=40", "eval.projection_points=300"), out=out,
                engine=EngineConfig(progress=False)),
        say=lambda s: None,
    )
    m = result.metrics
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["num_queries"] == 300 and saved["num_triplets"] == 300
    # the embedding is rotation invariant; raw tiles are not: the learned recall must win clearly at 25 m
    assert m["recall_at_5_within_25m"] > m["baseline_recall_at_5_within_25m"] + 10, m
    assert m["triplet_accuracy"] > 75.0, m
    assert m["recall_at_5"] == m["recall_at_5_within_25m"]  # the core's threshold is eval.distance_threshold_m=25
    for name in ("embeddings_pca.png", "embeddings_tsne.png", "nearest_neighbours.png", "interpolation.png",
                 "split.png", "recall_at_n.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert "learned embedding vs raw-tile baseline" in (out / "report.txt").read_text()

"""End to end on the real two-pass corridor set (../shared/data/corridor; evaluation only, never trained on)."""

import json

import numpy as np
import pytest
import torch

from maploc.engine import EngineConfig
from maploc.engine.runner import RunSpec, execute

pytestmark = pytest.mark.data

OVERRIDES = ("train.max_steps=0", "train.epochs=0", "data.image_height=60", "model.num_clusters=16")


def _run(corridor, out, *extra, stages=("fit", "map", "localize")):
    spec = RunSpec(method="netvlad", dataset="two-pass", data_root=corridor, overrides=OVERRIDES + extra, out=out,
                   engine=EngineConfig(progress=False), stages=stages)
    return execute(spec, say=lambda s: None)


def test_corridor_end_to_end_and_index_reuse(corridor, tmp_path):
    from maploc.data.two_pass import TwoPass
    from maploc.methods.nn_retrieval import thumbnail_descriptors

    first = _run(corridor, tmp_path / "a")
    m = first.metrics
    assert m["num_queries"] == 111
    assert m["recall_at_1"] <= m["recall_at_5"] <= m["recall_at_20"]
    assert "num_queries_outside_test_region" not in m  # nothing trained: no split, every query scored
    # the thumbnails baseline equals a direct computation with the core's thumbnails and the ground truth file
    refs, queries = TwoPass(corridor, "map", image_height=60), TwoPass(corridor, "query", image_height=60)
    r = thumbnail_descriptors(torch.stack([refs[i].image for i in range(len(refs))]), 32)
    q = thumbnail_descriptors(torch.stack([queries[i].image for i in range(len(queries))]), 32)
    top5 = (q @ r.T).topk(5, dim=1).indices.numpy()
    truth = [set(queries[i].extras["true_map_indices"]) for i in range(len(queries))]
    expected = 100.0 * np.mean([bool(set(top5[i]) & truth[i]) for i in range(len(queries))])
    assert m["thumbnails:recall_at_5"] == pytest.approx(expected)
    assert m["chance:recall_at_1"] < m["thumbnails:recall_at_1"]
    assert (tmp_path / "a" / "index" / "index.faiss").is_file()
    assert {p.name for p in (tmp_path / "a").glob("*.png")} == {"recall_at_n.png", "recall_at_n_conditions.png",
                                                                "top5_example.png", "descriptor_pca.png"}
    # reusing the saved index (and its whitening) gives the same answers as re-encoding the map
    again = _run(corridor, tmp_path / "b", f"index.load_from={tmp_path / 'a' / 'index'}")
    for n in (1, 5, 10, 20):
        assert again.metrics[f"recall_at_{n}"] == pytest.approx(m[f"recall_at_{n}"])
    saved = json.loads((tmp_path / "a" / "index" / "index.json").read_text())
    assert saved["names"][0] == refs.names()[0]
    assert f"descriptor dimension: {saved['dim']}" in first.report

"""The core's conformance suite on the ``loc2vec`` method (file-free ``osm-tiles-synthetic`` dataset): training,
checkpoint, eval from the checkpoint with the same metrics, ``maploc evaluate RUN`` reproducing metrics.json."""

import json

import numpy as np
import torch

from maploc.data.split import SpatialSplit
from maploc.testing.conformance import check_dataset, check_method
from maploc_loc2vec.data import SyntheticTileDataset
from maploc_loc2vec.method import VARIANTS


def _triplet_distances(run, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``d(a, p)`` and ``d(a, n)`` of the named queries' held-out triplets, with the embedding of the run's
    checkpoint (the network's forward pass; the distances in NumPy)."""
    from maploc.config import structure
    from maploc.engine import load_checkpoint
    from maploc.engine.runner import load_run_config
    from maploc_loc2vec.method import Loc2VecConfig, Loc2VecMethod

    method = Loc2VecMethod(structure(Loc2VecConfig, load_run_config(run / "config.yaml")["config"]))
    method.model = method.configure_model()
    method.model.load_state_dict(load_checkpoint(run / "checkpoints" / "last.ckpt")["model"])
    method.model.eval()
    queries = SyntheticTileDataset(None, "query")
    by_name = {queries.metadata(i).name: i for i in range(len(queries))}
    samples = [queries[by_name[n]] for n in names]
    with torch.no_grad():
        a, p, n = (method.model.embed(method.query_tiles(samples, key), 64).double().numpy()
                   for key in ("tile", "positive_tile", "negative_tile"))
    return np.linalg.norm(a - p, axis=1), np.linalg.norm(a - n, axis=1)


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
    # the held-out triplet of each query is a column of the method's predictions CSV: d(a, p) < d(a, n) with the
    # checkpoint's embedding, recomputed here; the report's accuracy is the percent of true rows
    header, *rows = (out / "predictions" / "loc2vec.csv").read_text().splitlines()
    assert header.split(",")[-1] == "triplet_correct" and len(rows) == 4
    names, column = [r.split(",")[0] for r in rows], [r.split(",")[-1] for r in rows]
    d_ap, d_an = _triplet_distances(out, names)
    assert column == ["true" if a < n else "false" for a, n in zip(d_ap, d_an)], (d_ap, d_an)
    assert np.all(np.abs(d_ap - d_an) > 1e-4)  # no near-tie: the recomputation decides every row
    accuracy = 100.0 * column.count("true") / 4
    report = (out / "report.txt").read_text()
    assert "raw_pca (baseline)" in report and "chance (reference)" in report and "learned_north_up " in report
    assert "== Spatial split ==" in report and "left 0 queries outside" in report
    assert "== Indexes" in report and f"held-out triplet accuracy of the query triplets: {accuracy:.1f}% (4 triplets)" in report
    for name in ("embeddings_pca.png", "embeddings_tsne.png", "nearest_neighbours.png", "interpolation.png",
                 "split.png"):
        assert (out / name).stat().st_size > 1000, name


def test_synthetic_dataset_conformance():
    check_dataset("osm-tiles-synthetic")

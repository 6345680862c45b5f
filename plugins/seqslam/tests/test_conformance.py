"""The core's conformance suite on both methods (one test each): a run, ``maploc eval --checkpoint``
giving the same metrics (DeepSeqSLAM trains), ``maploc evaluate RUN`` reproducing metrics.json; and
the single-frame baseline written and scored beside the method.

The synthetic room is a few metres across, so every match is within 10 m and the recall rows cannot
tell a right match from a wrong one; what the run wrote is checked instead against the algorithm
recomputed here on the same images: SeqSLAM's matches and confidences against the paper oracle of
``test_search.py`` (on the method's own descriptors), DeepSeqSLAM's against the checkpoint's network
run by hand (its LSTM over the last ``ds`` frames, negative log-probabilities, uniqueness ratio in
NumPy); the ``single_frame`` rows the same with one frame.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maploc.engine import load_checkpoint
from maploc.evaluation.predictions import read_predictions
from maploc.plugins import load_component
from maploc.testing.conformance import check_method

from .test_search import seqslam_oracle

DS, UNIQUENESS_WINDOW = 2, 1  # the methods' conformance_overrides


def _room():
    cls = load_component("datasets", "synthetic-room")
    return cls(None, "map", image_height=48), cls(None, "query", image_height=48)


def _uniqueness(scores: np.ndarray, window: int) -> tuple[int, float]:
    """Best (lowest) score and ``1 - best / best outside window`` (OpenSeqSLAM2's ratio), plainly."""
    b = int(np.argmin(scores))
    others = [s for j, s in enumerate(scores) if abs(j - b) > window]
    second = min(others) if others else math.inf
    mu = 0.0 if math.isinf(second) else (scores[b] / second if second > 0 else 1.0)
    return b, 1.0 - mu


def _recomputed(name: str, run, map_data, queries, n: int, ds: int) -> list[tuple[str, float]]:
    """(map name, confidence) of the first ``n`` queries, recomputed from the images."""
    map_names = [map_data.metadata(i).name for i in range(len(map_data))]
    q_images = torch.stack([queries[i].image for i in range(n)])
    starts = np.array([i == 0 or queries.metadata(i).sequence != queries.metadata(i - 1).sequence for i in range(n)])
    if name == "seqslam":
        from maploc_seqslam.seqslam import SeqSLAM, SeqSLAMConfig

        method = SeqSLAM(SeqSLAMConfig())  # its descriptors (Sec. III-A); the search is the oracle's
        refs = method.describe(torch.stack([map_data[i].image for i in range(len(map_data))])).double().numpy()
        from maploc_seqslam.search import SearchParams

        params = SearchParams(ds=ds, r_window=2, uniqueness_window=UNIQUENESS_WINDOW)
        best, conf, _ = seqslam_oracle(method.describe(q_images).double().numpy(), refs, params, starts)
        return [(map_names[b], float(c)) for b, c in zip(best, conf)]
    from maploc_seqslam.deepseqslam import DeepSeqSLAMNet

    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    net = DeepSeqSLAMNet(len(map_data), "resnet10t", "", 8, 8)
    net.load_state_dict(ckpt["model"])
    net.eval()
    out = []
    with torch.no_grad():
        desc = net.describe(q_images)
        first = 0
        for i in range(n):
            first = i if starts[i] else first
            window = desc[max(first, i - ds + 1):i + 1][None]
            scores = -F.log_softmax(net.sequence(window).double(), dim=1)[0].numpy()
            b, c = _uniqueness(scores, UNIQUENESS_WINDOW)
            out.append((map_names[b], c))
    return out


@pytest.mark.parametrize("name", ["seqslam", "deepseqslam"])
def test_conformance(tmp_path, name):
    metrics = check_method(name, tmp_path)
    assert metrics["num_queries"] == 4
    # the single-frame matcher is a baseline row of the same table, scored on the same 4 queries
    assert metrics["single_frame:num_queries"] == 4
    run = tmp_path / f"conformance-{name}"
    manifest = json.loads((run / "predictions" / "manifest.json").read_text())
    assert manifest["variants"]["single_frame"]["baseline"] is True
    assert "single_frame (baseline)" in (run / "report.txt").read_text()
    # the synthetic room is a few metres across: every map frame is within 10 m of every query
    assert metrics["chance:recall_at_1"] == 100.0
    for plot in ("pr_curves.png", "difference_matrix.png", "examples.png"):
        assert (run / plot).is_file(), plot
    # what the run wrote is the algorithm on these images: the sequence (ds = 2) and single-frame matches
    map_data, queries = _room()
    q_names = [queries.metadata(i).name for i in range(4)]
    m_names = [map_data.metadata(i).name for i in range(len(map_data))]
    for file, ds in ((f"{name}.txt", DS), ("single_frame.txt", 1)):
        written, _ = read_predictions(run / "predictions" / file, "sequence", q_names, map_names=m_names)
        expect = _recomputed(name, run, map_data, queries, 4, ds)
        assert [m_names[e.retrieval.indices[0]] for e in written] == [m for m, _ in expect], file
        # SeqSLAM: float32 rows against the float64 oracle; DeepSeqSLAM: the same network, the same float32 ops
        atol = 1e-3 if name == "seqslam" else 1e-6
        np.testing.assert_allclose([e.confidence for e in written], [c for _, c in expect], atol=atol, err_msg=file)
        assert all(0.0 <= c <= 1.0 for _, c in expect)

"""Leave-one-out splits: the core never lets a query's own image count, in the baseline or the coverage row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maploc.api import RunContext, SampleMeta
from maploc.data.synthetic import SyntheticRoom
from maploc.evaluation.scoring import Manifest, _reference_rows
from maploc.methods.nn_retrieval import NearestNeighbourRetrieval, NNRetrievalConfig


def _samples(n: int = 6):
    data = SyntheticRoom(None, "map")
    return [data[i] for i in range(min(n, len(data)))]


def test_nn_retrieval_never_returns_the_query_itself_under_leave_one_out():
    samples = _samples()
    method = NearestNeighbourRetrieval(NNRetrievalConfig(top_k=3))
    method.build_map(samples)  # type: ignore[arg-type]  (a list of samples is indexable like a Dataset)
    plain = method.localize(samples)
    names = [s.name for s in samples]
    # without leave-one-out each image retrieves itself (cosine similarity 1): what the guard must remove
    assert all(names[int(e.retrieval.indices[0])] == s.name for e, s in zip(plain, samples))
    loo = method.localize(samples, RunContext(leave_one_out=True))
    for e, s in zip(loo, samples):
        retrieved = [names[int(i)] for i in e.retrieval.indices]
        assert s.name not in retrieved
        assert torch.isfinite(torch.as_tensor(e.retrieval.scores)).all()
        assert not torch.allclose(e.T_cam2world.t, s.T_cam2world.t)


def test_coverage_row_leaves_out_the_query_own_image():
    samples = _samples()
    metas = [SampleMeta.of(s) for s in samples]
    manifest = Manifest(method="nn-retrieval", family="pose6dof", dataset="synthetic-room", num_queries=len(metas))
    rows = _reference_rows("pose6dof", metas, metas, manifest, [], list(range(len(metas))))
    cov = rows["coverage"]
    # every query has itself in the map: counted, the floor would be 0 cm / 0 deg
    assert cov["median_translation_cm"] > 0.0
    t = np.array([m.T_cam2world.t.numpy() for m in metas])
    nearest_other = np.sort(np.linalg.norm(t[:, None] - t[None], axis=2), axis=1)[:, 1]
    assert np.isclose(cov["median_translation_cm"], 100 * np.median(nearest_other), rtol=1e-5)


@pytest.mark.data
def test_runner_refuses_a_method_without_leave_one_out_support_in_one_line():
    import subprocess
    import sys
    from pathlib import Path

    fountain = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "strecha" / "fountain-P11"
    if not fountain.is_dir():
        pytest.skip(f"the Strecha scenes are not at {fountain.resolve()}")
    proc = subprocess.run([sys.executable, "-m", "maploc.cli", "run", "--method", "template", "--dataset", "strecha",
                           "--data-root", str(fountain), "--out", "/nonexistent-never-created"],
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "leave-one-out" in lines[0] and "'template'" in lines[0]

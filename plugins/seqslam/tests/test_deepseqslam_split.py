"""DeepSeqSLAM with the spatial split (``split`` section): it never trains on a frame outside the train-allowed
blocks (checked on the frames the engine's batches feed the network, against the distance to the test blocks), writes
``RUN/split.json`` equal to netvlad's split of the same map, matches by sequence descriptors (so test-block places,
which have no class, can be found), reloads the split under ``maploc eval --checkpoint``; ``split.block_size_m=0``
keeps the paper's protocol (every frame trained, classifier scores). Model sizes: the plugin's conformance settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maploc.api import Dataset, RunContext
from maploc.config import apply_overrides
from maploc.data.split import SPLIT_CODES, SpatialSplit
from maploc.engine import Engine, EngineConfig
from maploc.types import Camera, Pose, Sample
from maploc_seqslam.deepseqslam import DeepSeqSLAM, DeepSeqSLAMConfig

M = 80  # frames 4 m apart: a 316 m route, 5 blocks of ~63 m (1 test, 1 val, 3 train)
SPACING_M = 4.0
CAMERA = Camera.from_focal(50.0, 64, 32)
SMALL = ["ds=2", "uniqueness_window=1", "train.batch_size=1", "block_size=2", "descriptor_dim=8", "hidden_size=8"]


class _Route(Dataset):
    """A straight route along x; ``map``/``train``: the reference frames, ``query``: the same images."""

    needs_root = False
    splits = ("train", "map", "query")

    def __init__(self, root: Path | None = None, split: str = "map", *, image_height: int | None = None,
                 options=None) -> None:
        super().__init__(Path("."), split, image_height=image_height, options=options)
        patterns = torch.rand(M, 3, 4, 8, generator=torch.Generator().manual_seed(0))
        self.images = F.interpolate(patterns, size=(32, 64), mode="bilinear", align_corners=False)
        self.sequence = "ref" if split in ("map", "train") else "q"

    def __len__(self) -> int:
        return M

    def __getitem__(self, i: int) -> Sample:
        T = torch.eye(4)
        T[0, 3] = SPACING_M * i
        return Sample(image=self.images[i], camera=CAMERA, T_cam2world=Pose.from_matrix(T),
                      name=f"{self.sequence}/{i:03d}", sequence=self.sequence, timestamp=float(i), condition="day")


def _xy() -> np.ndarray:
    return np.stack([SPACING_M * np.arange(M), np.zeros(M)], axis=1)


def _fit(tmp_path: Path, monkeypatch, *overrides: str, steps: int = 6) -> tuple[DeepSeqSLAM, list[list[int]]]:
    """Trains on the route; returns the method and, per training sequence, the route indices of the images fed to
    the network (recognised by their pixels as they enter the augmentation, so independent of the method's
    bookkeeping)."""
    import maploc_seqslam.deepseqslam as module

    config = apply_overrides(DeepSeqSLAMConfig(), [*SMALL, f"train.max_steps={steps}",
                                                   "train.checkpoint_every=100000", *overrides])
    method = DeepSeqSLAM(config)
    engine = Engine(EngineConfig(seed=0, progress=False), tmp_path)
    engine.launch()
    method.model = method.configure_model()
    route = _Route(None, "train").images.flatten(1)
    fed: list[list[int]] = []
    augment = module.augment

    def recording(images, strength, generator=None):
        for seq in images:  # (L, 3, H, W) each
            hits = (seq.flatten(1)[:, None] == route[None]).all(dim=2)  # (L, M)
            assert (hits.sum(1) == 1).all(), "a fed image is not one of the route's"
            fed.append(hits.float().argmax(1).tolist())
        return augment(images, strength, generator)

    monkeypatch.setattr(module, "augment", recording)
    method.fit(engine, _Route(None, "train"), None, RunContext(run_dir=tmp_path))
    return method, fed


def test_split_trains_only_on_train_allowed_frames_and_saves_the_split(tmp_path, monkeypatch):
    method, fed = _fit(tmp_path, monkeypatch, steps=20)
    xy = _xy()
    split = SpatialSplit.from_points(xy, block_size_m=60, success_radius_m=25)  # the defaults, built independently
    test_xy = xy[split.split_of(xy) == SPLIT_CODES["test"]]
    val_xy = xy[split.split_of(xy) == SPLIT_CODES["val"]]
    assert len(test_xy) and len(val_xy)
    used = sorted({i for seq in fed for i in seq})
    assert len(fed) == 20 and used  # one augmentation draw per block of windows, train.batch_size=1
    # every fed frame keeps more than 25 m from every test and val frame: none is a positive of a scored query
    for held in (test_xy, val_xy):
        d = np.linalg.norm(xy[used][:, None] - held[None], axis=2).min(axis=1)
        assert d.min() > 25.0, (d.min(), used)
    saved = tmp_path / "split.json"
    assert saved.is_file()
    assert SpatialSplit.from_dict(json.loads(saved.read_text())) == split == method.split
    assert split.guard_m == 25.0
    # the classes are exactly the allowed frames, and training reached most of them
    allowed = np.flatnonzero(split.allowed(xy, "train"))
    assert method.train_frames == [int(i) for i in allowed]
    assert method.model.num_places == len(allowed) < M
    assert set(used) <= set(method.train_frames) and len(set(used)) > len(allowed) // 2
    # a window never jumps a held-out stretch: its frames are consecutive (or the first repeated)
    b = method.collate(list(range(len(allowed))))
    for w in b["frames"][b["windows"]]:
        orig = [method.train_frames[int(k)] for k in w]
        assert all(0 <= q - p <= 1 for p, q in zip(orig, orig[1:])), orig


def test_split_equals_netvlads(tmp_path, monkeypatch):
    netvlad_split = pytest.importorskip("maploc_netvlad.split", reason="maploc_netvlad (the reference split) is "
                                        "not installed")
    from maploc_netvlad.config import NetVLADConfig

    _fit(tmp_path, monkeypatch, steps=1)
    theirs = netvlad_split.build_split([_Route(None, "map")[i] for i in range(M)], NetVLADConfig())
    ours = json.loads((tmp_path / "split.json").read_text())
    assert ours == theirs.to_dict()
    assert (tmp_path / "split.json").read_text() == json.dumps(theirs.to_dict()) + "\n"


def test_split_matches_by_descriptors_and_eval_checkpoint_reloads_the_split(tmp_path, monkeypatch):
    method, _ = _fit(tmp_path / "run", monkeypatch, steps=3)
    assert method.matches_descriptors
    route = _Route(None, "map")
    method.build_map(route, RunContext(run_dir=tmp_path / "run"))
    # a query sequence identical to the map: its sequence descriptors are the map's, so every query, including the
    # test-block frames (no class of the classifier), finds its own frame at distance 0
    queries = [route[i] for i in range(M)]
    estimates = method.localize(queries)
    best = [e.retrieval.indices[0] for e in estimates]
    split = method.split
    test = np.flatnonzero(split.split_of(_xy()) == SPLIT_CODES["test"])
    assert set(test) - set(method.train_frames) == set(test)
    assert [best[i] for i in test] == list(test)
    # the plots keep the scored (test-block) queries in the PR curves
    from maploc_seqslam import common

    seen = []
    pr_curves = common.pr_curves
    monkeypatch.setattr(common, "pr_curves", lambda m, q, rows, t: seen.append(len(q)) or pr_curves(m, q, rows, t))
    paths = method.plots(tmp_path / "run", _Route(None, "query"), estimates)
    assert tmp_path / "run" / "pr_curves.png" in paths
    assert seen == [len(test)]
    # maploc eval --checkpoint: a fresh method, the weights loaded, the source run's split saved in the new run
    state = {k: v.clone() for k, v in method.model.state_dict().items()}
    fresh = DeepSeqSLAM(method.config)
    fresh.model = fresh.configure_model()
    fresh.model.load_state_dict(state)
    (tmp_path / "eval").mkdir()
    fresh.build_map(route, RunContext(run_dir=tmp_path / "eval", source_run_dir=tmp_path / "run"))
    assert (tmp_path / "eval" / "split.json").read_text() == (tmp_path / "run" / "split.json").read_text()
    again = fresh.localize(queries)
    assert [e.retrieval.indices[0] for e in again] == best
    np.testing.assert_allclose([e.confidence for e in again], [e.confidence for e in estimates], atol=1e-6)


def test_no_split_keeps_the_papers_protocol(tmp_path, monkeypatch):
    method, fed = _fit(tmp_path, monkeypatch, "split.block_size_m=0", steps=20)
    assert not (tmp_path / "split.json").exists()
    assert method.split is None and not method.matches_descriptors
    assert method.train_frames == list(range(M)) and method.model.num_places == M
    # frames of what would be test blocks are trained on (the unfairness the split removes)
    would_be = SpatialSplit.from_points(_xy(), block_size_m=60, success_radius_m=25)
    test = set(np.flatnonzero(would_be.split_of(_xy()) == SPLIT_CODES["test"]).tolist())
    assert test & {i for batch in fed for i in batch}
    # scores are the classifier's negative log-probabilities
    route = _Route(None, "map")
    method.build_map(route, RunContext())
    estimates = method.localize([route[i] for i in range(3)])
    model = method.model.eval()
    with torch.no_grad():
        d = model.describe(torch.stack([route[i].image for i in range(3)]))
        scores = -F.log_softmax(model.sequence(d[1:3][None]), dim=1)[0]
    assert estimates[2].retrieval.indices[0] == int(scores.argmin())


def test_training_windows_at_other_velocities_stay_in_their_segment(tmp_path, monkeypatch):
    """``v_min`` / ``v_max``: a window at velocity ``v`` holds references ``j - round(v * (L - 1 - t))``, clamped to
    the first frame of its stretch of allowed frames (never across a held-out block)."""
    method, fed = _fit(tmp_path, monkeypatch, "v_min=0.6", "v_max=1.4", steps=10)
    starts = method._segment_starts
    j = max(range(len(starts)), key=lambda c: c - starts[c])  # the class farthest into its stretch
    assert j - starts[j] >= 6
    assert method._window(j, 4, 2.0) == [j - 6, j - 4, j - 2, j]
    assert method._window(j, 3, 0.6) == [j - 1, j - 1, j]  # round(1.2) = 1, round(0.6) = 1
    first = starts[j]
    assert method._window(first + 1, 4, 2.0) == [first, first, first, first + 1]
    assert method._window(j, 4, 1.0) == [j - 3, j - 2, j - 1, j]
    # the fed frames still keep clear of the held-out blocks
    xy = _xy()
    held = xy[method.split.split_of(xy) != SPLIT_CODES["train"]]
    used = sorted({i for seq in fed for i in seq})
    assert np.linalg.norm(xy[used][:, None] - held[None], axis=2).min() > 25.0

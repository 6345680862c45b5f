"""Both methods' outputs as the core scores them, on a synthetic route driven by hand as the runner
does it: per-condition rows of the method, its ``single_frame`` baseline and the exact chance level
(``maploc.evaluation.scoring``), and DeepSeqSLAM's checkpoint-sized classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maploc.api import Dataset, SampleMeta
from maploc.evaluation.predictions import read_predictions
from maploc.evaluation.scoring import Manifest, score_run, write_run_predictions
from maploc.types import Camera, Pose, Sample
from maploc_seqslam.deepseqslam import DeepSeqSLAMNet
from maploc_seqslam.seqslam import SeqSLAM, SeqSLAMConfig

M = 60  # reference frames
SPACING_M = 4.0  # a map frame within 10 m: the query's own place and 2 on each side
CAMERA = Camera.from_focal(50.0, 64, 32)


class _Route(Dataset):
    """A list of samples as a dataset (no files)."""

    needs_root = False

    def __init__(self, samples: list[Sample]) -> None:
        super().__init__(Path("."), "query")
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


def _route(noisy: float) -> tuple[_Route, _Route]:
    """Map: ``M`` places 4 m apart along x (a low-contrast random pattern each). Queries: condition
    ``clear`` (sequence ``t0_clear``, places 10..39, little noise) and ``noisy`` (sequences
    ``t0_noisy`` over the whole route and ``t1_noisy`` over places 20..49, pixel noise ``noisy``)."""
    patterns = torch.rand(M, 1, 8, 16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)

    def sample(j: int, sequence: str, condition: str, noise: float) -> Sample:
        base = torch.nn.functional.interpolate(patterns[j:j + 1], size=(32, 64), mode="bilinear",
                                               align_corners=False)[0].expand(3, -1, -1)
        image = (0.5 + 0.2 * (base - 0.5) + noise * torch.randn(3, 32, 64, generator=g)).clamp(0, 1)
        T = torch.eye(4)
        T[0, 3] = SPACING_M * j
        return Sample(image=image, camera=CAMERA, T_cam2world=Pose.from_matrix(T), name=f"{sequence}/{j:03d}",
                      sequence=sequence, timestamp=float(j), condition=condition)

    ref = [sample(j, "t0_day", "day", 0.0) for j in range(M)]
    queries = [sample(j, "t0_clear", "clear", 0.05) for j in range(10, 40)]
    queries += [sample(j, "t0_noisy", "noisy", noisy) for j in range(M)]
    queries += [sample(j, "t1_noisy", "noisy", noisy) for j in range(20, 50)]
    return _Route(ref), _Route(queries)


def _chance(places: list[int]) -> float:
    """Percent of random single matches that are true: mean of (true places) / M (every query has one)."""
    hits = [min(j + 2, M - 1) - max(j - 2, 0) + 1 for j in places]
    return 100.0 * float(np.mean(hits)) / M


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, float], Path, list, list]:
    ref, queries = _route(noisy=0.8)
    method = SeqSLAM(SeqSLAMConfig())
    method.build_map(ref)
    estimates = []
    for start in range(0, len(queries), 16):  # several batches: the search state carries over
        estimates += method.localize(queries.samples[start:start + 16])
    metas = [SampleMeta.of(q) for q in queries.samples]
    variants = method.variants(metas, estimates)
    run = tmp_path_factory.mktemp("route")
    manifest = Manifest(family="sequence", method="seqslam", dataset="route", num_queries=len(metas),
                        distance_thresholds_m=(10.0,))
    map_metas = [ref.metadata(i) for i in range(len(ref))]
    write_run_predictions(run / "predictions", manifest, [q.name for q in metas], [m.name for m in map_metas],
                          estimates, variants)
    result = score_run(run / "predictions", metas, map_metas, run_dir=run)
    paths = method.plots(run, queries, estimates)
    return result.metrics, run, estimates, paths


def test_sequences_beat_single_frames_per_condition(scored) -> None:
    m, _, _, _ = scored
    assert m["clear/num_queries"] == 30 and m["noisy/num_queries"] == 90
    assert m["clear/recall_at_1"] == 100.0 and m["single_frame:clear/recall_at_1"] == 100.0
    # pixel noise: single frames fail on most noisy queries, 10-frame sequences on almost none
    assert m["noisy/recall_at_1"] > 90.0
    assert m["single_frame:noisy/recall_at_1"] < 60.0
    assert m["noisy/pr_auc"] > m["single_frame:noisy/pr_auc"] + 0.3
    assert m["noisy/recall_at_100_precision"] > 80.0 > m["single_frame:noisy/recall_at_100_precision"]
    # the condition groups, not the sequence: t0_noisy and t1_noisy are one row
    assert not any(k.split(":")[-1].startswith(("t0_", "t1_")) for k in m)


def test_chance_rows_are_exact(scored) -> None:
    m, _, _, _ = scored
    clear, noisy = list(range(10, 40)), list(range(M)) + list(range(20, 50))
    assert m["chance:clear/recall_at_1"] == pytest.approx(_chance(clear))  # 5 / 60: no route end
    assert m["chance:noisy/recall_at_1"] == pytest.approx(_chance(noisy))  # the route's ends have 3-4
    assert m["chance:recall_at_1"] == pytest.approx(_chance(clear + noisy))
    assert m["chance:noisy/recall_at_1"] < m["chance:clear/recall_at_1"]


def test_estimates_rank_best_first(scored) -> None:
    _, run, estimates, _ = scored
    for e in estimates:
        r = e.retrieval
        assert len(r) == 5 and e.confidence == r.scores[0]
        assert 0.0 <= e.confidence <= 1.0
        assert list(r.scores) == sorted(r.scores, reverse=True)
    # the predictions files round-trip: the first line of a query is its match with the confidence
    names = [f"t0_clear/{j:03d}" for j in range(10, 40)] + [f"t0_noisy/{j:03d}" for j in range(M)] + [
        f"t1_noisy/{j:03d}" for j in range(20, 50)]
    ref_names = [f"t0_day/{j:03d}" for j in range(M)]
    back, _ = read_predictions(run / "predictions" / "seqslam.txt", "sequence", names, map_names=ref_names)
    assert [b.retrieval.indices for b in back] == [e.retrieval.indices for e in estimates]
    assert [b.confidence for b in back] == [e.confidence for e in estimates]
    single, _ = read_predictions(run / "predictions" / "single_frame.txt", "sequence", names, map_names=ref_names)
    assert [s.retrieval.indices[0] for s in single] != [e.retrieval.indices[0] for e in estimates]


def test_plots(scored) -> None:
    _, run, _, paths = scored
    assert sorted(p.name for p in paths) == ["difference_matrix.png", "examples.png", "pr_curves.png"]
    assert all((run / p.name).stat().st_size > 0 for p in paths)


def test_single_frame_off_gives_no_variant() -> None:
    ref, queries = _route(noisy=0.1)
    method = SeqSLAM(SeqSLAMConfig(single_frame=False))
    method.build_map(ref)
    estimates = method.localize(queries.samples[:20])
    assert method.variants([SampleMeta.of(q) for q in queries.samples[:20]], estimates) == {}


def test_checkpoint_sizes_the_classifier() -> None:
    """``maploc eval --checkpoint``: the stand-in network of ``configure_model`` takes the number of
    places from the checkpoint's weights and then computes what the trained network computes."""
    torch.manual_seed(0)
    trained = DeepSeqSLAMNet(7, descriptor_dim=8, hidden_size=8).eval()
    stand_in = DeepSeqSLAMNet(1, descriptor_dim=8, hidden_size=8)
    assert not stand_in.loaded
    stand_in.load_state_dict(trained.state_dict())
    assert stand_in.loaded and stand_in.num_places == 7 and stand_in.classify.out_features == 7
    images = torch.rand(2, 3, 3, 32, 32)
    torch.testing.assert_close(stand_in.eval()(images), trained(images))


def test_stand_in_draws_nothing() -> None:
    """``configure_model``'s stand-in network leaves the global generator alone, so the network
    ``fit`` builds is initialised from the seed alone (as when there was no stand-in)."""
    from maploc_seqslam.deepseqslam import DeepSeqSLAM, DeepSeqSLAMConfig

    torch.manual_seed(3)
    before = torch.get_rng_state()
    method = DeepSeqSLAM(DeepSeqSLAMConfig(descriptor_dim=8, hidden_size=8))
    model = method.configure_model()
    assert isinstance(model, DeepSeqSLAMNet) and model.num_places == 1 and not model.loaded
    assert torch.equal(torch.get_rng_state(), before)

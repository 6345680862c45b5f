"""DeepSeqSLAM learns places (Chancán & Milford 2020, Sec. 3-4: trained on the reference traversal only): on an
easy synthetic route of 16 places the trained CNN+LSTM names the right place for most queries, where the same
network untrained is at chance (1 in 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from maploc.api import Dataset
from maploc.config import apply_overrides
from maploc.engine import Engine, EngineConfig
from maploc.types import Camera, Pose, Sample
from maploc_seqslam.deepseqslam import DeepSeqSLAM, DeepSeqSLAMConfig

M = 16
CAMERA = Camera.from_focal(50.0, 64, 32)


class _Route(Dataset):
    needs_root = False

    def __init__(self, samples: list[Sample]) -> None:
        super().__init__(Path("."), "query")
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


def _route(noise: float) -> tuple[_Route, list[Sample]]:
    """Map: 16 places 4 m apart, a smooth random colour pattern each; queries: the same places, pixel noise."""
    patterns = torch.rand(M, 3, 4, 8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)

    def sample(j: int, sequence: str, sigma: float) -> Sample:
        base = torch.nn.functional.interpolate(patterns[j:j + 1], size=(32, 64), mode="bilinear", align_corners=False)
        image = (base[0] + sigma * torch.randn(3, 32, 64, generator=g)).clamp(0, 1)
        T = torch.eye(4)
        T[0, 3] = 4.0 * j
        return Sample(image=image, camera=CAMERA, T_cam2world=Pose.from_matrix(T), name=f"{sequence}/{j:03d}",
                      sequence=sequence, timestamp=float(j), condition="day")

    return _Route([sample(j, "ref", 0.0) for j in range(M)]), [sample(j, "q", noise) for j in range(M)]


def _top1(steps: int, tmp_path: Path) -> tuple[float, float]:
    """Fraction of queries whose most probable place is their own, for the sequence (ds = 3) and single frames."""
    ref, queries = _route(noise=0.2)
    config = apply_overrides(DeepSeqSLAMConfig(), [
        "ds=3", "descriptor_dim=16", "hidden_size=32", "augment=0.3", "label_tolerance=0", "uniqueness_window=1",
        "block_size=4", "train.batch_size=2", f"train.max_steps={steps}", "train.checkpoint_every=100000",
        "train.lr=3e-3", "split.block_size_m=0"])  # fmt: skip  (the paper's protocol: classify the trained places)
    method = DeepSeqSLAM(config)
    engine = Engine(EngineConfig(seed=0, progress=False), tmp_path)
    engine.launch()
    method.model = method.configure_model()
    method.fit(engine, ref)
    method.build_map(ref)
    estimates = method.localize(queries)
    truth = np.arange(M)
    seq = np.array([e.retrieval.indices[0] for e in estimates])
    single = np.array([e.retrieval.indices[0] for e in method._stream.single])
    return float((seq == truth).mean()), float((single == truth).mean())


def test_trained_network_names_the_places_untrained_does_not(tmp_path):
    untrained_seq, untrained_single = _top1(0, tmp_path / "untrained")
    assert untrained_seq <= 0.25 and untrained_single <= 0.25, (untrained_seq, untrained_single)
    seq, single = _top1(100, tmp_path / "trained")
    print(f"top-1 untrained {untrained_seq:.3f} (single {untrained_single:.3f}), trained {seq:.3f} (single {single:.3f})")
    assert seq >= 0.75, (seq, single)  # chance: 1 / 16
    assert single >= 0.5, (seq, single)

"""examples.png marks each match right (green) or wrong (red) by the core's ground truth."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

import maploc.evaluation.report as core_report
from maploc.api import SampleMeta
from maploc.types import Pose, PoseEstimate, Retrieval
from maploc_seqslam import common


def _pose(x: float) -> Pose:
    T = torch.eye(4, dtype=torch.float64)
    T[0, 3] = x
    return Pose.from_matrix(T)


@attrs.frozen
class _Image:
    name: str
    image: torch.Tensor


class _Split:
    """Samples at x = 0, 20, 40, ... metres (a minimal dataset: metadata() and [])."""

    def __init__(self, prefix: str, n: int) -> None:
        self.metas = [SampleMeta(name=f"{prefix}{i}", T_cam2world=_pose(20.0 * i)) for i in range(n)]

    def __len__(self) -> int:
        return len(self.metas)

    def metadata(self, i: int) -> SampleMeta:
        return self.metas[i]

    def __getitem__(self, i: int) -> _Image:
        return _Image(name=self.metas[i].name, image=torch.full((3, 4, 6), i / 10.0))


@pytest.fixture
def figures(monkeypatch):
    kept = []
    monkeypatch.setattr(core_report, "save_figure", lambda fig, path: kept.append(fig) or path)
    return kept


def test_matches_are_marked_right_or_wrong(tmp_path, figures):
    queries, map_data = _Split("q", 3), _Split("m", 3)
    estimates = [PoseEstimate(success=True, confidence=0.9, retrieval=Retrieval(indices=[j], scores=[0.9]))
                 for j in (0, 2, 2)]  # query 0 -> map 0 (0 m: right), query 1 -> map 2 (20 m: wrong), 2 -> 2 right
    pairs = common.example_pairs(queries, map_data, map_data.metas, estimates, 10.0, count=3)
    assert [p[3] for p in pairs] == [True, False, True]
    common.plot_examples(tmp_path, pairs, 10.0)
    fig = figures[0]
    match_axes = fig.axes[1::2]
    colours = [tuple(ax.spines["left"].get_edgecolor()[:3]) for ax in match_axes]
    green, red = (0.0, 128 / 255, 0.0), (1.0, 0.0, 0.0)
    assert colours == [pytest.approx(green), pytest.approx(red), pytest.approx(green)]
    titles = [ax.get_title(loc="left") for ax in fig.axes[0::2]]
    assert titles[0].startswith("RIGHT: q0 -> m0") and titles[1].startswith("WRONG: q1 -> m2")
    assert "within 10 m" in fig._suptitle.get_text()
    assert np.isfinite(colours[0]).all()

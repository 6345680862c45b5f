"""The spatial split of netvlad / mobilenetvlad (the core's SpatialSplit over the map frames): no image that is
trained on lies within the success radius (25 m) of a query the core scores, on sim-city-like routes."""

import json
import math

import numpy as np
import pytest
import torch

from maploc.api import Dataset
from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError
from maploc.types import Camera, Pose, Pose2, Sample
from maploc_netvlad.config import NetVLADConfig, SplitConfig
from maploc_netvlad.split import build_split, load_split, positions, save_split, success_radius_m
from maploc_netvlad.training import load_training_images


def _route(seed: int, frames: int = 100, spacing: float = 4.0, street: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
    """A sim-city-like walk: ``frames`` positions ``spacing`` m apart along the streets of a Manhattan grid of
    ``street`` m blocks, turning left or right at some intersections. Returns ``(N, 2)`` positions, ``(N,)`` yaw."""
    rng = np.random.default_rng(seed)
    heading = int(rng.integers(4))
    xy, yaw, p = [], [], np.zeros(2)
    for _ in range(frames):
        xy.append(p.copy())
        yaw.append(heading * math.pi / 2)
        p = p + spacing * np.array([math.cos(heading * math.pi / 2), math.sin(heading * math.pi / 2)])
        if abs(np.round(p / street) * street - p).max() < 1e-6 and rng.random() < 0.5:  # at an intersection
            heading = (heading + (1 if rng.random() < 0.5 else 3)) % 4
    return np.array(xy), np.array(yaw)


class _Traversals(Dataset):
    """Traversals of one route at lateral offsets (sequence ``t<k>_<condition>``), tiny blank images."""

    def __init__(self, xy, yaw, sequences):  # sequences: [(name, lateral offset m)]
        super().__init__(".", "train")
        self.items = []
        for name, offset in sequences:
            normal = np.c_[-np.sin(yaw), np.cos(yaw)]
            for i, (p, a) in enumerate(zip(xy + offset * normal, yaw)):
                self.items.append((f"{name}/{i:06d}", name, p, a))
        self.camera = Camera(K=torch.tensor([[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]]), width=8, height=8)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        name, seq, p, a = self.items[i]
        T = Pose(R=torch.eye(3), t=torch.tensor([p[0], p[1], 1.6], dtype=torch.float32))
        return Sample(image=torch.zeros(3, 8, 8), camera=self.camera, T_cam2world=T, pose2=Pose2(x=p[0], y=p[1], yaw=a),
                      name=name, sequence=seq, condition=seq.split("_")[1])


@pytest.mark.parametrize("seed", range(6))
def test_no_training_image_within_25m_of_a_scored_query(seed):
    xy, yaw = _route(seed)
    config = NetVLADConfig()
    assert success_radius_m(config) == 25.0
    map_data = _Traversals(xy, yaw, [("t0_day", -1.2)])
    others = _Traversals(xy, yaw, [("t0_night", -1.2), ("t1_day", 1.2), ("t1_night", 1.2)])  # the query split
    split = build_split([map_data.metadata(i) for i in range(len(map_data))], config)
    assert split is not None and split.counts()["test"] >= 1 and split.counts()["val"] >= 1, split.describe()
    assert split.guard_m == 25.0 and split.footprint_m == 0.0
    queries = [others.metadata(i) for i in range(len(others))]
    scored = split.mask(positions(queries), "test")  # what the core scores (maploc.evaluation.scoring.score_run)
    assert scored.any(), split.describe()
    images = load_training_images([map_data, others], split)  # what netvlad trains on (other_sequences=True)
    assert 0 < len(images.names) < len(map_data) + len(others)
    q3 = np.array([[q.T_cam2world.t[0], q.T_cam2world.t[1], q.T_cam2world.t[2]] for q in queries])[scored]
    gaps = np.linalg.norm(images.xyz[:, None] - q3[None], axis=2)  # 3-D: the core's truth_matrix distance
    assert gaps.min() >= 25.0, gaps.min()
    # and no val-block query was trained on either
    val = split.mask(positions(queries), "val")
    if val.any():
        assert np.linalg.norm(images.xyz[:, None, :2] - positions(queries)[val][None], axis=2).min() >= 25.0


def test_default_blocks_give_the_default_sim_city_route_a_test_block():
    # sim-city's default route: 100 frames 4 m apart, ~310 m north-south and ~20 m wide (measured on the render)
    y = np.linspace(-800.6, -489.1, 100)
    x = 288.2 + 19.7 * (np.sin(np.linspace(0, 3, 100)) > 0.5)
    split = SpatialSplit.from_points(np.c_[x, y], block_size_m=SplitConfig().block_size_m, success_radius_m=25.0)
    assert split.counts() == {"train": 3, "val": 1, "test": 1}, split.describe()


def test_guard_below_the_success_radius_is_an_error_and_zero_blocks_disable():
    xy, yaw = _route(0)
    metas = [m for m in (_Traversals(xy, yaw, [("t0_day", 0.0)]).metadata(i) for i in range(len(xy)))]
    config = NetVLADConfig(split=SplitConfig(guard_m=10.0))
    with pytest.raises(ConfigError, match="below success_radius_m"):
        build_split(metas, config)
    assert build_split(metas, NetVLADConfig(split=SplitConfig(block_size_m=0))) is None


def test_split_round_trip(tmp_path):
    xy, yaw = _route(1)
    metas = [_Traversals(xy, yaw, [("t0_day", 0.0)]).metadata(i) for i in range(len(xy))]
    split = build_split(metas, NetVLADConfig())
    save_split(split, tmp_path)
    assert json.loads((tmp_path / "split.json").read_text())["format"].startswith("maploc.SpatialSplit")
    assert load_split(tmp_path) == split
    assert load_split(tmp_path / "nothing") is None


def test_teacher_checkpoint_of_another_split_is_refused(tmp_path):
    from maploc_netvlad.config import MobileNetVLADConfig
    from maploc_netvlad.method import MobileNetVLADMethod

    xy, yaw = _route(2)
    metas = [_Traversals(xy, yaw, [("t0_day", 0.0)]).metadata(i) for i in range(len(xy))]
    student = MobileNetVLADMethod(MobileNetVLADConfig())
    student.split = build_split(metas, student.config)
    teacher_run = tmp_path / "teacher"
    save_split(build_split(metas, NetVLADConfig(split=SplitConfig(seed=5))), teacher_run)
    with pytest.raises(ConfigError, match="another spatial split"):
        student._check_teacher_split(str(teacher_run / "checkpoints" / "last.ckpt"))
    save_split(student.split, teacher_run)
    student._check_teacher_split(str(teacher_run / "checkpoints" / "last.ckpt"))  # the same split: fine

"""TransPose's synthetic views: DSAC* layout read back by the core's ``dsac`` dataset, holes kept
invalid, the cache (hit without rendering, rebuild when corrupt or incomplete)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from maploc.api import Dataset
from maploc.data.dsac_layout import DSACLayout
from maploc.data.synthetic import look_pose, render_room
from maploc.errors import DataError
from maploc.types import Camera, Sample
from maploc_dsac.losses import scene_coordinates_from_depth
from maploc_dsac.transpose import fusion as fusion_module
from maploc_dsac.transpose import synthesize
from maploc_dsac.transpose.fusion import FusionOptions, SceneModel
from maploc_dsac.transpose.synthesize import SynthOptions, build_synthetic_views

pytestmark = pytest.mark.open3d  # Open3D (and on Linux libusb-1.0): skipped with the reason where missing

FUSION = FusionOptions(voxel_m=0.05, truncation_m=0.15, depth_max_m=8.0)


def room_frames(yaws_deg: list[float], width: int, height: int) -> list[Sample]:
    """Frames of the core's synthetic room (exact depth) from its centre, heading ``yaws_deg``."""
    camera = Camera.from_focal(width / 2, width, height)
    frames = []
    for i, yaw in enumerate(yaws_deg):
        T = look_pose(np.array([3.0, 2.0, 1.5]), math.radians(yaw), 0.0)
        image, depth = render_room(T, camera)
        frames.append(Sample(image=image, camera=camera, T_cam2world=T, depth=depth, name=f"room-{i}"))
    return frames


class FramesDataset(Dataset):
    """A mapping split made of given samples."""

    name = "frames"
    needs_root = False

    def __init__(self, frames: list[Sample]) -> None:
        super().__init__(Path("."), "map")
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Sample:
        return self.frames[index]


@pytest.fixture(scope="module")
def two_frames():
    """Two frames of the room looking in different directions: novel views see unfused walls (holes)."""
    return FramesDataset(room_frames([0.0, 45.0], 96, 72))


def options(**kw) -> SynthOptions:
    return SynthOptions(**({"num_views": 4, "max_angle_deg": 60.0, "fusion": FUSION, "min_valid_fraction": 0.2} | kw))


def test_views_are_written_in_the_dsac_layout_with_holes_invalid(two_frames, tmp_path):
    root = build_synthetic_views(two_frames, options(), tmp_path)
    data = DSACLayout(root, "train")
    assert len(data) == 4 and data.has_depth
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["num_views"] == 4 and manifest["source_frames"] == ["room-0", "room-1"]
    model = SceneModel.load(root / "scene.ply", depth_max_m=FUSION.depth_max_m)
    holes = 0
    for i in range(len(data)):
        s = data[i]
        assert s.image.shape == (3, 72, 96)
        torch.testing.assert_close(s.camera.K, two_frames[0].camera.K)
        view = model.render(s.camera.K.double().numpy(), s.T_cam2world, 96, 72)
        assert view.valid_fraction >= 0.2
        depth = s.depth.numpy()
        np.testing.assert_array_equal(depth > 0, view.valid)  # holes stay holes (0), none filled
        np.testing.assert_allclose(depth[view.valid], view.depth_m[view.valid], atol=6e-4)  # millimetre PNG
        holes += int((~view.valid).sum())
        # init: scene coordinates at DSAC*'s cells of the 480-px image, zeros = hole; they agree with
        # the targets DSAC* derives from depth + pose at the same cells (up to the millimetre depth)
        init = s.extras["init"]
        assert init.shape == (3, 60, 80)
        up = torch.nn.functional.interpolate(s.depth[None, None], size=(480, 640), mode="nearest")[0]
        K480 = s.camera.K.clone()
        K480[:2] *= 480 / 72
        K480[:2, 2] = (s.camera.K[:2, 2] + 0.5) * 480 / 72 - 0.5
        gt, valid = scene_coordinates_from_depth(up.double(), K480[None].double(), s.T_cam2world.R[None].double(),
                                                 s.T_cam2world.t[None].double(), 60, 80)
        init_valid = (init != 0).any(0)
        assert (init_valid == valid[0]).float().mean() > 0.97
        both = init_valid & valid[0]
        assert (torch.linalg.vector_norm(init.double() - gt[0], dim=0)[both] < 0.05).float().mean() > 0.95
    assert holes > 0  # the novel views do see unfused surfaces


def test_cache_hit_does_not_render_and_corrupt_caches_are_rebuilt(two_frames, tmp_path, monkeypatch):
    calls = {"fuse": 0}
    real_fuse = synthesize.fuse_rgbd

    def counting_fuse(*args, **kwargs):
        calls["fuse"] += 1
        return real_fuse(*args, **kwargs)

    monkeypatch.setattr(synthesize, "fuse_rgbd", counting_fuse)
    root = build_synthetic_views(two_frames, options(), tmp_path)
    assert calls["fuse"] == 1

    def no_render(*args, **kwargs):
        raise AssertionError("a cache hit rendered")

    with monkeypatch.context() as m:
        m.setattr(fusion_module.SceneModel, "render", no_render)
        assert build_synthetic_views(two_frames, options(), tmp_path) == root
    assert calls["fuse"] == 1

    # other options -> another cache entry
    other = build_synthetic_views(two_frames, options(seed=1), tmp_path)
    assert other != root and calls["fuse"] == 2

    # a missing file, a truncated file, a broken manifest: each rebuilt
    first_depth = sorted((root / "train" / "depth").iterdir())[0]
    for damage in ("missing", "truncated", "manifest"):
        if damage == "missing":
            first_depth.unlink()
        elif damage == "truncated":
            first_depth.write_bytes(first_depth.read_bytes()[:100])
        else:
            (root / "manifest.json").write_text("{not json")
        before = calls["fuse"]
        assert build_synthetic_views(two_frames, options(), tmp_path) == root
        assert calls["fuse"] == before + 1, damage
        assert len(DSACLayout(root, "train")) == 4
    # no temporary folders left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([root.name, other.name])


def test_views_below_the_valid_fraction_are_dropped_and_counted(two_frames, tmp_path):
    root = build_synthetic_views(two_frames, options(num_views=3, min_valid_fraction=0.6, attempts_per_view=6), tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    assert all(v["valid_fraction"] >= 0.6 for v in manifest["views"])
    assert manifest["rendered"] == manifest["num_views"] + manifest["dropped_low_valid_fraction"]
    assert manifest["dropped_low_valid_fraction"] > 0  # 60 degree turns from two frames often see too little
    assert all(v["angle_to_nearest_map_deg"] <= 60.0 + 1e-3 for v in manifest["views"])


def test_impossible_valid_fraction_raises(two_frames, tmp_path):
    with pytest.raises(DataError, match="min_valid_fraction"):
        build_synthetic_views(two_frames, options(min_valid_fraction=1.0, attempts_per_view=1), tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left
    with pytest.raises(DataError, match="empty"):
        build_synthetic_views(FramesDataset([]), options(), tmp_path)

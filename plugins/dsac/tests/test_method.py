"""The ``dsac`` method: augmentation geometry, localization with oracle scene coordinates, failure
handling, the stage schedule, training steps of every stage, the pose file and the pose solvers."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import torch

from maploc.config import apply_overrides, structure
from maploc.data.collate import collate
from maploc.data.synthetic import SyntheticRoom, render_room
from maploc.errors import ConfigError
from maploc.geometry.errors import pose_error
from maploc.geometry.rotation import quaternion_to_matrix
from maploc.plugins import load_component
from maploc.types import Camera, Correspondences, Pose, PoseEstimate
from maploc_dsac.augment import AugmentParams, augment_batch, sample_params
from maploc_dsac.config import AugmentConfig, DSACConfig
from maploc_dsac.losses import cell_centres, scene_coordinates_from_depth
from maploc_dsac.method import DSACMethod, scene_mean
from maploc_dsac.plots import read_poses_dsac, write_poses_dsac
from maploc_dsac.pose_solvers import DepthCorrespondences

TINY = (
    "data.image_height=48", "network.width=0.125", "ransac.num_hypotheses=16", "ransac.train_hypotheses=8",
    "ransac.max_refinement_steps=10", "train.batch_size=2", "classical.enabled=false",
)


def _config(*overrides: str) -> DSACConfig:
    return apply_overrides(DSACConfig(), list(TINY) + list(overrides))


@pytest.fixture(scope="module")
def room96():
    return SyntheticRoom(None, "query", image_height=96)


# -- augmentation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augmentation_matches_a_rendering_with_the_augmented_camera(room96, seed):
    """The augmented image and depth are what a camera with the augmented K and pose would see."""
    sample = room96[seed]
    batch = collate([sample])
    params = sample_params(1, AugmentConfig(), generator=torch.Generator().manual_seed(seed))
    assert abs(float(params.angle)) > math.radians(3) or abs(float(params.scale) - 1) > 0.05
    aug = augment_batch(batch["image"], batch["K"], params, R_cam2world=batch["R_cam2world"],
                        t_cam2world=batch["t_cam2world"], depth=batch["depth"])
    H, W = sample.image.shape[-2:]
    pose = Pose(R=aug.R_cam2world[0], t=aug.t_cam2world[0])
    image, depth = render_room(pose, Camera(K=aug.K[0], width=W, height=H))
    inner = aug.valid[0].clone()
    inner[[0, -1]] = False  # border pixels mix in the zero padding
    inner[:, [0, -1]] = False
    assert inner.float().mean() > 0.4
    photometric = (aug.images[0] - image).abs()[:, inner].mean()
    # brightness/contrast change the colours by up to ~10 %; geometry errors change them far more
    assert photometric < 0.06, float(photometric)
    depth_rel = ((aug.depth[0] - depth).abs() / depth)[inner]
    # nearest sampling: off by at most half a source pixel, except at depth edges
    assert float((depth_rel < 0.02).float().mean()) > 0.95, float((depth_rel < 0.02).float().mean())
    # the wrong sign of the rotation gives a visibly different image
    wrong = Pose(R=batch["R_cam2world"][0] @ torch.linalg.inv(pose.R) @ batch["R_cam2world"][0], t=pose.t)
    image_wrong, _ = render_room(wrong, Camera(K=aug.K[0], width=W, height=H))
    if abs(float(params.angle)) > math.radians(3):
        assert (aug.images[0] - image_wrong).abs()[:, inner].mean() > 2 * photometric


def test_ground_truth_coordinates_after_augmentation_reproject_consistently(room96):
    """Scene coordinates from the original depth, projected with the augmented camera, land where
    the augmented depth has the same points (the invariant the training targets rely on)."""
    sample = room96[4]
    batch = collate([sample])
    params = AugmentParams(angle=torch.tensor([0.4]), scale=torch.tensor([1.3]), brightness=torch.ones(1),
                           contrast=torch.ones(1))
    aug = augment_batch(batch["image"], batch["K"], params, R_cam2world=batch["R_cam2world"],
                        t_cam2world=batch["t_cam2world"], depth=batch["depth"])
    h, w = 12, 16
    gt_aug, valid_aug = scene_coordinates_from_depth(aug.depth, aug.K, aug.R_cam2world, aug.t_cam2world, h, w)
    gt, valid = scene_coordinates_from_depth(batch["depth"], batch["K"], batch["R_cam2world"], batch["t_cam2world"], h, w)
    # both sets of ground truth lie on the room's surfaces: project the augmented ones into the
    # original camera and compare with the original depth there
    R, t, K = batch["R_cam2world"][0], batch["t_cam2world"][0], batch["K"][0]
    P = gt_aug[0].permute(1, 2, 0)[valid_aug[0]]
    pc = (P - t) @ R
    u = (K[0, 0] * pc[:, 0] / pc[:, 2] + K[0, 2]).round().long()
    v = (K[1, 1] * pc[:, 1] / pc[:, 2] + K[1, 2]).round().long()
    H, W = sample.depth.shape
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    assert inside.float().mean() > 0.9
    d = sample.depth[v[inside], u[inside]]
    assert float(((d - pc[inside, 2]).abs() < 0.02).float().mean()) > 0.9
    assert valid.any()


def test_augmentation_disabled_or_photometric_only_keeps_the_geometry(room96):
    batch = collate([room96[0], room96[1]])
    params = sample_params(2, AugmentConfig(enabled=False))
    aug = augment_batch(batch["image"], batch["K"], params, R_cam2world=batch["R_cam2world"], depth=batch["depth"])
    assert torch.equal(aug.images, batch["image"]) and torch.equal(aug.K, batch["K"])
    params = sample_params(2, AugmentConfig(), geometric=False, generator=torch.Generator().manual_seed(0))
    aug = augment_batch(batch["image"], batch["K"], params, R_cam2world=batch["R_cam2world"], depth=batch["depth"])
    assert torch.equal(aug.depth, batch["depth"]) and torch.equal(aug.R_cam2world, batch["R_cam2world"])
    assert not torch.equal(aug.images, batch["image"])


# -- localization ----------------------------------------------------------------------------------


class OracleDSAC(DSACMethod):
    """Predicts the ground-truth scene coordinates of known samples (from depth and pose); cells
    listed in ``nan_cells[name]`` (a bool (h, w) mask) are NaN."""

    def __init__(self, config, samples, nan_cells=None):
        super().__init__(config)
        self.samples = list(samples)
        self.nan_cells = nan_cells or {}
        self.model = self.configure_model()

    def predict(self, images):
        out = []
        for image in images:
            s = next(s for s in self.samples if torch.equal(s.image, image))
            H, W = s.image.shape[-2:]
            gt, valid = scene_coordinates_from_depth(s.depth[None], s.camera.K[None], s.T_cam2world.R[None],
                                                     s.T_cam2world.t[None], math.ceil(H / 8), math.ceil(W / 8))
            gt = gt[0].clone()
            gt[:, ~valid[0]] = float("nan")
            if s.name in self.nan_cells:
                gt[:, self.nan_cells[s.name]] = float("nan")
            out.append(gt)
        return {"scene_coordinates": torch.stack(out)}


def _errors(samples, estimates):
    out = []
    for s, e in zip(samples, estimates):
        r, t = pose_error(e.T_cam2world.R.double(), e.T_cam2world.t.double(), s.T_cam2world.R.double(),
                          s.T_cam2world.t.double())
        out.append((float(r), float(t)))
    return out


@pytest.mark.parametrize("mode", ["rgb", "rgbd"])
def test_localize_recovers_the_pose_from_exact_scene_coordinates(room96, mode):
    samples = [room96[i] for i in range(4)]
    method = OracleDSAC(_config(f"mode={mode}", "ransac.num_hypotheses=64", "ransac.max_refinement_steps=100"), samples)
    estimates = method.localize(samples)
    assert len(estimates) == 4 and all(e.success for e in estimates)
    for r, t in _errors(samples, estimates):
        assert r < 0.05 and t < 0.001, (r, t)
    for e in estimates:
        assert e.num_inliers >= 100 and e.seconds > 0


def test_localize_fails_cleanly_on_nan_and_too_few_coordinates(room96):
    samples = [room96[i] for i in range(4)]
    h, w = 12, 16
    all_nan = torch.ones(h, w, dtype=torch.bool)
    three_left = torch.ones(h, w, dtype=torch.bool)
    three_left[5, 5:8] = False
    method = OracleDSAC(_config(), samples, {samples[1].name: all_nan, samples[2].name: three_left})
    estimates = method.localize(samples)
    assert [e.success for e in estimates] == [True, False, False, True]
    assert estimates[1].T_cam2world is None and estimates[2].T_cam2world is None
    r, t = _errors([samples[0]], [estimates[0]])[0]
    assert r < 0.1 and t < 0.002


def test_rgbd_query_without_depth_fails(room96):
    s = room96[0]
    no_depth = attrs.evolve(s, depth=None)
    method = OracleDSAC(_config("mode=rgbd"), [s])
    estimates = method.localize([no_depth])
    assert not estimates[0].success and "depth" in estimates[0].extras["reason"]


def test_a_query_gets_the_same_pose_alone_or_in_a_batch(room96):
    samples = [room96[i] for i in range(4)]
    nan = torch.rand(12, 16, generator=torch.Generator().manual_seed(0)) < 0.5  # make RANSAC matter
    method = OracleDSAC(_config(), samples, {s.name: nan for s in samples})
    batch = method.localize(samples)
    alone = method.localize([samples[2]])
    torch.testing.assert_close(batch[2].T_cam2world.R, alone[0].T_cam2world.R)
    assert batch[2].num_inliers == alone[0].num_inliers


# -- the pose file -----------------------------------------------------------------------------------


def test_poses_file_is_dsacstar_world_to_camera(tmp_path, room96):
    samples = [room96[0], room96[1]]
    gt = samples[0].T_cam2world
    delta = Pose.from_axis_angle(torch.tensor([0.0, math.radians(2.0), 0.0]), torch.zeros(3))
    est = Pose(R=(gt.R @ delta.R).float(), t=gt.t + torch.tensor([0.03, 0.0, 0.04]))
    path = write_poses_dsac(tmp_path / "poses_dsac.txt", samples, [PoseEstimate(T_cam2world=est), PoseEstimate.failed()])
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 2 and len(lines[0].split()) == 10
    rows = read_poses_dsac(path)
    q, t, r_err, t_err = rows[samples[0].name]
    R_w2c = quaternion_to_matrix(torch.tensor(q))
    torch.testing.assert_close(R_w2c, est.R.double().T, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(t), -(est.R.double().T @ est.t.double()), atol=1e-5, rtol=0)
    assert q[0] >= 0
    assert r_err == pytest.approx(2.0, abs=1e-3) and t_err == pytest.approx(5.0, abs=1e-3)
    q, t, r_err, t_err = rows[samples[1].name]
    assert np.isnan(q).all() and math.isinf(r_err) and math.isinf(t_err)


# -- stages and training --------------------------------------------------------------------------


def test_stage_schedule_total_steps_and_learning_rates():
    cfg = _config("stages=[init,reprojection,e2e]", "init.steps=3", "reprojection.steps=2", "e2e.steps=1",
                  "init.lr=0.01", "reprojection.lr=0.001", "e2e.lr=0.0001")
    method = DSACMethod(cfg)
    assert method.config.train.max_steps == 6 and method.trains is False  # no model yet
    assert [cfg.stage_at(i) for i in range(8)] == ["init"] * 3 + ["reprojection"] * 2 + ["e2e"] * 3
    method.model = method.configure_model()
    assert method.trains
    opt, sched = method.configure_optimizers(method.model)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.01] * 3 + [0.001] * 2 + [0.0001])
    # an explicit train.max_steps truncates the schedule
    assert DSACMethod(attrs.evolve(cfg, train=attrs.evolve(cfg.train, max_steps=2))).config.train.max_steps == 2


def test_stage_names_and_order_are_checked():
    with pytest.raises(ConfigError, match="unknown stage"):
        structure(DSACConfig, {"stages": ["init", "warmup"]})
    with pytest.raises(ConfigError, match="order"):
        structure(DSACConfig, {"stages": ["e2e", "init"]})


def test_fit_decodes_each_training_sample_once(monkeypatch, tmp_path):
    """fit wraps the training data in a CachedDataset: the scene-mean pass and every epoch after it
    read a frame from the dataset once (``train_cache_mib=0``: on every read)."""
    from maploc.engine import Engine, EngineConfig

    for budget, expect_once in ((1024, True), (0, False)):
        room = SyntheticRoom(None, "train", image_height=24)
        reads: list[int] = []
        original = SyntheticRoom.__getitem__
        def counting(self, i, reads=reads, original=original):
            reads.append(i)
            return original(self, i)

        monkeypatch.setattr(SyntheticRoom, "__getitem__", counting)
        cfg = _config("stages=[init]", "init.steps=30", "data.image_height=24", f"train_cache_mib={budget}")
        method = DSACMethod(cfg)
        method.model = method.configure_model()
        method.fit(Engine(EngineConfig(progress=False), tmp_path / str(budget)), room)
        monkeypatch.undo()
        assert sorted(set(reads)) == list(range(len(room)))
        assert (len(reads) == len(room)) == expect_once
    with pytest.raises(ConfigError, match="train_cache_mib"):
        structure(DSACConfig, {"train_cache_mib": -1})


@pytest.fixture(scope="module")
def room_batch():
    room = SyntheticRoom(None, "train", image_height=48)
    return collate([room[0], room[1]])


@pytest.mark.parametrize(
    "stage,mode,use_depth",
    [("init", "rgb", True), ("init", "rgb", False), ("reprojection", "rgb", True), ("reprojection", "rgb", False),
     ("e2e", "rgb", True), ("e2e", "rgbd", True), ("init", "rgbd", True)],
)
def test_training_step_of_every_stage(room_batch, stage, mode, use_depth):
    torch.manual_seed(0)
    cfg = _config(f"stages=[{stage}]", f"{stage}.steps=1", f"mode={mode}", f"loss.use_depth={str(use_depth).lower()}",
                  "loss.target_depth_m=2.0")
    method = DSACMethod(cfg)
    method.model = method.configure_model()
    batch = dict(room_batch)
    if not use_depth and mode == "rgb":
        batch.pop("depth")
    loss = method.training_step(method.model, batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    grad = method.model.head.fc3.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert method.stage_log[stage]["steps"] == 1
    assert bool(method.model.mean_initialized)


def test_e2e_batch_without_any_hypothesis_skips_the_step(room_batch, tmp_path, monkeypatch):
    """A batch in which every image fails RANSAC (here: every scene coordinate NaN, so no valid
    correspondence) returns None; the engine skips the optimizer step and counts it."""
    from maploc.engine import Engine, EngineConfig

    cfg = _config("stages=[e2e]", "e2e.steps=2", "train.batch_size=2")
    method = DSACMethod(cfg)
    method.model = method.configure_model()
    forward = type(method.model).forward

    def broken(self, images):
        out = dict(forward(self, images))
        out["scene_coordinates"] = out["scene_coordinates"] * float("nan")
        return out

    monkeypatch.setattr(type(method.model), "forward", broken)
    assert method.training_step(method.model, dict(room_batch), 0) is None
    assert method.stage_log["e2e"]["skipped_steps"] == 1 and method.stage_log["e2e"]["loss_last"] is None
    before = [p.detach().clone() for p in method.model.parameters()]
    result = method.fit(Engine(EngineConfig(progress=False), tmp_path), SyntheticRoom(None, "train", image_height=48))
    assert result.skipped_steps == 2
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, method.model.parameters()))
    assert "3 steps skipped" in method.report_sections(tmp_path, {})[0][1]  # the direct call, then 2


def test_mean_scene_coordinate_from_depth_and_from_poses(room_batch):
    room = SyntheticRoom(None, "train", image_height=48)
    mean = scene_mean(room, max_samples=6)
    # the room spans [0, 6] x [0, 4] x [0, 3]: the mean of visible surface points lies inside it
    assert (mean > 0).all() and mean[0] < 6 and mean[1] < 4 and mean[2] < 3
    no_depth = [attrs.evolve(room[i], depth=None) for i in range(4)]
    torch.testing.assert_close(scene_mean(no_depth), torch.stack([s.T_cam2world.t for s in no_depth]).mean(0))


# -- the pose solvers as entry points ---------------------------------------------------------------


def _synthetic_matches(n: int, outliers: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    camera = Camera.from_focal(500.0, 640, 480)
    T = Pose.from_axis_angle(torch.randn(3, generator=g) * 0.3, torch.randn(3, generator=g))
    uv = torch.rand(n, 2, generator=g) * torch.tensor([640.0, 480.0])
    depth = 2 + 3 * torch.rand(n, generator=g)
    pc = torch.stack([(uv[:, 0] - camera.cx) / 500 * depth, (uv[:, 1] - camera.cy) / 500 * depth, depth], -1)
    pw = T.transform(pc)
    k = int(outliers * n)
    pw[:k] += torch.randn(k, 3, generator=g)
    return camera, T, uv, depth, pw


def test_ransac_pnp_entry_point_with_outliers_and_varying_sizes():
    solver = load_component("solvers", "ransac-pnp")()
    data = [_synthetic_matches(n, 0.5, seed) for seed, n in enumerate((300, 120, 3))]
    corrs = [Correspondences(points2d=uv, points3d=pw, camera=cam) for cam, _, uv, _, pw in data]
    estimates = solver.solve(corrs)
    assert [e.success for e in estimates] == [True, True, False]  # 3 matches cannot give a pose
    for (_, T, *_), e in zip(data[:2], estimates[:2]):
        r, t = pose_error(e.T_cam2world.R.double(), e.T_cam2world.t.double(), T.R.double(), T.t.double())
        # noise-free inliers; a few outliers fall within 10 px by chance and pull the refinement a little
        assert float(r) < 0.1 and float(t) < 5e-3
        assert e.num_inliers >= 0.45 * 120


def test_ransac_kabsch_entry_point():
    solver = load_component("solvers", "ransac-kabsch")()
    cam, T, uv, depth, pw = _synthetic_matches(200, 0.3, 7)
    depth[:10] = 0.0  # unknown depth: ignored
    (e,) = solver.solve([DepthCorrespondences(points2d=uv, points3d=pw, camera=cam, depth=depth)])
    r, t = pose_error(e.T_cam2world.R.double(), e.T_cam2world.t.double(), T.R.double(), T.t.double())
    assert e.success and float(r) < 0.01 and float(t) < 1e-3
    with pytest.raises(TypeError, match="DepthCorrespondences"):
        solver.solve([Correspondences(points2d=uv, points3d=pw, camera=cam)])
    nan = pw.clone()
    nan[:] = float("nan")
    (e,) = solver.solve([DepthCorrespondences(points2d=uv, points3d=nan, camera=cam, depth=depth)])
    assert not e.success


def test_cell_centres_are_what_localize_uses():
    c = cell_centres(2, 2)
    assert c.reshape(-1, 2).tolist() == [[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0]]


def test_pixel_thresholds_scale_with_the_image_height():
    method = DSACMethod(_config())
    r = method._ransac(train=False, height=120)
    assert r.inlier_threshold == pytest.approx(2.5) and r.max_error == pytest.approx(25.0)
    assert method._ransac(train=False, height=480).inlier_threshold == pytest.approx(10.0)
    rgbd = DSACMethod(_config("mode=rgbd", "ransac.inlier_threshold=0.05"))._ransac(train=False, height=120)
    assert rgbd.inlier_threshold == pytest.approx(0.05) and rgbd.max_error == pytest.approx(1.0)  # metres: not scaled

"""hloc composed of maploc-features' parts by name: options reach the parts, an incompatible features/matcher pair
and an unknown option are one-line errors before any data is read, features are cached per image, a map without
depth is triangulated, and under leave-one-out the query's own image never reaches its map (not retrieved, not
matched, no 3D point observed in it)."""

from __future__ import annotations

import subprocess
import sys

import attrs
import numpy as np
import pytest
import torch

from maploc.api import Dataset, RunContext
from maploc.config import structure
from maploc.data.synthetic import SyntheticRoom
from maploc.errors import ConfigError
from maploc_netvlad.hloc import HlocConfig, HlocMethod


class _PlaneViews(Dataset):
    """``n`` posed views of a textured plane (z = 0, 4 x 4 m of blurred noise), from about 4 m, without depth; a
    leave-one-out dataset (the same images in both splits). Counts the samples read."""

    name = "plane-views"
    needs_root = False

    def __init__(self, n: int = 8, width: int = 192, height: int = 144, leave_one_out: bool = True) -> None:
        import cv2

        from maploc.types import Camera, Pose, Sample

        super().__init__(None, "map")
        rng = np.random.default_rng(0)
        tex = sum(cv2.GaussianBlur(rng.standard_normal((512, 512)).astype(np.float32), (0, 0), s) * s
                  for s in (1.5, 4.0, 10.0))
        tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        A_inv = np.linalg.inv(np.array([[128.0, 0, 256], [0, 128.0, 256], [0, 0, 1]]))  # texture px <- plane m
        K = np.array([[160.0, 0, (width - 1) / 2], [0, 160.0, (height - 1) / 2], [0, 0, 1]])
        self.samples = []
        for i in range(n):
            a = 2 * np.pi * i / n
            C = np.array([0.6 * np.cos(a), 0.6 * np.sin(a), -4.0])
            z = -C / np.linalg.norm(C)  # looking at the origin
            x = np.cross([0.0, 1.0, 0.0], z)
            x /= np.linalg.norm(x)
            R = np.stack([x, np.cross(z, x), z], axis=1)  # cam -> world, columns = camera axes
            Rw2c, tw2c = R.T, -R.T @ C
            H = K @ np.c_[Rw2c[:, :2], tw2c] @ A_inv  # image <- texture
            gray = cv2.warpPerspective(tex, H, (width, height), flags=cv2.INTER_LINEAR)
            image = torch.from_numpy(np.repeat(gray[None], 3, axis=0).astype(np.float32) / 255.0)
            self.samples.append(Sample(image=image, camera=Camera(K=torch.from_numpy(K).float(), width=width,
                                                                  height=height),
                                       T_cam2world=Pose(R=torch.from_numpy(R).float(), t=torch.from_numpy(C).float()),
                                       name=f"view{i:02d}"))
        self.leave_one_out = leave_one_out
        self.reads = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.samples[i]


def test_parts_and_their_options_are_composed_by_name():
    cfg = structure(HlocConfig, {"solver": "pycolmap-pnp", "max_keypoints": 300, "resize_max": 60,
                                 "features_options": {"root_sift": False}, "matcher_options": {"ratio": 0.9}})
    method = HlocMethod(cfg)
    room = SyntheticRoom(None, "map")
    method.build_map(room)
    assert type(method.extractor).__name__ == "SIFTExtractor" and type(method.matcher).__name__ == "MutualNNMatcher"
    assert type(method.solver).__name__ == "PycolmapPnPSolver" and method.solver.inlier_threshold_px == 8.0
    opts = method.extractor.options()
    assert opts["max_keypoints"] == 300 and opts["resize_max"] == 60 and opts["root_sift"] is False
    assert opts["contrast_threshold"] == 0.02  # hloc's SIFT default (EXTRACTOR_DEFAULTS)
    assert method.matcher.ratio == 0.9
    assert method.map.mode == "depth"  # the synthetic room has depth: points are lifted, not triangulated
    est = method.localize([SyntheticRoom(None, "query")[0]])[0]
    assert est.extras["map_points"] == "depth"


def test_incompatible_pair_and_unknown_option_are_one_line_errors_before_any_read():
    with pytest.raises(ConfigError) as e:
        HlocConfig(features="sift", matcher="lighterglue")
    assert str(e.value).startswith("matcher=lighterglue cannot match features=sift: it matches xfeat")
    assert len(str(e.value).splitlines()) == 1
    data = _PlaneViews(n=2, width=64, height=48)
    data.reads = 0
    with pytest.raises(ConfigError, match="features 'sift' takes no option 'nope'; it takes") as e:
        HlocMethod(HlocConfig(features_options={"nope": 1})).build_map(data)
    assert len(str(e.value).splitlines()) == 1 and data.reads == 0
    with pytest.raises(ConfigError, match="matcher 'mnn' takes no option 'max_keypoints'"):
        HlocMethod(HlocConfig(matcher_options={"max_keypoints": 1})).build_map(data)
    assert data.reads == 0


def test_cli_refuses_an_incompatible_pair_with_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "maploc.cli", "run", "--method", "hloc", "-o", "features=sift", "-o",
                          "matcher=lighterglue", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot match features=sift" in lines[0]
    assert not (tmp_path / "run").exists()


def test_features_are_cached_per_image_in_the_run_folder(tmp_path):
    data = _PlaneViews(n=3)
    cfg = HlocConfig(max_keypoints=200, map_points="triangulate")
    first = HlocMethod(cfg)
    first.build_map(data, RunContext(run_dir=tmp_path))
    files = sorted((tmp_path / "features").glob("sift-*/*.npz"))
    assert len(files) == 3 and first.store.misses == 3
    second = HlocMethod(attrs.evolve(cfg, matcher_options={"ratio": 0.95}))
    second.build_map(data, RunContext(run_dir=tmp_path))
    assert second.store.misses == 0 and second.store.hits == 3
    np.testing.assert_array_equal(second.map.images[1].features.keypoints, first.map.images[1].features.keypoints)
    # another extractor setting is another cache folder
    third = HlocMethod(attrs.evolve(cfg, max_keypoints=100))
    third.build_map(data, RunContext(run_dir=tmp_path))
    assert third.store.misses == 3 and len(list((tmp_path / "features").iterdir())) == 2
    # the same names at another resolution are other images: extracted, never read back in the wrong pixels
    smaller = HlocMethod(cfg)
    smaller.build_map(_PlaneViews(n=3, width=128, height=96), RunContext(run_dir=tmp_path))
    assert smaller.store.misses == 3 and smaller.map.images[0].features.image_size == (128, 96)
    assert (tmp_path / "map_model" / "points3D.bin").is_file()


def _record(method: HlocMethod) -> tuple[list, list]:
    """Wraps the matcher and the solver: records the map features each query is matched with and the 2D-3D
    correspondences it is solved from."""
    matched, solved = [], []
    match, solve = method.matcher.match, method.solver.solve
    method.matcher.match = lambda f0, f1: (matched[-1].append(f1), match(f0, f1))[1]  # type: ignore[method-assign]
    method.solver.solve = lambda cs: (solved.__setitem__(-1, cs[0]), solve(cs))[1]  # type: ignore[method-assign]
    return matched, solved


def _localize_each(method: HlocMethod, data: Dataset, context: RunContext, matched: list, solved: list):
    out = []
    for i in range(len(data)):
        matched.append([])
        solved.append(None)
        out.append(method.localize([data[i]], context)[0])
    return out


def test_leave_one_out_never_lets_the_query_image_into_its_map():
    """Each query is also a map image. Under leave-one-out its own image is not retrieved, its features are not
    matched, and every 3D point it is solved from is a point of the map triangulated without it (an independent
    ``triangulate(exclude={i})``); the same run without leave-one-out does all three, so the checks can fail."""
    from maploc_features.sfm import triangulate

    data = _PlaneViews(n=8)
    method = HlocMethod(HlocConfig(max_keypoints=300, top_k=3))
    method.build_map(data)
    hmap = method.map
    assert hmap.mode == "triangulated" and len(hmap.full) > 0
    views = [m.view for m in hmap.images]
    keypoints = [m.features.keypoints for m in hmap.images]

    def own_points(points3d, i):
        """Which rows of ``points3d`` are not points of the map triangulated without image i."""
        held = triangulate(views, keypoints, hmap.pair_matches, hmap.sfm_options, exclude={i})
        assert all(i not in t[:, 0] for t in held.tracks)
        d = torch.cdist(torch.from_numpy(points3d), torch.from_numpy(held.points3d)).min(dim=1).values
        return (d > 1e-6).numpy()

    leaks = {"retrieved": 0, "matched": 0, "points": 0, "solved": 0}
    for loo in (True, False):
        matched, solved = _record(method)
        estimates = _localize_each(method, data, RunContext(leave_one_out=loo), matched, solved)
        method.matcher.match = type(method.matcher).match.__get__(method.matcher)
        method.solver.solve = type(method.solver).solve.__get__(method.solver)
        counts = {k: 0 for k in leaks}
        for i, est in enumerate(estimates):
            own = hmap.images[i]
            counts["retrieved"] += i in list(est.retrieval.indices)
            counts["matched"] += any(f is own.features for f in matched[i])
            if solved[i] is not None:
                counts["solved"] += 1
                counts["points"] += int(own_points(solved[i].points3d.double().numpy(), i).sum() > 0)
        if loo:
            assert counts["solved"] >= 4  # enough queries reach the solver for the point check to mean something
            assert counts["retrieved"] == counts["matched"] == counts["points"] == 0, counts
        else:  # the control: without leave-one-out the own image is the best match and its points are used
            assert counts["retrieved"] == len(data) and counts["matched"] == len(data), counts
            assert counts["points"] >= 4, counts

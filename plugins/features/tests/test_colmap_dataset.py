"""The ``colmap`` dataset on models the tests write with pycolmap: poses and intrinsics (COLMAP's half-pixel
convention undone), splits, and the one-line refusals (distortion, a missing image, no model), also through the
CLI (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from maploc_features.colmap_dataset import ColmapDataset  # noqa: E402

from maploc.config import structure_dataset_options  # noqa: E402
from maploc.errors import DataError  # noqa: E402


def _write(root: Path, model: str = "PINHOLE", params=(100.0, 110.0, 32.0, 24.0), n: int = 3,
           subdir: str = "sparse/0") -> list[np.ndarray]:
    """A model of n 64x48 images, camera i at x = 0.3 i turned by 5 i degrees about y; returns the cam_from_world
    3x4 matrices."""
    import cv2

    (root / "images").mkdir(parents=True, exist_ok=True)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera(model=model, width=64, height=48, params=list(params), camera_id=1))
    mats = []
    rng = np.random.default_rng(0)
    for i in range(n):
        a = np.radians(5 * i)
        R_c2w = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        C = np.array([0.3 * i, 0.0, 0.0])
        M = np.c_[R_c2w.T, -R_c2w.T @ C]
        mats.append(M)
        rec.add_image_with_trivial_frame(pycolmap.Image(name=f"img{i}.png", camera_id=1, image_id=i + 1),
                                         pycolmap.Rigid3d(M))
        cv2.imwrite(str(root / "images" / f"img{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (root / subdir).mkdir(parents=True, exist_ok=True)
    rec.write(str(root / subdir))
    return mats


def test_poses_and_intrinsics_from_the_model(tmp_path):
    mats = _write(tmp_path)
    data = ColmapDataset(tmp_path, "query")
    assert len(data) == 3 and data.leave_one_out and data.names() == ["img0", "img1", "img2"]
    s = data[2]
    np.testing.assert_allclose(s.camera.K.numpy(), [[100, 0, 31.5], [0, 110, 23.5], [0, 0, 1]], atol=1e-5)
    R, t = mats[2][:, :3], mats[2][:, 3]
    np.testing.assert_allclose(s.T_cam2world.R.numpy(), R.T, atol=1e-6)
    np.testing.assert_allclose(s.T_cam2world.t.numpy(), -R.T @ t, atol=1e-6)
    np.testing.assert_allclose(s.T_cam2world.t.numpy(), [0.6, 0, 0], atol=1e-6)
    assert s.extras["image_name"] == "img2.png" and data.metadata(2).name == "img2"
    small = ColmapDataset(tmp_path, "map", image_height=24)[0]
    assert small.image.shape == (3, 24, 32) and small.camera.fx == pytest.approx(50.0)


def test_fixed_split_and_model_location_options(tmp_path):
    _write(tmp_path, subdir="my_model")
    with pytest.raises(DataError, match="no COLMAP model"):
        ColmapDataset(tmp_path, "map")
    opts = structure_dataset_options(ColmapDataset, {"model": "my_model", "split": "fixed", "query_images": "img1.png"})
    assert ColmapDataset(tmp_path, "query", options=opts).names() == ["img1"]
    m = ColmapDataset(tmp_path, "map", options=opts)
    assert m.names() == ["img0", "img2"] and not m.leave_one_out


def test_zero_distortion_is_read_as_pinhole(tmp_path):
    _write(tmp_path, model="OPENCV", params=(100.0, 100.0, 32.0, 24.0, 0, 0, 0, 0))
    assert ColmapDataset(tmp_path, "map")[0].camera.fx == pytest.approx(100.0)


@pytest.mark.parametrize("model,params,match", [
    ("SIMPLE_RADIAL", (100.0, 32.0, 24.0, 0.05), r"camera 1 \(SIMPLE_RADIAL\) has distortion \[0.05\]"),
    ("OPENCV_FISHEYE", (100.0, 100.0, 32.0, 24.0, 0, 0, 0, 0), "model OPENCV_FISHEYE, which maploc cannot undistort"),
])
def test_distortion_is_refused_in_one_line(tmp_path, model, params, match):
    _write(tmp_path, model=model, params=params)
    with pytest.raises(DataError, match=match) as e:
        ColmapDataset(tmp_path, "map")
    assert len(str(e.value).splitlines()) == 1 and "image_undistorter" in str(e.value)


def test_missing_image_is_refused_in_one_line(tmp_path):
    _write(tmp_path)
    (tmp_path / "images" / "img1.png").unlink()
    with pytest.raises(DataError, match=r"img1.png: image 'img1.png' \(id 2\) of the model .* is not in the image "
                                        r"folder") as e:
        ColmapDataset(tmp_path, "map")
    assert len(str(e.value).splitlines()) == 1


def test_cli_refuses_bad_models_with_exit_2_before_any_work(tmp_path):
    _write(tmp_path / "missing")
    (tmp_path / "missing" / "images" / "img0.png").unlink()
    _write(tmp_path / "distorted", model="RADIAL", params=(100.0, 32.0, 24.0, 0.1, 0.0))
    for root, text in ((tmp_path / "missing", "is not in the image folder"), (tmp_path / "distorted", "distortion")):
        out = subprocess.run([sys.executable, "-m", "maploc.cli", "run", "--method", "hloc", "--dataset", "colmap",
                              "--data-root", str(root), "--out", str(tmp_path / "run")],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and text in lines[0], out.stderr
        assert not (tmp_path / "run" / "features").exists()

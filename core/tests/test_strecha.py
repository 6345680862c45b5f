"""The ``strecha`` dataset on the real scenes (``../shared/data/strecha``, marked ``data``) and its refusals of bad
folders, on tmp copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from maploc.config import structure_dataset_options
from maploc.data.strecha import PosedSplitOptions, Strecha, read_strecha_camera
from maploc.errors import ConfigError, DataError

STRECHA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "strecha"
FOUNTAIN = STRECHA / "fountain-P11"


@pytest.fixture
def fountain() -> Path:
    if not (FOUNTAIN / "gt_dense_cameras").is_dir():
        pytest.skip(f"the Strecha scenes are not at {STRECHA.resolve()}")
    return FOUNTAIN


def _camera_text(K, dist, R, C, size) -> str:
    rows = [*K, dist, *R, C, size]
    return "\n".join(" ".join(f"{v:.10g}" for v in row) for row in rows) + "\n"


def _write_scene(folder: Path, n: int = 3) -> Path:
    """A small scene in the Strecha layout: n 64x48 images, cameras on a line looking along +z."""
    import cv2

    (folder / "images").mkdir(parents=True)
    (folder / "gt_dense_cameras").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / "images" / f"{i:04d}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        text = _camera_text([[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]], [0, 0, 0], np.eye(3), [0.5 * i, 0, 0],
                            [64, 48])
        (folder / "gt_dense_cameras" / f"{i:04d}.jpg.camera").write_text(text)
    return folder


@pytest.mark.data
def test_fountain_loads_eleven_posed_images(fountain):
    data = Strecha(fountain, "query")
    assert len(data) == 11 and data.leave_one_out
    assert Strecha(fountain, "map").names() == data.names() == [f"{i:04d}" for i in range(11)]
    s = data[0]
    assert s.image.shape == (3, 1024, 1536) and s.depth is None
    lines = (fountain / "gt_dense_cameras" / "0000.jpg.camera").read_text().split("\n")
    K = np.array([[float(v) for v in line.split()] for line in lines[0:3]])
    R = np.array([[float(v) for v in line.split()] for line in lines[4:7]])
    C = np.array([float(v) for v in lines[7].split()])
    np.testing.assert_allclose(s.camera.K.numpy(), K, rtol=1e-6)
    np.testing.assert_allclose(s.T_cam2world.R.numpy(), R, atol=1e-6)
    np.testing.assert_allclose(s.T_cam2world.t.numpy(), C, atol=1e-5)
    meta = data.metadata(0)
    assert meta.name == "0000" and torch.allclose(meta.T_cam2world.t, s.T_cam2world.t)


@pytest.mark.data
def test_a_point_projects_consistently_into_two_cameras(fountain):
    """A point on the optical axis of camera 0 at 8 m projects to its principal point; triangulated back from its
    projections into cameras 0 and 1 (both in the image), it is the same point."""
    cams = [read_strecha_camera(fountain / "gt_dense_cameras" / f"{i:04d}.jpg.camera") for i in (0, 1)]
    X = cams[0].center + 8.0 * cams[0].R_cam2world[:, 2]
    uv, P = [], []
    for c in cams:
        x = c.K @ (c.R_cam2world.T @ (X - c.center))
        uv.append(x[:2] / x[2])
        P.append(c.K @ np.c_[c.R_cam2world.T, -c.R_cam2world.T @ c.center])
        assert x[2] > 0 and 0 <= uv[-1][0] < c.width and 0 <= uv[-1][1] < c.height
    np.testing.assert_allclose(uv[0], cams[0].K[:2, 2], atol=1e-3)  # R is rounded to 6 digits
    A = np.stack([uv[0][0] * P[0][2] - P[0][0], uv[0][1] * P[0][2] - P[0][1],
                  uv[1][0] * P[1][2] - P[1][0], uv[1][1] * P[1][2] - P[1][1]])
    Xh = np.linalg.svd(A)[2][-1]
    np.testing.assert_allclose(Xh[:3] / Xh[3], X, atol=1e-6)
    # the same through the dataset's samples (float32 poses) and the core's projection
    data = Strecha(fountain, "query", image_height=256)
    s1 = data[1]
    Xc = s1.T_cam2world.inverse().transform(torch.tensor(X, dtype=torch.float32)[None])[0]
    px = (s1.camera.K @ Xc) / Xc[2]
    np.testing.assert_allclose(px[:2].numpy(), (uv[1] + 0.5) * 256 / 1024 - 0.5, atol=1e-2)


@pytest.mark.data
def test_fixed_split_and_resize(fountain):
    opts = structure_dataset_options(Strecha, {"split": "fixed", "query_images": "0003.jpg,0007"})
    q = Strecha(fountain, "query", options=opts, image_height=256)
    m = Strecha(fountain, "map", options=opts)
    assert q.names() == ["0003", "0007"] and not q.leave_one_out
    assert len(m) == 9 and "0003" not in m.names()
    s = q[0]
    assert s.image.shape == (3, 256, 384) and s.camera.fx == pytest.approx(1382.08 / 4, rel=1e-2)


def test_split_options_are_checked(tmp_path):
    root = _write_scene(tmp_path / "scene")
    with pytest.raises(ConfigError, match="needs data.query_images"):
        Strecha(root, "query", options=PosedSplitOptions(split="fixed"))
    with pytest.raises(ConfigError, match="'0009', which is not an image"):
        Strecha(root, "query", options=PosedSplitOptions(split="fixed", query_images=("0009",)))
    with pytest.raises(ConfigError, match="empty map"):
        Strecha(root, "map", options=PosedSplitOptions(split="fixed", query_images="0000,0001,0002"))
    with pytest.raises(ConfigError, match="only read with data.split=fixed"):
        Strecha(root, "map", options=PosedSplitOptions(query_images="0000"))
    with pytest.raises(ConfigError, match="data.split"):
        structure_dataset_options(Strecha, {"split": "random"})
    data = Strecha(root, "query")
    assert len(data) == 3 and data[2].T_cam2world.t[0] == pytest.approx(1.0)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1
    return msg


def test_bad_folders_are_one_line_errors(tmp_path):
    root = _write_scene(tmp_path / "scene")
    shutil.rmtree(root / "gt_dense_cameras")
    with pytest.raises(DataError) as e:
        Strecha(root, "query")
    assert "no 'gt_dense_cameras' folder" in _one_line(e) and "README.md#strecha-layout" in str(e.value)

    root = _write_scene(tmp_path / "scene2")
    shutil.rmtree(root / "images")
    with pytest.raises(DataError, match="no 'images' folder"):
        Strecha(root, "query")

    root = _write_scene(tmp_path / "scene3")
    (root / "gt_dense_cameras" / "0001.jpg.camera").unlink()
    with pytest.raises(DataError) as e:
        Strecha(root, "query")
    assert "0001.jpg: no camera file" in _one_line(e)


@pytest.mark.parametrize("line,new,match", [
    (7, "1 2", r"0000.jpg.camera, line 8: expected 3 numbers \(centre C\), got 2"),
    (3, "0.1 0 0", r"line 4: radial distortion \[0.1, 0.0, 0.0\] is not zero"),
    (1, "0 50 x", r"line 2: 'x' is not a number"),
    (4, "2 0 0", r"lines 5-7: rotation part is not a rotation"),
    (2, "0 0 2", r"line 1: K must be upper-triangular"),
])
def test_malformed_camera_files_name_file_and_line(tmp_path, line, new, match):
    root = _write_scene(tmp_path / "scene")
    path = root / "gt_dense_cameras" / "0000.jpg.camera"
    lines = path.read_text().splitlines()
    lines[line] = new
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match) as e:
        Strecha(root, "map")
    _one_line(e)


def test_truncated_camera_file_and_wrong_image_size(tmp_path):
    root = _write_scene(tmp_path / "scene")
    path = root / "gt_dense_cameras" / "0001.jpg.camera"
    path.write_text("\n".join(path.read_text().splitlines()[:8]) + "\n")
    with pytest.raises(DataError, match="has 9 lines"):
        Strecha(root, "map")
    root = _write_scene(tmp_path / "scene2")
    path = root / "gt_dense_cameras" / "0001.jpg.camera"
    path.write_text(path.read_text().replace("64 48", "128 96"))
    data = Strecha(root, "map")
    with pytest.raises(DataError, match="states 128x96 but .* is 64x48"):
        data.validate()


def test_cli_refuses_a_folder_without_cameras_before_any_work(run_cli, tmp_path):
    root = _write_scene(tmp_path / "scene")
    shutil.rmtree(root / "gt_dense_cameras")
    out = tmp_path / "run"
    proc = run_cli("run", "--method", "nn-retrieval", "--dataset", "strecha", "--data-root", str(root), "--out",
                   str(out), "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "no 'gt_dense_cameras' folder" in lines[0] and "README.md#strecha-layout" in lines[0]
    assert not out.exists()


def test_cli_runs_a_leave_one_out_split(run_cli, tmp_path):
    """nn-retrieval (which supports leave-one-out) on a 3-image scene: every image is a query, none retrieves
    itself."""
    import csv

    root = _write_scene(tmp_path / "scene")
    out = tmp_path / "run"
    proc = run_cli("run", "--method", "nn-retrieval", "--dataset", "strecha", "--data-root", str(root), "--out",
                   str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "predictions" / "nn-retrieval.csv")))
    assert [r["name"] for r in rows] == ["0000", "0001", "0002"]
    # the estimate is another image's pose: camera i sits at x = 0.5 i, so t_world2cam = (-0.5 i', 0, 0), i' != i
    lines = (out / "predictions" / "nn-retrieval.txt").read_text().splitlines()[1:]
    for i, line in enumerate(lines):
        name, *values = line.split()
        assert name == f"{i:04d}" and abs(float(values[4]) + 0.5 * i) > 0.25, line

"""Dataset adapters (7-Scenes, DSAC* layout, Cambridge Landmarks) on fixtures written in each
dataset's exact layout: tiny seeded images, real file formats."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from maploc.data.cambridge import CambridgeLandmarks, read_pose_list
from maploc.data.dsac_layout import DSACLayout
from maploc.data.io import read_depth_png, read_matrix, read_pose
from maploc.data.sevenscenes import SevenScenes, register_depth
from maploc.errors import DataError
from maploc.geometry.camera import project
from maploc.types import Camera, Pose

# -- helpers ----------------------------------------------------------------------------------------


def random_rgb(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def random_pose(rng: np.random.Generator, max_t: float = 5.0) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    T[:3, 3] = rng.uniform(-max_t, max_t, size=3)
    return T


def write_matrix(path: Path, M: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(f"{v:.9e}" for v in row) for row in np.atleast_2d(M)) + "\n")


def write_depth_mm(path: Path, depth_mm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), depth_mm.astype(np.uint16))


def image_of(sample) -> np.ndarray:
    return (sample.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def assert_projection_consistent(full: Camera, small: Camera, rng: np.random.Generator) -> None:
    """A 3-D point projects to the same relative image location before and after resizing."""
    points = torch.tensor(rng.uniform([-1, -1, 2], [1, 1, 6], size=(20, 3)), dtype=torch.float32)
    uv_full, _ = project(points, full.K)
    uv_small, _ = project(points, small.K)
    size_full = torch.tensor([full.width, full.height], dtype=torch.float32)
    size_small = torch.tensor([small.width, small.height], dtype=torch.float32)
    torch.testing.assert_close((uv_small + 0.5) / size_small, (uv_full + 0.5) / size_full, atol=1e-5, rtol=0)


# -- 7-Scenes ---------------------------------------------------------------------------------------

W7, H7 = 64, 48  # 640x480 / 10: the adapter resizes the published intrinsics to the stored size


def plane_depth(K: np.ndarray, width: int, height: int, normal=(0.4, -0.3, 1.0), offset=2.0) -> np.ndarray:
    """z-depth of the plane ``n . X = offset`` seen by camera ``K`` at every pixel centre."""
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, dtype=float)], -1)
    return offset / (rays @ np.asarray(normal))


@pytest.fixture
def seven_scenes(tmp_path: Path) -> tuple[Path, dict]:
    """Four sequences of two frames: TrainSplit = 2, 3; TestSplit = 1, 4 (like 'stairs')."""
    rng = np.random.default_rng(7)
    root = tmp_path / "stairs"
    root.mkdir()
    (root / "TrainSplit.txt").write_bytes(b"sequence2\r\nsequence3\r\n")  # CRLF, as in the release
    (root / "TestSplit.txt").write_text("sequence1\nsequence4\n\n")
    K_depth = SevenScenes.depth_camera(W7, H7).K.double().numpy()
    truth = {}
    for seq in range(1, 5):
        for frame in range(2):
            stem = root / f"seq-{seq:02d}" / f"frame-{frame:06d}"
            rgb = random_rgb(rng, W7, H7)
            ext = "png" if seq != 4 else "jpg"  # both extensions exist in the wild
            write_rgb(stem.with_name(stem.name + f".color.{ext}"), rgb)
            T = random_pose(rng)
            write_matrix(stem.with_name(stem.name + ".pose.txt"), T)
            depth_mm = np.round(plane_depth(K_depth, W7, H7, offset=1.5 + seq) * 1000)
            depth_mm[0, :5] = 0
            depth_mm[1, :5] = 65535  # "no measurement" in 7-Scenes
            write_depth_mm(stem.with_name(stem.name + ".depth.png"), depth_mm)
            truth[f"seq-{seq:02d}/frame-{frame:06d}"] = (rgb, T, seq)
    return root, truth


def test_sevenscenes_splits_names_and_content(seven_scenes) -> None:
    root, truth = seven_scenes
    train, mapping, query = (SevenScenes(root, s) for s in ("train", "map", "query"))
    assert train.names() == mapping.names() == [
        "seq-02/frame-000000", "seq-02/frame-000001", "seq-03/frame-000000", "seq-03/frame-000001"
    ]
    assert query.names() == ["seq-01/frame-000000", "seq-01/frame-000001", "seq-04/frame-000000", "seq-04/frame-000001"]
    assert len(query) == 4 and SevenScenes.name == "7scenes" and SevenScenes.default_sample == "7scenes-stairs"
    for i in range(len(query)):
        sample = query[i]
        rgb, T, seq = truth[sample.name]
        assert sample.name == query.names()[i]
        assert sample.sequence == f"seq-{seq:02d}"
        assert sample.timestamp == float(int(sample.name[-6:]))
        assert sample.image.shape == (3, H7, W7) and sample.image.dtype == torch.float32
        if seq != 4:  # PNG: lossless, and RGB order (not OpenCV's BGR)
            np.testing.assert_array_equal(image_of(sample), rgb)
        np.testing.assert_allclose(sample.T_cam2world.matrix().numpy(), T, atol=1e-6)
        # Published intrinsics resized from 640x480 to 64x48: cx = 0.1 * (320 + 0.5) - 0.5.
        assert sample.camera.fx == pytest.approx(52.5) and sample.camera.cx == pytest.approx(31.55)
    with pytest.raises(IndexError):
        query[4]


def test_sevenscenes_depth_is_registered_into_the_colour_camera(seven_scenes) -> None:
    root, _ = seven_scenes
    sample = SevenScenes(root, "map")[0]  # seq-02: plane offset 3.5 m
    depth = sample.depth.double().numpy()
    expected = plane_depth(sample.camera.K.double().numpy(), W7, H7, offset=3.5)
    valid = depth > 0
    # The depth camera (f = 585) sees a narrower field than the colour camera (f = 525): the border
    # of the colour image has no depth, the centre is covered without holes.
    assert not valid[:, 0].any() and not valid[:, -1].any()
    assert valid[8:40, 8:56].all()
    # Registered values follow the plane along the colour camera's rays, up to mm quantisation and
    # the rounding of warped positions to the nearest pixel (the plane's slope, ~3 cm/px, x 0.5 px).
    error = np.abs(depth[valid] - expected[valid])
    assert np.median(error) < 0.01 and error.max() < 0.05
    # Using the raw depth as if it were in the colour frame is wrong by far more (measured: median
    # 3.8 cm, max 27 cm, against 0.6 cm and 3.7 cm registered).
    raw = read_depth_png(root / "seq-02" / "frame-000000.depth.png")
    raw_error = np.abs(raw[valid] - expected[valid])
    assert np.median(raw_error) > 4 * np.median(error) and raw_error.max() > 0.15


def test_register_depth_keeps_the_nearest_point() -> None:
    # Two depth pixels whose rays both land on colour pixel 0: the nearer one wins, in any order.
    K_depth = torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0], [0, 0, 1]])
    K_color = torch.tensor([[0.4, 0, 0], [0, 0.4, 0], [0, 0, 1]])
    for values in ([2.0, 1.0], [1.0, 2.0], [0.0, 3.0]):
        out = register_depth(torch.tensor([values]), K_depth, K_color, (1, 1))
        assert out.shape == (1, 1)
        assert out.item() == pytest.approx(min(v for v in values if v > 0))
    assert register_depth(torch.zeros(1, 2), K_depth, K_color, (1, 1)).item() == 0.0


def test_register_depth_with_an_extrinsic_moves_the_points() -> None:
    K = SevenScenes.color_camera(W7, H7).K
    depth = torch.full((H7, W7), 2.0)
    shift = Pose(R=torch.eye(3), t=torch.tensor([0.0, 0.0, 0.5]))  # colour camera 0.5 m behind
    out = register_depth(depth, K, K, (W7, H7), T_depth2color=shift)
    assert torch.allclose(out[out > 0], torch.tensor(2.5))


def test_sevenscenes_invalid_depth_values_are_zero(seven_scenes) -> None:
    root, _ = seven_scenes
    raw = read_depth_png(root / "seq-01" / "frame-000000.depth.png")
    assert (raw[0, :5] == 0).all() and (raw[1, :5] == 0).all()  # 0 and 65535 are both invalid
    assert raw[2, 2] == pytest.approx(plane_depth(SevenScenes.depth_camera(W7, H7).K.double().numpy(),
                                                  W7, H7, offset=2.5)[2, 2], abs=6e-4)


def test_sevenscenes_resize(seven_scenes) -> None:
    root, _ = seven_scenes
    full = SevenScenes(root, "query")[0]
    small = SevenScenes(root, "query", image_height=24)[0]
    assert small.image.shape == (3, 24, 32) and small.depth.shape == (24, 32)
    assert (small.camera.width, small.camera.height) == (32, 24)
    assert small.camera.fx == pytest.approx(full.camera.fx / 2)
    assert_projection_consistent(full.camera, small.camera, np.random.default_rng(0))
    # Nearest-neighbour depth: every resized value is one of the full-resolution values.
    assert set(small.depth.unique().tolist()) <= set(full.depth.unique().tolist())
    assert torch.allclose(small.image.mean(), full.image.mean(), atol=0.01)  # area averaging


def test_sevenscenes_without_depth(seven_scenes) -> None:
    root, _ = seven_scenes
    (root / "seq-02" / "frame-000000.depth.png").unlink()
    with pytest.raises(DataError, match=r"frame-000000\.depth\.png: file not found"):
        SevenScenes(root, "map")
    sample = SevenScenes(root, "map", load_depth=False)[0]
    assert sample.depth is None


def test_sevenscenes_malformed_split_file(seven_scenes) -> None:
    root, _ = seven_scenes
    (root / "TrainSplit.txt").write_text("sequence2\nsequence three\n")
    with pytest.raises(DataError, match=r"TrainSplit\.txt, line 2: expected 'sequenceN'"):
        SevenScenes(root, "train")
    (root / "TestSplit.txt").unlink()
    with pytest.raises(DataError, match=r"TestSplit\.txt: file not found"):
        SevenScenes(root, "query")
    with pytest.raises(ValueError, match="unknown split"):
        SevenScenes(root, "val")
    with pytest.raises(DataError, match="not found"):
        SevenScenes(root / "nowhere", "map")


def test_sevenscenes_missing_sequence_and_pose(seven_scenes) -> None:
    root, _ = seven_scenes
    (root / "seq-01" / "frame-000001.pose.txt").unlink()
    with pytest.raises(DataError, match=r"seq-01/frame-000001\.pose\.txt: file not found"):
        SevenScenes(root, "query")
    (root / "TrainSplit.txt").write_text("sequence2\nsequence9\n")
    with pytest.raises(DataError, match=r"seq-09: sequence folder not found"):
        SevenScenes(root, "map")


def test_sevenscenes_malformed_pose_names_file_and_line(seven_scenes) -> None:
    root, _ = seven_scenes
    path = root / "seq-02" / "frame-000001.pose.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("e", "x", 1)
    path.write_text("\n".join(lines) + "\n")
    dataset = SevenScenes(root, "map")
    dataset[0]  # other frames still load
    with pytest.raises(DataError, match=r"frame-000001\.pose\.txt, line 3: .* is not a number"):
        dataset[1]
    lines[2] = "0 0 1"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"frame-000001\.pose\.txt, line 3: expected a row of 4"):
        dataset[1]
    path.write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 2\n")
    with pytest.raises(DataError, match=r"line 4: last row of a pose matrix must be 0 0 0 1"):
        dataset[1]
    path.write_text("1 0 0 0\n0 2 0 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(DataError, match="not a rotation matrix"):
        dataset[1]


# -- DSAC* layout -----------------------------------------------------------------------------------

WD, HD = 32, 24


@pytest.fixture
def dsac_scene(tmp_path: Path) -> tuple[Path, dict]:
    rng = np.random.default_rng(3)
    root = tmp_path / "7scenes_chess"
    truth = {}
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            stem = f"seq-0{i + 1}-frame-00000{i}"
            rgb = random_rgb(rng, WD, HD)
            write_rgb(root / split / "rgb" / f"{stem}.color.png", rgb)
            T = random_pose(rng)
            write_matrix(root / split / "poses" / f"{stem}.pose.txt", T)
            if i == 1:
                K = np.array([[40.0, 0, 15.0], [0, 41.0, 12.5], [0, 0, 1]])
                write_matrix(root / split / "calibration" / f"{stem}.calibration.txt", K)
            else:
                (root / split / "calibration").mkdir(parents=True, exist_ok=True)
                (root / split / "calibration" / f"{stem}.calibration.txt").write_text("37.5")
                K = np.array([[37.5, 0, WD / 2], [0, 37.5, HD / 2], [0, 0, 1]])
            depth_mm = rng.integers(0, 5000, size=(HD, WD)).astype(np.uint16)
            write_depth_mm(root / split / "depth" / f"{stem}.depth.png", depth_mm)
            truth[(split, i)] = (stem, rgb, T, K, depth_mm)
    return root, truth


def test_dsac_layout_pairs_files_and_reads_everything(dsac_scene) -> None:
    root, truth = dsac_scene
    for split, folder in (("train", "train"), ("map", "train"), ("query", "test")):
        dataset = DSACLayout(root, split)
        assert dataset.has_depth
        n = 3 if folder == "train" else 2
        assert len(dataset) == n
        for i in range(n):
            stem, rgb, T, K, depth_mm = truth[(folder, i)]
            sample = dataset[i]
            assert sample.name == f"{stem}.color" and sample.sequence == f"seq-0{i + 1}"
            np.testing.assert_array_equal(image_of(sample), rgb)
            np.testing.assert_allclose(sample.T_cam2world.matrix().numpy(), T, atol=1e-6)
            np.testing.assert_allclose(sample.camera.K.numpy(), K, atol=1e-6)
            np.testing.assert_allclose(sample.depth.numpy(), depth_mm / 1000.0, atol=1e-6)
            assert sample.extras["rgb_path"].endswith(f"{stem}.color.png")


def test_dsac_layout_count_mismatch_names_both_folders(dsac_scene) -> None:
    root, _ = dsac_scene
    (root / "train" / "poses" / "seq-02-frame-000001.pose.txt").unlink()
    with pytest.raises(DataError, match=r"train/poses holds 2 files but .*train/rgb holds 3 images"):
        DSACLayout(root, "train")
    DSACLayout(root, "query")  # the test split is intact
    (root / "test" / "depth" / "seq-01-frame-000000.depth.png").unlink()
    with pytest.raises(DataError, match=r"test/depth holds 1 files"):
        DSACLayout(root, "query")


def test_dsac_layout_optional_folders_and_init(dsac_scene) -> None:
    root, _ = dsac_scene
    import shutil

    shutil.rmtree(root / "test" / "depth")
    (root / "test" / "init").mkdir()
    coords = [torch.randn(3, 3, 4), torch.randn(3, 3, 4)]
    for i, c in enumerate(coords):
        torch.save(c, root / "test" / "init" / f"{i}.dat")
    dataset = DSACLayout(root, "query")
    assert not dataset.has_depth
    sample = dataset[1]
    assert sample.depth is None
    assert torch.equal(sample.extras["init"], coords[1])
    (root / "test" / "init" / "1.dat").write_bytes(b"not a tensor")
    with pytest.raises(DataError, match=r"1\.dat: cannot read DSAC\* coordinate file"):
        dataset[1]
    # DSAC*'s README spells the training folder "training/".
    (root / "train").rename(root / "training")
    assert len(DSACLayout(root, "map")) == 3


def test_dsac_layout_malformed_calibration(dsac_scene) -> None:
    root, truth = dsac_scene
    stem = truth[("test", 0)][0]
    path = root / "test" / "calibration" / f"{stem}.calibration.txt"
    path.write_text("focal 525\n")
    with pytest.raises(DataError, match=r"calibration\.txt, line 1: 'focal' is not a number"):
        DSACLayout(root, "query")[0]
    path.write_text("525 0 320\n0 525 240\n")
    with pytest.raises(DataError, match=r"calibration\.txt, line 2: expected a 1x1, 3x3 matrix, got 2x3"):
        DSACLayout(root, "query")[0]
    path.write_text("-5")
    with pytest.raises(DataError, match="focal length must be positive"):
        DSACLayout(root, "query")[0]


def test_dsac_layout_missing_folder(dsac_scene) -> None:
    root, _ = dsac_scene
    import shutil

    shutil.rmtree(root / "test" / "calibration")
    with pytest.raises(DataError, match=r"test/calibration: folder not found"):
        DSACLayout(root, "query")
    with pytest.raises(DataError, match="split folder not found"):
        DSACLayout(root / "elsewhere", "map")


def test_dsac_layout_resize(dsac_scene) -> None:
    root, _ = dsac_scene
    full = DSACLayout(root, "train")[1]
    small = DSACLayout(root, "train", image_height=12)[1]
    assert small.image.shape == (3, 12, 16) and small.depth.shape == (12, 16)
    assert_projection_consistent(full.camera, small.camera, np.random.default_rng(1))
    assert set(small.depth.unique().tolist()) <= set(full.depth.unique().tolist())


# -- Cambridge Landmarks ----------------------------------------------------------------------------

WC, HC = 32, 18  # 16:9 like the 1920x1080 release
HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"


def cambridge_line(image_file: str, T_cam2world: np.ndarray) -> str:
    """Writes a pose the way the dataset does: camera centre and world-to-camera quaternion (wxyz)."""
    R_world2cam = T_cam2world[:3, :3].T
    x, y, z, w = Rotation.from_matrix(R_world2cam).as_quat()  # scipy: scalar last
    c = T_cam2world[:3, 3]
    return " ".join([image_file] + [repr(float(v)) for v in (*c, w, x, y, z)])


@pytest.fixture
def cambridge(tmp_path: Path) -> tuple[Path, dict]:
    rng = np.random.default_rng(11)
    root = tmp_path / "KingsCollege"
    truth = {}
    for split, seqs in (("train", ("seq1", "seq4")), ("test", ("seq2",))):
        lines = []
        for seq in seqs:
            for frame in (1, 7):
                image_file = f"{seq}/frame{frame:05d}.png"
                rgb = random_rgb(rng, WC, HC)
                write_rgb(root / image_file, rgb)
                T = random_pose(rng)
                lines.append(cambridge_line(image_file, T))
                truth[image_file] = (rgb, T)
        (root / f"dataset_{split}.txt").write_text(HEADER + "\n".join(lines) + "\n")
    return root, truth


def test_cambridge_poses_round_trip_exactly(cambridge) -> None:
    root, truth = cambridge
    dataset = CambridgeLandmarks(root, "map")
    assert dataset.names() == ["seq1/frame00001", "seq1/frame00007", "seq4/frame00001", "seq4/frame00007"]
    for i in range(len(dataset)):
        sample = dataset[i]
        rgb, T = truth[sample.name + ".png"]
        np.testing.assert_allclose(sample.T_cam2world.matrix().numpy(), T, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(image_of(sample), rgb)
        assert sample.sequence == sample.name.split("/")[0]
        assert sample.timestamp == float(int(sample.name[-5:]))
    assert CambridgeLandmarks(root, "query").names() == ["seq2/frame00001", "seq2/frame00007"]
    assert CambridgeLandmarks(root, "train").names() == dataset.names()


def test_cambridge_convention_by_hand(tmp_path: Path) -> None:
    # Camera centre (1, 2, 3); world-to-camera rotation of +90 degrees about z: q = (cos 45, 0, 0, sin 45).
    s = math.sqrt(0.5)
    (tmp_path / "dataset_train.txt").write_text(HEADER + f"seq1/frame00001.png 1 2 3 {s} 0 0 {s}\n")
    ((entry_file, T, line),) = read_pose_list(tmp_path / "dataset_train.txt")
    assert (entry_file, line) == ("seq1/frame00001.png", 4)
    R_world2cam = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(T.R.numpy(), R_world2cam.T, atol=1e-7)
    np.testing.assert_allclose(T.t.numpy(), [1.0, 2.0, 3.0])
    # The camera centre maps to the origin of the camera frame; a point one metre along the
    # camera's optical axis lies at c + third row of R_world2cam.
    T_world2cam = T.inverse()
    np.testing.assert_allclose(T_world2cam.transform(torch.tensor([[1.0, 2.0, 3.0]])).numpy(), 0, atol=1e-6)
    ahead = T.transform(torch.tensor([[0.0, 0.0, 1.0]])).numpy()[0]
    np.testing.assert_allclose(ahead, [1.0, 2.0, 4.0], atol=1e-6)


def test_cambridge_intrinsics(cambridge) -> None:
    root, _ = cambridge
    camera = CambridgeLandmarks(root, "map")[0].camera
    assert camera.fx == camera.fy == pytest.approx(744.375 * WC / 852)
    assert (camera.cx, camera.cy) == (WC / 2, HC / 2)
    # VisualSFM model: per-image focal lengths (names in the NVM use .jpg).
    (root / "reconstruction.nvm").write_text(
        "NVM_V3\n\n2\nseq1/frame00001.jpg 40.5 1 0 0 0 0 0 0 0 0\nseq4/frame00007.jpg 41.25 1 0 0 0 0 0 0 0 0\n"
        "0\n"
    )
    dataset = CambridgeLandmarks(root, "map")
    assert dataset[0].camera.fx == pytest.approx(40.5)
    assert dataset[3].camera.fx == pytest.approx(41.25)
    assert dataset[1].camera.fx == pytest.approx(744.375 * WC / 852)  # not in the model: default
    # calibration.txt overrides both.
    (root / "calibration.txt").write_text("30 0 16\n0 31 9\n0 0 1\n")
    K = CambridgeLandmarks(root, "map")[0].camera.K
    np.testing.assert_allclose(K.numpy(), [[30, 0, 16], [0, 31, 9], [0, 0, 1]])


def test_cambridge_resize(cambridge) -> None:
    root, _ = cambridge
    full = CambridgeLandmarks(root, "query")[1]
    small = CambridgeLandmarks(root, "query", image_height=9)[1]
    assert small.image.shape == (3, 9, 16) and small.depth is None
    assert small.camera.fx == pytest.approx(full.camera.fx / 2)
    assert_projection_consistent(full.camera, small.camera, np.random.default_rng(2))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("seq2/frame00001.png 1 2 3 1 0 0", r"line 5: expected 'ImageFile X Y Z W P Q R' \(8 fields\), got 7"),
        ("seq2/frame00001.png 1 2 3 1 0 0 zero", r"line 5: 'zero' is not a number"),
        ("seq2/frame00001.png 1 2 nan 1 0 0 0", r"line 5: non-finite value 'nan'"),
        ("seq2/frame00001.png 1 2 3 0 0 0 0", r"line 5: the quaternion W P Q R is zero"),
    ],
)
def test_cambridge_malformed_line(cambridge, line: str, message: str) -> None:
    root, _ = cambridge
    text = (root / "dataset_test.txt").read_text().splitlines()
    text.insert(4, line)  # becomes line 5
    (root / "dataset_test.txt").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"dataset_test\.txt, " + message):
        CambridgeLandmarks(root, "query")


def test_cambridge_missing_files(cambridge) -> None:
    root, _ = cambridge
    (root / "seq2" / "frame00007.png").unlink()
    message = r"seq2/frame00007\.png: image not found \(listed in .*dataset_test\.txt, line 5\)"
    with pytest.raises(DataError, match=message):
        CambridgeLandmarks(root, "query")
    (root / "dataset_train.txt").unlink()
    with pytest.raises(DataError, match=r"dataset_train\.txt: Cambridge pose list not found"):
        CambridgeLandmarks(root, "map")


# -- shared readers ---------------------------------------------------------------------------------


def test_read_matrix_and_pose_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_text("1 2\n\n3 4\n")
    np.testing.assert_array_equal(read_matrix(path, [(2, 2)]), [[1, 2], [3, 4]])
    path.write_text("1 2\n3\n")
    with pytest.raises(DataError, match=r"m\.txt, line 2: expected a row of 2 numbers"):
        read_matrix(path, [(2, 2)])
    path.write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_matrix(path, [(2, 2)])
    with pytest.raises(DataError, match=r"nope\.txt: file not found"):
        read_pose(tmp_path / "nope.txt")
    path.write_text("1 0 0 5\n0 1 0 6\n0 0 1 7\n")  # 3x4 is accepted
    np.testing.assert_allclose(read_pose(path).t.numpy(), [5, 6, 7])


def test_unreadable_image_is_a_data_error(dsac_scene) -> None:
    root, truth = dsac_scene
    (root / "test" / "rgb" / f"{truth[('test', 0)][0]}.color.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"color\.png: cannot decode the image"):
        DSACLayout(root, "query")[0]


def test_run_reports_a_broken_query_split_before_training(dsac_scene, tmp_path, fake_site, monkeypatch) -> None:
    """maploc run opens every split first: a missing test calibration file fails the run at once,
    before any training step (no checkpoint), naming the folder."""
    from maploc.engine import EngineConfig
    from maploc.engine.runner import RunSpec, execute

    monkeypatch.syspath_prepend(str(fake_site))  # registers the fake method 'boring'
    root, _ = dsac_scene
    (root / "test" / "calibration" / "seq-01-frame-000000.calibration.txt").unlink()
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"test/calibration holds 1 files"):
        execute(
            RunSpec(method="boring", dataset="dsac", data_root=root, overrides=("train.max_steps=2",), out=out,
                    engine=EngineConfig(progress=False)),
            say=lambda s: None,
        )
    assert not out.exists()  # the failed run removed the run directory it created


def test_metadata_matches_the_samples_without_decoding_images(dsac_scene, seven_scenes, monkeypatch) -> None:
    """``metadata(i)`` equals what ``dataset[i]`` says of names and poses, and reads no image."""
    from maploc.data.sevenscenes import SevenScenes

    datasets = [DSACLayout(dsac_scene[0], "train"), SevenScenes(seven_scenes[0], "map")]
    expected = [[(s.name, s.T_cam2world.matrix(), s.sequence) for s in d] for d in datasets]
    from maploc.data import io as io_module

    def no_decode(*args, **kwargs):
        raise AssertionError("metadata decoded an image")

    monkeypatch.setattr(io_module, "read_image", no_decode)
    for d, exp in zip(datasets, expected):
        for i, (name, T, seq) in enumerate(exp):
            meta = d.metadata(i)
            assert (meta.name, meta.sequence) == (name, seq)
            assert torch.allclose(meta.T_cam2world.matrix(), T)

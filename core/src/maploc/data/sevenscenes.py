"""Microsoft 7-Scenes (Shotton et al., "Scene Coordinate Regression Forests for Camera
Relocalization in RGB-D Images", CVPR 2013) in its original layout.

The same layout is used by 12-Scenes-style exports; the sample entry ``7scenes-stairs`` (``maploc
data fetch 7scenes-stairs``) holds 12 real frames of the scene "stairs".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor

from maploc.api import Dataset, SampleMeta
from maploc.data import io
from maploc.data.layouts import expected_layout
from maploc.errors import DataError
from maploc.types import Camera, Pose, Sample

__all__ = ["SevenScenes", "register_depth", "COLOR_FOCAL", "DEPTH_FOCAL", "PRINCIPAL_POINT", "NATIVE_SIZE"]

#: Focal length of the 7-Scenes colour camera, pixels (640x480 images).
COLOR_FOCAL = 525.0
#: Focal length of the 7-Scenes depth camera (Kinect v1 IR camera), pixels (640x480 depth maps).
DEPTH_FOCAL = 585.0
#: Principal point ``(cx, cy)`` of both cameras, pixels.
PRINCIPAL_POINT = (320.0, 240.0)
#: Raw depth values without a measurement (7-Scenes writes 65535 where the Kinect saw nothing).
INVALID_DEPTH = (0, 65535)

#: The layout a 7-Scenes root holds (said in its errors; README section "7scenes layout").
LAYOUT = ("<root>/TrainSplit.txt and TestSplit.txt ('sequenceN' lines) and <root>/seq-NN/frame-NNNNNN.color.png "
          "with frame-NNNNNN.pose.txt (4x4 camera-to-world) and frame-NNNNNN.depth.png (the original 7-Scenes layout)")

_SPLIT_FILES = {"train": "TrainSplit.txt", "map": "TrainSplit.txt", "query": "TestSplit.txt"}
_SEQUENCE_RE = re.compile(r"^sequence\s*0*(\d+)$", re.IGNORECASE)
_FRAME_RE = re.compile(r"^frame-(\d+)\.color\.(png|jpg|jpeg)$", re.IGNORECASE)


#: The image size the published intrinsics refer to, ``(width, height)`` pixels.
NATIVE_SIZE = (640, 480)


def _camera(focal: float, width: int = 640, height: int = 480) -> Camera:
    """The 7-Scenes camera with focal ``focal`` at 640x480, resized to ``width x height``."""
    camera = Camera.from_focal(focal, *NATIVE_SIZE, cx=PRINCIPAL_POINT[0], cy=PRINCIPAL_POINT[1])
    return camera if (width, height) == NATIVE_SIZE else camera.resize(width, height)


def register_depth(
    depth: Tensor | np.ndarray,
    K_depth: Tensor,
    K_color: Tensor,
    color_size: tuple[int, int],
    T_depth2color: Pose | None = None,
) -> Tensor:
    """Re-renders a depth map into the colour camera (forward warping with a z-buffer).

    Each valid depth pixel is back-projected with ``K_depth``, moved into the colour camera frame by
    ``T_depth2color``, projected with ``K_color`` and rounded to the nearest colour pixel; when
    several points land on one pixel the nearest (smallest z) is kept. Pixels that receive no point
    are ``0`` (invalid). Forward warping from a higher to a lower focal length (7-Scenes: 585 -> 525)
    leaves no holes inside the covered area. Computed in float64 NumPy (the same projection model
    as :mod:`maploc.geometry.camera`, about 10x faster than the batched torch path on one image).

    Args:
        depth: ``(H_d, W_d)`` z-depth of the depth camera, metres, ``0`` = invalid.
        K_depth: ``(3, 3)`` intrinsics of the depth camera, pixels (upper triangular).
        K_color: ``(3, 3)`` intrinsics of the colour camera, pixels.
        color_size: ``(width, height)`` of the colour image, pixels.
        T_depth2color: rigid transform from the depth camera frame to the colour camera frame
            (metres); ``None`` means identity (shared optical centre and orientation).

    Returns:
        ``(height, width)`` float32 z-depth in the colour camera frame, metres, ``0`` = invalid.
    """
    W, H = color_size
    depth_np = depth.detach().cpu().numpy() if isinstance(depth, Tensor) else np.asarray(depth)
    Kd = K_depth.detach().cpu().double().numpy()
    Kc = K_color.detach().cpu().double().numpy()
    v, u = np.nonzero(np.isfinite(depth_np) & (depth_np > 0))
    z = depth_np[v, u].astype(np.float64)
    y = (v - Kd[1, 2]) / Kd[1, 1]
    x = (u - Kd[0, 2] - Kd[0, 1] * y) / Kd[0, 0]
    points = np.stack([x * z, y * z, z], axis=1)
    if T_depth2color is not None:
        R = T_depth2color.R.detach().cpu().double().numpy()
        t = T_depth2color.t.detach().cpu().double().numpy()
        points = points @ R.T + t
    points = points[points[:, 2] > 1e-6]
    xn, yn, z = points[:, 0] / points[:, 2], points[:, 1] / points[:, 2], points[:, 2]
    uc = np.rint(Kc[0, 0] * xn + Kc[0, 1] * yn + Kc[0, 2]).astype(np.int64)
    vc = np.rint(Kc[1, 1] * yn + Kc[1, 2]).astype(np.int64)
    inside = (uc >= 0) & (uc < W) & (vc >= 0) & (vc < H)
    flat = np.full(W * H, np.inf)
    np.minimum.at(flat, vc[inside] * W + uc[inside], z[inside])
    flat[np.isinf(flat)] = 0.0
    return torch.from_numpy(flat.reshape(H, W).astype(np.float32))


@attrs.frozen(kw_only=True)
class SevenScenesOptions:
    """Options of the ``7scenes`` dataset (``-o data.<key>=value``).

    Attributes:
        load_depth: read the depth maps (registered to the colour camera); ``false`` skips them.
    """

    load_depth: bool = True


class SevenScenes(Dataset):
    """One scene of Microsoft 7-Scenes in the original layout.

    Layout of ``root`` (one scene)::

        TrainSplit.txt            "sequence2" ... one sequence per line (train and map splits)
        TestSplit.txt             "sequence1" ... (query split)
        seq-01/frame-000000.color.png   (or .jpg) 640x480 RGB
        seq-01/frame-000000.depth.png   640x480 uint16 millimetres, 0 and 65535 = invalid
        seq-01/frame-000000.pose.txt    4x4 camera-to-world, metres
        ...

    Cameras: colour ``f = 525``, depth ``f = 585``, both with principal point ``(320, 240)`` at
    640x480 (the values published with the dataset and used by DSAC*'s ``setup_7scenes.py``);
    images or depth maps stored at another size get these intrinsics resized to their size.

    The depth camera is not registered to the colour camera; :attr:`Sample.depth` is the depth **registered into the
    colour camera** by :func:`register_depth`. The published calibration gives no depth-to-colour
    extrinsic, so the two cameras are assumed to share optical centre and orientation (identity
    extrinsic): the registration corrects the different intrinsics only, and the residual error
    is the Kinect's ~2.5 cm RGB-IR baseline (plus any small rotation). DSAC* (README, "7Scenes")
    warns that the raw depth is unregistered and uses rendered depth or its own undocumented
    registration instead. The ground-truth pose is used as the pose of both cameras. On the
    ``7scenes-stairs`` sample, depth warped between sequences with the ground-truth poses agrees
    to a median 1.5 cm (0.9 %) registered, against 6.9 cm (3.8 %) with the raw depth used as is.

    Samples: name ``seq-01/frame-000000``, sequence ``seq-01``, timestamp = frame index;
    ``extras`` holds ``color_path``, ``depth_path`` and ``pose_path`` (strings).

    Args:
        root: the scene folder.
        split: ``train`` or ``map`` (the TrainSplit sequences) or ``query`` (TestSplit).
        image_height: if given, image, camera (:meth:`Camera.resize_to_height`) and registered depth
            (nearest neighbour) are resized to this height.
        load_depth: set to ``False`` to skip reading and registering depth (``Sample.depth`` is
            then ``None``).

    Raises:
        DataError: if ``root``, the split file, a sequence folder, a frame's pose or depth file is
            missing, a split line is malformed (naming file and line), or a split has no frames.
            Malformed pose files raise when the frame is loaded.
        ValueError: for an unknown split.
    """

    name: ClassVar[str] = "7scenes"
    default_sample: ClassVar[str | None] = "7scenes-stairs"
    has_depth: ClassVar[bool] = True

    Options = SevenScenesOptions

    def __init__(
        self, root: Path, split: str, *, image_height: int | None = None, options: SevenScenesOptions | None = None,
        load_depth: bool | None = None,
    ) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        self.load_depth = self.options.load_depth if load_depth is None else load_depth
        with expected_layout(self.name, LAYOUT):
            if not self.root.is_dir():
                raise DataError(f"{self.root}: 7-Scenes folder not found")
            self.sequences = self.read_split_file(self.root / _SPLIT_FILES[split])
            self._frames: list[tuple[str, int, Path]] = []
            for seq in self.sequences:
                self._frames.extend(self._list_sequence(seq))
            if not self._frames:
                raise DataError(f"{self.root}: no frames in the {split} split (sequences {', '.join(self.sequences)})")

    @staticmethod
    def read_split_file(path: Path) -> list[str]:
        """Parses ``TrainSplit.txt`` / ``TestSplit.txt`` into folder names (``sequence2`` -> ``seq-02``).

        Raises:
            DataError: if the file is missing, empty, or a line is not ``sequenceN`` (naming the line).
        """
        sequences = []
        for lineno, line in io.read_text_lines(path):
            match = _SEQUENCE_RE.match(line)
            if match is None:
                raise DataError(f"{path}, line {lineno}: expected 'sequenceN', got {line!r}")
            sequences.append(f"seq-{int(match.group(1)):02d}")
        if not sequences:
            raise DataError(f"{path}: the split file lists no sequences")
        return sequences

    def _list_sequence(self, seq: str) -> list[tuple[str, int, Path]]:
        folder = self.root / seq
        if not folder.is_dir():
            raise DataError(f"{folder}: sequence folder not found (listed in {_SPLIT_FILES[self.split]})")
        names = {p.name for p in folder.iterdir()}
        frames = []
        for name in sorted(names):
            match = _FRAME_RE.match(name)
            if match is None:
                continue
            stem = f"frame-{match.group(1)}"
            for suffix in (".pose.txt",) + ((".depth.png",) if self.load_depth else ()):
                if stem + suffix not in names:
                    raise DataError(f"{folder / (stem + suffix)}: file not found (needed for {name})")
            frames.append((seq, int(match.group(1)), folder / name))
        return frames

    def __len__(self) -> int:
        return len(self._frames)

    def names(self) -> list[str]:
        return [f"{seq}/{path.name.split('.')[0]}" for seq, _, path in self._frames]

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        seq, frame, color_path = self._frames[index]
        stem = color_path.name.split(".")[0]
        pose_path = color_path.with_name(stem + ".pose.txt")
        depth_path = color_path.with_name(stem + ".depth.png")
        image = io.read_image(color_path)
        H, W = image.shape[:2]
        camera = _camera(COLOR_FOCAL, W, H)
        T_cam2world = io.read_pose(pose_path)
        depth = None
        if self.load_depth:
            raw = io.read_depth_png(depth_path, invalid=INVALID_DEPTH)
            depth_camera = _camera(DEPTH_FOCAL, raw.shape[1], raw.shape[0])
            depth = register_depth(raw, depth_camera.K, camera.K, (W, H))
        return io.make_sample(
            image,
            camera,
            T_cam2world=T_cam2world,
            depth=depth,
            image_height=self.image_height,
            name=f"{seq}/{stem}",
            sequence=seq,
            timestamp=float(frame),
            extras={"color_path": str(color_path), "depth_path": str(depth_path), "pose_path": str(pose_path)},
        )

    def metadata(self, index: int) -> SampleMeta:
        """Name, ``T_cam2world`` (from the pose file alone), sequence and frame index of sample ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        seq, frame, color_path = self._frames[index]
        stem = color_path.name.split(".")[0]
        return SampleMeta(name=f"{seq}/{stem}", T_cam2world=io.read_pose(color_path.with_name(stem + ".pose.txt")),
                          sequence=seq, timestamp=float(frame))

    @staticmethod
    def depth_camera(width: int = 640, height: int = 480) -> Camera:
        """The (unregistered) 7-Scenes depth camera: ``f = 585``, principal point ``(320, 240)`` at
        640x480, resized to ``width x height``."""
        return _camera(DEPTH_FOCAL, width, height)

    @staticmethod
    def color_camera(width: int = 640, height: int = 480) -> Camera:
        """The 7-Scenes colour camera: ``f = 525``, principal point ``(320, 240)`` at 640x480,
        resized to ``width x height``."""
        return _camera(COLOR_FOCAL, width, height)

"""Cambridge Landmarks (Kendall et al., "PoseNet: A Convolutional Network for Real-Time 6-DOF
Camera Relocalization", ICCV 2015) in the layout it is distributed in.

Pose convention (checked against DSAC*'s ``datasets/setup_cambridge.py``, Brachmann & Rother, TPAMI
2021, and the PoseNet release): a line ``ImageFile X Y Z W P Q R`` gives the camera **centre**
``c = (X, Y, Z)`` in world coordinates (metres, up to the SfM scale) and the unit quaternion
``q = (W, P, Q, R)`` (w, x, y, z order) of the **world-to-camera** rotation, as in VisualSFM's NVM
files the poses come from. DSAC* builds ``[R_world2cam | -R_world2cam c]`` from them and inverts it,
so here ``T_cam2world = (R_world2cam^T, c)``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.data import io
from maploc.data.layouts import expected_layout
from maploc.errors import DataError
from maploc.geometry.rotation import quaternion_to_matrix
from maploc.types import Camera, Pose, Sample

__all__ = ["CambridgeLandmarks", "DEFAULT_FOCAL", "DEFAULT_FOCAL_WIDTH", "read_pose_list", "read_nvm_focals"]

#: Focal length (pixels) DSAC++ and DSAC* use for Cambridge at their rescaled 852x480 resolution.
DEFAULT_FOCAL = 744.375
#: The image width :data:`DEFAULT_FOCAL` refers to, pixels.
DEFAULT_FOCAL_WIDTH = 852

#: The layout a Cambridge Landmarks root holds (said in its errors; README section "cambridge layout").
LAYOUT = ("<root>/dataset_train.txt and dataset_test.txt (3 header lines, then 'ImageFile X Y Z W P Q R') and the "
          "images they list, e.g. <root>/seq1/frame00001.png (the Cambridge Landmarks layout)")

_SPLIT_FILES = {"train": "dataset_train.txt", "map": "dataset_train.txt", "query": "dataset_test.txt"}
_HEADER_LINES = 3
_FRAME_RE = re.compile(r"frame0*(\d+)", re.IGNORECASE)


def read_pose_list(path: Path) -> list[tuple[str, Pose, int]]:
    """Parses a PoseNet pose list (``dataset_train.txt`` / ``dataset_test.txt``).

    The first three lines are a header (the third is usually blank); every further non-blank line
    is ``ImageFile X Y Z W P Q R``.

    Args:
        path: the list file.

    Returns:
        ``(image_file, T_cam2world, line_number)`` per line; ``T_cam2world`` is float32, metres.

    Raises:
        DataError: if the file is missing or a line does not have 8 fields, a number is malformed,
            or the quaternion is zero (naming file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: Cambridge pose list not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
    entries = []
    for lineno, line in enumerate(lines[_HEADER_LINES:], start=_HEADER_LINES + 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 8:
            raise DataError(f"{path}, line {lineno}: expected 'ImageFile X Y Z W P Q R' (8 fields), got {len(fields)}")
        values = []
        for token in fields[1:]:
            try:
                value = float(token)
            except ValueError:
                raise DataError(f"{path}, line {lineno}: {token!r} is not a number") from None
            if not np.isfinite(value):
                raise DataError(f"{path}, line {lineno}: non-finite value {token!r}")
            values.append(value)
        c = torch.tensor(values[:3], dtype=torch.float64)
        q = torch.tensor(values[3:], dtype=torch.float64)
        norm = float(torch.linalg.vector_norm(q))
        if norm < 1e-6:
            raise DataError(f"{path}, line {lineno}: the quaternion W P Q R is zero")
        R_world2cam = quaternion_to_matrix(q / norm)
        T_cam2world = Pose(R=R_world2cam.transpose(-1, -2).float(), t=c.float())
        entries.append((fields[0], T_cam2world, lineno))
    return entries


def read_nvm_focals(path: Path) -> dict[str, float]:
    """Reads the per-image focal lengths of a VisualSFM ``reconstruction.nvm`` (camera block only).

    Returns:
        ``{image path without extension: focal length in pixels}``, at the resolution of the
        released images (DSAC*'s ``setup_cambridge.py`` uses them so).

    Raises:
        DataError: if the camera block is malformed (naming file and line).
    """
    focals: dict[str, float] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        lineno = 0
        count = None
        for line in f:
            lineno += 1
            fields = line.split()
            if count is None:
                if len(fields) == 1 and fields[0].isdigit():
                    count = int(fields[0])
                    if count == 0:
                        break
                continue
            if not fields:
                continue
            try:
                focal = float(fields[1])
            except (IndexError, ValueError):
                raise DataError(f"{path}, line {lineno}: expected 'ImageFile focal qw qx qy qz cx cy cz ...'") from None
            focals[str(PurePosixPath(fields[0].replace("\\", "/")).with_suffix(""))] = focal
            if len(focals) == count:
                break
    if count is None:
        raise DataError(f"{path}: no camera block found (not an NVM file?)")
    return focals


class CambridgeLandmarks(Dataset):
    """One scene of Cambridge Landmarks (KingsCollege, OldHospital, ShopFacade, StMarysChurch, ...).

    Layout of ``root``::

        dataset_train.txt        3 header lines, then "seq1/frame00001.png X Y Z W P Q R" per image
        dataset_test.txt         the same for the query split
        seq1/frame00001.png      images (1920x1080 in the release)
        reconstruction.nvm       optional: VisualSFM model; its per-image focal lengths are used
        calibration.txt          optional override: one focal length or a 3x3 K, native resolution

    Poses: see the module docstring (``T_cam2world = (R_world2cam^T, c)``).

    Intrinsics, first match wins:

    1. ``calibration.txt``: a single focal length in pixels (principal point at ``(W / 2, H / 2)``)
       or a 3x3 intrinsic matrix, for the images as stored;
    2. ``reconstruction.nvm``: the image's focal length from the SfM model, principal point at
       ``(W / 2, H / 2)``; this is what DSAC*'s ``setup_cambridge.py`` writes (scaled to 480 px);
    3. otherwise the constant of DSAC++/DSAC*, ``f = 744.375`` px for 852-px-wide images, scaled to
       the image width (``744.375 * W / 852``: 1677.5 px at 1920x1080), principal point at the
       image centre. The dataset ships no calibration; the SfM focal lengths vary by about 1 %.

    Samples: name = image path without extension (``seq1/frame00001``), sequence = its folder,
    timestamp = the frame number in the file name (else the line index); ``extras``:
    ``image_path``, ``line`` (the line of the pose list).

    Args:
        root: the scene folder.
        split: ``train`` or ``map`` (``dataset_train.txt``) or ``query`` (``dataset_test.txt``).
        image_height: if given, images and cameras are resized to this height (DSAC* uses 480).

    Raises:
        DataError: if the pose list is missing or malformed (naming file and line), lists no
            images, or an image file is missing (naming it and the list line).
        ValueError: for an unknown split.
    """

    name: ClassVar[str] = "cambridge"
    default_sample: ClassVar[str | None] = None
    has_depth: ClassVar[bool] = False

    def __init__(self, root: Path, split: str, *, image_height: int | None = None, options: Any = None) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        with expected_layout(self.name, LAYOUT):
            if not self.root.is_dir():
                raise DataError(f"{self.root}: Cambridge Landmarks folder not found")
            list_path = self.root / _SPLIT_FILES[split]
            self.entries = read_pose_list(list_path)
            if not self.entries:
                raise DataError(f"{list_path}: lists no images")
            for image_file, _, lineno in self.entries:
                if not (self.root / image_file).is_file():
                    raise DataError(f"{self.root / image_file}: image not found (listed in {list_path}, line {lineno})")
            calibration = self.root / "calibration.txt"
            self._calibration = calibration if calibration.is_file() else None
            nvm = self.root / "reconstruction.nvm"
            self._nvm_focals = read_nvm_focals(nvm) if self._calibration is None and nvm.is_file() else None

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        return [str(PurePosixPath(image_file).with_suffix("")) for image_file, _, _ in self.entries]

    def camera_for(self, image_file: str, width: int, height: int) -> Camera:
        """The intrinsics of ``image_file`` at its stored size (see the class docstring)."""
        if self._calibration is not None:
            return io.read_calibration(self._calibration, width, height)
        key = str(PurePosixPath(image_file).with_suffix(""))
        if self._nvm_focals is not None and key in self._nvm_focals:
            focal = self._nvm_focals[key]
        else:
            focal = DEFAULT_FOCAL * width / DEFAULT_FOCAL_WIDTH
        return Camera.from_focal(focal, width, height, cx=width / 2, cy=height / 2)

    def metadata(self, index: int) -> SampleMeta:
        """Name, ``T_cam2world`` (from the pose list, already parsed) and sequence of sample ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        image_file, T_cam2world, _ = self.entries[index]
        frame = _FRAME_RE.search(PurePosixPath(image_file).name)
        return SampleMeta(
            name=str(PurePosixPath(image_file).with_suffix("")), T_cam2world=T_cam2world,
            sequence=str(PurePosixPath(image_file).parent) if "/" in image_file else "",
            timestamp=float(frame.group(1)) if frame else float(index),
        )

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        image_file, T_cam2world, lineno = self.entries[index]
        image_path = self.root / image_file
        image = io.read_image(image_path)
        H, W = image.shape[:2]
        name = str(PurePosixPath(image_file).with_suffix(""))
        frame = _FRAME_RE.search(PurePosixPath(image_file).name)
        return io.make_sample(
            image,
            self.camera_for(image_file, W, H),
            T_cam2world=T_cam2world,
            image_height=self.image_height,
            name=name,
            sequence=str(PurePosixPath(image_file).parent) if "/" in image_file else "",
            timestamp=float(frame.group(1)) if frame else float(index),
            extras={"image_path": str(image_path), "line": lineno},
        )

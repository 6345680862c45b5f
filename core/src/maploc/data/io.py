"""Readers shared by the dataset adapters: images, depth maps, text matrices and poses.

Every reader raises :class:`maploc.errors.DataError` naming the file (and, for text files, the line)
when the file is missing, unreadable or malformed, so a user can fix the data without a traceback.

Conventions (see :mod:`maploc.types`): images are ``(3, H, W)`` float32 RGB in ``[0, 1]``; depth
maps are ``(H, W)`` float32 metres with ``0`` marking an invalid pixel; poses are 4x4
camera-to-world matrices in metres, OpenCV camera frame (x right, y down, z forward).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from maploc.errors import DataError
from maploc.types import Camera, Pose, Sample

__all__ = [
    "read_image",
    "image_to_tensor",
    "read_depth_png",
    "read_text_lines",
    "read_matrix",
    "read_pose",
    "read_calibration",
    "check_rotation",
    "list_files",
    "resize_image",
    "resize_depth",
    "make_sample",
]

#: Image file extensions the adapters look for (lower case, with the dot).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an image file as RGB.

    Grey images are replicated to three channels; an alpha channel is dropped; 16-bit images are
    scaled to 8 bits.

    Args:
        path: an image file OpenCV can decode (PNG, JPEG, ...).

    Returns:
        ``(H, W, 3)`` uint8 array, RGB channel order.

    Raises:
        DataError: if the file is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot decode the image (corrupt or unsupported format)")
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"{path}: unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise DataError(f"{path}: unsupported number of channels {image.shape[2]}")


def image_to_tensor(image: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def read_depth_png(
    path: str | os.PathLike[str], *, scale: float = 1000.0, invalid: Iterable[int] = (0, 65535)
) -> np.ndarray:
    """Reads a 16-bit depth PNG (the 7-Scenes / DSAC* / 12-Scenes convention: millimetres).

    Args:
        path: a single-channel uint16 PNG.
        scale: raw units per metre (``1000`` for millimetres).
        invalid: raw values that mark a pixel without a measurement (7-Scenes uses ``0`` and
            ``65535``); they become ``0``.

    Returns:
        ``(H, W)`` float32 z-depth in metres, ``0`` where invalid.

    Raises:
        DataError: if the file is missing, cannot be decoded or is not a single-channel uint16 image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: depth file not found")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"{path}: cannot decode the depth image")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise DataError(f"{path}: expected a single-channel uint16 depth PNG, got {raw.dtype} of shape {raw.shape}")
    mask = np.zeros(raw.shape, dtype=bool)
    for value in invalid:
        mask |= raw == value
    depth = raw.astype(np.float32) / np.float32(scale)
    depth[mask] = 0.0
    return depth


def read_text_lines(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """Reads a text file as ``(line_number, stripped_line)`` pairs, skipping blank lines.

    Line numbers start at 1. Windows line endings and a UTF-8 byte-order mark are accepted.

    Raises:
        DataError: if the file is missing or is not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _parse_floats(path: Path, lineno: int, line: str) -> list[float]:
    values = []
    for token in line.replace(",", " ").split():
        try:
            value = float(token)
        except ValueError:
            raise DataError(f"{path}, line {lineno}: {token!r} is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{path}, line {lineno}: non-finite value {token!r}")
        values.append(value)
    return values


def read_matrix(path: str | os.PathLike[str], shapes: Sequence[tuple[int, int]]) -> np.ndarray:
    """Reads a whitespace-separated matrix, one row per line.

    Args:
        path: the text file.
        shapes: accepted ``(rows, cols)`` shapes, e.g. ``[(4, 4), (3, 4)]``; ``(1, 1)`` accepts a
            single number.

    Returns:
        float64 array of one of ``shapes``.

    Raises:
        DataError: if the file is missing, a token is not a finite number (naming the line), a row
            has the wrong length (naming the line) or the row count matches no accepted shape.
    """
    path = Path(path)
    lines = read_text_lines(path)
    accepted = ", ".join(f"{r}x{c}" for r, c in shapes)
    widths = {c for _, c in shapes}
    rows: list[list[float]] = []
    for lineno, line in lines:
        values = _parse_floats(path, lineno, line)
        if len(values) not in widths:
            raise DataError(f"{path}, line {lineno}: expected a row of {' or '.join(map(str, sorted(widths)))} "
                            f"numbers ({accepted} matrix), got {len(values)}")
        if rows and len(values) != len(rows[0]):
            raise DataError(f"{path}, line {lineno}: row has {len(values)} numbers, previous rows have {len(rows[0])}")
        rows.append(values)
    if not rows:
        raise DataError(f"{path}: empty file, expected a {accepted} matrix")
    matrix = np.asarray(rows, dtype=np.float64)
    if matrix.shape not in [tuple(s) for s in shapes]:
        last = lines[-1][0]
        raise DataError(f"{path}, line {last}: expected a {accepted} matrix, got {matrix.shape[0]}x{matrix.shape[1]}")
    return matrix


def check_rotation(R: np.ndarray, where: str, atol: float = 1e-2) -> None:
    """Checks that ``R`` is a rotation matrix up to ``atol`` (``R R^T = I``, ``det R = +1``).

    Raises:
        DataError: naming ``where`` if it is not.
    """
    err = float(np.abs(R @ R.T - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if err > atol or abs(det - 1.0) > 3 * atol:
        raise DataError(f"{where}: rotation part is not a rotation matrix (|R R^T - I| = {err:.3g}, det = {det:.4f})")


def read_pose(path: str | os.PathLike[str]) -> Pose:
    """Reads a 4x4 (or 3x4) camera-to-world matrix in metres.

    The values are kept as written (float64 parsing, float32 result); the rotation is only checked
    to be orthonormal within ``1e-2``, since real datasets store rounded matrices (7-Scenes:
    ``|R R^T - I| ~ 1e-4``).

    Returns:
        ``T_cam2world`` as a float32 :class:`~maploc.types.Pose`.

    Raises:
        DataError: if the file is missing or malformed (naming the line), the last row of a 4x4
            matrix is not ``0 0 0 1`` or the rotation part is not a rotation.
    """
    path = Path(path)
    T = read_matrix(path, [(4, 4), (3, 4)])
    if T.shape == (4, 4) and not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        line = read_text_lines(path)[3][0]
        raise DataError(f"{path}, line {line}: last row of a pose matrix must be 0 0 0 1, got {T[3].tolist()}")
    check_rotation(T[:3, :3], str(path))
    return Pose.from_matrix(torch.from_numpy(T[:3]).float())


def read_calibration(path: str | os.PathLike[str], width: int, height: int) -> Camera:
    """Reads a DSAC*-style calibration file: one focal length, or a 3x3 intrinsic matrix.

    A single number is the focal length ``f`` in pixels (``fx = fy = f``) with the principal point
    at the image centre ``(width / 2, height / 2)``, which is how DSAC* (Brachmann & Rother, TPAMI
    2021, ``dataset.py``) interprets these files.

    Args:
        path: the calibration text file.
        width: width of the image the calibration belongs to, pixels.
        height: its height, pixels.

    Returns:
        the :class:`~maploc.types.Camera` of that image.

    Raises:
        DataError: if the file is missing or malformed, or a focal length is not positive.
    """
    path = Path(path)
    M = read_matrix(path, [(1, 1), (3, 3)])
    if M.shape == (1, 1):
        f = float(M[0, 0])
        if f <= 0:
            raise DataError(f"{path}: focal length must be positive, got {f}")
        return Camera.from_focal(f, width, height, cx=width / 2, cy=height / 2)
    if M[0, 0] <= 0 or M[1, 1] <= 0 or not np.allclose(M[2], [0.0, 0.0, 1.0]) or M[1, 0] != 0:
        raise DataError(f"{path}: not an upper-triangular intrinsic matrix with positive focal lengths: {M.tolist()}")
    return Camera(K=torch.from_numpy(M).float(), width=width, height=height)


def list_files(folder: str | os.PathLike[str], suffixes: Sequence[str] | None = None) -> list[Path]:
    """The regular, non-hidden files of ``folder`` (not recursive), sorted by name.

    Args:
        folder: the folder.
        suffixes: if given, keep only names ending with one of these (case-insensitive).

    Raises:
        DataError: if ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    if suffixes is not None:
        lowered = tuple(s.lower() for s in suffixes)
        names = [n for n in names if n.lower().endswith(lowered)]
    return [folder / n for n in names]


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resizes an ``(H, W, C)`` image with area interpolation (``cv2.INTER_AREA``)."""
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resizes an ``(H, W)`` depth map by nearest neighbour (no mixing of valid and invalid depth).

    Uses ``cv2.INTER_NEAREST_EXACT``, which samples the source pixel whose centre is nearest to the
    destination pixel centre (the same pixel-centre convention as
    :func:`maploc.geometry.camera.scale_intrinsics`).
    """
    if depth.shape[:2] == (height, width):
        return depth
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def make_sample(
    image: np.ndarray,
    camera: Camera,
    *,
    T_cam2world: Pose | None,
    depth: np.ndarray | Tensor | None = None,
    image_height: int | None = None,
    name: str = "",
    sequence: str = "",
    timestamp: float = 0.0,
    extras: Mapping[str, Any] | None = None,
) -> Sample:
    """Assembles a :class:`~maploc.types.Sample`, resizing to ``image_height`` if asked.

    Resizing keeps the aspect ratio (width rounded): the image is resized with ``INTER_AREA``, the
    camera with :meth:`Camera.resize_to_height`, and the depth by nearest neighbour.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        camera: the camera of ``image`` (must be ``W x H``).
        T_cam2world: the ground-truth pose, or ``None``.
        depth: optional ``(H, W)`` float depth in metres, ``0`` = invalid, in the frame of ``image``.
        image_height: target height in pixels, or ``None`` to keep the size.
        name, sequence, timestamp, extras: copied into the sample.

    Raises:
        DataError: if the sizes of image, camera and depth disagree (the message names the sample).
    """
    H, W = image.shape[:2]
    if (camera.width, camera.height) != (W, H):
        raise DataError(f"{name}: calibration is for {camera.width}x{camera.height} but the image is {W}x{H}")
    if isinstance(depth, Tensor):
        depth = depth.detach().cpu().numpy()
    if depth is not None and depth.shape != (H, W):
        raise DataError(f"{name}: depth map is {depth.shape[1]}x{depth.shape[0]} but the image is {W}x{H}")
    if image_height is not None and image_height != H:
        if image_height <= 0:
            raise ValueError(f"image_height must be positive, got {image_height}")
        camera = camera.resize_to_height(image_height)
        image = resize_image(image, camera.width, camera.height)
        if depth is not None:
            depth = resize_depth(depth, camera.width, camera.height)
    depth_t = None if depth is None else torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    return Sample(
        image=image_to_tensor(image),
        camera=camera,
        T_cam2world=T_cam2world,
        depth=depth_t,
        name=name,
        sequence=sequence,
        timestamp=float(timestamp),
        extras=dict(extras or {}),
    )


def refuse_root(dataset: str, root: Any) -> None:
    """For a dataset that generates its samples and reads no files: a given ``root`` is an error, not
    silently ignored (``maploc run`` passes ``None`` without ``--data-root``).

    Raises:
        DataError: ``root`` is not ``None``.
    """
    if root is not None:
        raise DataError(
            f"dataset {dataset!r} generates its samples and reads no files, so --data-root {root} would be ignored; "
            "drop --data-root, or choose the dataset that reads that folder (`maploc list --kind datasets`)")

"""Strecha multi-view scenes (Strecha, von Hansen, Van Gool, Fua & Thoennessen, "On benchmarking camera calibration
and multi-view stereo for high resolution imagery", CVPR 2008): real photographs with exact ground-truth poses.

A scene folder holds ``images/NNNN.jpg`` and ``gt_dense_cameras/NNNN.jpg.camera`` (the layout of the openMVG
``SfM_quality_evaluation`` redistribution; ``../shared/data/strecha/README.md``, "Layout, per scene"). A ``.camera``
file is nine lines of text::

    fx 0 cx          K, pixels (pixel centres at integer coordinates, OpenCV convention)
    0 fy cy
    0 0 1
    k1 k2 k3         radial distortion: must be 0 0 0 (the images are undistorted)
    r11 r12 r13      R: rotation camera -> world (columns = camera axes in the world frame)
    r21 r22 r23
    r31 r32 r33
    Cx Cy Cz         camera centre in world coordinates, metres
    W H              image width and height, pixels

so that a world point ``X`` projects to ``K R^T (X - C)`` and ``T_cam2world = [R | C]``.

Splits (option ``split``): ``loo`` (default) is leave-one-out: the map and the query split both hold every image
and :attr:`Strecha.leave_one_out` is set, so the runner tells the method to localize each image against a map made
from all the others; ``fixed`` takes the images named by ``query_images`` as queries and the rest as the map.

:class:`PosedSplitOptions` and :func:`split_names` are shared with other posed-image datasets (maploc-features'
``colmap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

import attrs
import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.data import io
from maploc.data.layouts import expected_layout, readme_anchor
from maploc.errors import ConfigError, DataError
from maploc.types import Camera, Pose, Sample

__all__ = ["Strecha", "StrechaCamera", "PosedSplitOptions", "read_strecha_camera", "split_names", "query_image_names",
           "LAYOUT", "LAYOUT_ANCHOR"]

#: the layout a Strecha root holds, appended to every layout error (:func:`maploc.data.layouts.expected_layout`)
LAYOUT = ("one scene folder: <root>/images/NNNN.jpg and <root>/gt_dense_cameras/NNNN.jpg.camera (9 lines: K, zero "
          "distortion, R camera->world, centre C in metres, W H)")
#: where the layout is described: the README's "strecha layout" section
LAYOUT_ANCHOR = readme_anchor("strecha")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def query_image_names(value: Any) -> tuple[str, ...]:
    """The ``query_images`` option as a tuple of names: a list, or one comma-separated string."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class PosedSplitOptions:
    """Split options of a dataset of posed images (``-o data.<key>=value``).

    Attributes:
        split: ``loo`` (leave-one-out: map and query split hold every image, each query is localized against a
            map of all the others; :attr:`maploc.api.Dataset.leave_one_out`) or ``fixed`` (the ``query_images``
            are the queries, the other images the map).
        query_images: with ``split=fixed``, the query image names (the file name with or without its extension,
            e.g. ``0003`` or ``0003.jpg``), as a list or one comma-separated string (``-o
            data.query_images=0003.jpg,0007.jpg``; quote bare numbers, YAML reads ``0010`` as the integer 8).
    """

    split: Literal["loo", "fixed"] = "loo"
    query_images: str | tuple[str, ...] = attrs.field(default=(), converter=query_image_names)


def split_names(names: Sequence[str], split: str, options: PosedSplitOptions, where: str) -> tuple[list[int], bool]:
    """The indices of ``names`` in ``split`` and whether the split is leave-one-out.

    Args:
        names: every image name of the dataset (without extension), in order.
        split: ``train``/``map``/``query``.
        options: the split options.
        where: the dataset for messages.

    Returns:
        ``(indices, leave_one_out)``.

    Raises:
        ConfigError: ``split=fixed`` without ``query_images`` or naming an image the dataset does not have, all
            images as queries (an empty map), or ``query_images`` with ``split=loo``.
    """
    if options.split == "loo":
        if options.query_images:
            raise ConfigError(f"{where}: data.query_images is only read with data.split=fixed (split=loo localizes "
                              f"every image against the others)")
        return list(range(len(names))), True
    if not options.query_images:
        raise ConfigError(f"{where}: data.split=fixed needs data.query_images (names, e.g. "
                          f"data.query_images={names[0]}.jpg); the images are {', '.join(names)}")
    index = {n: i for i, n in enumerate(names)}
    wanted = []
    for q in options.query_images:
        stem = q if q in index else str(PurePosixPath(q).with_suffix(""))
        if stem not in index:
            raise ConfigError(f"{where}: data.query_images names {q!r}, which is not an image of the dataset "
                              f"({', '.join(names)})")
        wanted.append(index[stem])
    queries = sorted(set(wanted))
    if len(queries) == len(names):
        raise ConfigError(f"{where}: data.query_images names every image, which leaves an empty map")
    if split == "query":
        return queries, False
    return [i for i in range(len(names)) if i not in set(queries)], False


@attrs.frozen(kw_only=True, eq=False)
class StrechaCamera:
    """One parsed ``.camera`` file (float64).

    Attributes:
        K: ``(3, 3)`` intrinsics, pixels. R_cam2world: ``(3, 3)``. center: ``(3,)`` camera centre, metres (world).
        width, height: the image size the file states, pixels.
    """

    K: np.ndarray
    R_cam2world: np.ndarray
    center: np.ndarray
    width: int
    height: int

    @property
    def T_cam2world(self) -> Pose:
        return Pose(R=torch.from_numpy(self.R_cam2world).float(), t=torch.from_numpy(self.center).float())

    def camera(self) -> Camera:
        return Camera(K=torch.from_numpy(self.K).float(), width=self.width, height=self.height)


def read_strecha_camera(path: Path) -> StrechaCamera:
    """Parses a Strecha ``.camera`` file (the nine lines of the module docstring).

    Raises:
        DataError: a missing or unreadable file, a line with the wrong count of numbers or a non-number (file and
            line), a ``K`` that is not upper-triangular with positive focals, a non-zero distortion, ``R`` not a
            rotation, or a non-positive size; each one line that names the file, the line and the expected layout.
    """
    path = Path(path)
    lines = io.read_text_lines(path)
    expected = (3, 3, 3, 3, 3, 3, 3, 3, 2)
    what = ("K row 1", "K row 2", "K row 3", "radial distortion", "R row 1", "R row 2", "R row 3", "centre C",
            "width height")
    if len(lines) != len(expected):
        last = lines[-1][0] if lines else 1
        raise DataError(f"{path}, line {last}: a .camera file has 9 lines (K, distortion, R, C, W H), got "
                        f"{len(lines)}")
    rows = []
    for (lineno, line), n, w in zip(lines, expected, what):
        values = io._parse_floats(path, lineno, line)
        if len(values) != n:
            raise DataError(f"{path}, line {lineno}: expected {n} numbers ({w}), got {len(values)}")
        rows.append(values)
    K = np.asarray(rows[0:3], dtype=np.float64)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0 or K[2, 2] != 1:
        raise DataError(f"{path}, line {lines[0][0]}: K must be upper-triangular with positive focal lengths and "
                        f"last row 0 0 1, got {K.tolist()}")
    if any(v != 0 for v in rows[3]):
        raise DataError(f"{path}, line {lines[3][0]}: radial distortion {rows[3]} is not zero; maploc reads "
                        f"undistorted Strecha images only (undistort them first)")
    R = np.asarray(rows[4:7], dtype=np.float64)
    io.check_rotation(R, f"{path}, lines {lines[4][0]}-{lines[6][0]}")
    width, height = rows[8]
    if width <= 0 or height <= 0 or not float(width).is_integer() or not float(height).is_integer():
        raise DataError(f"{path}, line {lines[8][0]}: expected the image size as two positive integers, got "
                        f"{rows[8]}")
    return StrechaCamera(K=K, R_cam2world=R, center=np.asarray(rows[7], dtype=np.float64), width=int(width),
                         height=int(height))


class Strecha(Dataset):
    """One Strecha scene (``fountain-P11``, ``Herz-Jesus-P8``, ``castle-P19``, ...).

    Layout of ``root`` (one scene; see the module docstring for the ``.camera`` format)::

        images/0000.jpg                    RGB photographs (1536x1024 in ../shared/data/strecha)
        gt_dense_cameras/0000.jpg.camera   K, distortion (0), R (camera -> world), C (metres), W H

    Samples: name = the image file name without extension (``0000``), sequence = the scene folder name,
    timestamp = the index; ``T_cam2world = [R | C]``; no depth; ``extras``: ``image_path``, ``camera_path``.

    Args:
        root: the scene folder.
        split: ``train``/``map`` or ``query``; which images each holds is set by the options
            (:class:`PosedSplitOptions`: ``split=loo`` by default).
        image_height: if given, images and ``K`` are resized to this height (:meth:`Camera.resize_to_height`).

    Raises:
        DataError: ``root`` is not a folder, has no ``images`` or ``gt_dense_cameras`` folder or no image, an image
            has no ``.camera`` file, a ``.camera`` file is malformed or has distortion (file and line): one line
            naming the problem and, appended by :func:`maploc.data.layouts.expected_layout`, the layout and where it
            is described; raised by the constructor, before any image is read.
        ConfigError: bad split options (see :func:`split_names`).
        ValueError: for an unknown split.
    """

    name: ClassVar[str] = "strecha"
    default_sample: ClassVar[str | None] = None
    has_depth: ClassVar[bool] = False
    Options = PosedSplitOptions

    def __init__(self, root: Path, split: str, *, image_height: int | None = None,
                 options: PosedSplitOptions | None = None) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        with expected_layout(self.name, LAYOUT, LAYOUT_ANCHOR):
            if self.root is None or not self.root.is_dir():
                raise DataError(f"{self.root}: Strecha scene folder not found")
            for sub in ("images", "gt_dense_cameras"):
                if not (self.root / sub).is_dir():
                    raise DataError(f"{self.root}: no '{sub}' folder")
            images = io.list_files(self.root / "images", _IMAGE_SUFFIXES)
            if not images:
                raise DataError(f"{self.root / 'images'}: no .jpg/.png image")
            all_entries = []
            for image in images:
                camera_path = self.root / "gt_dense_cameras" / (image.name + ".camera")
                if not camera_path.is_file():
                    raise DataError(f"{image}: no camera file {camera_path}")
                all_entries.append((image, camera_path, read_strecha_camera(camera_path)))
        all_names = [PurePosixPath(e[0].name).stem for e in all_entries]
        indices, self.leave_one_out = split_names(all_names, split, self.options, f"strecha {self.root}")
        self._entries = [all_entries[i] for i in indices]

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return [e[0].stem for e in self._entries]

    def metadata(self, index: int) -> SampleMeta:
        """Name, ``T_cam2world`` (from the parsed ``.camera`` file) and sequence of sample ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, _, cam = self._entries[index]
        return SampleMeta(name=image.stem, T_cam2world=cam.T_cam2world, sequence=self.root.name,
                          timestamp=float(index % len(self)))

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image_path, camera_path, cam = self._entries[index]
        image = io.read_image(image_path)
        H, W = image.shape[:2]
        if (W, H) != (cam.width, cam.height):
            raise DataError(f"{camera_path}: states {cam.width}x{cam.height} but {image_path} is {W}x{H}")
        return io.make_sample(image, cam.camera(), T_cam2world=cam.T_cam2world, image_height=self.image_height,
                              name=image_path.stem, sequence=self.root.name, timestamp=float(index % len(self)),
                              extras={"image_path": str(image_path), "camera_path": str(camera_path)})

    def __repr__(self) -> str:
        return f"Strecha(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, {self.options.split})"

"""The folder layout of DSAC* (Brachmann & Rother, "Visual Camera Re-Localization from RGB and
RGB-D Images Using DSAC", TPAMI 2021), written by its ``datasets/setup_*.py`` scripts and reused by
ACE, GLACE and others: one folder per split, files of one frame paired by sorted order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import torch

from maploc.api import Dataset, SampleMeta
from maploc.data import io
from maploc.data.layouts import expected_layout
from maploc.errors import DataError
from maploc.types import Sample

__all__ = ["DSACLayout"]

#: The layout a DSAC* root holds (said in its errors; README section "dsac layout").
LAYOUT = ("<root>/train/ and <root>/test/, each with rgb/, calibration/ and poses/ (optional depth/), "
          "the files of one frame paired by sorted order (DSAC*'s layout)")

_SPLIT_FOLDERS = {"train": "train", "map": "train", "query": "test"}
#: DSAC*'s README calls the training folder ``training/`` while its scripts write ``train/``.
_ALIASES = {"train": "training"}
_SEQUENCE_RE = re.compile(r"^(seq[-_]?\d+)[-_]", re.IGNORECASE)


class DSACLayout(Dataset):
    """A scene in DSAC*'s layout.

    Layout of ``root``::

        train/rgb/*.png|jpg          images (train and map splits)
        train/calibration/*.txt      one focal length in pixels, or a 3x3 intrinsic matrix
        train/poses/*.txt            4x4 camera-to-world, metres
        train/depth/*.png            optional: uint16 millimetres, registered to rgb, 0 = invalid
        train/init/*.dat             optional: DSAC* sparse scene-coordinate targets
        train/eye/*.dat              optional: DSAC* camera coordinates (back-projected depth)
        test/...                     the same for the query split

    (``training/`` is accepted for ``train/``, as DSAC*'s README spells it.)

    The files of one frame are paired **by sorted order** within each folder (as DSAC*'s
    ``dataset.py`` does), so every folder must hold the same number of files. A single-number
    calibration has its principal point at the image centre ``(W / 2, H / 2)`` (DSAC*'s convention).

    Samples: name = the rgb file name without extension; sequence = the leading ``seq-XX`` /
    ``seqN`` of the name when there is one (7-Scenes and Cambridge exports), else ``""``; timestamp
    = index in sorted order. ``extras``: ``rgb_path``, ``calibration_path``, ``pose_path`` and, when
    present, ``depth_path``; with an ``init`` folder, ``init_path`` and ``init`` (the ``(3, h, w)``
    float32 scene coordinates, world frame, metres, zeros = invalid, at the network's output
    resolution of DSAC*'s 480-px image; **not** resized with ``image_height``); with an ``eye``
    folder, ``eye_path`` and ``eye`` (the same for camera coordinates, camera frame, metres).

    Args:
        root: the scene folder (holding ``train/`` and ``test/``).
        split: ``train`` or ``map`` (``train/``) or ``query`` (``test/``).
        image_height: if given, images, cameras and depth are resized to this height.

    Attributes:
        has_depth: ``True`` when the split has a ``depth`` folder (set per instance).

    Raises:
        DataError: if a required folder is missing or empty, or folders hold different numbers of
            files (naming both folders). Malformed calibration or pose files raise when the frame
            is loaded, naming the file and line.
        ValueError: for an unknown split.
    """

    name: ClassVar[str] = "dsac"
    default_sample: ClassVar[str | None] = None
    has_depth: ClassVar[bool] = False

    def __init__(self, root: Path, split: str, *, image_height: int | None = None, options: Any = None) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        with expected_layout(self.name, LAYOUT):
            base = self.root / _SPLIT_FOLDERS[split]
            alias = _ALIASES.get(_SPLIT_FOLDERS[split])
            if not base.is_dir() and alias is not None and (self.root / alias).is_dir():
                base = self.root / alias
            if not base.is_dir():
                raise DataError(f"{base}: DSAC* split folder not found (expected {self.root}/train and {self.root}/test)")
            self.rgb_files = io.list_files(base / "rgb", io.IMAGE_EXTENSIONS)
            if not self.rgb_files:
                raise DataError(f"{base / 'rgb'}: no images")
            self.calibration_files = self._paired(base / "calibration")
            self.pose_files = self._paired(base / "poses")
            self.depth_files = self._paired(base / "depth") if (base / "depth").is_dir() else None
            self.init_files = self._paired(base / "init") if (base / "init").is_dir() else None
            self.eye_files = self._paired(base / "eye") if (base / "eye").is_dir() else None
            self.has_depth = self.depth_files is not None  # type: ignore[misc]

    def _paired(self, folder: Path) -> list[Path]:
        files = io.list_files(folder)
        rgb_folder = self.rgb_files[0].parent
        if len(files) != len(self.rgb_files):
            raise DataError(
                f"{folder} holds {len(files)} files but {rgb_folder} holds {len(self.rgb_files)} images; "
                "DSAC* pairs the files of one frame by sorted order, so the counts must match"
            )
        return files

    def __len__(self) -> int:
        return len(self.rgb_files)

    def names(self) -> list[str]:
        return [p.stem for p in self.rgb_files]

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        rgb_path = self.rgb_files[index]
        image = io.read_image(rgb_path)
        H, W = image.shape[:2]
        camera = io.read_calibration(self.calibration_files[index], W, H)
        T_cam2world = io.read_pose(self.pose_files[index])
        extras: dict[str, Any] = {
            "rgb_path": str(rgb_path),
            "calibration_path": str(self.calibration_files[index]),
            "pose_path": str(self.pose_files[index]),
        }
        depth = None
        if self.depth_files is not None:
            depth = io.read_depth_png(self.depth_files[index])
            extras["depth_path"] = str(self.depth_files[index])
        for key, files in (("init", self.init_files), ("eye", self.eye_files)):
            if files is not None:
                extras[f"{key}_path"] = str(files[index])
                extras[key] = self._read_coordinates(files[index])
        name = rgb_path.stem
        match = _SEQUENCE_RE.match(name)
        return io.make_sample(
            image,
            camera,
            T_cam2world=T_cam2world,
            depth=depth,
            image_height=self.image_height,
            name=name,
            sequence=match.group(1) if match else "",
            timestamp=float(index),
            extras=extras,
        )

    def metadata(self, index: int) -> SampleMeta:
        """Name, ``T_cam2world`` (from the pose file alone) and sequence of sample ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        name = self.rgb_files[index].stem
        match = _SEQUENCE_RE.match(name)
        return SampleMeta(name=name, T_cam2world=io.read_pose(self.pose_files[index]),
                          sequence=match.group(1) if match else "", timestamp=float(index))

    @staticmethod
    def _read_coordinates(path: Path) -> torch.Tensor:
        """Reads a DSAC* ``init``/``eye`` file (``torch.save`` of a (3, h, w) tensor), safely."""
        try:
            coords = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to read means a corrupt file
            raise DataError(f"{path}: cannot read DSAC* coordinate file ({exc})") from exc
        if not isinstance(coords, torch.Tensor) or coords.ndim != 3 or coords.shape[0] != 3:
            raise DataError(f"{path}: expected a (3, h, w) tensor of coordinates")
        return coords.float()

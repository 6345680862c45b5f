"""``colmap``: a COLMAP model folder and its image folder as a maploc dataset, so that a user's own reconstruction
(or a map that ``hloc`` wrote to ``RUN/map_model/``) can be localized against.

Poses come from the model (``cam_from_world`` of each registered image; ``T_cam2world`` is its inverse), intrinsics
from its cameras. Pinhole models only: ``SIMPLE_PINHOLE``, ``PINHOLE``, and a distortion model whose distortion
parameters are all zero (``SIMPLE_RADIAL``, ``RADIAL``, ``OPENCV``, ``FULL_OPENCV`` with zeros). A camera with
distortion is refused (maploc does not undistort; ``colmap image_undistorter`` writes an undistorted model and
images). COLMAP's pixel centres lie at half-integers, maploc's (OpenCV's) at integers: ``c_maploc = c_colmap -
0.5``.

Splits are those of ``strecha`` (:class:`maploc.data.strecha.PosedSplitOptions`): ``loo`` (default,
leave-one-out) or ``fixed`` with ``query_images``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

import attrs
import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.data import io
from maploc.data.layouts import expected_layout, readme_anchor
from maploc.data.strecha import query_image_names, split_names
from maploc.errors import DataError
from maploc.types import Camera, Pose, Sample

__all__ = ["ColmapDataset", "ColmapOptions", "LAYOUT", "LAYOUT_ANCHOR", "read_model"]

#: the layout, said in every layout error
LAYOUT = ("a COLMAP model (cameras, images, points3D as .bin or .txt) in <root>/sparse/0, <root>/sparse or <root>, "
          "and the images it names under <root>/images")
#: where the layout is described: the README's "colmap layout" section
LAYOUT_ANCHOR = readme_anchor("colmap")
#: camera models read as a pinhole camera: name -> (indices of fx, fy, cx, cy in params, the distortion indices)
_PINHOLE_LIKE = {
    "SIMPLE_PINHOLE": ((0, 0, 1, 2), ()),
    "PINHOLE": ((0, 1, 2, 3), ()),
    "SIMPLE_RADIAL": ((0, 0, 1, 2), (3,)),
    "RADIAL": ((0, 0, 1, 2), (3, 4)),
    "OPENCV": ((0, 1, 2, 3), (4, 5, 6, 7)),
    "FULL_OPENCV": ((0, 1, 2, 3), tuple(range(4, 12))),
}
_MODEL_CANDIDATES = ("sparse/0", "sparse", ".")


@attrs.frozen(kw_only=True)
class ColmapOptions:
    """Options of ``colmap`` (``-o data.<key>=value``).

    Attributes:
        split: ``loo`` (default; leave-one-out) or ``fixed`` (see :class:`maploc.data.strecha.PosedSplitOptions`).
        query_images: with ``split=fixed``, the query image names (as in the model, with or without extension).
        model: the model folder relative to the root (default ``None``: the first of ``sparse/0``, ``sparse``,
            the root itself that holds a model).
        images: the image folder relative to the root (default ``images``).
    """

    split: Literal["loo", "fixed"] = "loo"
    query_images: str | tuple[str, ...] = attrs.field(default=(), converter=query_image_names)
    model: str | None = None
    images: str = "images"


def _stem(image_name: str) -> str:
    return str(PurePosixPath(image_name).with_suffix(""))


def _has_model(folder: Path) -> bool:
    return all((folder / f"{n}.bin").is_file() or (folder / f"{n}.txt").is_file() for n in ("cameras", "images"))


def read_model(root: Path, model: str | None) -> tuple[Path, Any]:
    """``(model folder, pycolmap.Reconstruction)``.

    Raises:
        DataError: no model folder, or one pycolmap cannot read (one line).
    """
    import pycolmap

    candidates = [model] if model is not None else list(_MODEL_CANDIDATES)
    folder = next((root / c for c in candidates if _has_model(root / c)), None)
    if folder is None:
        looked = ", ".join(str(root / c) for c in candidates)
        raise DataError(f"{root}: no COLMAP model (cameras + images .bin/.txt) in {looked}")
    try:
        rec = pycolmap.Reconstruction(str(folder))
    except Exception as e:  # noqa: BLE001 - pycolmap raises ValueError/RuntimeError on a malformed model
        raise DataError(f"{folder}: pycolmap cannot read the model: {str(e).splitlines()[0] if str(e) else e!r}") from None
    return folder, rec


def _camera_K(camera: Any, where: str) -> np.ndarray:
    """The maploc ``K`` (OpenCV pixel centres) of a COLMAP camera.

    Raises:
        DataError: a model not in :data:`_PINHOLE_LIKE`, or non-zero distortion.
    """
    name = camera.model.name
    params = np.asarray(camera.params, dtype=np.float64)
    if name not in _PINHOLE_LIKE:
        raise DataError(f"{where}: camera {camera.camera_id} has model {name}, which maploc cannot undistort; it reads "
                        f"{', '.join(_PINHOLE_LIKE)} without distortion (undistort first: colmap image_undistorter)")
    (fx, fy, cx, cy), dist = _PINHOLE_LIKE[name]
    if any(params[i] != 0 for i in dist):
        raise DataError(f"{where}: camera {camera.camera_id} ({name}) has distortion {params[list(dist)].tolist()}, "
                        f"which maploc does not undistort (undistort first: colmap image_undistorter, or a PINHOLE "
                        f"model)")
    return np.array([[params[fx], 0.0, params[cx] - 0.5], [0.0, params[fy], params[cy] - 0.5], [0.0, 0.0, 1.0]])


class ColmapDataset(Dataset):
    """A COLMAP reconstruction and its images.

    Layout of ``root``::

        sparse/0/{cameras,images,points3D}.bin   (or .txt; or in sparse/, or in root itself; option ``model``)
        images/<name as in the model>            (option ``images``)

    Samples: the registered images of the model, sorted by name; name = the model's image name without extension;
    ``T_cam2world`` = the inverse of its ``cam_from_world``; no depth; ``extras``: ``image_path``, ``image_name``
    (the model's), ``image_id``.

    Args:
        root: the folder. split: ``train``/``map`` or ``query`` (see :class:`ColmapOptions`).
        image_height: resize images and ``K`` to this height.

    Raises:
        DataError: no model, an unreadable model, a camera with distortion or of an unsupported model, an image
            listed in the model but missing from the image folder, no registered image: one line each, raised by
            the constructor (before any image is decoded).
        ConfigError: bad split options.
    """

    name: ClassVar[str] = "colmap"
    default_sample: ClassVar[str | None] = None
    has_depth: ClassVar[bool] = False
    Options = ColmapOptions

    def __init__(self, root: Path, split: str, *, image_height: int | None = None,
                 options: ColmapOptions | None = None) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        with expected_layout(self.name, LAYOUT, LAYOUT_ANCHOR):
            if self.root is None or not self.root.is_dir():
                raise DataError(f"{self.root}: folder not found")
            self.model_dir, rec = read_model(self.root, self.options.model)
            image_dir = self.root / self.options.images
            if not image_dir.is_dir():
                raise DataError(f"{image_dir}: image folder not found")
            Ks = {cid: _camera_K(cam, str(self.model_dir)) for cid, cam in rec.cameras.items()}
            entries = []
            for image_id, image in rec.images.items():
                if not image.has_pose:
                    continue
                path = image_dir / image.name
                if not path.is_file():
                    raise DataError(f"{path}: image {image.name!r} (id {image_id}) of the model {self.model_dir} is not "
                                    f"in the image folder {image_dir}")
                M = np.asarray(image.cam_from_world().matrix(), dtype=np.float64)
                cam = rec.cameras[image.camera_id]
                R = M[:, :3].T
                entries.append((image.name, path, int(image_id), Ks[image.camera_id],
                                (int(cam.width), int(cam.height)), R, -R @ M[:, 3]))
            if not entries:
                raise DataError(f"{self.model_dir}: the model has no registered image")
        entries.sort(key=lambda e: e[0])
        names = [_stem(e[0]) for e in entries]
        indices, self.leave_one_out = split_names(names, split, self.options, f"colmap {self.root}")
        self._entries = [entries[i] for i in indices]

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return [_stem(e[0]) for e in self._entries]

    @staticmethod
    def _pose(R: np.ndarray, C: np.ndarray) -> Pose:
        return Pose(R=torch.from_numpy(R).float(), t=torch.from_numpy(C).float())

    def metadata(self, index: int) -> SampleMeta:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image_name, _, _, _, _, R, C = self._entries[index]
        return SampleMeta(name=_stem(image_name), T_cam2world=self._pose(R, C), timestamp=float(index % len(self)))

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image_name, path, image_id, K, (w, h), R, C = self._entries[index]
        image = io.read_image(path)
        H, W = image.shape[:2]
        if (W, H) != (w, h):
            raise DataError(f"{path}: the model's camera is {w}x{h} but the image is {W}x{H}")
        camera = Camera(K=torch.from_numpy(K).float(), width=w, height=h)
        return io.make_sample(image, camera, T_cam2world=self._pose(R, C), image_height=self.image_height,
                              name=_stem(image_name), timestamp=float(index % len(self)),
                              extras={"image_path": str(path), "image_name": image_name, "image_id": image_id})

    def __repr__(self) -> str:
        return f"ColmapDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, {self.options.split})"

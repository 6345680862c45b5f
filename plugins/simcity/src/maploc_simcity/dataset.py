"""``sim-city``: street-level views rendered from a real OpenStreetMap map, with exact poses, depth and labels."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml

from maploc.api import Dataset
from maploc.data import io
from maploc.errors import ConfigError, DataError
from maploc.types import Camera, Pose, Pose2, Sample

from .command import FORMAT_VERSION, read_render_json, render_command, resolve_map
from .writers import read_depth_cm, read_traversal_rows

__all__ = ["SimCity"]

logger = logging.getLogger(__name__)


class SimCity(Dataset):
    """Traversals of a route through a city rendered from its OpenStreetMap map (see :mod:`maploc.data.render`).

    Where the frames come from, by ``root``:

    * a folder written by ``maploc data render --out DIR`` (it holds ``render.json``): read as it is;
    * a YAML file, or a folder holding ``sim-city.yaml``: options (keys of :attr:`DEFAULTS`) for a render made on
      first use and cached under ``<cache root>/sim-city/<key>`` (the cache root of :func:`maploc.data.fetch.
      cache_root`, ``$MAPLOC_DATA``); the key hashes the options, the map file's SHA-256 and the format version;
    * anything else (``maploc run`` passes ``.`` without ``--data-root``): the defaults, rendered and cached alike.

    Keyword ``options`` override both. Splits: with several sequences (traversal x condition), ``map`` and
    ``train`` are the first traversal under the first condition and ``query`` every other sequence; with one
    sequence, ``map``/``train`` are its even frames and ``query`` its odd frames.

    Samples: ``image`` RGB, ``camera``, ``T_cam2world`` (OpenCV camera frame, world = OSM map frame with z up,
    metres), ``depth`` (metres, 0 = sky or beyond 655 m), ``pose2`` (map-frame x, y, yaw), ``name``
    ``<sequence>/<index>``, ``sequence`` ``t<traversal>_<condition>``, ``timestamp`` = frame index (the same place in
    every sequence). ``extras``: ``labels`` (``(H, W)`` uint8 :data:`.labels.LABEL_NAMES` values, resized with the
    image by nearest neighbour), ``condition``, ``traversal``, ``index``, ``rgb_path``, ``georef`` (the map frame,
    a dict of :class:`maploc.data.osm.GeoReference`) and ``map_source``.

    Args:
        root: see above.
        split: ``train``, ``map`` or ``query``.
        image_height: resize images, cameras, depth and labels to this height.
        **options: override keys of :attr:`DEFAULTS`.

    Raises:
        ConfigError: an unknown option key, or an unreadable YAML file.
        DataError: the map cannot be read or has no roads; a rendered folder is incomplete (names the file).
        RenderError: rendering is needed and no usable OpenGL exists.
        ValueError: unknown split; RenderParameterError (a ValueError): an option out of range.
    """

    name: ClassVar[str] = "sim-city"
    default_sample: ClassVar[str | None] = None
    needs_root: ClassVar[bool] = False
    has_depth: ClassVar[bool] = True
    #: Render options used when neither a YAML file nor keywords set them.
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "map": "helsinki-osm",
        "frames": 100,
        "traversals": 2,
        "conditions": ["day", "night"],
        "seed": 0,
        "width": 320,
        "height": 240,
        "fov_deg": 70.0,
        "spacing_m": 4.0,
    }
    #: Name of the options file looked for in ``root``.
    CONFIG_FILE: ClassVar[str] = "sim-city.yaml"

    def __init__(
        self, root: Path | None = None, split: str = "train", *, image_height: int | None = None, **options: Any
    ) -> None:
        super().__init__(Path(root) if root is not None else Path("."), split, image_height=image_height)
        if (self.root / "render.json").is_file():
            self.folder = self.root
        else:
            self.options = self._options(options)
            self.folder = self._cached_render(self.options)
        self.summary = read_render_json(self.folder)
        sequences = list(self.summary["sequences"])
        frames = int(self.summary["options"]["frames"])
        if len(sequences) > 1:
            chosen = sequences[:1] if split in ("map", "train") else sequences[1:]
            self.items = [(s, i) for s in chosen for i in range(frames)]
        else:
            parity = 0 if split in ("map", "train") else 1
            self.items = [(sequences[0], i) for i in range(frames) if i % 2 == parity]
        cam = self.summary["camera"]
        self.camera = Camera(K=torch.tensor(cam["K"], dtype=torch.float32), width=cam["width"], height=cam["height"])
        self._poses: dict[str, dict[int, list[float]]] = {}
        self._pose2: dict[str, dict[int, list[float]]] = {}

    # ---- options and cache ---------------------------------------------------------------------------------------
    def _options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        options = dict(self.DEFAULTS)
        config = self.root if self.root.suffix in (".yaml", ".yml") else self.root / self.CONFIG_FILE
        if config.is_file():
            try:
                data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"{config}: cannot read the sim-city options: {exc}") from exc
            if not isinstance(data, dict):
                raise ConfigError(f"{config}: expected a mapping of sim-city options, got {type(data).__name__}")
            if (
                isinstance(data.get("map"), str)
                and not Path(data["map"]).is_absolute()
                and (config.parent / data["map"]).exists()
            ):
                data["map"] = str(config.parent / data["map"])  # a map file beside the YAML
            options.update(data)
        options.update(overrides)
        unknown = sorted(set(options) - set(self.DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown sim-city options {unknown}; known: {', '.join(self.DEFAULTS)}")
        if isinstance(options["conditions"], str):
            options["conditions"] = [c.strip() for c in options["conditions"].split(",") if c.strip()]
        return options

    @staticmethod
    def _cache_dir(options: Mapping[str, Any], map_sha256: str) -> Path:
        from maploc.data.fetch import cache_root

        payload = dict(options, map=map_sha256, format=FORMAT_VERSION)
        key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return cache_root() / "sim-city" / key

    def _cached_render(self, options: Mapping[str, Any]) -> Path:
        from maploc.data.osm.parser import _sha256

        osm_path = resolve_map(options["map"])
        target = self._cache_dir(options, _sha256(osm_path))
        if (target / "render.json").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        logger.info("rendering sim-city %s into %s (first use only)", dict(options), target)
        try:
            render_command(
                str(osm_path), int(options["frames"]), list(options["conditions"]), work, seed=int(options["seed"]),
                traversals=int(options["traversals"]), width=int(options["width"]), height=int(options["height"]),
                fov_deg=float(options["fov_deg"]), spacing_m=float(options["spacing_m"]), layouts=("traversals",),
                progress=False,
            )  # fmt: skip
            try:
                os.replace(work, target)
            except OSError:  # another process finished the same render first
                if not (target / "render.json").is_file():
                    raise
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return target

    # ---- samples -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> list[str]:
        return [f"{s}/{i:06d}" for s, i in self.items]

    def _rows(self, cache: dict[str, dict[int, list[float]]], sequence: str, file: str) -> dict[int, list[float]]:
        if sequence not in cache:
            cache[sequence] = read_traversal_rows(self.folder / "traversals" / sequence / file)
        return cache[sequence]

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        sequence, i = self.items[index % len(self)]
        folder = self.folder / "traversals" / sequence
        name = f"{i:06d}.png"
        image = io.read_image(folder / "rgb" / name)
        depth = read_depth_cm(folder / "depth" / name)
        labels_path = folder / "labels" / name
        labels = _read_labels(labels_path)
        pose_row = self._rows(self._poses, sequence, "poses.txt").get(i)
        pose2_row = self._rows(self._pose2, sequence, "pose2.txt").get(i)
        if pose_row is None or len(pose_row) != 16 or pose2_row is None or len(pose2_row) != 3:
            raise DataError(f"{folder}: no valid pose for frame {i} in poses.txt / pose2.txt")
        T = Pose.from_matrix(torch.tensor(pose_row, dtype=torch.float64).reshape(4, 4).float())
        condition = self.summary["options"]["conditions"][0]
        for c in self.summary["options"]["conditions"]:
            if sequence.endswith("_" + c):
                condition = c
        sample = io.make_sample(
            image, self.camera, T_cam2world=T, depth=depth, image_height=self.image_height,
            name=f"{sequence}/{i:06d}", sequence=sequence, timestamp=float(i),
        )  # fmt: skip
        if self.image_height is not None and labels.shape[0] != sample.camera.height:
            labels = io.resize_depth(labels, sample.camera.width, sample.camera.height)
        extras = {
            "labels": torch.from_numpy(np.ascontiguousarray(labels)),
            "condition": condition,
            "traversal": int(sequence.split("_", 1)[0][1:]),
            "index": i,
            "rgb_path": str(folder / "rgb" / name),
            "georef": dict(self.summary["map"]["georef"]),
            "map_source": self.summary["map"]["source"],
        }
        return Sample(
            image=sample.image, camera=sample.camera, T_cam2world=sample.T_cam2world, depth=sample.depth,
            pose2=Pose2(x=pose2_row[0], y=pose2_row[1], yaw=pose2_row[2]), name=sample.name, sequence=sequence,
            timestamp=float(i), extras=extras,
        )  # fmt: skip


def _read_labels(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise DataError(f"{path}: label image not found")
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2 or labels.dtype != np.uint8:
        raise DataError(f"{path}: expected a single-channel uint8 label PNG")
    return labels

"""``mgl``: reads one location of OrienterNet's Mapillary Geo-Localization (MGL) dump.

Reference: Sarlin et al., "OrienterNet", CVPR 2023, Sec. 4 (the MGL dataset), and the layout its public code writes
(read, not copied)::

    <data_dir>/
      <location>/                    the dataset root given to maploc (``--data-root``)
        dump.json                    {"<sequence id>": {"views": {"<view id>": VIEW}, "cameras": {"<id>": CAMERA}}}
        images/<view id>.jpg         undistorted perspective images
      osm/<city>.osm                 the OSM file of the location (``.osm``, ``.osm.pbf`` or ``.osm.bz2``)
      splits_MGL_13loc.json          optional: {"train": {"<location>": [image ids]}, "val": {...}}

    VIEW   = {camera_id, latlong [lat, lon], t_c2w [x, y, z] (local ENU metres), R_c2w (3x3, OpenCV camera to
              ENU world), roll_pitch_yaw (degrees), capture_time, gps_position, compass_angle, index, ...}
    CAMERA = {model "PINHOLE", width, height, params [fx, fy, cx, cy]}

The raster comes from the location's ``.osm`` file through maploc-osm (never from the reference's pickled
``tiles.pkl``). The map frame is maploc-osm's azimuthal equidistant frame centred at the mean ``latlong`` of the
views; a view's position is its projected ``latlong``, its height ``t_c2w[2]``, its rotation ``R_c2w`` (ENU, the
map frame's axes up to the sub-milliradian convergence over a few kilometres).

Splits: with a splits file, ``train`` = its ``train`` ids of this location, ``query`` = its ``val`` ids; without
one, one sequence in ``query_every`` (by a stable hash of the sequence id) is a query sequence. ``map`` = ``train``.

Conditions: MGL records none (its sequences are Mapillary capture sequences, not lighting or seasons), so every
sample's ``condition`` is :data:`maploc.types.DEFAULT_CONDITION` (without it the core would take each sequence as
a condition and print one table per sequence).
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.config import at_least
from maploc.data.layouts import layout_hint
from maploc.errors import ConfigError, DataError
from maploc.types import DEFAULT_CONDITION, Camera, Pose, Pose2, Sample

__all__ = ["MGLDataset", "MGLOptions"]

_OSM_SUFFIXES = (".osm.pbf", ".osm", ".osm.bz2")
#: What ``--data-root`` of mgl names (said in its errors; README section "mgl layout").
LAYOUT = ("one MapillaryGeoLocalization location folder, <root>/dump.json and <root>/images/<view id>.jpg, with its "
          "OSM file in <root>/../osm/ or <root>/ (or -o data.osm=PATH)")


@attrs.frozen(kw_only=True)
class MGLOptions:
    """Options of ``mgl``.

    Attributes:
        osm: the location's OSM file; empty = the only ``*.osm``/``*.osm.pbf``/``*.osm.bz2`` in ``<root>/../osm/``
            or ``<root>/``.
        splits: a splits JSON (``{"train": {location: [ids]}, "val": {...}}``); empty = ``<root>/../splits_MGL_*.json``
            if there is exactly one, else the sequence-hash split.
        query_every: without a splits file, one sequence in this many is a query sequence.
        image_ext: extension of the image files.
    """

    osm: str = ""
    splits: str = ""
    query_every: int = attrs.field(default=4, validator=at_least(2))
    image_ext: str = ".jpg"


def _view_id_number(view_id: str) -> int | None:
    head = view_id.rsplit("_", 1)[0]
    return int(head) if head.isdigit() else None


class MGLDataset(Dataset):
    """One MGL location (see the module docstring); samples carry ``T_cam2world`` and ``pose2`` in the map frame.

    Raises (at construction):
        DataError: no ``dump.json``, a malformed entry, a non-PINHOLE camera, no OSM file.
        ConfigError: an unknown split.
    """

    name: ClassVar[str] = "mgl"
    Options: ClassVar[type] = MGLOptions

    def __init__(self, root: Any, split: str, *, image_height: int | None = None, options: Any = None) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        self.folder = Path(root)
        dump_path = self.folder / "dump.json"
        if not dump_path.is_file():
            raise DataError(f"{self.folder}: no dump.json; {layout_hint(self.name, LAYOUT)}")
        try:
            dump = json.loads(dump_path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{dump_path}: cannot read: {exc}") from None
        if not isinstance(dump, dict) or not dump:
            raise DataError(f"{dump_path}: expected {{sequence id: {{views, cameras}}}}")
        self.location = self.folder.name
        self.views: dict[str, dict[str, Any]] = {}
        self.sequence_of: dict[str, str] = {}
        self.cameras: dict[tuple[str, str], Camera] = {}
        for seq, per_seq in dump.items():
            if not isinstance(per_seq, dict) or "views" not in per_seq or "cameras" not in per_seq:
                raise DataError(f"{dump_path}: sequence {seq!r} lacks 'views' or 'cameras'")
            for cam_id, cam in per_seq["cameras"].items():
                self.cameras[seq, cam_id] = _camera(cam, f"{dump_path}: camera {cam_id!r} of {seq!r}")
            for view_id, view in per_seq["views"].items():
                for key in ("camera_id", "latlong", "t_c2w", "R_c2w"):
                    if key not in view:
                        raise DataError(f"{dump_path}: view {view_id!r} lacks {key!r}")
                if (seq, view["camera_id"]) not in self.cameras:
                    raise DataError(f"{dump_path}: view {view_id!r} names unknown camera {view['camera_id']!r}")
                self.views[view_id] = view
                self.sequence_of[view_id] = seq
        latlong = np.array([self.views[v]["latlong"][:2] for v in self.views], np.float64)
        self.origin = (float(latlong[:, 0].mean()), float(latlong[:, 1].mean()))
        self.items = self._split_items(split)
        if not self.items:
            raise DataError(f"{self.folder}: the {split!r} split of this MGL location is empty")

    # ---- splits and map ------------------------------------------------------------------------------------------
    def _splits_file(self) -> Path | None:
        if self.options.splits:
            path = Path(self.options.splits)
            if not path.is_file():
                raise ConfigError(f"data.splits={self.options.splits!r}: file not found")
            return path
        found = sorted(self.folder.parent.glob("splits_MGL_*.json"))
        return found[0] if len(found) == 1 else None

    def _split_items(self, split: str) -> list[str]:
        ids = sorted(self.views, key=lambda v: (self.sequence_of[v], self.views[v].get("index", 0), v))
        path = self._splits_file()
        if path is not None:
            table = json.loads(path.read_text())
            key = "val" if split == "query" else "train"
            wanted = {int(i) for i in table.get(key, {}).get(self.location, [])}
            return [v for v in ids if _view_id_number(v) in wanted]
        every = self.options.query_every

        def is_query(seq: str) -> bool:
            return int.from_bytes(hashlib.sha256(seq.encode()).digest()[:4], "little") % every == 0

        seqs = sorted(set(self.sequence_of.values()))
        if len(seqs) < 2:
            parity = 1 if split == "query" else 0
            return [v for k, v in enumerate(ids) if k % 2 == parity]
        if not any(is_query(s) for s in seqs):  # guarantee a query sequence
            query_seqs = {seqs[-1]}
        else:
            query_seqs = {s for s in seqs if is_query(s)}
        return [v for v in ids if (self.sequence_of[v] in query_seqs) == (split == "query")]

    @cached_property
    def osm_path(self) -> Path:
        """The location's OSM file: ``-o data.osm=PATH``, else the one ``.osm`` / ``.osm.pbf`` / ``.osm.bz2``
        file in ``../osm/`` or in the location folder.

        Raises:
            DataError: the given file is missing, or none or several OSM files are found.
        """
        if self.options.osm:
            path = Path(self.options.osm)
            if not path.is_file():
                raise DataError(f"data.osm={self.options.osm!r}: OSM file not found")
            return path
        for folder in (self.folder.parent / "osm", self.folder):
            found = sorted(p for p in folder.glob("*") if p.name.endswith(_OSM_SUFFIXES)) if folder.is_dir() else []
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise DataError(f"{folder}: several OSM files ({', '.join(p.name for p in found)}); choose one with "
                                "-o data.osm=PATH")  # fmt: skip
        raise DataError(f"{self.folder}: no OSM file in ../osm/ or here; give one with -o data.osm=PATH; "
                        f"{layout_hint(self.name, LAYOUT)}")

    @cached_property
    def georef(self) -> Any:
        """The :class:`maploc_osm.GeoReference` (local metric ENU frame) at this location's origin (lat/lon, degrees)."""
        from maploc_osm import GeoReference

        return GeoReference.from_origin(*self.origin)

    def map_raster(self, cell_m: float) -> Any:
        """The location's OSM raster (:class:`maploc_osm.MapRaster`) in this dataset's map frame, ``cell_m`` metres
        per cell, rasterized by maploc-osm from :attr:`osm_path` (through its cache)."""
        from maploc_osm import load_map_raster

        return load_map_raster(self.osm_path, cell_m, origin=self.origin)

    # ---- samples -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def _pose(self, view_id: str) -> tuple[Pose, Pose2]:
        view = self.views[view_id]
        R = torch.tensor(view["R_c2w"], dtype=torch.float64)
        if R.shape != (3, 3) or not torch.isfinite(R).all():
            raise DataError(f"{self.folder}: view {view_id!r} has a malformed R_c2w")
        x, y = self.georef.latlon_to_xy(np.array(view["latlong"][:2], np.float64)).tolist()
        z = float(view["t_c2w"][2])
        yaw = math.atan2(float(R[1, 2]), float(R[0, 2]))
        return Pose(R=R.float(), t=torch.tensor([x, y, z], dtype=torch.float32)), Pose2(x=x, y=y, yaw=yaw)

    def metadata(self, index: int) -> SampleMeta:
        view_id = self.items[index]
        T, pose2 = self._pose(view_id)
        seq = self.sequence_of[view_id]
        return SampleMeta(name=view_id, T_cam2world=T, pose2=pose2, sequence=seq,
                          timestamp=float(self.views[view_id].get("index", index)), condition=DEFAULT_CONDITION)  # fmt: skip

    def validate(self, progress: Any = None) -> None:
        """Every view's pose parses and its image file exists (no image is decoded). Raises DataError."""
        for k, view_id in enumerate(self.items):
            self._pose(view_id)
            path = self.folder / "images" / f"{view_id}{self.options.image_ext}"
            if not path.is_file():
                raise DataError(f"{path}: image not found")
            if progress is not None:
                progress(k + 1)

    def __getitem__(self, index: int) -> Sample:
        from maploc.data import io

        view_id = self.items[index]
        view = self.views[view_id]
        seq = self.sequence_of[view_id]
        camera = self.cameras[seq, view["camera_id"]]
        image = io.read_image(self.folder / "images" / f"{view_id}{self.options.image_ext}")
        if tuple(image.shape[:2]) != (camera.height, camera.width):
            raise DataError(f"{view_id}: image is {image.shape[1]}x{image.shape[0]}, its camera "
                            f"{camera.width}x{camera.height}")  # fmt: skip
        T, pose2 = self._pose(view_id)
        timestamp = float(view.get("index", index))
        sample = io.make_sample(image, camera, T_cam2world=T, image_height=self.image_height, name=view_id,
                                sequence=seq, timestamp=timestamp)  # fmt: skip
        extras = {"location": self.location, "roll_pitch_yaw_deg": view.get("roll_pitch_yaw"),
                  "capture_time": view.get("capture_time")}  # fmt: skip
        return Sample(image=sample.image, camera=sample.camera, T_cam2world=sample.T_cam2world, pose2=pose2,
                      name=view_id, sequence=seq, timestamp=timestamp, condition=DEFAULT_CONDITION,
                      extras=extras)  # fmt: skip

    def __repr__(self) -> str:
        return f"MGLDataset({str(self.folder)!r}, {self.split!r}, {len(self)} views)"


def _camera(cam: Any, where: str) -> Camera:
    if not isinstance(cam, dict) or cam.get("model") != "PINHOLE":
        raise DataError(f"{where}: unsupported camera model {cam.get('model') if isinstance(cam, dict) else cam!r} "
                        "(MGL images are undistorted PINHOLE)")  # fmt: skip
    try:
        fx, fy, cx, cy = (float(v) for v in cam["params"])
        width, height = int(cam["width"]), int(cam["height"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: needs width, height and params [fx, fy, cx, cy]") from None
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return Camera(K=K, width=width, height=height)

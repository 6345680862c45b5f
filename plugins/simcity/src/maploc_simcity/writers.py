"""Writers of rendered frames to the folder layouts the dataset adapters read, and the contact sheet.

Every file is written atomically (:mod:`maploc.files`: a temporary file in the same folder, then a rename). Images that two
layouts share are hard links (copies where links are impossible).

**Traversals layout** (one folder per traversal and condition, frame indices aligned by place, as Gardens Point's
``day_left`` / ``day_right`` / ``night_right``)::

    traversals/
      meta.json                    camera, conditions, traversals, frames, georeference, label names, encodings
      t0_day/                      traversal 0 under condition "day"
        rgb/000000.png             RGB uint8
        depth/000000.png           uint16 z-depth in centimetres (``depth_scale_m`` = 0.01), 0 = sky / beyond 655 m
        labels/000000.png          uint8 label values (meta.json ``label_names``)
        poses.txt                  one line per frame: index, then T_cam2world row-major (16 numbers, metres)
        pose2.txt                  one line per frame: index x_m y_m yaw_rad (map frame, yaw CCW from east)
        calibration.txt           the 3x3 K (pixels)
      t0_night/ ...                the same poses under another condition
      r1_day/ ...                  extra training route 1 (``train_routes``), under the first condition (or ``train_conditions``)

**DSAC* layout** (read by ``maploc.data.dsac_layout.DSACLayout``)::

    dsac/train|test/rgb/<name>.png, calibration/<name>.txt (3x3 K), poses/<name>.txt (4x4 T_cam2world),
    depth/<name>.png (uint16 millimetres, 0 = sky or beyond 65.535 m)

with ``<name> = seq-KK_t<traversal>_<condition>_<index>``: ``train`` holds every traversal but the last, ``test`` the
last (with a single traversal: even frames train, odd frames test), under every condition. Extra training routes
(``r<k>_<condition>``) are not written to it; they go to the traversals and map-localization layouts.

**Map-localization layout** (in the spirit of OrienterNet's MGL dump: images, per-image SE(2) pose, map
reference)::

    mgl/images/<sequence>/<index>.png
    mgl/map_raster_0.5m.npz        the OSM raster of the map (maploc_osm.MapRaster.load_npz)
    mgl/dump.json                  {"map": {name, source, sha256, georef, attribution, raster, raster_resolution_m},
                                    "cameras": {"sim": {model PINHOLE, width, height, params [fx, fy, cx, cy]}},
                                    "views": {"<sequence>/<index>": {image, sequence, traversal, condition, index,
                                              pose2 {x, y, yaw}, latlon, height_m, roll_pitch_yaw_deg, R_c2w, t_c2w,
                                              camera_id}}}

and, beside it, one location in the exact layout of OrienterNet's MGL dump (its public code's ``dump.json`` and
``images/``), which maploc-bev-osm's ``mgl`` dataset reads::

    mgl/<location>/dump.json       {"<sequence>": {"views": {"<sequence>_<index>": {camera_id, latlong, t_c2w, R_c2w,
                                    roll_pitch_yaw (degrees, yaw clockwise from north), capture_time, index}},
                                    "cameras": {"sim": {id, model PINHOLE, width, height, params}}}}
    mgl/<location>/images/<sequence>_<index>.jpg
    mgl/osm/<map file>             the OSM file (a link), as the reference's ``<data_dir>/osm/``
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np

from maploc.errors import DataError
from maploc.files import atomic_write_bytes, atomic_write_text

from .labels import LABEL_NAMES, label_palette
from .renderer import RenderedFrame
from .trajectory import ViewPose

__all__ = [
    "DEPTH_SCALE_M",
    "DSACWriter",
    "FrameRecord",
    "MGLWriter",
    "TraversalsWriter",
    "contact_sheet",
    "parse_sequence_name",
    "read_depth_cm",
    "sequence_name",
]

#: Metres per unit of the traversals layout's depth PNGs (centimetres).
DEPTH_SCALE_M = 0.01


def sequence_name(traversal: int, condition: str, route: int = 0) -> str:
    """The folder name of a traversal under a condition: ``t<traversal>_<condition>`` on the main route (``route``
    0), ``r<route>_<condition>`` on extra training route ``route`` >= 1 (one traversal each)."""
    return f"t{traversal}_{condition}" if route == 0 else f"r{route}_{condition}"


def parse_sequence_name(sequence: str) -> tuple[int, int, str]:
    """``(route, traversal, condition)`` of a sequence folder name (inverse of :func:`sequence_name`; an extra
    route's traversal is 0).

    Raises:
        ValueError: not a sequence name.
    """
    head, sep, condition = sequence.partition("_")
    if not sep or len(head) < 2 or head[0] not in "tr" or not head[1:].isdigit() or not condition:
        raise ValueError(f"not a sim-city sequence name: {sequence!r} (expected t<traversal>_<condition> or "
                         "r<route>_<condition>)")  # fmt: skip
    number = int(head[1:])
    return (0, number, condition) if head[0] == "t" else (number, 0, condition)


@attrs.frozen(kw_only=True, eq=False)
class FrameRecord:
    """One rendered frame with where it belongs.

    Attributes:
        frame: the rendered images and camera.
        view: the pose and its place on the route.
        traversal: traversal index.
        condition: condition name.
        route: 0 for the main route, ``k >= 1`` for extra training route ``k``.
    """

    frame: RenderedFrame
    view: ViewPose
    traversal: int
    condition: str
    route: int = 0

    @property
    def sequence(self) -> str:
        return sequence_name(self.traversal, self.condition, self.route)

    @property
    def index(self) -> int:
        return self.view.index


# ---- files ----------------------------------------------------------------------------------------------------
def _png(path: Path, image: np.ndarray) -> Path:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV encodes every uint8 / uint16 array
        raise DataError(f"{path}: could not encode the PNG")
    return atomic_write_bytes(path, encoded.tobytes())


def _text(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


def _json(path: Path, data: Any) -> Path:
    return _text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _link(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def _matrix_text(matrix: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:.9g}" for v in row) for row in np.asarray(matrix)) + "\n"


def encode_depth(depth: np.ndarray, scale_m: float) -> np.ndarray:
    """``(H, W)`` float32 metres -> uint16 units of ``scale_m`` (rounded); 0 where depth is 0 or beyond the range."""
    units = np.round(np.asarray(depth, dtype=np.float64) / scale_m)
    units[(units > 65535) | ~np.isfinite(units) | (depth <= 0)] = 0
    return units.astype(np.uint16)


def read_depth_cm(path: Path) -> np.ndarray:
    """Reads a traversals-layout depth PNG: ``(H, W)`` float32 metres, 0 = invalid.

    Raises:
        DataError: missing or not a single-channel uint16 PNG.
    """
    from maploc.data.io import read_depth_png

    return read_depth_png(path, scale=1.0 / DEPTH_SCALE_M, invalid=(0,))


# ---- traversals layout ---------------------------------------------------------------------------------------
class TraversalsWriter:
    """Writes the traversals layout (see the module docstring).

    Args:
        root: the ``traversals`` folder.
        meta: written as ``meta.json`` by :meth:`finish` (with ``sequences`` added).
    """

    def __init__(self, root: Path, meta: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.meta = dict(meta)
        self._rows: dict[str, list[tuple[int, np.ndarray, tuple[float, float, float]]]] = {}
        self._K: np.ndarray | None = None

    def write(self, record: FrameRecord) -> Path:
        """Writes one frame; returns the path of its RGB image."""
        folder = self.root / record.sequence
        name = f"{record.index:06d}.png"
        frame = record.frame
        rgb_path = _png(folder / "rgb" / name, frame.rgb[:, :, ::-1])
        _png(folder / "depth" / name, encode_depth(frame.depth, DEPTH_SCALE_M))
        _png(folder / "labels" / name, frame.labels)
        pose2 = record.view.pose2
        self._rows.setdefault(record.sequence, []).append(
            (record.index, frame.T_cam2world, (pose2.x, pose2.y, pose2.yaw))
        )
        self._K = frame.camera.K.double().numpy()
        return rgb_path

    def finish(self) -> Path:
        """Writes the per-sequence pose files and ``meta.json``; returns the ``meta.json`` path."""
        for sequence, rows in self._rows.items():
            rows.sort(key=lambda r: r[0])
            folder = self.root / sequence
            _text(
                folder / "poses.txt",
                "".join(f"{i} " + " ".join(f"{v:.9g}" for v in T.ravel()) + "\n" for i, T, _ in rows),
            )
            _text(folder / "pose2.txt", "".join(f"{i} {x:.6f} {y:.6f} {yaw:.9f}\n" for i, _, (x, y, yaw) in rows))
            if self._K is not None:
                _text(folder / "calibration.txt", _matrix_text(self._K))
        meta = dict(self.meta, sequences=sorted(self._rows))
        return _json(self.root / "meta.json", meta)


# ---- DSAC* layout ----------------------------------------------------------------------------------------------
class DSACWriter:
    """Writes the DSAC* layout (see the module docstring).

    Args:
        root: the ``dsac`` folder.
        traversals: number of traversals (decides the train / test split).
        conditions: the conditions in order (their index numbers the ``seq-KK`` prefix).
    """

    def __init__(self, root: Path, traversals: int, conditions: Sequence[str]) -> None:
        self.root = Path(root)
        self.traversals = traversals
        self.conditions = list(conditions)

    def split_of(self, traversal: int, index: int) -> str:
        """``"train"`` or ``"test"`` for a frame."""
        if self.traversals > 1:
            return "test" if traversal == self.traversals - 1 else "train"
        return "test" if index % 2 else "train"

    def write(self, record: FrameRecord, rgb_path: Path) -> None:
        """Writes one frame, linking its RGB image from ``rgb_path``."""
        k = record.traversal * len(self.conditions) + self.conditions.index(record.condition)
        name = f"seq-{k:02d}_t{record.traversal}_{record.condition}_{record.index:06d}"
        folder = self.root / self.split_of(record.traversal, record.index)
        _link(rgb_path, folder / "rgb" / f"{name}.png")
        _text(folder / "calibration" / f"{name}.txt", _matrix_text(record.frame.camera.K.double().numpy()))
        _text(folder / "poses" / f"{name}.txt", _matrix_text(record.frame.T_cam2world))
        _png(folder / "depth" / f"{name}.png", encode_depth(record.frame.depth, 0.001))


# ---- map-localization layout -----------------------------------------------------------------------------------
class MGLWriter:
    """Writes the map-localization layout (see the module docstring).

    Args:
        root: the ``mgl`` folder.
        map_info: the ``map`` entry of ``dump.json`` (name, source, sha256, georef, attribution ...).
        georef: the map frame, to add each view's latitude and longitude (a
            :class:`maploc_osm.GeoReference`), or None.
    """

    def __init__(self, root: Path, map_info: Mapping[str, Any], georef: Any = None) -> None:
        self.root = Path(root)
        self.map_info = dict(map_info)
        self.georef = georef
        self.views: dict[str, dict[str, Any]] = {}
        self.cameras: dict[str, dict[str, Any]] = {}
        self.reference_dump: dict[str, dict[str, Any]] = {}

    def write(self, record: FrameRecord, rgb_path: Path) -> None:
        """Adds one frame, linking its RGB image from ``rgb_path``."""
        image = f"images/{record.sequence}/{record.index:06d}.png"
        _link(rgb_path, self.root / image)
        camera = record.frame.camera
        self.cameras["sim"] = {
            "model": "PINHOLE",
            "width": camera.width,
            "height": camera.height,
            "params": [camera.fx, camera.fy, camera.cx, camera.cy],
        }
        T = record.frame.T_cam2world
        view = record.view
        forward, right = T[:3, 2], T[:3, 0]
        pitch = math.degrees(math.asin(float(np.clip(forward[2], -1.0, 1.0))))
        roll = math.degrees(math.asin(float(np.clip(-right[2] / max(math.cos(math.radians(pitch)), 1e-9), -1.0, 1.0))))
        entry: dict[str, Any] = {
            "image": image,
            "camera_id": "sim",
            "sequence": record.sequence,
            "traversal": record.traversal,
            "condition": record.condition,
            "index": record.index,
            "pose2": {"x": view.pose2.x, "y": view.pose2.y, "yaw": view.pose2.yaw},
            "height_m": view.height_m,
            "roll_pitch_yaw_deg": [roll, pitch, math.degrees(view.pose2.yaw)],
            "R_c2w": T[:3, :3].tolist(),
            "t_c2w": T[:3, 3].tolist(),
            "arc_length_m": view.arc_length_m,
        }
        if self.georef is not None:
            entry["latlon"] = self.georef.xy_to_latlon(np.array([view.pose2.x, view.pose2.y])).tolist()
        self.views[f"{record.sequence}/{record.index:06d}"] = entry
        if self.georef is not None:  # OrienterNet's exact layout (module docstring)
            view_id = f"{record.sequence}_{record.index:06d}"
            rgb = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR)
            ok, jpeg = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise DataError(f"{rgb_path}: cannot encode as JPEG")
            atomic_write_bytes(self.root / self.location / "images" / f"{view_id}.jpg", jpeg.tobytes())
            per_seq = self.reference_dump.setdefault(record.sequence, {"views": {}, "cameras": {}})
            per_seq["cameras"]["sim"] = {"id": "sim", **self.cameras["sim"]}
            per_seq["views"][view_id] = {
                "camera_id": "sim", "latlong": entry["latlon"], "t_c2w": entry["t_c2w"], "R_c2w": entry["R_c2w"],
                "roll_pitch_yaw": [roll, pitch, 90.0 - math.degrees(view.pose2.yaw)], "capture_time": record.index,
                "index": record.index,
            }  # fmt: skip

    #: the location folder of the reference layout
    location = "sim-city"

    def finish(self) -> Path:
        """Writes ``dump.json`` (and the reference layout's ``<location>/dump.json`` and ``osm/`` link); returns the
        path of the first."""
        if self.reference_dump:
            _json(self.root / self.location / "dump.json", self.reference_dump)
            osm = Path(str(self.map_info.get("name", "")))
            if osm.is_file():
                _link(osm, self.root / "osm" / osm.name)
        return _json(self.root / "dump.json", {"map": self.map_info, "cameras": self.cameras, "views": self.views})


# ---- contact sheet ---------------------------------------------------------------------------------------------
def contact_sheet(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    path: Path,
    *,
    footer: str = "",
    max_width: int = 1600,
) -> Path:
    """Writes a PNG grid of images: one row per ``(title, images)``, titles written on the first image.

    Args:
        rows: ``(title, [(H, W, 3) uint8 RGB, ...])``; every image has the same size.
        path: the PNG file.
        footer: a line of text under the grid (e.g. the map attribution).
        max_width: the sheet is scaled down to at most this width, pixels.

    Returns:
        ``path``.
    """
    rows = [(title, list(images)) for title, images in rows if images]
    if not rows:
        raise ValueError("contact_sheet needs at least one image")
    H, W = rows[0][1][0].shape[:2]
    columns = max(len(images) for _, images in rows)
    pad = 4
    sheet = np.full((len(rows) * (H + pad) + pad + 22, columns * (W + pad) + pad, 3), 255, np.uint8)
    for r, (title, images) in enumerate(rows):
        for c, image in enumerate(images):
            y, x = pad + r * (H + pad), pad + c * (W + pad)
            sheet[y : y + H, x : x + W] = image
        y, x = pad + r * (H + pad), pad
        cv2.putText(sheet, title, (x + 5, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(sheet, title, (x + 5, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    if footer:
        cv2.putText(sheet, footer, (pad + 2, sheet.shape[0] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (40, 40, 40), 1,
                    cv2.LINE_AA)  # fmt: skip
    if sheet.shape[1] > max_width:
        scale = max_width / sheet.shape[1]
        sheet = cv2.resize(sheet, (max_width, round(sheet.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return _png(Path(path), sheet[:, :, ::-1])


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` label values -> ``(H, W, 3)`` uint8 RGB with :func:`.labels.label_palette`."""
    palette = label_palette()
    return palette[np.minimum(labels, len(LABEL_NAMES) - 1)]


def colorize_depth(depth: np.ndarray, max_m: float = 80.0) -> np.ndarray:
    """``(H, W)`` metres -> ``(H, W, 3)`` uint8 RGB (near bright, far dark, sky black; log scale up to ``max_m``)."""
    valid = depth > 0
    value = np.zeros(depth.shape, np.float64)
    value[valid] = 1.0 - np.log1p(np.minimum(depth[valid], max_m)) / math.log1p(max_m)
    image = cv2.applyColorMap((value * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]
    image[~valid] = 0
    return np.ascontiguousarray(image)


def read_traversal_rows(path: Path) -> dict[int, list[float]]:
    """Reads ``poses.txt`` / ``pose2.txt``: ``{index: numbers}``.

    Raises:
        DataError: missing file or a malformed line (named with its line number).
    """
    from maploc.data.io import read_text_lines

    rows: dict[int, list[float]] = {}
    for lineno, line in read_text_lines(path):
        parts = line.split()
        try:
            rows[int(parts[0])] = [float(v) for v in parts[1:]]
        except (ValueError, IndexError):
            raise DataError(f"{path}:{lineno}: expected an index followed by numbers, got {line!r}") from None
    return rows

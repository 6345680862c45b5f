"""``sim-city``: street-level views rendered from a real OpenStreetMap map, with exact poses, depth and labels."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.data import io
from maploc.data.layouts import expected_layout
from maploc.errors import ConfigError, DataError
from maploc.types import Camera, Pose, Pose2, Sample

from .command import FORMAT_VERSION, read_render_json, render_command
from .options import RANDOM, RANDOM_FIELDS, RENDER_FIELDS, SimCityOptions, check_query_traversals
from .sampler import DISTRIBUTIONS
from .writers import parse_sequence_name, read_depth_cm, read_traversal_rows, sequence_name

__all__ = ["SimCity", "SimCityOptions"]

logger = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: ``maploc data render`` flags whose names differ from the option's
_RENDER_FLAGS = {"fov_deg": "fov", "spacing_m": "spacing", "lateral_offset_m": "lateral-offset"}
#: Render options added after renders were cached, with the value a render made before them has (left out of the
#: cache key and of ``render.json`` at that value, so that those renders keep their keys and bytes).
_ADDED_WITH_DEFAULT = {"speed_profile": "constant"}
#: Render options that change only the ``train`` split (the extra training routes).
_TRAIN_ONLY = ("train_routes", "train_conditions", *RANDOM_FIELDS)
#: Render options a rendered folder is read with as it holds them (its splits come from what it has; a difference
#: is a warning, once per folder and value).
_READ_AS_RENDERED = ("conditions",)
_WARNED: set[tuple[str, str, object]] = set()
#: The cached renders this process has announced (one line each, with the map's attribution).
_ANNOUNCED: set[str] = set()


def _map_needs_fetch(map_name: str) -> bool:
    """Whether ``map_name`` is a sample that is not in the cache yet (a path never is)."""
    from maploc.data.fetch import is_fetched
    from maploc_osm import is_osm_path

    if Path(map_name).expanduser().exists() or is_osm_path(map_name):
        return False
    try:
        return not is_fetched(map_name)
    except DataError:  # an unknown name: resolve_map says so, listing the known ones
        return False


#: What ``--data-root`` of sim-city names (said in its errors; README section "sim-city layout").
LAYOUT = ("a folder written by `maploc data render --out DIR`: render.json and traversals/<sequence>/{rgb,depth,"
          "labels}/ with poses.txt, pose2.txt and calibration.txt; without --data-root sim-city renders into its "
          "cache")


class SimCity(Dataset):
    """Traversals of a route through a city rendered from its OpenStreetMap map (see :mod:`maploc_simcity`).

    The images are rendered (OpenGL), not photographs; the map is real. Where the frames come from, by ``root``:

    * a folder written by ``maploc data render --out DIR`` (it holds ``render.json``): read as it is; its render
      options are those it was rendered with (an option set to something else is an error, see below);
    * anything else (``maploc run`` passes ``.`` without ``--data-root``): the render options of :attr:`Options`,
      rendered on first use into ``<cache root>/sim-city/<key>`` (the cache root of
      :func:`maploc.data.fetch.cache_root`, ``$MAPLOC_DATA``). The key hashes every render option
      (:data:`.options.RENDER_FIELDS`), the map file's SHA-256 and the format version.

    Splits (sequences are ``t<traversal>_<condition>``, frame ``i`` of every sequence at the same place, except
    with ``speed_profile=varying``, where traversals ``>= 1`` vary their speed (``pose2`` / ``T_cam2world`` are
    always the true places); the extra training routes of option ``train_routes`` are ``r<k>_<condition>``):

    * ``map`` and ``train``: traversal 0 under ``map_condition``; ``train`` also holds every extra training route
      (``r<k>_random`` with ``train_conditions=random``: each view under a condition of :mod:`.sampler`, whose
      parameters ``r<k>_random/conditions.json`` records);
    * ``query``: every other sequence of the route, or those of ``query_conditions`` and of ``query_traversals``
      when set (the map sequence excluded);
    * with a single sequence (one traversal, one condition): ``map``/``train`` are its even frames, ``query`` its
      odd frames.

    Samples: ``image`` RGB, ``camera``, ``T_cam2world`` (OpenCV camera frame, world = OSM map frame with z up,
    metres), ``depth`` (metres, 0 = sky or beyond 655 m), ``pose2`` (map-frame x, y metres, yaw radians),
    ``name`` ``<sequence>/<index>``, ``sequence``, ``timestamp`` = frame index (the same place in every
    sequence with the constant speed profile). ``extras``: ``labels`` (``(H, W)`` uint8 :data:`.labels.LABEL_NAMES` values, resized with the
    image by nearest neighbour), ``condition`` (always set), ``traversal``, ``route`` (0 = the main route),
    ``index``, ``rgb_path``, ``georef``
    (the map frame, a dict of :class:`maploc_osm.GeoReference`) and ``map_source``.

    Args:
        root: see above.
        split: ``train``, ``map`` or ``query``.
        image_height: resize images, cameras, depth and labels to this height.
        options: a :class:`SimCityOptions` (``None``: its defaults).

    Raises:
        ConfigError: ``map_condition`` / ``query_conditions`` not among the rendered conditions,
            ``query_traversals`` outside the rendered traversals (before rendering, too), an empty query
            split, a render option that disagrees with the rendered folder given as ``root``, or (``train`` split)
            extra training routes rendered under another condition than ``map_condition``.
        DataError: the map cannot be read or has no roads; a rendered folder is incomplete (names the file).
        RenderError: rendering is needed and no usable OpenGL exists.
        ValueError: unknown split.
    """

    name: ClassVar[str] = "sim-city"
    default_sample: ClassVar[str | None] = None
    needs_root: ClassVar[bool] = False
    #: Receives one line per stage while sim-city prepares its frames without ``--data-root`` (fetching the map
    #: with its licence, rendering, the cached render it reads, with the map's attribution, once per process);
    #: ``None``: silent.
    say: ClassVar[Callable[[str], None] | None] = print
    #: The rendering progress bar (tqdm, on stderr): ``None`` = only when stderr is a terminal.
    progress_bar: ClassVar[bool | None] = None
    has_depth: ClassVar[bool] = True
    Options: ClassVar[type] = SimCityOptions

    def __init__(
        self,
        root: Path | None = None,
        split: str = "train",
        *,
        image_height: int | None = None,
        options: SimCityOptions | None = None,
    ) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        self.options: SimCityOptions
        if root is not None:
            with expected_layout(self.name, LAYOUT):
                if not (self.root / "render.json").is_file():
                    raise DataError(f"{self.root} is not a rendered sim-city folder (no render.json)")
                self.folder = self.root
                self.summary = read_render_json(self.folder)
            self._check_folder_options()
        else:
            self.folder = self._cached_render(self.options)
            self.summary = read_render_json(self.folder)
        rendered = dict(self.summary["options"])
        self.conditions: tuple[str, ...] = tuple(rendered["conditions"])
        self.sequences: tuple[str, ...] = tuple(self.summary["sequences"])
        self.frames = int(rendered["frames"])
        self.map_sequence, self.query_sequences = self._split_sequences()
        self.train_route_sequences = self._train_route_sequences() if split == "train" else ()
        main = [s for s in self.sequences if parse_sequence_name(s)[0] == 0]
        if len(main) > 1:
            chosen = [self.map_sequence] if split in ("map", "train") else list(self.query_sequences)
            self.items = [(s, i) for s in chosen for i in range(self.frames)]
        else:
            parity = 0 if split in ("map", "train") else 1
            self.items = [(main[0], i) for i in range(self.frames) if i % 2 == parity]
        self.items += [(s, i) for s in self.train_route_sequences for i in range(self.frames)]
        cam = self.summary["camera"]
        self.camera = Camera(K=torch.tensor(cam["K"], dtype=torch.float32), width=cam["width"], height=cam["height"])
        self._poses: dict[str, dict[int, list[float]]] = {}
        self._pose2: dict[str, dict[int, list[float]]] = {}

    # ---- options, splits and cache -------------------------------------------------------------------------------
    def _check_folder_options(self) -> None:
        """A render option set away from its default must match the rendered folder (it cannot change it).
        ``train_routes`` and ``train_conditions`` are checked for the ``train`` split only: the ``map`` and
        ``query`` splits do not hold those routes, so a model trained with them evaluates on any render
        (``maploc eval --data-root``). ``conditions`` is not an error either: a folder's splits are read from the
        conditions it holds (``map_condition`` and ``query_conditions`` must be among them, and are checked), so
        a model trained with other conditions evaluates on any render; a difference is logged as a warning.

        Raises:
            ConfigError: another render option differs from the folder's (the message gives both fixes)."""
        rendered = dict(self.summary["options"], map=self.summary["map"]["name"])
        rendered.setdefault("train_routes", 0)  # renders made before the options existed
        rendered.setdefault("train_conditions", [])
        for name, value in _ADDED_WITH_DEFAULT.items():  # renders made before the option (or at its default)
            rendered.setdefault(name, value)
        for name in RANDOM_FIELDS:  # renders made before the sampler existed
            rendered.setdefault(name, getattr(SimCityOptions(), name))
        defaults = SimCityOptions()
        for name in RENDER_FIELDS:
            value, default = getattr(self.options, name), getattr(defaults, name)
            if name not in rendered or value == default or (name in _TRAIN_ONLY and self.split != "train"):
                continue
            if name in RANDOM_FIELDS and list(rendered["train_conditions"]) != [RANDOM]:
                continue  # the sampler's options change nothing in a render without sampled conditions
            have = tuple(rendered[name]) if isinstance(value, tuple) else rendered[name]
            if value == have:
                continue
            if name in _READ_AS_RENDERED:
                if (str(self.root), name, value) not in _WARNED:
                    _WARNED.add((str(self.root), name, value))
                    logger.warning("data.%s=%s but %s was rendered with %s=%s: reading the folder's", name,
                                   _show(value), self.root, name, _show(have))  # fmt: skip
                continue
            raise ConfigError(
                f"data.{name}={_show(value)} but {self.root} was rendered with {name}={_show(have)}; render "
                "options apply when sim-city renders into its cache (no --data-root), not to a rendered folder: "
                f"use the folder as it is (-o data.{name}={_show(have)}) or render one with "
                f"`maploc data render --{_RENDER_FLAGS.get(name, name.replace('_', '-'))} {_show(value)}`"
            )

    def _train_route_sequences(self) -> tuple[str, ...]:
        """The extra training routes' sequences (``r<k>_<condition>``). Rendered under the render's first
        condition (no ``train_conditions``), they need ``map_condition`` to be that condition."""
        routes = tuple(s for s in self.sequences if parse_sequence_name(s)[0] > 0)
        if self.summary["options"].get("train_conditions"):
            return routes  # the routes' conditions were chosen for training on purpose
        if routes and _condition_of(routes[0]) != self.options.map_condition:
            raise ConfigError(
                f"{self.folder} holds {len(routes)} extra training routes rendered under {_condition_of(routes[0])!r} "
                f"but data.map_condition={self.options.map_condition!r}; train under {_condition_of(routes[0])!r} "
                "or render the training routes under the map condition (list it first in data.conditions)"
            )
        return routes

    def _split_sequences(self) -> tuple[str, tuple[str, ...]]:
        opts = self.options
        if opts.map_condition not in self.conditions:
            raise ConfigError(
                f"data.map_condition={opts.map_condition!r} is not among the rendered conditions "
                f"({', '.join(self.conditions)}); set -o data.map_condition=<one of them>"
            )
        missing = [c for c in opts.query_conditions if c not in self.conditions]
        if missing:
            raise ConfigError(
                f"data.query_conditions names {missing[0]!r}, not among the rendered conditions "
                f"({', '.join(self.conditions)}); render it too: "
                + (f"-o data.conditions={','.join(self.conditions)},{missing[0]}" if self.folder != self.root
                   else f"maploc data render --conditions {','.join(self.conditions)},{missing[0]}")
            )
        check_query_traversals(opts.query_traversals, int(self.summary["options"]["traversals"]))
        map_sequence = sequence_name(0, opts.map_condition)
        main = [s for s in self.sequences if parse_sequence_name(s)[0] == 0]
        queries = tuple(
            s for s in main
            if s != map_sequence and (not opts.query_conditions or _condition_of(s) in opts.query_conditions)
            and (not opts.query_traversals or parse_sequence_name(s)[1] in opts.query_traversals)
        )  # fmt: skip
        if len(main) > 1 and not queries:
            chosen = [f"condition(s) {', '.join(opts.query_conditions)}"] if opts.query_conditions else []
            chosen += [f"traversal(s) {', '.join(map(str, opts.query_traversals))}"] if opts.query_traversals else []
            raise ConfigError(
                f"the sim-city query split is empty: the only sequences of {' and '.join(chosen) or 'the render'} "
                f"are the map's ({map_sequence}); render more traversals (-o data.traversals=2) or choose other "
                "query_conditions / query_traversals"
            )
        return map_sequence, queries

    @staticmethod
    def cache_key(options: SimCityOptions, map_sha256: str) -> str:
        """The render cache key: a hash of every render option (the map by its file's SHA-256 ``map_sha256``, so one
        file named by sample or by path is one render) and the format version. The split options are not in it: they
        choose among the sequences of the same render. With ``train_conditions=random`` the key also covers the
        sampler: every parameter of its distribution (so a change of its ranges is a new render), its seed and
        ``random_per``; otherwise those options are left out (they change nothing). Options added later
        (``speed_profile``) are left out at their default, so that renders cached before them keep their keys."""
        payload = dict(options.render_options(), map=map_sha256, format=FORMAT_VERSION)
        if tuple(options.train_conditions) == (RANDOM,):
            payload["condition_distribution"] = DISTRIBUTIONS[options.condition_distribution].to_dict()
        else:
            for name in RANDOM_FIELDS:
                del payload[name]
        for name in ("train_routes", "train_conditions"):  # added after renders were cached: left out while unset
            if not payload[name]:
                del payload[name]  # renders without these options keep the keys they had before the options
        for name, value in _ADDED_WITH_DEFAULT.items():
            if payload[name] == value:
                del payload[name]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def _cached_render(self, options: SimCityOptions) -> Path:
        """The cache folder of ``options``' render, fetched and rendered on first use (saying each stage)."""
        from maploc.data.fetch import cache_root
        from maploc_osm import ATTRIBUTION, file_sha256, resolve_map

        say = type(self).say or (lambda _line: None)
        if options.train_conditions and not options.train_routes:
            raise ConfigError(
                f"data.train_conditions={_show(options.train_conditions)} applies to the extra training routes: set "
                "-o data.train_routes=N (N >= 1) too, or -o 'data.train_conditions=[]' for no extra routes (a method's "
                "preset or dataset defaults may set it)"
            )
        check_query_traversals(options.query_traversals, options.traversals)  # before any fetch or rendering
        fetching = _map_needs_fetch(options.map)
        if fetching:
            say(f"sim-city: fetching the OSM map {options.map!r} (first use only) ...")
        osm_path = resolve_map(options.map, progress=say if fetching else None)  # the fetch says the licence
        target = cache_root() / "sim-city" / self.cache_key(options, file_sha256(osm_path))
        if (target / "render.json").is_file():
            if str(target) not in _ANNOUNCED:
                _ANNOUNCED.add(str(target))
                say(f"sim-city: reading the render of {options.map} in {target} (map data {ATTRIBUTION})")
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        total = options.frames * (options.traversals * len(options.conditions) + options.train_routes)
        attribution = "" if fetching else f" (map data {ATTRIBUTION})"
        say(f"sim-city: rendering {total} frames of {options.map} ({', '.join(options.conditions)}; "
            f"{options.traversals} traversal{'s' if options.traversals != 1 else ''}) into {target}, first use "
            f"only{attribution} ...")  # fmt: skip
        _ANNOUNCED.add(str(target))
        logger.info("rendering sim-city %s into %s (first use only)", options.render_options(), target)
        t0 = time.perf_counter()
        try:
            render_command(
                str(osm_path), options.frames, list(options.conditions), work, seed=options.seed,
                traversals=options.traversals, width=options.width, height=options.height, fov_deg=options.fov_deg,
                spacing_m=options.spacing_m, lateral_offset_m=options.lateral_offset_m,
                train_routes=options.train_routes, train_conditions=list(options.train_conditions),
                condition_distribution=options.condition_distribution, condition_seed=options.condition_seed,
                random_per=options.random_per, speed_profile=options.speed_profile,
                layouts=("traversals",),
                progress=type(self).progress_bar,
            )  # fmt: skip
            try:
                os.replace(work, target)
            except OSError:  # another process finished the same render first
                if not (target / "render.json").is_file():
                    raise
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        say(f"sim-city: rendered {total} frames in {time.perf_counter() - t0:.1f} s")
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

    def _item(self, index: int) -> tuple[str, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.items[index % len(self)]

    def _poses_of(self, sequence: str, i: int) -> tuple[Pose, Pose2]:
        pose_row = self._rows(self._poses, sequence, "poses.txt").get(i)
        pose2_row = self._rows(self._pose2, sequence, "pose2.txt").get(i)
        folder = self.folder / "traversals" / sequence
        if pose_row is None or len(pose_row) != 16 or pose2_row is None or len(pose2_row) != 3:
            raise DataError(f"{folder}: no valid pose for frame {i} in poses.txt / pose2.txt")
        if not all(math.isfinite(v) for v in (*pose_row, *pose2_row)):
            raise DataError(f"{folder}: frame {i} has a non-finite pose in poses.txt / pose2.txt")
        T = Pose.from_matrix(torch.tensor(pose_row, dtype=torch.float64).reshape(4, 4).float())
        return T, Pose2(x=pose2_row[0], y=pose2_row[1], yaw=pose2_row[2])

    def metadata(self, index: int) -> SampleMeta:
        """Name, poses, sequence and frame index of sample ``index``, from the pose files (no image is decoded)."""
        sequence, i = self._item(index)
        T, pose2 = self._poses_of(sequence, i)
        return SampleMeta(name=f"{sequence}/{i:06d}", T_cam2world=T, pose2=pose2, sequence=sequence,
                          timestamp=float(i), condition=_condition_of(sequence))  # fmt: skip

    def validate(self, progress: Callable[[int], None] | None = None) -> None:
        """Checks every sample cheaply: poses parse and are finite; the RGB, depth and label PNGs exist and their
        headers are PNGs of the camera's size (no image is decoded).

        Raises:
            DataError: naming the first broken file.
        """
        size = (self.camera.width, self.camera.height)
        for k, (sequence, i) in enumerate(self.items):
            self._poses_of(sequence, i)
            folder = self.folder / "traversals" / sequence
            for kind in ("rgb", "depth", "labels"):
                _check_png(folder / kind / f"{i:06d}.png", size)
            if progress is not None:
                progress(k + 1)

    def __getitem__(self, index: int) -> Sample:
        sequence, i = self._item(index)
        folder = self.folder / "traversals" / sequence
        name = f"{i:06d}.png"
        image = io.read_image(folder / "rgb" / name)
        depth = read_depth_cm(folder / "depth" / name)
        labels = _read_labels(folder / "labels" / name)
        T, pose2 = self._poses_of(sequence, i)
        sample = io.make_sample(
            image, self.camera, T_cam2world=T, depth=depth, image_height=self.image_height,
            name=f"{sequence}/{i:06d}", sequence=sequence, timestamp=float(i),
        )  # fmt: skip
        if self.image_height is not None and labels.shape[0] != sample.camera.height:
            labels = io.resize_depth(labels, sample.camera.width, sample.camera.height)
        route, traversal, _ = parse_sequence_name(sequence)
        extras = {
            "labels": torch.from_numpy(np.ascontiguousarray(labels)),
            "traversal": traversal,
            "route": route,
            "index": i,
            "rgb_path": str(folder / "rgb" / name),
            "georef": dict(self.summary["map"]["georef"]),
            "map_source": self.summary["map"]["source"],
        }
        return Sample(
            image=sample.image, camera=sample.camera, T_cam2world=sample.T_cam2world, depth=sample.depth,
            pose2=pose2, name=sample.name, sequence=sequence, timestamp=float(i), condition=_condition_of(sequence),
            extras=extras,
        )  # fmt: skip


def _condition_of(sequence: str) -> str:
    """``t<traversal>_<condition>`` -> ``condition``."""
    return sequence.split("_", 1)[1]


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else repr(value)


def _check_png(path: Path, size: tuple[int, int]) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the image: {exc.strerror or exc}") from None
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG image (bad header)")
    width, height = struct.unpack(">II", head[16:24])
    if (width, height) != size:
        raise DataError(f"{path}: image is {width}x{height}, the camera is {size[0]}x{size[1]}")


def _read_labels(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise DataError(f"{path}: label image not found")
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2 or labels.dtype != np.uint8:
        raise DataError(f"{path}: expected a single-channel uint8 label PNG")
    return labels

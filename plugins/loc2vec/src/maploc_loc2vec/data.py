"""The ``osm-tiles`` dataset: multi-channel OpenStreetMap tiles cut on the fly from the OSM raster.

``OsmTileDataset(root, split)`` reads the OSM file in ``root`` (``.osm.pbf``, ``.osm``, ``.osm.bz2``; default: the
fetched ``helsinki-osm`` sample), rasterizes it at ``resolution_m`` (disk-cached by
:func:`maploc_osm.load_map_raster`), re-packs the classes into the tile channels
(:mod:`~maploc_loc2vec.channels`) and cuts the map into train / val / test blocks
(:mod:`~maploc_loc2vec.blocks`). A tile is an oriented square crop of ``tile_px`` pixels
(:meth:`maploc_osm.MapRaster.crop_many`: nearest neighbour, "up" along the heading ``yaw``).

Splits (every sample is a pure function of ``(options.seed, split, index)``: no epoch, no global RNG, so the
engine's exact resume holds and DataLoader workers agree):

* ``train`` (and ``val``, listed in ``splits`` so that ``maploc run`` validates on it): ``train_samples``
  (``val_samples``) triplets in the train (val) blocks: an anchor at a random allowed centre with a random
  heading, a positive within ``positive_radius_m`` of it whose heading is within ``positive_max_rotation_deg``
  of the anchor's, a negative at least ``negative_radius_m`` away with any heading.
* ``map``: the reference grid, one location every ``grid_step_m`` over the test blocks (samples are north-up
  tiles, ``yaw = pi/2``; the ``loc2vec`` method renders each location at several headings with :meth:`render`).
* ``query``: ``num_queries`` tiles at uniformly random positions in the test blocks (off the grid) with random
  rotations; each also carries a held-out triplet (positive and negative as for training) for the triplet
  accuracy.

With ``eval_blocks="val"`` the ``map`` grid and the ``query`` tiles lie in the val blocks instead (a development
evaluation that leaves the test blocks untouched, e.g. to choose a default; the training guard against val blocks
is narrower than against test blocks, see :mod:`~maploc_loc2vec.blocks`).

Samples (:class:`maploc.types.Sample`): ``image`` is a colour picture of the anchor tile
(:func:`~maploc_loc2vec.channels.render_rgb`) of ``image_height`` pixels (default ``preview_px``: small, so
that the thousands of map samples the evaluation holds stay light); ``camera`` is a placeholder pinhole whose
focal length is the picture's pixels per metre (a tile is an orthographic top view); ``pose2`` is the tile
centre ``(x, y)`` in metres and its heading ``yaw``. The tiles themselves are in ``extras``, packed 8 channels
per byte (:func:`~maploc_loc2vec.channels.pack_tiles`):

* ``tile``: ``(ceil(K / 8), S, S)`` uint8 torch tensor (``train`` / ``val`` / ``query``; the ``map`` samples
  carry none: render them with :meth:`OsmTileDataset.tiles`);
* ``positive_tile``, ``negative_tile`` and their ``positive_pose2`` / ``negative_pose2``
  (``train`` / ``val`` / ``query``);
* ``num_channels`` (K), ``positive_radius_m``, ``negative_radius_m``, ``positive_max_rotation_deg``.

Options: the class attribute ``Options`` (:class:`TileOptions`, typed and range-checked), set on the command
line with ``-o data.<key>=value`` (``maploc config show`` lists them), or in Python with
``OsmTileDataset(root, split, options=TileOptions(...))``.

Map data © OpenStreetMap contributors, ODbL 1.0.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.config import at_least, greater_than, in_range
from maploc.data.layouts import expected_layout
from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError, DataError
from maploc.types import Camera, Pose2, Sample

from .blocks import LocationSampler
from .channels import pack_tiles, render_rgb, to_channel_raster

__all__ = ["TileOptions", "SyntheticTileOptions", "OsmTileDataset", "SyntheticTileDataset", "synthetic_raster",
           "NORTH_UP"]

log = logging.getLogger(__name__)

#: Heading of the reference tiles: ``yaw = pi / 2`` puts north up (see ``MapRaster.crop``).
NORTH_UP = math.pi / 2
_OSM_SUFFIXES = (".osm.pbf", ".osm", ".osm.bz2", ".pbf")
_SPLIT_CODE = {"train": 0, "val": 1, "map": 2, "query": 3}
#: The largest radius (metres) within which loc2vec's evaluation counts a retrieval as correct (recall within
#: 25 m; ``eval.distance_threshold_m`` defaults to it): the success radius of the spatial split.
SUCCESS_RADIUS_M = 25.0


def _options_field(default: Any, *validators: Any) -> Any:
    return attrs.field(default=default, validator=list(validators) if validators else None)


@attrs.frozen(kw_only=True)
class TileOptions:
    """What the tiles are and how the map is split: the dataset's options (``-o data.<key>=value``).

    Attributes:
        resolution_m: metres per tile pixel (the raster is drawn at this resolution); > 0.
        tile_px: tile side in pixels (128 px at 1 m = 128 m, as in Loc2Vec); >= 16.
        channels: channel set (:data:`~maploc_loc2vec.channels.CHANNEL_SETS`: ``loc2vec12``, ``groups``,
            ``classes``).
        block_size_m: target side of the split blocks in metres; > 0.
        val_fraction: share of blocks for validation, in [0, 0.9].
        test_fraction: share of blocks for testing (the reference grid and the queries), in (0, 0.9].
        split_seed: seed of the block assignment.
        guard_m: how far (metres) a training tile centre keeps from every val block (and a val tile centre...
            see :mod:`~maploc_loc2vec.blocks`); ``0`` = the tile half-diagonal + 1 m (no training tile, at any
            rotation, overlaps a val block).
        test_guard_m: how far (metres) a training or val tile centre keeps from every test block; ``0`` = the
            larger of twice the tile half-diagonal + 1 m (no training tile, any rotation, overlaps any query or
            reference tile, any rotation; their centres lie in the test blocks) and 25 m + the half-diagonal (the
            core's rule: success radius + footprint, :mod:`maploc.data.split`). An explicit value below the latter
            is a :class:`~maploc.errors.ConfigError`.
        positive_radius_m: a positive is at most this far from its anchor (metres); > 0.
        negative_radius_m: a negative is at least this far from its anchor (metres); > positive_radius_m.
        positive_max_rotation_deg: a positive's heading differs from its anchor's by at most this many degrees
            (uniform), in [0, 180]. ``180``: any rotation (a rotation-invariant embedding is asked for);
            the default 22.5 = half the spacing of 8 reference headings (``eval.headings=8`` of ``loc2vec``):
            the embedding only has to match a query to the reference tile of the nearest heading.
        train_samples: length of the ``train`` split (triplets per epoch; each index is its own triplet); >= 1.
        val_samples: length of the ``val`` split; >= 1.
        grid_step_m: spacing of the reference grid (``map`` split) in metres; > 0.
        num_queries: length of the ``query`` split; >= 1.
        preview_px: side of ``Sample.image`` when no ``image_height`` is given; >= 4.
        seed: seed of the sampled locations and rotations.
        eval_blocks: where the ``map`` grid and the ``query`` tiles lie: ``test`` (the reported result) or
            ``val`` (a development evaluation on the val blocks; needs ``val_fraction > 0``).
    """

    resolution_m: float = _options_field(1.0, greater_than(0))
    tile_px: int = _options_field(128, at_least(16))
    channels: Literal["loc2vec12", "groups", "classes"] = "loc2vec12"
    block_size_m: float = _options_field(250.0, greater_than(0))
    val_fraction: float = _options_field(0.1, in_range(0.0, 0.9))
    test_fraction: float = _options_field(0.1, greater_than(0), in_range(0.0, 0.9))
    split_seed: int = 0
    guard_m: float = _options_field(0.0, at_least(0))
    test_guard_m: float = _options_field(0.0, at_least(0))
    positive_radius_m: float = _options_field(10.0, greater_than(0))
    negative_radius_m: float = _options_field(50.0, greater_than(0))
    positive_max_rotation_deg: float = _options_field(22.5, in_range(0.0, 180.0))
    train_samples: int = _options_field(100_000, at_least(1))
    val_samples: int = _options_field(256, at_least(1))
    grid_step_m: float = _options_field(5.0, greater_than(0))
    num_queries: int = _options_field(300, at_least(1))
    preview_px: int = _options_field(32, at_least(4))
    seed: int = 0
    eval_blocks: Literal["test", "val"] = "test"

    def __attrs_post_init__(self) -> None:
        if not self.negative_radius_m > self.positive_radius_m:
            raise ConfigError(
                f"data.negative_radius_m ({self.negative_radius_m:g}) must be > data.positive_radius_m "
                f"({self.positive_radius_m:g})"
            )
        if self.eval_blocks == "val" and self.val_fraction <= 0:
            raise ConfigError("data.eval_blocks=val needs val blocks: data.val_fraction > 0")

    @property
    def tile_radius_m(self) -> float:
        """Half-diagonal of a tile in metres: a tile of any rotation lies in this disk around its centre."""
        return self.tile_px * self.resolution_m / math.sqrt(2.0)

    @property
    def val_guard(self) -> float:
        """The guard (metres) of training tile centres against val blocks (resolved default)."""
        return self.guard_m or self.tile_radius_m + 1.0

    @property
    def test_guard(self) -> float:
        """The guard (metres) of training and val tile centres against test blocks (resolved default)."""
        return self.test_guard_m or max(2.0 * self.tile_radius_m + 1.0, SUCCESS_RADIUS_M + self.tile_radius_m)


def _wrap(angle: float) -> float:
    """``angle`` (radians) wrapped to ``[-pi, pi)``."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


#: What ``--data-root`` of osm-tiles names (said in its errors; README section "osm-tiles layout").
LAYOUT = "an OpenStreetMap file (.osm.pbf, .osm or .osm.bz2) or a folder holding one"


def _find_osm_file(root: Path) -> Path:
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(_OSM_SUFFIXES))
    if not files:
        raise DataError(f"{root}: no OpenStreetMap file (*.osm.pbf, *.osm, *.osm.bz2) in this folder")
    if len(files) > 1:
        log.warning("%s holds several OSM files; using %s", root, files[0].name)
    return files[0]


@functools.lru_cache(maxsize=4)
def _channel_raster(path: str, mtime_ns: int, size: int, resolution_m: float, channels: str) -> Any:
    from maploc_osm import load_map_raster

    return to_channel_raster(load_map_raster(path, resolution_m), channels)


class OsmTileDataset(Dataset):
    """Multi-channel OSM tiles of one split (see the module docstring).

    Args:
        root: an OSM file, or a folder holding one.
        split: ``train``, ``val``, ``map`` or ``query``.
        image_height: side of ``Sample.image`` in pixels (default ``options.preview_px``).
        options: a :class:`TileOptions` (``None``: the defaults; ``maploc run`` builds it from ``-o data.<key>=``).

    Raises:
        DataError: no OSM file, unreadable file, no map features, or a map too small for the tile size, the
            block split and the negative distance (the message says which).
        ValueError: unknown split.
        TypeError: ``options`` is not a :class:`TileOptions` of this class.

    Attributes:
        options: the options.
        raster: the channel raster (:class:`maploc_osm.MapRaster` with the channel names as classes).
        blocks: the block split.
        channel_names: the K channel names.
    """

    name: ClassVar[str] = "osm-tiles"
    default_sample: ClassVar[str | None] = "helsinki-osm"
    has_depth: ClassVar[bool] = False
    needs_root: ClassVar[bool] = True
    splits: ClassVar[tuple[str, ...]] = ("train", "map", "query", "val")
    Options: ClassVar[type] = TileOptions

    def __init__(
        self, root: Path | None, split: str, *, image_height: int | None = None, options: TileOptions | None = None
    ) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        opts: TileOptions = self.options
        with expected_layout(self.name, LAYOUT):
            self.raster = self._load_raster()
        self.channel_names = tuple(self.raster.class_names)
        x_min, y_min, x_max, y_max = self.raster.extent
        if min(x_max - x_min, y_max - y_min) <= 2 * opts.tile_radius_m:
            raise DataError(
                f"the map ({x_max - x_min:.0f} x {y_max - y_min:.0f} m) is too small for tiles of "
                f"{opts.tile_px * opts.resolution_m:.0f} m: a tile of any rotation needs {opts.tile_radius_m:.1f} m "
                f"of map around its centre; use a larger map or smaller tiles"
            )
        least = SUCCESS_RADIUS_M + opts.tile_radius_m
        if opts.test_guard < least:
            raise ConfigError(
                f"data.test_guard_m ({opts.test_guard:g} m) is below the success radius {SUCCESS_RADIUS_M:g} m + the "
                f"tile half-diagonal {opts.tile_radius_m:.1f} m = {least:.1f} m: a training tile could count as a "
                f"positive of a test query; use 0 (the default) or a value >= {least:.1f}"
            )
        self.blocks = SpatialSplit.build(
            self.raster.extent, block_size_m=opts.block_size_m, success_radius_m=SUCCESS_RADIUS_M,
            footprint_m=opts.tile_radius_m, margin_m=opts.tile_radius_m, val_fraction=opts.val_fraction,
            test_fraction=opts.test_fraction, seed=opts.split_seed,
            guard_m=max(opts.test_guard, opts.val_guard), val_guard_m=opts.val_guard,
        )
        #: the blocks the map grid and the queries lie in (``test``, or ``val`` for a development evaluation)
        self.eval_region: str = opts.eval_blocks
        region = {"train": "train", "val": "val", "map": self.eval_region, "query": self.eval_region}[split]
        self.sampler = LocationSampler(self.blocks, region)
        if self.sampler.extent_m() < opts.negative_radius_m:
            raise DataError(
                f"the {region} area of {self.source_name} spans {self.sampler.extent_m():.0f} m, less than the "
                f"negative distance {opts.negative_radius_m:g} m ({self.blocks.describe()}); use a larger map, "
                f"larger blocks (data.block_size_m) or a smaller guard band (data.test_guard_m)"
            )
        self._grid = self._reference_grid() if split == "map" else None
        if split == "map" and len(self._grid) == 0:  # pragma: no cover - the sampler found room
            raise DataError(f"no reference grid point in the {self.eval_region} blocks of {self.source_name}")
        self.preview_px = int(image_height or opts.preview_px)

    # -- construction ------------------------------------------------------------------------------------------
    @property
    def source_name(self) -> str:
        return str(self.raster.source or self.root)

    def _load_raster(self) -> Any:
        path = _find_osm_file(self.root)
        stat = path.stat()
        return _channel_raster(str(path.resolve()), stat.st_mtime_ns, stat.st_size, float(self.options.resolution_m),
                               self.options.channels)

    def _reference_grid(self) -> np.ndarray:
        step = self.options.grid_step_m
        return self.blocks.candidates(self.eval_region, step)

    # -- sizes -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        opts = self.options
        if self.split == "train":
            return int(opts.train_samples)
        if self.split == "val":
            return int(opts.val_samples)
        if self.split == "map":
            return int(len(self._grid))  # type: ignore[arg-type]
        return int(opts.num_queries)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    # -- locations ---------------------------------------------------------------------------------------------
    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([int(self.options.seed), _SPLIT_CODE[self.split], int(index)])

    def poses(self, index: int) -> np.ndarray:
        """The tile poses of sample ``index``: ``(3, 3)`` rows ``(x, y, yaw)`` (metres, metres, radians) of the
        anchor, positive and negative (``map``: ``(1, 3)``, the reference tile).

        Raises:
            IndexError: past the end.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}/{self.split} index {index} out of range ({len(self)} samples)")
        if self.split == "map":
            x, y = self._grid[index]  # type: ignore[index]
            return np.array([[x, y, NORTH_UP]])
        opts = self.options
        rng = self._rng(index)
        anchor = self.sampler.sample(rng)[0]
        positive = self.sampler.sample_near(rng, anchor, opts.positive_radius_m)
        negative = self.sampler.sample_far(rng, anchor, opts.negative_radius_m)
        yaws = rng.uniform(-math.pi, math.pi, size=3)
        # the positive's heading: within positive_max_rotation_deg of the anchor's (180: any heading)
        yaws[1] = _wrap(yaws[0] + yaws[1] * opts.positive_max_rotation_deg / 180.0)
        return np.column_stack([np.stack([anchor, positive, negative]), yaws])

    # -- tiles -------------------------------------------------------------------------------------------------
    def render(self, poses: np.ndarray) -> np.ndarray:
        """Tiles at the given poses.

        Args:
            poses: ``(N, 3)`` rows ``(x, y, yaw)``: metres, metres, radians (``yaw = pi/2``: north up).

        Returns:
            ``(N, K, S, S)`` uint8 in {0, 1}.
        """
        return np.ascontiguousarray(self.raster.crop_many(np.asarray(poses, np.float64), self.options.tile_px))

    def tiles(self, indices: Any) -> np.ndarray:
        """The anchor tiles (``map``: reference tiles) of samples ``indices``: ``(N, K, S, S)`` uint8."""
        indices = list(indices)
        if not indices:
            return np.zeros((0, self.num_channels, self.options.tile_px, self.options.tile_px), np.uint8)
        return self.render(np.stack([self.poses(int(i))[0] for i in indices]))

    def positions(self) -> np.ndarray:
        """``(N, 2)`` float64 anchor centres (metres) of every sample of the split."""
        if self.split == "map":
            return np.asarray(self._grid, np.float64).copy()
        return np.stack([self.poses(i)[0, :2] for i in range(len(self))])

    def preview(self, tiles: np.ndarray) -> torch.Tensor:
        """Colour pictures ``(N, 3, P, P)`` float32 in [0, 1] of tiles ``(N, K, S, S)`` (P = ``preview_px``)."""
        tiles = np.asarray(tiles)
        size = self.preview_px if tiles.shape[-1] % self.preview_px == 0 else None
        rgb = render_rgb(tiles, self.channel_names, size)
        if rgb.shape[-1] != self.preview_px:
            rgb = torch.nn.functional.interpolate(rgb, size=(self.preview_px, self.preview_px), mode="area")
        return rgb.clamp_(0.0, 1.0)

    def camera(self) -> Camera:
        """The placeholder camera of ``Sample.image``: focal length = picture pixels per metre."""
        p = self.preview_px
        return Camera.from_focal(p / (self.options.tile_px * self.options.resolution_m), p, p)

    def __getitem__(self, index: int) -> Sample:
        poses = self.poses(index)
        if self.split == "map":
            tiles = self.render(poses)
            return Sample(
                image=self.preview(tiles)[0], camera=self.camera(), pose2=Pose2(x=poses[0, 0], y=poses[0, 1],
                yaw=poses[0, 2]), name=f"ref-{index:06d}", sequence="map", timestamp=float(index),
                extras={"num_channels": self.num_channels},
            )
        tiles = self.render(poses)
        packed = torch.from_numpy(pack_tiles(tiles))
        pose2 = [Pose2(x=p[0], y=p[1], yaw=p[2]) for p in poses]
        return Sample(
            image=self.preview(tiles[:1])[0], camera=self.camera(), pose2=pose2[0],
            name=f"{self.split}-{index:06d}", sequence=self.split, timestamp=float(index),
            extras={
                "tile": packed[0], "positive_tile": packed[1], "negative_tile": packed[2],
                "positive_pose2": pose2[1], "negative_pose2": pose2[2], "num_channels": self.num_channels,
                "positive_radius_m": float(self.options.positive_radius_m),
                "negative_radius_m": float(self.options.negative_radius_m),
                "positive_max_rotation_deg": float(self.options.positive_max_rotation_deg),
            },
        )

    def metadata(self, index: int) -> SampleMeta:
        """Name and tile pose (``pose2``) of sample ``index``, without rendering a tile."""
        x, y, yaw = self.poses(index)[0]
        prefix = "ref" if self.split == "map" else self.split
        return SampleMeta(name=f"{prefix}-{index:06d}", pose2=Pose2(x=x, y=y, yaw=yaw),
                          sequence="map" if self.split == "map" else self.split, timestamp=float(index))

    def validate(self, progress: Any = None) -> None:
        """Cheap check before a run: the raster was read and decoded in ``__init__`` (a broken file raised a
        :class:`~maploc.errors.DataError` there); here the first and last samples are drawn and their poses
        checked to be finite.

        Raises:
            DataError: a non-finite pose (a broken georeference).
        """
        for i in {0, len(self) - 1}:
            if not np.isfinite(self.poses(i)).all():
                raise DataError(f"{self!r}: sample {i} has a non-finite tile pose")
        if progress is not None:
            progress(len(self))

    def names(self) -> list[str]:
        prefix = "ref" if self.split == "map" else self.split
        return [f"{prefix}-{i:06d}" for i in range(len(self))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source_name!r}, split={self.split!r}, n={len(self)})"


# ---------------------------------------------------------------------------------------------------------------
# A file-free synthetic city (conformance suite, tests, benchmarks)
# ---------------------------------------------------------------------------------------------------------------


def synthetic_raster(size_m: float = 640.0, resolution_m: float = 1.0, seed: int = 0) -> Any:
    """A procedural city as a class raster (no file, no network): a jittered street grid with roads, paths,
    tram rails and crossings, buildings in the blocks, parks with trees, water, and street furniture.

    Args:
        size_m: side of the square map in metres (centred on the map-frame origin).
        resolution_m: metres per pixel.
        seed: the layout seed.

    Returns:
        A :class:`maploc_osm.MapRaster` with the standard classes (georeferenced at 60.17 N, 24.94 E).
    """
    import cv2

    from maploc_osm import CLASS_NAMES, GeoReference, MapRaster

    rng = np.random.default_rng([seed, 11])
    n = max(16, math.ceil(size_m / resolution_m))
    masks = {c: np.zeros((n, n), np.uint8) for c in CLASS_NAMES}
    px = lambda m: int(round(m / resolution_m))  # noqa: E731
    # street grid with irregular spacing
    xs = np.cumsum(rng.uniform(45, 110, size=24))
    ys = np.cumsum(rng.uniform(45, 110, size=24))
    xs, ys = xs[xs < size_m - 10], ys[ys < size_m - 10]
    for k, x in enumerate(xs):
        cls = "road" if k % 3 != 1 else "path"
        cv2.line(masks[cls], (px(x), 0), (px(x), n - 1), 1, max(1, px(4 if cls == "road" else 2)))
    for k, y in enumerate(ys):
        cls = "road" if k % 2 == 0 else "cycleway"
        cv2.line(masks[cls], (0, px(y)), (n - 1, px(y)), 1, max(1, px(4 if cls == "road" else 2)))
    if len(ys) > 2:  # a tram line along one street, a diagonal avenue
        cv2.line(masks["railway"], (0, px(ys[1]) + px(3)), (n - 1, px(ys[1]) + px(3)), 1, max(1, px(1.5)))
    cv2.line(masks["road"], (0, px(size_m * 0.2)), (n - 1, px(size_m * 0.9)), 1, max(1, px(5)))
    for x in xs:
        for y in ys:
            if rng.random() < 0.6:
                cv2.circle(masks["crossing"], (px(x + 3), px(y)), 1, 1, -1)
            if rng.random() < 0.15:
                cv2.circle(masks["traffic_signal"], (px(x - 3), px(y - 3)), 1, 1, -1)
    # blocks: buildings, parks, parking
    bx = np.r_[0.0, xs, size_m]
    by = np.r_[0.0, ys, size_m]
    for i in range(len(bx) - 1):
        for j in range(len(by) - 1):
            x0, x1, y0, y1 = bx[i] + 6, bx[i + 1] - 6, by[j] + 6, by[j + 1] - 6
            if x1 - x0 < 10 or y1 - y0 < 10:
                continue
            u = rng.random()
            if u < 0.12:
                cv2.rectangle(masks["park"], (px(x0), px(y0)), (px(x1), px(y1)), 1, -1)
                for _ in range(int(rng.integers(3, 15))):
                    c = (px(rng.uniform(x0, x1)), px(rng.uniform(y0, y1)))
                    cv2.circle(masks["tree"], c, max(1, px(1)), 1, -1)
                if rng.random() < 0.5:
                    cv2.ellipse(masks["water"], (px((x0 + x1) / 2), px((y0 + y1) / 2)),
                                (px((x1 - x0) / 5), px((y1 - y0) / 6)), 0, 0, 360, 1, -1)
            elif u < 0.2:
                cv2.rectangle(masks["parking"], (px(x0), px(y0)), (px(x1), px(y1)), 1, -1)
            else:
                for _ in range(int(rng.integers(1, 5))):
                    w, h = rng.uniform(8, max(9, (x1 - x0) * 0.7)), rng.uniform(8, max(9, (y1 - y0) * 0.7))
                    cx, cy = rng.uniform(x0 + w / 2, max(x0 + w / 2 + 1, x1 - w / 2)), rng.uniform(
                        y0 + h / 2, max(y0 + h / 2 + 1, y1 - h / 2))
                    box = cv2.boxPoints(((px(cx), px(cy)), (px(w), px(h)), float(rng.uniform(-20, 20))))
                    cv2.fillPoly(masks["building"], [np.round(box).astype(np.int32)], 1)
            for _ in range(int(rng.integers(0, 4))):
                c = (px(rng.uniform(x0, x1)), px(rng.uniform(y0, y1)))
                cls = str(rng.choice(["shop", "restaurant", "bench", "lamp", "bus_stop"]))
                cv2.circle(masks[cls], c, 1, 1, -1)
    labels = np.stack([masks[c] for c in CLASS_NAMES], axis=-1)
    packed = np.packbits(labels, axis=-1, bitorder="little")
    georef = GeoReference.from_origin(60.17, 24.94).with_raster(
        resolution_m=resolution_m, x_min=-n * resolution_m / 2, y_max=n * resolution_m / 2, height=n, width=n
    )
    return MapRaster(georef=georef, packed=packed, source=f"synthetic-city-{size_m:g}m-seed{seed}")


@functools.lru_cache(maxsize=4)
def _synthetic_channel_raster(size_m: float, resolution_m: float, seed: int, channels: str) -> Any:
    return to_channel_raster(synthetic_raster(size_m, resolution_m, seed), channels)


@attrs.frozen(kw_only=True)
class SyntheticTileOptions(TileOptions):
    """:class:`TileOptions` with the small defaults of ``osm-tiles-synthetic`` (a 640 m map, 64 px tiles, 100 m
    blocks, a 10 m reference grid, 24 queries)."""

    tile_px: int = _options_field(64, at_least(16))
    block_size_m: float = _options_field(100.0, greater_than(0))
    test_guard_m: float = _options_field(0.0, at_least(0))
    train_samples: int = _options_field(4096, at_least(1))
    val_samples: int = _options_field(64, at_least(1))
    grid_step_m: float = _options_field(10.0, greater_than(0))
    num_queries: int = _options_field(24, at_least(1))
    preview_px: int = _options_field(16, at_least(4))


class SyntheticTileDataset(OsmTileDataset):
    """``osm-tiles-synthetic``: :class:`OsmTileDataset` on a procedural city (:func:`synthetic_raster`), no files.

    Small by default (:class:`SyntheticTileOptions`) so that the conformance suite and tests run in seconds.
    ``root`` must be ``None`` (a given folder is refused, never ignored).
    """

    name: ClassVar[str] = "osm-tiles-synthetic"
    default_sample: ClassVar[str | None] = None
    needs_root: ClassVar[bool] = False
    Options: ClassVar[type] = SyntheticTileOptions
    #: Side of the synthetic map in metres.
    size_m: ClassVar[float] = 640.0

    def __init__(
        self, root: Path | None = None, split: str = "train", *, image_height: int | None = None,
        options: TileOptions | None = None,
    ) -> None:
        from maploc.data.io import refuse_root

        refuse_root(self.name, root)
        super().__init__(None, split, image_height=image_height, options=options)

    def _load_raster(self) -> Any:
        return _synthetic_channel_raster(float(self.size_m), float(self.options.resolution_m), int(self.options.seed),
                                         self.options.channels)

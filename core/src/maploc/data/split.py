"""One spatial train / val / test split for every dataset whose samples have positions: :class:`SpatialSplit`.

A split decides, from a sample's position alone, which split it may belong to, so that the held-out area
is never trained on. All coordinates are metres in the map frame (x east, y north); every method takes
positions as an ``(N, 2)`` float array.

Layout:

* The **region** is the map ``extent`` shrunk by ``margin_m`` on every side: where sample centres may lie
  (e.g. a tile of any rotation centred there stays inside the map when ``margin_m`` is its half-diagonal).
  :meth:`SpatialSplit.from_points` takes the extent as the bounding box of given positions (routes,
  corridors, any dataset whose extent is its samples).
* The region is cut into a grid of ``rows x cols`` equal **blocks** of about ``block_size_m``
  (``cols = max(1, round(width / block_size_m))``, likewise ``rows``; blocks fit the region exactly).
  Row 0 is the southernmost, column 0 the westernmost. Each block belongs to one split.
* **Assignment**: ``n_test = max(1, round(test_fraction * n))`` blocks go to ``test`` and
  ``n_val = max(1, round(val_fraction * n))`` (``0`` when ``val_fraction == 0``) to ``val``, taken in the
  order of a random permutation seeded by ``seed`` (``numpy.random.default_rng([seed, 7]).permutation(n)``),
  skipping a block that touches (shares an edge or a corner with) a block already held out while untouching
  blocks remain; when none remain the rest are taken in permutation order. The first ``n_test`` picks are
  test, the next ``n_val`` val, every other block is ``train``. Held-out blocks are so spread over the map
  (the test area is not one neighbourhood, and each guard band borders training area). With
  :meth:`~SpatialSplit.from_points` only blocks that hold at least one of the points take part (``n`` counts
  them; empty blocks stay ``train``), so that every held-out block holds samples.

Guard rule (``guard_m`` defaults to, and may not be below, ``success_radius_m + footprint_m``):

* a ``test`` (``val``) sample is one whose position lies inside a test (val) block;
* a ``train`` sample keeps at least ``guard_m`` from every test block and at least ``val_guard_m``
  (default ``guard_m``) from every val block; a ``val`` sample keeps at least ``guard_m`` from every test
  block (:meth:`SpatialSplit.allowed`).

Consequence: every training position is at least ``success_radius_m + footprint_m`` from every test
position, so no training sample's map footprint (a disk of ``footprint_m`` around its position) comes within
the success radius of any test query: no map frame that was trained on can count as a positive of a test
query (nor of a val query when ``val_guard_m`` keeps its default). ``val_guard_m`` may be set lower (even
``0``) to save training area: validation then only steers training and its numbers are optimistic; the
test guarantee is unaffected.

Guard bands cost training area around every held-out block, so blocks should be large compared with the
guard (a few times ``guard_m``). Save a split with ``json.dumps(split.to_dict())`` in the run folder and
reload it with :meth:`SpatialSplit.from_dict`.

Example:
    >>> split = SpatialSplit.build((0, 0, 1000, 800), block_size_m=200, success_radius_m=25, footprint_m=10)
    >>> split.guard_m
    35.0
    >>> train_mask = split.allowed(xy, "train")      # doctest: +SKIP
    >>> is_test = split.split_of(xy) == SPLIT_CODES["test"]  # doctest: +SKIP

numpy only; importing this module imports neither torch nor any plugin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from maploc.errors import ConfigError, DataError

__all__ = ["OUTSIDE", "SPLIT_CODES", "SPLIT_NAMES", "SpatialSplit"]

#: The splits, in the order of their codes.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Split name -> the int8 code of :attr:`SpatialSplit.assignment` and :meth:`SpatialSplit.split_of`.
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLIT_NAMES)}
#: Code :meth:`SpatialSplit.split_of` gives a position outside the region (its name is ``""``).
OUTSIDE = -1

_FORMAT = "maploc.SpatialSplit/1"


def _code(split: str) -> int:
    try:
        return SPLIT_CODES[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}") from None


def _points(xy: Any) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.size == 0:
        return xy.reshape(0, 2)
    if xy.shape == (2,):
        xy = xy[None]
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"positions must be an (N, 2) array of x, y metres, got shape {xy.shape}")
    return xy


def _rect_distance(xy: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """``(N,)`` Euclidean distance (metres) from points ``(N, 2)`` to the nearest of ``rects`` ``(R, 4)``
    (``x0, y0, x1, y1``); ``0`` inside or on a rectangle, ``inf`` when there are no rectangles."""
    if len(rects) == 0:
        return np.full(len(xy), np.inf)
    x = xy[:, None, 0]
    y = xy[:, None, 1]
    dx = np.maximum(np.maximum(rects[None, :, 0] - x, x - rects[None, :, 2]), 0.0)
    dy = np.maximum(np.maximum(rects[None, :, 1] - y, y - rects[None, :, 3]), 0.0)
    return np.hypot(dx, dy).min(axis=1)


def _spread_pick(order: np.ndarray, rows: int, cols: int, count: int) -> np.ndarray:
    """The first ``count`` blocks of ``order`` (flat indices) such that no two picked blocks touch (8-neighbours);
    when that is impossible, the remaining picks come from ``order`` regardless."""
    picked: list[int] = []
    for b in order:
        if len(picked) == count:
            break
        r, c = divmod(int(b), cols)
        if all(max(abs(r - pr), abs(c - pc)) > 1 for pr, pc in (divmod(p, cols) for p in picked)):
            picked.append(int(b))
    for b in order:
        if len(picked) == count:
            break
        if int(b) not in picked:
            picked.append(int(b))
    return np.asarray(picked, dtype=np.int64)


def _finite(name: str, value: float, *, positive: bool = False) -> float:
    value = float(value)
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise ConfigError(f"{name} must be {'> 0' if positive else '>= 0'} and finite, got {value:g}")
    return value


def _read_only(a: Any) -> np.ndarray:
    a = np.array(a, dtype=np.int8, copy=True)
    a.setflags(write=False)
    return a


@attrs.frozen(kw_only=True)
class SpatialSplit:
    """A grid of blocks over a region of the map frame, each assigned to ``train``, ``val`` or ``test``, with
    guard bands (see the module docstring for the rules).

    Build one with :meth:`build` or :meth:`from_points`; reload a saved one with :meth:`from_dict`.

    Attributes:
        region: ``(x0, y0, x1, y1)`` metres: where sample centres may lie (the extent less ``margin_m``).
        rows: block rows (row 0 at the south, ``y0``).
        cols: block columns (column 0 at the west, ``x0``).
        assignment: ``(rows, cols)`` read-only int8 array of :data:`SPLIT_CODES`.
        guard_m: metres that train and val positions keep from every test block (>= ``success_radius_m +
            footprint_m``).
        val_guard_m: metres that train positions keep from every val block.
        success_radius_m: the evaluation's success radius (metres) the split was built for.
        footprint_m: the radius (metres) of a sample's map footprint the split was built for.
        block_size_m: the requested block side (metres); the real sides are :attr:`block_width_m` and
            :attr:`block_height_m`.
        seed: the seed of the assignment.
    """

    region: tuple[float, float, float, float] = attrs.field(converter=lambda r: tuple(float(v) for v in r))
    rows: int
    cols: int
    assignment: np.ndarray = attrs.field(converter=_read_only, eq=attrs.cmp_using(eq=np.array_equal), hash=False)
    guard_m: float
    val_guard_m: float
    success_radius_m: float = 0.0
    footprint_m: float = 0.0
    block_size_m: float = 0.0
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.assignment.shape != (self.rows, self.cols):
            raise DataError(f"split assignment has shape {self.assignment.shape}, expected ({self.rows}, {self.cols})")
        if not np.isin(self.assignment, list(SPLIT_CODES.values())).all():
            raise DataError(f"split assignment holds codes other than {sorted(SPLIT_CODES.values())}")
        x0, y0, x1, y1 = self.region
        if not (x1 > x0 and y1 > y0 and self.rows >= 1 and self.cols >= 1):
            raise DataError(f"split region {self.region} with {self.rows} x {self.cols} blocks is empty")
        need = self.success_radius_m + self.footprint_m
        if self.guard_m < need:
            raise ConfigError(_guard_message(self.guard_m, self.success_radius_m, self.footprint_m))
        if self.val_guard_m < 0:
            raise ConfigError(f"val_guard_m must be >= 0, got {self.val_guard_m:g}")

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        extent: tuple[float, float, float, float],
        *,
        block_size_m: float,
        success_radius_m: float,
        footprint_m: float = 0.0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        guard_m: float | None = None,
        val_guard_m: float | None = None,
        margin_m: float = 0.0,
    ) -> SpatialSplit:
        """Cuts the region of ``extent`` into blocks and assigns them to splits.

        Args:
            extent: ``(x_min, y_min, x_max, y_max)`` metres of the map, map frame (x east, y north).
            block_size_m: target block side in metres; > 0.
            success_radius_m: the largest distance (metres) at which the evaluation counts a result as correct
                (e.g. 25 m for recall within 25 m); >= 0.
            footprint_m: radius (metres) of the map area a sample covers around its position (e.g. a tile's
                half-diagonal; ``0`` for a point); >= 0.
            val_fraction: share of the blocks for validation, in ``[0, 1)`` (``0`` = no val blocks).
            test_fraction: share of the blocks for testing, in ``(0, 1)`` (at least one block);
                ``val_fraction + test_fraction < 1``.
            seed: seed of the block assignment.
            guard_m: metres that train and val positions keep from every test block; default (``None``)
                ``success_radius_m + footprint_m``, the smallest allowed value (larger is fine, e.g. ``2 *
                footprint_m`` so that no training footprint overlaps any test footprint).
            val_guard_m: metres that train positions keep from every val block; default ``guard_m``. May be
                smaller (any value >= 0): validation then only steers training.
            margin_m: the region where positions may lie is ``extent`` shrunk by this much on every side; >= 0.

        Returns:
            The split.

        Raises:
            ConfigError: a non-positive block size, a negative radius, footprint or margin, fractions out of
                range, or ``guard_m`` below ``success_radius_m + footprint_m``.
            DataError: the map is too small: the region is empty after the margin, or it holds too few blocks
                for a train, (val,) and test split.
        """
        return cls._build(extent, None, block_size_m=block_size_m, success_radius_m=success_radius_m,
                          footprint_m=footprint_m, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                          guard_m=guard_m, val_guard_m=val_guard_m, margin_m=margin_m)

    @classmethod
    def from_points(
        cls,
        xy: Any,
        *,
        pad_m: float = 1.0,
        block_size_m: float,
        success_radius_m: float,
        footprint_m: float = 0.0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        guard_m: float | None = None,
        val_guard_m: float | None = None,
        margin_m: float = 0.0,
    ) -> SpatialSplit:
        """A split whose extent is the bounding box of ``xy`` (grown by ``pad_m``), for datasets whose extent is
        their samples (routes, corridors). Only blocks holding at least one of ``xy`` are held out (the fractions
        count those blocks); empty blocks stay ``train``.

        Args:
            xy: ``(N, 2)`` positions in metres (N >= 1, finite), e.g. every sample of the dataset.
            pad_m: metres added to every side of the bounding box (> 0 keeps a straight, axis-aligned route
                from giving an empty region); >= 0.
            block_size_m, success_radius_m, footprint_m, val_fraction, test_fraction, seed, guard_m,
                val_guard_m, margin_m: as in :meth:`build`.

        Returns:
            The split.

        Raises:
            ConfigError: as in :meth:`build`.
            DataError: no or non-finite positions, or too few occupied blocks for the split.
        """
        pts = _points(xy)
        if len(pts) == 0 or not np.isfinite(pts).all():
            raise DataError(f"from_points needs finite (N, 2) positions, got {len(pts)} with non-finite ones"
                            if len(pts) else "from_points needs at least one position, got none")
        pad = _finite("pad_m", pad_m)
        lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
        extent = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        return cls._build(extent, pts, block_size_m=block_size_m, success_radius_m=success_radius_m,
                          footprint_m=footprint_m, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                          guard_m=guard_m, val_guard_m=val_guard_m, margin_m=margin_m)

    @classmethod
    def _build(
        cls,
        extent: tuple[float, float, float, float],
        occupied_by: np.ndarray | None,
        *,
        block_size_m: float,
        success_radius_m: float,
        footprint_m: float,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        guard_m: float | None,
        val_guard_m: float | None,
        margin_m: float,
    ) -> SpatialSplit:
        block = _finite("block_size_m", block_size_m, positive=True)
        success = _finite("success_radius_m", success_radius_m)
        footprint = _finite("footprint_m", footprint_m)
        margin = _finite("margin_m", margin_m)
        vf, tf = float(val_fraction), float(test_fraction)
        if not (0 <= vf < 1 and 0 < tf < 1 and vf + tf < 1):
            raise ConfigError(
                f"split fractions need 0 <= val_fraction < 1, 0 < test_fraction < 1 and a sum < 1; got "
                f"val_fraction={vf:g}, test_fraction={tf:g}"
            )
        need = success + footprint
        guard = need if guard_m is None else float(guard_m)
        if not guard >= need:  # also catches NaN
            raise ConfigError(_guard_message(guard, success, footprint))
        val_guard = guard if val_guard_m is None else _finite("val_guard_m", val_guard_m)
        try:
            x_min, y_min, x_max, y_max = (float(v) for v in extent)
        except (TypeError, ValueError):
            raise ConfigError(f"extent must be (x_min, y_min, x_max, y_max) metres, got {extent!r}") from None
        if not all(math.isfinite(v) for v in (x_min, y_min, x_max, y_max)):
            raise DataError(f"the map extent {extent} is not finite")
        region = (x_min + margin, y_min + margin, x_max - margin, y_max - margin)
        width, height = region[2] - region[0], region[3] - region[1]
        size = f"{x_max - x_min:.0f} x {y_max - y_min:.0f} m"
        if not (width > 0 and height > 0):
            raise DataError(
                f"the map ({size}) is too small for a margin of {margin:g} m on every side: no room for a sample "
                f"position; use a larger map or a smaller margin (smaller samples)"
            )
        cols = max(1, round(width / block))
        rows = max(1, round(height / block))
        n_all = rows * cols
        if occupied_by is None:
            eligible = np.ones(n_all, dtype=bool)
        else:
            eligible = np.zeros(n_all, dtype=bool)
            probe = cls(region=region, rows=rows, cols=cols, assignment=np.zeros((rows, cols), np.int8),
                        guard_m=guard, val_guard_m=val_guard, success_radius_m=success, footprint_m=footprint)
            r, c = probe._block_index(occupied_by)
            inside = r >= 0
            eligible[r[inside] * cols + c[inside]] = True
        n = int(eligible.sum())
        n_test = max(1, round(tf * n))
        n_val = max(1, round(vf * n)) if vf > 0 else 0
        if n - n_test - n_val < 1:
            what = "occupied block(s)" if occupied_by is not None else "block(s)"
            raise DataError(
                f"the map ({size}, positions in {width:.0f} x {height:.0f} m) holds only {n} {what} of "
                f"~{block:g} m, too few for a train, {'val, ' if n_val else ''}and test split; use a larger map or "
                f"smaller blocks (block_size_m)"
            )
        order = np.random.default_rng([int(seed), 7]).permutation(n_all)
        order = order[eligible[order]]
        assignment = np.zeros(n_all, np.int8)
        held_out = _spread_pick(order, rows, cols, n_test + n_val)
        assignment[held_out[:n_test]] = SPLIT_CODES["test"]
        assignment[held_out[n_test:]] = SPLIT_CODES["val"]
        return cls(region=region, rows=rows, cols=cols, assignment=assignment.reshape(rows, cols), guard_m=guard,
                   val_guard_m=val_guard, success_radius_m=success, footprint_m=footprint, block_size_m=block,
                   seed=int(seed))

    # -- saving ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats, ints, lists) that :meth:`from_dict` turns back into this split."""
        return {
            "format": _FORMAT,
            "region": list(self.region),
            "rows": int(self.rows),
            "cols": int(self.cols),
            "assignment": self.assignment.astype(int).tolist(),
            "guard_m": float(self.guard_m),
            "val_guard_m": float(self.val_guard_m),
            "success_radius_m": float(self.success_radius_m),
            "footprint_m": float(self.footprint_m),
            "block_size_m": float(self.block_size_m),
            "seed": int(self.seed),
            "split_codes": dict(SPLIT_CODES),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpatialSplit:
        """The split saved by :meth:`to_dict` (e.g. read back with ``json.load``).

        Raises:
            DataError: ``data`` is not a saved split (wrong format tag, missing keys, bad assignment shape or
                codes).
            ConfigError: its guard is below its success radius + footprint.
        """
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise DataError(f"not a saved SpatialSplit (format {got!r}, expected {_FORMAT!r})")
        if data.get("split_codes", SPLIT_CODES) != SPLIT_CODES:
            raise DataError(f"saved split codes {data['split_codes']} differ from {SPLIT_CODES}")
        try:
            return cls(
                region=tuple(data["region"]), rows=int(data["rows"]), cols=int(data["cols"]),
                assignment=np.asarray(data["assignment"], dtype=np.int8).reshape(int(data["rows"]), int(data["cols"])),
                guard_m=float(data["guard_m"]), val_guard_m=float(data["val_guard_m"]),
                success_radius_m=float(data["success_radius_m"]), footprint_m=float(data["footprint_m"]),
                block_size_m=float(data["block_size_m"]), seed=int(data["seed"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"saved SpatialSplit is malformed: {type(e).__name__}: {e}") from None

    # -- geometry ----------------------------------------------------------------------------------------------
    @property
    def block_width_m(self) -> float:
        """Block side along x (metres)."""
        return (self.region[2] - self.region[0]) / self.cols

    @property
    def block_height_m(self) -> float:
        """Block side along y (metres)."""
        return (self.region[3] - self.region[1]) / self.rows

    def counts(self) -> dict[str, int]:
        """Number of blocks per split name."""
        return {s: int((self.assignment == c).sum()) for s, c in SPLIT_CODES.items()}

    def rects(self, split: str) -> np.ndarray:
        """``(R, 4)`` float64 rectangles ``(x0, y0, x1, y1)`` metres of the blocks of ``split`` (row-major order).

        Raises:
            ValueError: unknown split.
        """
        rows, cols = np.nonzero(self.assignment == _code(split))
        x0 = self.region[0] + cols * self.block_width_m
        y0 = self.region[1] + rows * self.block_height_m
        return np.stack([x0, y0, x0 + self.block_width_m, y0 + self.block_height_m], axis=1).astype(np.float64)

    def _block_index(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N,)`` row and column of the block holding each point; ``-1`` (both) outside the region (the
        region's edges are inside; a point on an inner block edge belongs to the block north / east of it)."""
        col = np.floor((xy[:, 0] - self.region[0]) / self.block_width_m).astype(np.int64)
        row = np.floor((xy[:, 1] - self.region[1]) / self.block_height_m).astype(np.int64)
        inside = (
            (xy[:, 0] >= self.region[0]) & (xy[:, 0] <= self.region[2])
            & (xy[:, 1] >= self.region[1]) & (xy[:, 1] <= self.region[3])
        )
        col = np.where(inside, np.clip(col, 0, self.cols - 1), -1)
        row = np.where(inside, np.clip(row, 0, self.rows - 1), -1)
        return row, col

    def split_of(self, xy: Any, *, names: bool = False) -> np.ndarray:
        """The split of the block holding each position.

        Args:
            xy: ``(N, 2)`` positions, metres (a single ``(2,)`` point is accepted).
            names: return split names instead of codes.

        Returns:
            ``(N,)`` int8 :data:`SPLIT_CODES` (:data:`OUTSIDE` = -1 outside the region), or with ``names`` an
            ``(N,)`` str array (``""`` outside).
        """
        pts = _points(xy)
        row, col = self._block_index(pts)
        codes = np.where(row >= 0, self.assignment[np.maximum(row, 0), np.maximum(col, 0)], OUTSIDE).astype(np.int8)
        if names:
            return np.asarray(("",) + SPLIT_NAMES, dtype=str)[codes.astype(np.int64) + 1]
        return codes

    def distance_to(self, xy: Any, split: str) -> np.ndarray:
        """``(N,)`` float64 metres from each position ``(N, 2)`` to the nearest block of ``split`` (``0`` inside
        one, ``inf`` when the split has no block)."""
        return _rect_distance(_points(xy), self.rects(split))

    def _guards(self, split: str) -> tuple[tuple[str, float], ...]:
        return {"train": (("val", self.val_guard_m), ("test", self.guard_m)), "val": (("test", self.guard_m),),
                "test": ()}[split]

    def allowed(self, xy: Any, split: str, *, outside: bool = False) -> np.ndarray:
        """``(N,)`` bool: may a sample of ``split`` lie at each position of ``(N, 2)`` metres?

        True when the position is in a block of ``split`` and strictly farther than the guard from the blocks it is
        guarded against
        (``train``: :attr:`guard_m` from test blocks and :attr:`val_guard_m` from val blocks; ``val``:
        :attr:`guard_m` from test blocks; ``test``: no guard).

        Args:
            outside: ``train`` only: also admit positions outside the region (in no block), under the same guards.
                A split built over the map frames' bounding box (:meth:`from_points`) leaves extra training routes
                outside it; away from every test and val block by the guards, they are as safe to train on as a
                train block.

        Raises:
            ValueError: unknown split, ``outside`` with another split than ``train``, or positions not ``(N, 2)``.
        """
        if outside and split != "train":
            raise ValueError(f"outside=True is for the train split only, got {split!r}")
        pts = _points(xy)
        codes = self.split_of(pts)
        ok = codes == _code(split)
        if outside:
            ok |= codes == OUTSIDE
        for other, guard in self._guards(split):
            if ok.any():
                # strictly farther than the guard: a match counts at a distance <= the success radius
                ok[ok] = _rect_distance(pts[ok], self.rects(other)) > guard
        return ok

    def mask(self, xy: Any, split: str, *, guarded: bool = True) -> np.ndarray:
        """``(N,)`` bool: :meth:`allowed` (``guarded``), or plain membership in the blocks of ``split``."""
        return self.allowed(xy, split) if guarded else self.split_of(xy) == _code(split)

    def candidates(self, split: str, step_m: float, offset: float = 0.5) -> np.ndarray:
        """``(M, 2)`` float64 points of a grid of ``step_m`` metres over the region (first point at the region's
        south-west corner + ``offset * step_m`` on both axes) where :meth:`allowed` holds for ``split``."""
        x0, y0, x1, y1 = self.region
        step = _finite("step_m", step_m, positive=True)
        xs = np.arange(x0 + offset * step, x1, step)
        ys = np.arange(y0 + offset * step, y1, step)
        grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)
        return grid[self.allowed(grid, split)]

    def area_m2(self, split: str, step_m: float = 2.0) -> float:
        """Approximate area (m²) where samples of ``split`` may lie (counting a grid of ``step_m``)."""
        return float(len(self.candidates(split, step_m))) * step_m * step_m

    def describe(self) -> str:
        """One line: blocks, their size, the counts per split and the guards."""
        c = self.counts()
        return (
            f"{self.rows} x {self.cols} blocks of {self.block_width_m:.0f} x {self.block_height_m:.0f} m "
            f"(train {c['train']}, val {c['val']}, test {c['test']}; seed {self.seed}), guard {self.guard_m:.1f} m "
            f"against test (success {self.success_radius_m:.1f} m + footprint {self.footprint_m:.1f} m = "
            f"{self.success_radius_m + self.footprint_m:.1f} m at least), {self.val_guard_m:.1f} m against val"
        )


def _guard_message(guard: float, success: float, footprint: float) -> str:
    need = success + footprint
    return (
        f"guard_m ({guard:g} m) is below success_radius_m + footprint_m ({success:g} + {footprint:g} = {need:g} m): "
        f"a training sample could count as a positive of a test query; leave guard_m unset or set it >= {need:g}"
    )

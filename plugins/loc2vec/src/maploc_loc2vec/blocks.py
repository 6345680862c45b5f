"""The spatial block split (train / val / test) and the sampling of tile locations inside a split.

Layout (all in map-frame metres, x east, y north):

* The **centre region** is the raster extent shrunk by the tile's half-diagonal ``r = tile_px * res / sqrt(2)``
  (90.5 m for 128 px at 1 m): a tile centred there is inside the map whatever its rotation.
* The centre region is cut into a grid of ``rows x cols`` equal **blocks** of about ``block_size_m`` (rows and
  columns are rounded to fit the region exactly). Each block belongs to one split.
* ``round(test_fraction * n)`` blocks (at least 1) go to ``test`` and ``round(val_fraction * n)`` to ``val``,
  chosen in the order of a seeded random permutation, skipping a block that touches (shares an edge or a
  corner with) a block already held out while others remain: held-out blocks are spread over the map, so that
  the test area is not one neighbourhood and each guard band borders training area. The rest are ``train``.
* **Guard bands** (``r`` = the tile half-diagonal; a tile of any rotation lies in the disk of radius ``r`` around
  its centre):

  - against **test** blocks, ``test_guard_m`` (default ``2 r + 1 m``): a ``train`` or ``val`` tile centre keeps
    this far from every test block. Query and reference tiles have their centres inside test blocks, so the
    centres of a training tile and of any test tile are more than ``2 r`` apart: **no training tile, at any
    rotation, overlaps any query or reference tile, at any rotation** (tested with exact rotated footprints);
  - against **val** blocks, ``guard_m`` (default ``r + 1 m``): no training tile overlaps a val block (val tiles
    themselves may reach into the band around their block, where training tiles also reach; validation
    only steers training, it is not the reported result).

The guard band costs training area around every held-out block, so blocks should be large compared with
the tile (default 250 m for 128 m tiles); a map too small to hold a training area, a test block and a
negative distance raises :class:`~maploc.errors.DataError` (see :meth:`BlockSplit.build`).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from maploc.errors import DataError

__all__ = ["SPLIT_CODES", "BlockSplit", "LocationSampler"]

#: Split name -> the code stored in :attr:`BlockSplit.assignment`.
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _rect_distance(xy: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """``(N,)`` Euclidean distance (metres) from points ``(N, 2)`` to the nearest of ``rects`` ``(R, 4)``
    (``x0, y0, x1, y1``); ``0`` inside a rectangle, ``inf`` when there are no rectangles."""
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


@attrs.frozen(kw_only=True, eq=False)
class BlockSplit:
    """A grid of blocks over the centre region, each assigned to ``train``, ``val`` or ``test``.

    Build one with :meth:`build`. See the module docstring for the rules.

    Attributes:
        region: ``(x0, y0, x1, y1)`` metres: where tile centres may lie.
        rows: block rows (row 0 at the south, ``y0``).
        cols: block columns (column 0 at the west, ``x0``).
        assignment: ``(rows, cols)`` int8, :data:`SPLIT_CODES`.
        guard_m: the guard band in metres of training tile centres against val blocks.
        test_guard_m: the guard band in metres of training and val tile centres against test blocks.
    """

    region: tuple[float, float, float, float]
    rows: int
    cols: int
    assignment: np.ndarray
    guard_m: float
    test_guard_m: float = 0.0

    @classmethod
    def build(
        cls,
        extent: tuple[float, float, float, float],
        *,
        tile_radius_m: float,
        block_size_m: float,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        guard_m: float | None = None,
        test_guard_m: float | None = None,
        seed: int = 0,
    ) -> BlockSplit:
        """Cuts the map into blocks and assigns them to splits.

        Args:
            extent: ``(x_min, y_min, x_max, y_max)`` metres of the raster.
            tile_radius_m: half-diagonal of a tile in metres (``tile_px * res / sqrt(2)``).
            block_size_m: target block side in metres.
            val_fraction: share of the blocks for validation (``0`` = no val blocks).
            test_fraction: share of the blocks for testing (at least one block).
            guard_m: guard band in metres of training centres against val blocks (default ``tile_radius_m``
                + 1 m: no training tile overlaps a val block).
            test_guard_m: guard band in metres of training and val centres against test blocks (default
                ``2 * tile_radius_m`` + 1 m: no training tile overlaps any tile centred in a test block).
            seed: seed of the block assignment.

        Returns:
            The split.

        Raises:
            DataError: the map is too small for the tile size: the centre region is empty, or fewer than
                two blocks (three with val blocks) fit in it.
            ValueError: a non-positive block size or fractions outside ``[0, 1)``.
        """
        if not block_size_m > 0:
            raise ValueError(f"block_size_m must be positive, got {block_size_m}")
        if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"need 0 <= val_fraction, 0 < test_fraction, sum < 1; got {val_fraction}, {test_fraction}")
        x_min, y_min, x_max, y_max = (float(v) for v in extent)
        region = (x_min + tile_radius_m, y_min + tile_radius_m, x_max - tile_radius_m, y_max - tile_radius_m)
        width, height = region[2] - region[0], region[3] - region[1]
        size = f"{x_max - x_min:.0f} x {y_max - y_min:.0f} m"
        if width <= 0 or height <= 0:
            raise DataError(
                f"the map ({size}) is too small for tiles of {2 * tile_radius_m / math.sqrt(2):.0f} m: a tile of "
                f"any rotation needs {tile_radius_m:.1f} m of map around its centre; use a larger map or smaller tiles"
            )
        cols = max(1, round(width / block_size_m))
        rows = max(1, round(height / block_size_m))
        n = rows * cols
        n_test = max(1, round(test_fraction * n))
        n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
        if n - n_test - n_val < 1:
            raise DataError(
                f"the map ({size}, tile centres in {width:.0f} x {height:.0f} m) holds only {n} block(s) of "
                f"~{block_size_m:g} m, too few for a train, {'val, ' if n_val else ''}and test split; use a larger "
                f"map, smaller blocks (block_size_m) or smaller tiles"
            )
        order = np.random.default_rng([seed, 7]).permutation(n)
        assignment = np.zeros(n, np.int8)
        held_out = _spread_pick(order, rows, cols, n_test + n_val)
        assignment[held_out[:n_test]] = SPLIT_CODES["test"]
        assignment[held_out[n_test:]] = SPLIT_CODES["val"]
        guard = tile_radius_m + 1.0 if guard_m is None else float(guard_m)
        test_guard = 2.0 * tile_radius_m + 1.0 if test_guard_m is None else float(test_guard_m)
        return cls(region=region, rows=rows, cols=cols, assignment=assignment.reshape(rows, cols), guard_m=guard,
                   test_guard_m=test_guard)

    # -- geometry ----------------------------------------------------------------------------------------------
    @property
    def block_width_m(self) -> float:
        return (self.region[2] - self.region[0]) / self.cols

    @property
    def block_height_m(self) -> float:
        return (self.region[3] - self.region[1]) / self.rows

    def rects(self, split: str) -> np.ndarray:
        """``(R, 4)`` float64 rectangles ``(x0, y0, x1, y1)`` metres of the blocks of ``split``."""
        code = SPLIT_CODES[split]
        rows, cols = np.nonzero(self.assignment == code)
        x0 = self.region[0] + cols * self.block_width_m
        y0 = self.region[1] + rows * self.block_height_m
        return np.stack([x0, y0, x0 + self.block_width_m, y0 + self.block_height_m], axis=1).astype(np.float64)

    def split_of(self, xy: np.ndarray) -> np.ndarray:
        """``(N,)`` int8 split code of the block holding each point of ``(N, 2)``; ``-1`` outside the region."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        col = np.floor((xy[:, 0] - self.region[0]) / self.block_width_m).astype(np.int64)
        row = np.floor((xy[:, 1] - self.region[1]) / self.block_height_m).astype(np.int64)
        inside = (
            (xy[:, 0] >= self.region[0]) & (xy[:, 0] <= self.region[2])
            & (xy[:, 1] >= self.region[1]) & (xy[:, 1] <= self.region[3])
        )
        col = np.clip(col, 0, self.cols - 1)
        row = np.clip(row, 0, self.rows - 1)
        return np.where(inside, self.assignment[row, col], -1).astype(np.int8)

    def _guarded_against(self, split: str) -> tuple[tuple[str, float], ...]:
        test = max(self.test_guard_m, self.guard_m)
        return {"train": (("val", self.guard_m), ("test", test)), "val": (("test", test),), "test": ()}[split]

    def allowed(self, xy: np.ndarray, split: str) -> np.ndarray:
        """``(N,)`` bool: may a tile of ``split`` be centred at each point of ``(N, 2)`` metres?

        True when the point is in a block of ``split`` and far enough from the blocks of the splits it is
        guarded against (``train``: :attr:`guard_m` from val blocks, :attr:`test_guard_m` from test blocks;
        ``val``: :attr:`test_guard_m` from test blocks).
        """
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        ok = self.split_of(xy) == SPLIT_CODES[split]
        for other, guard in self._guarded_against(split):
            ok &= _rect_distance(xy, self.rects(other)) >= guard
        return ok

    def candidates(self, split: str, step_m: float, offset_m: float = 0.5) -> np.ndarray:
        """``(N, 2)`` float64 points of a grid of ``step_m`` metres (from ``region`` corner + ``offset_m *
        step_m``) where :meth:`allowed` holds for ``split``."""
        x0, y0, x1, y1 = self.region
        xs = np.arange(x0 + offset_m * step_m, x1, step_m)
        ys = np.arange(y0 + offset_m * step_m, y1, step_m)
        grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)
        return grid[self.allowed(grid, split)]

    def area_m2(self, split: str, step_m: float = 2.0) -> float:
        """Approximate area (m²) where tiles of ``split`` may be centred (counting a grid of ``step_m``)."""
        return float(len(self.candidates(split, step_m))) * step_m * step_m

    def describe(self) -> str:
        """One line: blocks, their size, and the counts per split."""
        counts = {s: int((self.assignment == c).sum()) for s, c in SPLIT_CODES.items()}
        return (
            f"{self.rows} x {self.cols} blocks of {self.block_width_m:.0f} x {self.block_height_m:.0f} m "
            f"(train {counts['train']}, val {counts['val']}, test {counts['test']}), guard {self.guard_m:.1f} m "
            f"(val), {max(self.test_guard_m, self.guard_m):.1f} m (test)"
        )


class LocationSampler:
    """Draws tile centres, positives and negatives inside one split (deterministic given a generator).

    Centres are drawn uniformly from a 1 m grid of allowed points (:meth:`BlockSplit.candidates`) with a
    uniform jitter of one cell, re-drawn until :meth:`BlockSplit.allowed` holds.

    Args:
        blocks: the block split.
        split: ``train``, ``val`` or ``test``.
        cell_m: grid cell of the candidate points in metres.

    Raises:
        DataError: the split has no room for a tile centre.
    """

    def __init__(self, blocks: BlockSplit, split: str, cell_m: float = 1.0) -> None:
        self.blocks = blocks
        self.split = split
        self.cell_m = float(cell_m)
        self.points = blocks.candidates(split, self.cell_m)
        if len(self.points) == 0:
            raise DataError(
                f"no room for a {split} tile centre: {blocks.describe()}; the guard band ({blocks.guard_m:.0f} m) "
                f"around held-out blocks leaves no training area. Use a larger map, larger blocks or smaller tiles"
            )

    def extent_m(self) -> float:
        """The diagonal (metres) of the bounding box of the allowed points (an upper bound on distances)."""
        lo, hi = self.points.min(0), self.points.max(0)
        return float(np.hypot(*(hi - lo)))

    def sample(self, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """``(n, 2)`` float64 allowed centres (metres)."""
        out = np.empty((n, 2))
        for k in range(n):
            for _ in range(1000):
                p = self.points[rng.integers(len(self.points))] + (rng.random(2) - 0.5) * self.cell_m
                if self.blocks.allowed(p[None], self.split)[0]:
                    break
            else:  # pragma: no cover - the grid points themselves are allowed
                p = self.points[rng.integers(len(self.points))]
            out[k] = p
        return out

    def sample_near(self, rng: np.random.Generator, center: np.ndarray, radius_m: float, tries: int = 50) -> np.ndarray:
        """``(2,)`` an allowed point uniformly in the disk of ``radius_m`` around ``center`` (``center`` itself
        when ``tries`` draws all fail)."""
        for _ in range(tries):
            r = radius_m * math.sqrt(rng.random())
            a = 2 * math.pi * rng.random()
            p = np.asarray(center, np.float64) + r * np.array([math.cos(a), math.sin(a)])
            if self.blocks.allowed(p[None], self.split)[0]:
                return p
        return np.asarray(center, np.float64).copy()

    def sample_far(self, rng: np.random.Generator, center: np.ndarray, min_distance_m: float) -> np.ndarray:
        """``(2,)`` an allowed point at least ``min_distance_m`` from ``center``.

        Raises:
            DataError: none found (the split is smaller than ``min_distance_m``).
        """
        center = np.asarray(center, np.float64)
        for _ in range(64):  # most of a large split is far: plain rejection first
            p = self.points[rng.integers(len(self.points))] + (rng.random(2) - 0.5) * self.cell_m
            if np.hypot(*(p - center)) >= min_distance_m and self.blocks.allowed(p[None], self.split)[0]:
                return p
        far = self.points[np.hypot(*(self.points - center).T) >= min_distance_m + self.cell_m]
        if len(far) == 0:
            raise DataError(
                f"the {self.split} area has no point {min_distance_m:g} m from ({center[0]:.0f}, {center[1]:.0f}); "
                f"the split is too small for the negative distance"
            )
        return far[rng.integers(len(far))].copy()

"""Reference indexes of Loc2Vec and of its baselines: descriptors of the reference tiles at several headings.

A query tile has an unknown heading; a reference grid location is indexed as ``H`` tiles, turned to the headings
``yaw = pi/2 + 2 pi h / H`` (``h = 0`` is north up), so that every query lies within ``180 / H`` degrees of one
indexed heading (``H = 1``: north up only). Row ``l * H + h`` of an index is location ``l`` at heading ``h``; a
search returns locations, ranked by their best heading (each location once).

Descriptors (all compared by inner product of unit vectors, i.e. by Euclidean distance):

* ``learned``: the Loc2Vec embedding (:class:`~maploc_loc2vec.model.Loc2VecNet`), ``D`` values.
* ``raw``: the raw tile area-reduced to ``px x px`` pixels per channel, zero-mean, unit norm (the tiny-image
  descriptor of Torralba, Fergus & Freeman, "80 million tiny images", TPAMI 2008, Sec. 3): ``K px^2`` values.
* ``raw_pca``: ``raw`` projected on its first ``D`` principal components (fitted on reference descriptors, no
  labels; Jolliffe, "Principal Component Analysis", 2002), then unit norm: the raw tile at the learned
  embedding's dimension, hence at the same index size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["heading_yaws", "raw_tile_descriptors", "Pca", "HeadingIndex", "dedupe_locations", "dedupe_scored"]

#: Heading of a north-up tile (``MapRaster.crop``: ``yaw = pi / 2`` puts north up).
NORTH_UP = math.pi / 2


def heading_yaws(headings: int) -> np.ndarray:
    """``(H,)`` float64 tile headings in radians: ``pi/2 + 2 pi h / H`` (``h = 0``: north up)."""
    if headings < 1:
        raise ValueError(f"headings must be >= 1, got {headings}")
    return NORTH_UP + 2.0 * math.pi * np.arange(headings) / headings


def raw_tile_descriptors(tiles: Tensor, size_px: int) -> Tensor:
    """The raw-tile descriptor: area-reduced raw tiles, zero-mean and unit-norm (tiny images, TPAMI 2008).

    Args:
        tiles: ``(N, K, S, S)`` binary tiles (any dtype).
        size_px: side of the reduced tiles in pixels.

    Returns:
        ``(N, K * size_px^2)`` float32 with unit L2 norm (all-zero rows for blank tiles).
    """
    x = F.interpolate(tiles.float(), size=(size_px, size_px), mode="area").flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return F.normalize(x, dim=1)


@attrs.frozen(kw_only=True, eq=False)
class Pca:
    """A PCA projection ``y = normalize((x - mean) @ components.T)`` (optionally whitened).

    Attributes:
        mean: ``(F,)`` float32.
        components: ``(D, F)`` float32 (rows: principal axes, divided by the standard deviations when whitened).
    """

    mean: np.ndarray
    components: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, dim: int, *, whiten: bool = False, max_samples: int = 20_000, seed: int = 0) -> Pca:
        """Fits on the rows of ``x`` ``(N, F)`` (a random subset of ``max_samples`` rows).

        Raises:
            ValueError: ``dim`` larger than ``min(N, F)``.
        """
        from sklearn.decomposition import PCA

        if not 1 <= dim <= min(x.shape):
            raise ValueError(f"cannot keep {dim} principal components of {x.shape[0]} x {x.shape[1]} descriptors")
        rng = np.random.default_rng(seed)
        rows = x if len(x) <= max_samples else x[rng.choice(len(x), max_samples, replace=False)]
        pca = PCA(n_components=dim, svd_solver="randomized", whiten=whiten, random_state=seed).fit(rows)
        comps = pca.components_
        if whiten:
            comps = comps / np.sqrt(pca.explained_variance_)[:, None]
        return cls(mean=pca.mean_.astype(np.float32), components=comps.astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(N, F)`` -> ``(N, D)`` float32 unit rows."""
        y = (np.asarray(x, np.float32) - self.mean) @ self.components.T
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    @property
    def nbytes(self) -> int:
        return int(self.mean.nbytes + self.components.nbytes)


def dedupe_locations(rows: np.ndarray, headings: int, k: int) -> list[list[int]]:
    """Ranked index rows ``(Q, M)`` (``-1`` = none) -> per query, the first ``k`` distinct locations ``row // H``."""
    return dedupe_scored(rows, np.zeros(np.shape(rows), np.float32), headings, k)[0]


def dedupe_scored(rows: np.ndarray, scores: np.ndarray, headings: int, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """Ranked index rows and their scores -> per query, the first ``k`` distinct locations with their scores.

    Args:
        rows: ``(Q, M)`` int index rows, best first (``-1`` = none, ends the list).
        scores: ``(Q, M)`` float scores of the rows (higher is better, non-increasing along a row).
        headings: H, rows per location (row ``l * H + h`` is location ``l``).
        k: locations kept per query.

    Returns:
        ``(locations, location_scores)``: per query up to ``k`` distinct locations ``row // H`` in rank order,
        and each location's score (that of its best-ranked row, i.e. its best heading).
    """
    locations, location_scores = [], []
    for ranked, values in zip(rows, scores):
        seen: dict[int, float] = {}
        for r, v in zip(ranked, values):
            if r < 0:
                break
            seen.setdefault(int(r) // headings, float(v))
            if len(seen) == k:
                break
        locations.append(list(seen))
        location_scores.append(list(seen.values()))
    return locations, location_scores


@attrs.define(kw_only=True, eq=False)
class HeadingIndex:
    """A faiss inner-product index of unit descriptors of reference locations at ``headings`` headings.

    Attributes:
        name: the method's key (``learned``, ``raw``, ...).
        label: a readable description for the report.
        headings: rows per location (row ``l * headings + h``).
        index: the ``faiss.IndexFlatIP``.
        describe: query tiles ``(Q, K, S, S)`` uint8 -> ``(Q, dim)`` float32 unit descriptors.
        model_bytes: bytes of what turns a tile into a descriptor besides the index (network weights, the PCA
            matrix; 0 for raw tiles).
    """

    name: str
    label: str
    headings: int
    index: object
    describe: Callable[[Tensor], np.ndarray]
    model_bytes: int = 0

    @classmethod
    def create(cls, name: str, label: str, headings: int, vectors: np.ndarray,
               describe: Callable[[Tensor], np.ndarray], model_bytes: int = 0) -> HeadingIndex:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(name=name, label=label, headings=headings, index=index, describe=describe, model_bytes=model_bytes)

    @property
    def dim(self) -> int:
        return int(self.index.d)  # type: ignore[attr-defined]

    @property
    def entries(self) -> int:
        return int(self.index.ntotal)  # type: ignore[attr-defined]

    @property
    def locations(self) -> int:
        return self.entries // self.headings

    @property
    def index_bytes(self) -> int:
        """Bytes of the stored vectors (float32)."""
        return self.entries * self.dim * 4

    def rank(self, descriptors: np.ndarray, k: int) -> tuple[list[list[int]], list[list[float]]]:
        """The ``k`` best locations (indices into the reference grid) of each query descriptor ``(Q, dim)`` and
        their scores (inner product of unit descriptors = cosine similarity at the location's best heading)."""
        k = min(k, self.locations)
        m = min(self.entries, k * self.headings)
        scores, rows = self.index.search(np.ascontiguousarray(descriptors, dtype=np.float32), m)  # type: ignore[attr-defined]
        return dedupe_scored(rows, scores, self.headings, k)

    def search(self, descriptors: np.ndarray, k: int) -> list[list[int]]:
        """The ``k`` best locations of each query descriptor ``(Q, dim)`` (:meth:`rank` without the scores)."""
        return self.rank(descriptors, k)[0]

    def query(self, tiles: Tensor, k: int) -> tuple[list[list[int]], float]:
        """Describes and searches query tiles; returns the ranked locations and the seconds per query."""
        found, _, seconds = self.query_ranked(tiles, k)
        return found, seconds

    def query_ranked(self, tiles: Tensor, k: int) -> tuple[list[list[int]], list[list[float]], float]:
        """Describes and searches query tiles ``(Q, K, S, S)``; returns the ranked locations, their scores
        (:meth:`rank`) and the seconds per query (descriptor + search)."""
        t0 = time.perf_counter()
        found, scores = self.rank(self.describe(tiles), k)
        return found, scores, (time.perf_counter() - t0) / max(1, len(tiles))


def render_at_headings(render: Callable[[np.ndarray], np.ndarray], xy: np.ndarray, yaws: Sequence[float]) -> np.ndarray:
    """Tiles of locations ``xy`` ``(N, 2)`` at each heading: ``(N * H, K, S, S)``, row ``l * H + h``."""
    h = len(yaws)
    poses = np.empty((len(xy) * h, 3))
    poses[:, :2] = np.repeat(np.asarray(xy, np.float64), h, axis=0)
    poses[:, 2] = np.tile(np.asarray(yaws, np.float64), len(xy))
    return render(poses)


def rows_at_heading(n_locations: int, headings: int, h: int = 0) -> np.ndarray:
    """Row numbers of heading ``h`` of every location."""
    return np.arange(n_locations) * headings + h


def as_tensor(tiles: np.ndarray | Tensor) -> Tensor:
    return tiles if isinstance(tiles, Tensor) else torch.from_numpy(np.ascontiguousarray(tiles))

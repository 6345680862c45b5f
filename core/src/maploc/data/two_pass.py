"""Two-traversal place-recognition sets: a reference pass (the map) and a query pass, with the
ground truth given as frame indices rather than metric poses.

This module holds the generic ``two-pass`` layout and the base class shared by the Gardens Point
(:mod:`maploc.data.gardens_point`) and Nordland (:mod:`maploc.data.nordland`) readers.

Ground truth reaches the evaluation in two ways (samples carry no metric pose):

* every query :class:`~maploc.types.Sample` has ``extras["true_map_indices"]`` (the reference
  indices that show the same place); ``condition`` is the traversal's name;
* every map sample's metadata is a :class:`PlaceMeta` whose ``matching_queries`` holds the names of
  the queries that show its place. :func:`maploc.evaluation.evaluate` reads it (the runner hands the
  evaluation only :class:`~maploc.api.SampleMeta` of the queries, without ``extras``).

``timestamp`` is the frame index within its traversal.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import attrs

from maploc.api import Dataset, SampleMeta
from maploc.data import io
from maploc.data.layouts import expected_layout
from maploc.errors import DataError
from maploc.types import Camera, Sample

__all__ = ["PlaceMeta", "PlaceRecognitionDataset", "TwoPass", "read_ground_truth", "aligned_truth"]


@attrs.frozen(kw_only=True, eq=False)
class PlaceMeta(SampleMeta):
    """:class:`~maploc.api.SampleMeta` of a reference frame with index-based ground truth.

    Attributes:
        matching_queries: names of the query samples that show this reference frame's place.
    """

    matching_queries: frozenset[str] = frozenset()


def read_ground_truth(path: Path, num_queries: int, num_refs: int) -> list[tuple[int, ...]]:
    """Reads ``ground_truth.csv``: header ``query,matching_refs``, then one row per query,
    ``<query index>,<space-separated reference indices>`` (0-based; the list may be empty).

    Args:
        path: the CSV file.
        num_queries / num_refs: the sizes of the query and reference traversals (for range checks).

    Returns:
        for each query index ``0..num_queries-1``, the sorted tuple of its true reference indices
        (queries absent from the file have none).

    Raises:
        DataError: if the file is missing or unreadable, the header is wrong, or a row is malformed,
            repeated or out of range (naming the file and line).
    """
    if not path.is_file():
        raise DataError(f"{path}: ground truth file not found (expected 'query,matching_refs' rows)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text ({exc})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip() for c in rows[0]] != ["query", "matching_refs"]:
        raise DataError(f"{path}, line 1: expected the header 'query,matching_refs'")
    truth: list[tuple[int, ...] | None] = [None] * num_queries
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise DataError(f"{path}, line {lineno}: expected 2 fields 'query,matching_refs', got {len(row)}")
        try:
            q = int(row[0])
            refs = tuple(sorted(int(t) for t in row[1].split()))
        except ValueError:
            raise DataError(f"{path}, line {lineno}: indices must be integers, got {','.join(row)!r}") from None
        if not 0 <= q < num_queries:
            raise DataError(f"{path}, line {lineno}: query index {q} outside 0..{num_queries - 1}")
        if truth[q] is not None:
            raise DataError(f"{path}, line {lineno}: query {q} is listed twice")
        bad = [r for r in refs if not 0 <= r < num_refs]
        if bad:
            raise DataError(f"{path}, line {lineno}: reference index {bad[0]} outside 0..{num_refs - 1}")
        truth[q] = refs
    return [t if t is not None else () for t in truth]


def aligned_truth(num_queries: int, num_refs: int, frame_tolerance: int) -> list[tuple[int, ...]]:
    """Ground truth of frame-aligned traversals: query ``i`` matches references ``i - k .. i + k``."""
    return [tuple(range(max(0, i - frame_tolerance), min(num_refs, i + frame_tolerance + 1)))
            for i in range(num_queries)]


#: The layout a two-pass root holds (said in its errors; README section "two-pass layout").
LAYOUT = ("<root>/ref/ and <root>/query/ of images (sorted by file name) and <root>/ground_truth.csv "
          "(header 'query,matching_refs'); the names are the options data.ref_folder, data.query_folder and "
          "data.ground_truth")


class PlaceRecognitionDataset(Dataset):
    """Base of the two-traversal readers: subclasses set ``_ref_files``, ``_query_files``,
    ``_truth`` (query index -> reference indices), ``_ref_condition`` and ``_query_condition`` in
    ``__init__`` (through :meth:`_setup`).

    Splits: ``map`` = the reference traversal, ``query`` = the query traversal, ``train`` = the
    reference traversal again (these real sets are for evaluation: training a method on the
    reference pass and evaluating it on the query pass is the DeepSeqSLAM protocol, never train on
    the queries).

    Samples: ``image`` RGB in [0, 1]; a nominal pinhole camera (focal = image width, the true
    intrinsics are unknown); no metric pose; ``name`` ``<condition>/<file stem>``; ``sequence`` =
    the traversal's condition name; ``timestamp`` = frame index; ``extras``: ``condition``,
    ``frame_index``, ``path`` and, for queries, ``true_map_indices``.
    """

    splits: ClassVar[tuple[str, ...]] = ("train", "map", "query")
    _ref_files: list[Path]
    _query_files: list[Path]
    _truth: list[tuple[int, ...]]
    _ref_condition: str
    _query_condition: str

    def _setup(self, ref_files: list[Path], query_files: list[Path], truth: Sequence[tuple[int, ...]],
               ref_condition: str, query_condition: str) -> None:
        if not ref_files:
            raise DataError(f"{self.root}: the reference traversal ({ref_condition}) has no images")
        if not query_files:
            raise DataError(f"{self.root}: the query traversal ({query_condition}) has no images")
        self._ref_files, self._query_files = ref_files, query_files
        self._truth = list(truth)
        self._ref_condition, self._query_condition = ref_condition, query_condition
        self._query_names = [self._name(query_condition, p) for p in query_files]
        matching: list[set[str]] = [set() for _ in ref_files]
        for q, refs in enumerate(self._truth):
            for r in refs:
                matching[r].add(self._query_names[q])
        self._matching = [frozenset(m) for m in matching]

    @staticmethod
    def _name(condition: str, path: Path) -> str:
        return f"{condition}/{path.stem}"

    @property
    def _is_query(self) -> bool:
        return self.split == "query"

    @property
    def _files(self) -> list[Path]:
        return self._query_files if self._is_query else self._ref_files

    @property
    def condition(self) -> str:
        """The condition (traversal folder) of this split."""
        return self._query_condition if self._is_query else self._ref_condition

    @property
    def true_map_indices(self) -> list[tuple[int, ...]]:
        """For each query index, the reference indices showing the same place."""
        return list(self._truth)

    def __len__(self) -> int:
        return len(self._files)

    def metadata(self, index: int) -> SampleMeta:
        """Name, sequence (condition) and timestamp (frame index); map samples are
        :class:`PlaceMeta` with ``matching_queries``. Reads no image."""
        path = self._files[index]
        name = self._name(self.condition, path)
        if self._is_query:
            return SampleMeta(name=name, sequence=self.condition, timestamp=float(index), condition=self.condition)
        return PlaceMeta(name=name, sequence=self.condition, timestamp=float(index), condition=self.condition,
                         matching_queries=self._matching[index])

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        path = self._files[index]
        image = io.read_image(path)
        H, W = image.shape[:2]
        extras: dict[str, object] = {"frame_index": index, "path": str(path)}
        if self._is_query:
            extras["true_map_indices"] = self._truth[index]
        return io.make_sample(
            image, Camera.from_focal(float(W), W, H), T_cam2world=None, image_height=self.image_height,
            name=self._name(self.condition, path), sequence=self.condition, timestamp=float(index),
            extras=extras,
        )

    def validate(self, progress: Callable[[int], None] | None = None) -> None:
        """Decodes every image of this split (they are small); raises DataError naming the file."""
        for i, path in enumerate(self._files):
            io.read_image(path)
            if progress is not None:
                progress(i + 1)


@attrs.frozen(kw_only=True)
class TwoPassOptions:
    """Options of the ``two-pass`` dataset.

    Attributes:
        ref_folder: the reference traversal's folder under the root.
        query_folder: the query traversal's folder under the root.
        ground_truth: the ground-truth CSV under the root.
    """

    ref_folder: str = "ref"
    query_folder: str = "query"
    ground_truth: str = "ground_truth.csv"


class TwoPass(PlaceRecognitionDataset):
    """The generic two-pass layout (e.g. the corridor set of Milford, "Vision-based place
    recognition: how low can you go?", IJRR 2013)::

        root/ref/<frames>.jpg|png     reference traversal (the map), sorted by file name
        root/query/<frames>.jpg|png   query traversal, sorted by file name
        root/ground_truth.csv         header 'query,matching_refs'; rows '<q>,<r1> <r2> ...'

    See :class:`PlaceRecognitionDataset` for splits and samples.

    Raises:
        DataError: if a folder is missing or empty, ``ground_truth.csv`` is missing or malformed
            (naming the file and line), or (when read) an image cannot be decoded (naming it).
    """

    name: ClassVar[str] = "two-pass"
    Options: ClassVar[type] = TwoPassOptions

    def __init__(self, root: Path, split: str, *, image_height: int | None = None,
                 options: TwoPassOptions | None = None) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        o = self.options
        with expected_layout(self.name, LAYOUT):
            ref = io.list_files(self.root / o.ref_folder, io.IMAGE_EXTENSIONS)
            query = io.list_files(self.root / o.query_folder, io.IMAGE_EXTENSIONS)
            truth = read_ground_truth(self.root / o.ground_truth, len(query), len(ref))
            self._setup(ref, query, truth, o.ref_folder, o.query_folder)

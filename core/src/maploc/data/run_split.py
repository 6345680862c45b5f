"""A run's spatial split over its map frames, saved as ``RUN/split.json``: the part every learned method that
holds places out of training shares (netvlad, mobilenetvlad, deepseqslam, and third-party plugins).

* :func:`build_map_split` builds the core's :class:`~maploc.data.split.SpatialSplit` from the **map** split's
  positions (``SpatialSplit.from_points``; a position is :func:`positions`: ``pose2`` x, y, else the camera
  centre's x, y, metres, map frame). Two methods given the same map frames and the same options get the same
  split (:meth:`SpatialSplit.to_dict` equal), so ``maploc bench`` scores them on the same queries.
* :func:`save_split` writes it as ``RUN/split.json``, which the core's scoring reads
  (:func:`maploc.evaluation.scoring.score_run` scores only the queries inside its test blocks);
  :func:`load_split` reads it back (``maploc eval --checkpoint`` carries a training run's split to the new run).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError, DataError
from maploc.files import atomic_write_text

__all__ = ["SPLIT_FILE", "positions", "build_map_split", "map_split_of", "save_split", "load_split", "load_split_file"]

#: The file the core reads in a run folder.
SPLIT_FILE = "split.json"


def positions(metas: Sequence[Any]) -> np.ndarray:
    """``(N, 2)`` float64 map positions (metres; NaN where a sample has neither ``pose2`` nor ``T_cam2world``) of
    samples or sample metadata, as the core scores them (:func:`maploc.evaluation.scoring.query_xy`)."""
    from maploc.evaluation.scoring import query_xy

    return np.array([query_xy(m) for m in metas], dtype=np.float64).reshape(-1, 2)


def build_map_split(
    map_metas: Sequence[Any], *, block_size_m: float, success_radius_m: float, footprint_m: float = 0.0,
    val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0, guard_m: float | None = None,
) -> SpatialSplit | None:
    """The split of a run from its map frames (``None`` when ``block_size_m <= 0``: no split).

    Args:
        map_metas: the map split's samples or metadata (their positions fix the region and the occupied blocks).
        block_size_m: target block side, metres.
        success_radius_m: the largest distance (metres) at which any table the run enters counts a match.
        footprint_m, val_fraction, test_fraction, seed, guard_m: as :meth:`SpatialSplit.from_points`.

    Raises:
        DataError: a map frame has no position (names it), or too few occupied blocks for a train, val and
            test split (the core's message names the sizes).
        ConfigError: ``guard_m`` below ``success_radius_m + footprint_m``, fractions out of range.
    """
    if block_size_m <= 0:
        return None
    xy = positions(map_metas)
    bad = np.flatnonzero(~np.isfinite(xy).all(axis=1))
    if bad.size:
        raise DataError(f"map frame {map_metas[int(bad[0])].name!r} has no position (pose2 or T_cam2world): the "
                        "spatial split needs one for every map frame; set split.block_size_m=0 for data without poses")
    return SpatialSplit.from_points(
        xy, block_size_m=block_size_m, success_radius_m=success_radius_m, footprint_m=footprint_m,
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, guard_m=guard_m,
    )


def map_split_of(train_data: Any) -> Any:
    """The ``map`` split of the dataset ``train_data`` belongs to (same class, root, image height and options).

    Raises:
        ConfigError: the dataset cannot open its map split that way.
    """
    try:
        return type(train_data)(train_data.root, "map", image_height=train_data.image_height,
                                options=train_data.options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"the spatial split needs the map split of {train_data!r} ({e}); set "
                          "split.block_size_m=0 to train without one") from None


def save_split(split: SpatialSplit, run_dir: str | Path | None) -> Path | None:
    """Writes ``run_dir/split.json`` atomically (nothing without a run folder); returns its path."""
    if run_dir is None:
        return None
    path = Path(run_dir) / SPLIT_FILE
    atomic_write_text(path, json.dumps(split.to_dict()) + "\n")
    return path


def load_split_file(path: str | Path) -> SpatialSplit:
    """The :class:`~maploc.data.split.SpatialSplit` saved in ``path`` (a run's ``split.json``).

    Raises:
        DataError: the file is missing or is not a saved split (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} not found (a run's split.json)")
    try:
        return SpatialSplit.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError, DataError) as e:
        raise DataError(f"{path}: not a saved spatial split ({e})") from None


def load_split(run_dir: str | Path | None) -> SpatialSplit | None:
    """The split saved in ``run_dir`` (``None`` without a run folder or without ``split.json``).

    Raises:
        DataError: ``split.json`` exists but is not a saved split (names the file).
    """
    if run_dir is None or not (Path(run_dir) / SPLIT_FILE).is_file():
        return None
    return load_split_file(Path(run_dir) / SPLIT_FILE)

"""The spatial split of ``netvlad`` and ``mobilenetvlad``: the core's :class:`~maploc.data.split.SpatialSplit` over
the map frames' positions, saved as ``RUN/split.json`` so that the core scores only the queries in test blocks.

Rules (see :class:`maploc_netvlad.config.SplitConfig` for the options and :mod:`maploc.data.split` for the
geometry):

* the split is built from the **map** split's positions (``SpatialSplit.from_points``; a position is
  :func:`maploc.evaluation.scoring.query_xy`: ``pose2`` x, y, else the camera centre's x, y, metres, map frame), with
  ``success_radius_m`` = the largest distance threshold the run reports (:func:`success_radius_m`);
* a training image (of the training split and, with ``split.other_sequences``, of the query split) is used only where
  ``split.allowed(xy, "train")``: it keeps at least ``success_radius_m + footprint_m`` from every test block, hence
  from every scored query, so no image that was trained on is a correct answer (a positive) of a scored query;
* ``maploc eval --checkpoint RUN/checkpoints/X.ckpt`` saves the split of ``RUN`` again in its own folder (the split
  the weights were trained with), so that it scores the same queries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maploc.api import Dataset
from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError, DataError
from maploc.evaluation.scoring import query_xy
from maploc.files import atomic_write_text

__all__ = ["SPLIT_FILE", "success_radius_m", "positions", "build_split", "map_split_of", "save_split", "load_split"]

log = logging.getLogger(__name__)

#: the file the core reads in a run folder
SPLIT_FILE = "split.json"


def success_radius_m(config: Any) -> float:
    """The largest distance (metres) at which the run counts a retrieved map image as correct:
    ``max(eval.distance_threshold_m, eval.fine_threshold_m)``."""
    ev = config.eval
    return float(max(ev.distance_threshold_m, ev.fine_threshold_m))


def positions(metas: Sequence[Any]) -> np.ndarray:
    """``(N, 2)`` float64 map positions (metres; NaN where a sample has neither ``pose2`` nor ``T_cam2world``) of
    samples or sample metadata, as the core scores them (:func:`maploc.evaluation.scoring.query_xy`)."""
    return np.array([query_xy(m) for m in metas], dtype=np.float64).reshape(-1, 2)


def build_split(map_metas: Sequence[Any], config: Any) -> SpatialSplit | None:
    """The split of a run from its map frames (``None`` when ``config.split.block_size_m == 0``).

    Args:
        map_metas: the map split's samples or metadata (their positions fix the region and the occupied blocks).
        config: the method's config (``split`` and ``eval`` sections).

    Returns:
        The split, or ``None`` (no split: every training image is used and every query is scored).

    Raises:
        DataError: a map frame has no position, or the map holds too few occupied blocks for a train, val and test
            split (the core's message names the sizes; lower ``split.block_size_m``).
        ConfigError: ``split.guard_m`` below the success radius + footprint, or fractions out of range (the core's
            checks).
    """
    sc = config.split
    if sc.block_size_m <= 0:
        return None
    xy = positions(map_metas)
    bad = np.flatnonzero(~np.isfinite(xy).all(axis=1))
    if bad.size:
        raise DataError(f"map frame {map_metas[int(bad[0])].name!r} has no position (pose2 or T_cam2world): the "
                        "spatial split needs one for every map frame; set split.block_size_m=0 for data without poses")
    return SpatialSplit.from_points(
        xy, block_size_m=sc.block_size_m, success_radius_m=success_radius_m(config), footprint_m=sc.footprint_m,
        val_fraction=sc.val_fraction, test_fraction=sc.test_fraction, seed=sc.seed, guard_m=sc.guard_m,
    )


def map_split_of(train_data: Dataset) -> Dataset:
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


def save_split(split: SpatialSplit, run_dir: Path | None) -> Path | None:
    """Writes ``run_dir/split.json`` atomically (nothing without a run folder); returns its path."""
    if run_dir is None:
        return None
    path = Path(run_dir) / SPLIT_FILE
    atomic_write_text(path, json.dumps(split.to_dict()) + "\n")
    return path


def load_split(run_dir: Path | None) -> SpatialSplit | None:
    """The split saved in ``run_dir`` (``None`` without a run folder or without ``split.json``).

    Raises:
        DataError: ``split.json`` exists but is not a saved split (names the file).
    """
    if run_dir is None or not (Path(run_dir) / SPLIT_FILE).is_file():
        return None
    path = Path(run_dir) / SPLIT_FILE
    try:
        return SpatialSplit.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, DataError) as e:
        raise DataError(f"{path}: not a saved spatial split ({e})") from None

"""The spatial split of ``netvlad`` and ``mobilenetvlad``: the core's :class:`~maploc.data.split.SpatialSplit` over
the map frames' positions, saved as ``RUN/split.json`` so that the core scores only the queries in test blocks.

Rules (see :class:`maploc_netvlad.config.SplitConfig` for the options and :mod:`maploc.data.split` for the
geometry):

* the split is built from the **map** split's positions (``SpatialSplit.from_points``; a position is
  :func:`maploc.evaluation.scoring.query_xy`: ``pose2`` x, y, else the camera centre's x, y, metres, map frame), with
  ``success_radius_m`` = the largest distance threshold the run reports (:func:`success_radius_m`);
* a training image (of the training split and, with ``split.other_sequences``, of the query split) is used only where
  ``split.allowed(xy, "train", outside=True)`` (in a train block, or beyond the map frames' region, as extra training routes are): it keeps at least ``success_radius_m + footprint_m`` from every test block, hence
  from every scored query, so no image that was trained on is a correct answer (a positive) of a scored query;
* ``maploc eval --checkpoint RUN/checkpoints/X.ckpt`` saves the split of ``RUN`` again in its own folder (the split
  the weights were trained with), so that it scores the same queries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from maploc.data.run_split import SPLIT_FILE, build_map_split, load_split, map_split_of, positions, save_split
from maploc.data.split import SpatialSplit

__all__ = ["SPLIT_FILE", "success_radius_m", "positions", "build_split", "map_split_of", "save_split", "load_split"]

log = logging.getLogger(__name__)

# SPLIT_FILE, positions, map_split_of, save_split and load_split are the core's (maploc.data.run_split), shared
# with deepseqslam; they are re-exported here for the plugin's modules and tests.


def success_radius_m(config: Any) -> float:
    """The largest distance (metres) at which the run counts a retrieved map image as correct:
    ``max(eval.distance_threshold_m, eval.fine_threshold_m)``."""
    ev = config.eval
    return float(max(ev.distance_threshold_m, ev.fine_threshold_m))


def build_split(map_metas: Sequence[Any], config: Any) -> SpatialSplit | None:
    """The split of a run from its map frames (``None`` when ``config.split.block_size_m == 0``):
    :func:`maploc.data.run_split.build_map_split` with the ``split`` section and :func:`success_radius_m`.

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
    return build_map_split(map_metas, block_size_m=sc.block_size_m, success_radius_m=success_radius_m(config),
                           footprint_m=sc.footprint_m, val_fraction=sc.val_fraction, test_fraction=sc.test_fraction,
                           seed=sc.seed, guard_m=sc.guard_m)

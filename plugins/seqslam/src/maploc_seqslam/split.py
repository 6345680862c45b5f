"""The spatial split of ``deepseqslam``: the core's :class:`~maploc.data.split.SpatialSplit` over the map frames'
positions, saved as ``RUN/split.json`` so that the core scores only the queries in test blocks.

It is the split ``netvlad`` and ``mobilenetvlad`` build (``maploc_netvlad.split.build_split``) with the same
options: for the same map frames both give the same :meth:`SpatialSplit.to_dict`, so the methods are scored on the
same queries. Rules:

* the split is built from the **map** split's positions (``SpatialSplit.from_points``; a position is
  :func:`maploc.evaluation.scoring.query_xy`: ``pose2`` x, y, else the camera centre's x, y, metres, map frame), with
  ``success_radius_m`` = :attr:`SplitConfig.success_radius_m` (25 m: the largest distance the place-recognition
  tables score, netvlad's ``eval.distance_threshold_m``);
* a training frame is used only where ``split.allowed(xy, "train", outside=True)`` (in a train block, or beyond the map frames' region, as extra training routes are): it keeps at least ``success_radius_m +
  footprint_m`` from every test block, hence from every scored query, so no frame that was trained on is a correct
  answer (a positive) of a scored query at any threshold up to ``success_radius_m``;
* ``maploc eval --checkpoint RUN/checkpoints/X.ckpt`` saves the split of ``RUN`` again in its own folder (the split
  the weights were trained with), so that it scores the same queries.

numpy and the core only (no plugin is imported).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from maploc.config import at_least, greater_than, in_range
from maploc.data.run_split import SPLIT_FILE, build_map_split, load_split, map_split_of, positions, save_split
from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError

__all__ = ["SPLIT_FILE", "SplitConfig", "positions", "build_split", "map_split_of", "save_split", "load_split"]

# SPLIT_FILE, positions, map_split_of, save_split and load_split are the core's (maploc.data.run_split), shared
# with netvlad; they are re-exported here for the plugin's modules and tests.


@attrs.frozen(kw_only=True)
class SplitConfig:
    """The spatial train / val / test split (the core's :class:`maploc.data.split.SpatialSplit`, built in
    :func:`build_split`); the fields and defaults of ``netvlad``'s ``split`` section (less ``other_sequences``:
    DeepSeqSLAM trains on the reference traversal only), plus the success radius the guard protects.

    Attributes:
        block_size_m: target block side in metres; ``0`` = no split: train on the whole reference traversal,
            classify its frames (the paper's evaluation) and score every query. The default (60 m) gives sim-city's
            default route (100 frames, 4 m apart) 5 blocks: 1 test, 1 val, 3 train.
        footprint_m: metres added to the guard around a training frame's position (``0``: the ground truth is the
            camera position).
        guard_m: metres every training position keeps from every test (and val) block; ``None`` = success radius
            + ``footprint_m``, the smallest allowed (a smaller value is a ``ConfigError`` of the core's split).
        val_fraction: share of the occupied blocks held out for validation (never trained on); in ``[0, 1)``.
        test_fraction: share of the occupied blocks held out for testing; in ``(0, 1)``.
        seed: seed of the block assignment (fixed, independent of the run's ``--seed``).
        success_radius_m: the largest distance (metres) at which any compared table counts a match as correct;
            25 m = the place-recognition tables' largest threshold (netvlad's ``eval.distance_threshold_m``), which
            makes the split identical to netvlad's. Must be at least this method's ``eval.distance_threshold_m``.
    """

    block_size_m: float = attrs.field(default=60.0, validator=at_least(0))
    footprint_m: float = attrs.field(default=0.0, validator=at_least(0))
    guard_m: float | None = None
    val_fraction: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0))
    test_fraction: float = attrs.field(default=0.2, validator=in_range(0.0, 1.0))
    seed: int = 0
    success_radius_m: float = attrs.field(default=25.0, validator=greater_than(0))


def build_split(map_metas: Sequence[Any], split: SplitConfig, distance_threshold_m: float) -> SpatialSplit | None:
    """The split of a run from its map frames (``None`` when ``split.block_size_m == 0``):
    :func:`maploc.data.run_split.build_map_split` with the ``split`` section.

    Args:
        map_metas: the map split's samples or metadata (their positions fix the region and the occupied blocks).
        split: the ``split`` section.
        distance_threshold_m: the method's own success radius (``eval.distance_threshold_m``), checked against
            ``split.success_radius_m``.

    Returns:
        The split, or ``None`` (no split).

    Raises:
        ConfigError: ``split.success_radius_m`` below ``distance_threshold_m`` (the guard would not protect the
            scored radius), ``split.guard_m`` below the success radius + footprint, fractions out of range.
        DataError: a map frame has no position, or too few occupied blocks for a train, val and test split.
    """
    if split.block_size_m <= 0:
        return None
    if split.success_radius_m < distance_threshold_m:
        raise ConfigError(f"split.success_radius_m ({split.success_radius_m:g}) is below eval.distance_threshold_m "
                          f"({distance_threshold_m:g}): the guard must cover the scored radius")
    return build_map_split(map_metas, block_size_m=split.block_size_m, success_radius_m=split.success_radius_m,
                           footprint_m=split.footprint_m, val_fraction=split.val_fraction,
                           test_fraction=split.test_fraction, seed=split.seed, guard_m=split.guard_m)

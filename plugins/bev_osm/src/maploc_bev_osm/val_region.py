"""Scores a ``bev_osm`` run on its **validation** blocks: the same predictions files, the core's scoring, the
queries inside the val blocks of the run's ``split.json`` instead of the test blocks::

    python -m maploc_bev_osm.val_region runs/bev-main            # writes runs/bev-main/val_region/report.txt

No training view reaches a val block either (the split keeps every training footprint ``val_guard_m`` away), so
these figures are held out as the test figures are; they are the ones to choose settings on, leaving the test
blocks for the final figures. It works for any run folder with a ``split.json`` and ``predictions/`` (``maploc
evaluate`` re-scoring, with a split whose val blocks are relabelled ``test`` and whose test blocks ``train``);
the report's "test blocks" are then the run's val blocks, as its first line says.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["val_split", "score_val_region"]


def val_split(split: Any) -> Any:
    """The :class:`maploc.data.split.SpatialSplit` whose ``test`` blocks are ``split``'s val blocks (its test blocks
    become ``train``, so that only val-block queries are scored)."""
    import attrs
    import numpy as np

    from maploc.data.split import SPLIT_CODES

    a = np.asarray(split.assignment)
    relabelled = np.where(a == SPLIT_CODES["val"], SPLIT_CODES["test"], SPLIT_CODES["train"]).astype(np.int8)
    return attrs.evolve(split, assignment=relabelled)


def score_val_region(run_dir: str | Path, out: str | Path | None = None, say: Any = print) -> Any:
    """Re-scores the predictions of ``run_dir`` on the queries inside its val blocks.

    Args:
        run_dir: a run folder holding ``config.yaml``, ``split.json`` and ``predictions/``.
        out: where ``metrics.json``, ``report.txt`` ... go (default ``run_dir / "val_region"``).
        say: progress messages.

    Returns:
        The core's :class:`maploc.engine.runner.RunResult` (metrics of the val-block queries).

    Raises:
        maploc.errors.ConfigError: the run has no ``split.json`` (``split.held_out=false``).
        maploc.errors.DataError: no query lies in a val block.
    """
    from maploc.data.split import SpatialSplit
    from maploc.engine.runner import evaluate_predictions
    from maploc.errors import ConfigError

    run_dir = Path(run_dir)
    if not (run_dir / "split.json").is_file():
        raise ConfigError(f"{run_dir} has no split.json (a run with split.held_out=false has no val blocks)")
    split = SpatialSplit.from_dict(json.loads((run_dir / "split.json").read_text(encoding="utf-8")))
    target = Path(out) if out is not None else run_dir / "val_region"
    with tempfile.TemporaryDirectory(prefix="bev_osm-val-") as tmp:
        copy = Path(tmp)
        shutil.copy2(run_dir / "config.yaml", copy / "config.yaml")
        shutil.copytree(run_dir / "predictions", copy / "predictions")
        (copy / "split.json").write_text(json.dumps(val_split(split).to_dict()) + "\n", encoding="utf-8")
        result = evaluate_predictions(run_dir=copy, out=target, say=say)
    note = (f"Val-region scoring of {run_dir} (python -m maploc_bev_osm.val_region): the 'test blocks' named below "
            f"are the run's val blocks.\n\n")
    (target / "report.txt").write_text(note + (target / "report.txt").read_text(encoding="utf-8"), encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m maploc_bev_osm.val_region", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, help="default: RUN/val_region")
    args = p.parse_args(argv)
    from maploc.errors import MaplocError

    try:
        score_val_region(args.run_dir, args.out, say=lambda s: None)
    except MaplocError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((Path(args.out or args.run_dir / "val_region") / "report.txt").read_text(encoding="utf-8"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scores a ``bev_osm`` run on its **validation** blocks: the same predictions files, the core's scoring, the
queries inside the val blocks of the run's ``split.json`` instead of the test blocks::

    python -m maploc_bev_osm.val_region runs/bev-main            # writes runs/bev-main/val_region/report.txt

It is ``maploc evaluate RUN --region val`` (the core's, for every method with a ``split.json``), kept under this
name for the commands in this plugin's README. No training view reaches a val block either (the split keeps every
training footprint ``val_guard_m`` away), so these figures are held out as the test figures are; they are the ones
to choose settings on, leaving the test blocks for the final figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["score_val_region"]


def score_val_region(run_dir: str | Path, out: str | Path | None = None, say: Any = print) -> Any:
    """Re-scores the predictions of ``run_dir`` on the queries inside its val blocks
    (:func:`maploc.engine.runner.evaluate_predictions` with ``region="val"``).

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
    from maploc.engine.runner import evaluate_predictions
    from maploc.errors import ConfigError

    run_dir = Path(run_dir)
    if not (run_dir / "split.json").is_file():
        raise ConfigError(f"{run_dir} has no split.json (a run with split.held_out=false has no val blocks)")
    return evaluate_predictions(run_dir=run_dir, out=Path(out) if out is not None else None, region="val", say=say)


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

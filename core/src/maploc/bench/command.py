"""``maploc bench``: the command's body (the parser's options are in :mod:`maploc.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from maploc.errors import ConfigError

__all__ = ["cmd_bench"]


def cmd_bench(args: argparse.Namespace) -> int:
    """Lists the shipped suites (``--list``) or runs one. Exit status: 0 all runs scored, 1 some run
    failed (the others are in the reports), 2 a bad suite (raised as a :class:`MaplocError`)."""
    from maploc.bench.runner import run_suite
    from maploc.bench.suite import find_suite, list_suites

    if args.list:
        for name, origin, description in list_suites():
            print(f"{name:<20} {origin:<20} {description}")
        return 0
    if not args.suite:
        raise ConfigError("maploc bench needs a SUITE (a shipped suite's name or a YAML file; see maploc bench --list)")
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: one per core), got {args.threads}")
    suite = find_suite(args.suite)
    out = Path(args.out) if args.out is not None else Path("bench") / suite.name
    if getattr(args, "dry_run", False):
        from maploc.bench.runner import is_reusable, resolve_job
        from maploc.bench.suite import plan_jobs

        planned, skipped = plan_jobs(suite, seeds=args.seeds, skip_missing=args.skip_missing, resolve=resolve_job)
        for i, (job, expected) in enumerate(planned, 1):
            state = "reuse" if is_reusable(out / "runs" / job.key, expected) else "run"
            extra = f" -p {job.preset}" if job.preset != "default" else ""
            extra += "".join(f" -o {o}" for o in job.overrides)
            print(f"[{i}/{len(planned)}] {state}: {job.method} on {job.dataset} ({job.key}), seed {job.seed}{extra}")
        for line in skipped:
            print(f"skipped: {line}")
        print(f"{len(planned)} jobs checked; nothing was run (--dry-run)")
        return 0
    if args.threads:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    region = getattr(args, "region", "test")
    result = run_suite(suite, out, seeds=args.seeds, skip_missing=args.skip_missing, device=args.device,
                       region=region, score_only=getattr(args, "score_only", False))
    pages = out if region == "test" else out / region
    print(f"{len(result.records)} runs scored ({region} blocks), {len(result.failed)} failed, "
          f"{len(result.skipped)} skipped; {pages / 'report.md'}, {pages / 'index.html'}, {pages / 'results.csv'}")
    for line in result.skipped:
        print(f"skipped: {line}")
    for line in result.failed:
        print(f"failed: {line}")
    return 1 if result.failed else 0

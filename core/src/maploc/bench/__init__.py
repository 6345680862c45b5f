"""``maploc bench``: run a suite of methods x datasets x seeds through the core's runner, score every run
from its predictions files, and write one cross-method table and page (see ``docs/bench.md``).

* :mod:`maploc.bench.suite`: suite files, shipped suites (``maploc.bench_suites`` entry points), jobs;
* :mod:`maploc.bench.runner`: checking, running or reusing, scoring;
* :mod:`maploc.bench.report`: ``results.csv``, ``report.md``, ``index.html``.
"""

from maploc.bench.report import Record, mean_spread, write_reports
from maploc.bench.runner import BenchResult, is_reusable, resolve_job, run_suite
from maploc.bench.suite import Job, Suite, find_suite, list_suites, load_suite, plan_jobs

__all__ = ["BenchResult", "Job", "Record", "Suite", "find_suite", "is_reusable", "list_suites", "load_suite",
           "mean_spread", "plan_jobs", "resolve_job", "run_suite", "write_reports"]

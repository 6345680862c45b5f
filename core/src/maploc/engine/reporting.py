"""The localize-and-score stage of a run and what it prints: the stage lines, the report's headline and tables.

:func:`localize_and_evaluate` localizes the queries, writes ``predictions/``, scores them from those files (as
``maploc evaluate RUN`` does), writes ``metrics.json``, ``results.csv``, the plots and ``report.txt``.
:func:`report_text` is the printed report: per condition one table (method, variants, baselines, reference
rows), above them one headline saying which row and which queries ``metrics.json``'s top-level keys are; the
flat list of every key stays in ``metrics.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from maploc.api import SampleMeta
from maploc.config import DataConfig
from maploc.errors import MaplocError
from maploc.files import atomic_write_text

__all__ = ["RESULTS_TITLE", "evaluation_setup", "headline", "localize_and_evaluate", "report_text"]

#: The title of the report's first section (the tables).
RESULTS_TITLE = "Results (scored from predictions/; the full list is in metrics.json)"
#: How many of the family's table columns the headline repeats (after the counts ``num_*``).
HEADLINE_METRICS = 2


def evaluation_setup(method_config: Any) -> tuple[tuple[float, ...], int | None]:
    """The distance thresholds (primary first) and the frame tolerance a method's config asks for:
    ``eval.distance_threshold_m`` (default 25 m), ``eval.fine_threshold_m`` when it has one, and
    ``eval.frame_tolerance``."""
    ev = getattr(method_config, "eval", None)
    thresholds = [float(getattr(ev, "distance_threshold_m", 25.0))]
    fine = getattr(ev, "fine_threshold_m", None)
    if fine is not None and float(fine) not in thresholds:
        thresholds.append(float(fine))
    tolerance = getattr(ev, "frame_tolerance", None)
    return tuple(thresholds), None if tolerance is None else int(tolerance)


def _number(value: float) -> str:
    v = float(value)
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def headline(method_name: str, family: str, metrics: Mapping[str, float]) -> str:
    """One line: which row and which queries ``metrics.json``'s top-level keys are, with the family's first
    table metrics, and how the other rows' and the conditions' keys are named.

    Example: ``headline (metrics.json's top-level keys): seqslam, all 300 scored queries: recall_at_1 42.7,
    pr_auc 0.39; other rows are '<row>:<key>' (chance, single_frame); conditions '<condition>/<key>' (day, night)``.

    Args:
        method_name: the method's row (its own predictions).
        family: the metric family (picks the metrics shown, :data:`maploc.evaluation.scoring.HEADLINE`).
        metrics: the run's flat metrics (``metrics.json``).
    """
    from maploc.evaluation.scoring import HEADLINE

    columns = [c for c in HEADLINE.get(family, ()) if not c.startswith("num_") and c in metrics][:HEADLINE_METRICS]
    n = metrics.get("num_queries")
    queries = f"all {int(n)} scored queries" if n is not None else "all scored queries"
    shown = ", ".join(f"{c} {_number(metrics[c])}" for c in columns)
    rows = sorted({k.split(":", 1)[0] for k in metrics if ":" in k})
    conditions = sorted({k.split("/", 1)[0] for k in metrics if "/" in k and ":" not in k.split("/", 1)[0]})
    text = f"headline (metrics.json's top-level keys): {method_name}, {queries}" + (f": {shown}" if shown else "")
    if rows:
        text += f"; other rows are '<row>:<key>' ({', '.join(rows)})"
    if conditions:
        text += f"; conditions '<condition>/<key>' ({', '.join(conditions)})"
    return text


def report_text(method_name: str, family: str, scored: Any, method_sections: Sequence[tuple[str, str]], pm: Any,
                run_dir: Path) -> str:
    """The report (printed and ``report.txt``): the headline and the tables, then the method's sections and the
    hook plugins' (``maploc_report_sections``)."""
    sections = [(RESULTS_TITLE, headline(method_name, family, scored.metrics) + "\n" + scored.tables)]
    sections.extend(method_sections)
    if pm is not None:
        for group in pm.hook.maploc_report_sections(run_dir=run_dir, metrics=scored.metrics, method_name=method_name):
            sections.extend(group or [])
    return "\n\n".join(f"== {title} ==\n{body}" for title, body in sections)


def localize_and_evaluate(
    method: Any, map_data: Any, query_data: Any, data_cfg: DataConfig, run_dir: Path, pm: Any, progress: bool,
    context: Any, dataset_name: str, say: Callable[[str], None] = print,
) -> tuple[dict[str, float], str]:
    """Localizes the queries (at most ``data.max_queries``), writes ``predictions/``, scores them from those files,
    writes the report files and plots; says each stage. Returns ``(metrics, report text)``.

    Raises:
        MaplocError: ``localize`` returned another number of estimates than queries.
    """
    from tqdm.auto import tqdm

    from maploc.evaluation import write_report
    from maploc.evaluation.scoring import Manifest, score_run, write_run_predictions

    n = len(query_data)
    if data_cfg.max_queries is not None:
        n = min(n, data_cfg.max_queries)
    estimates: list[Any] = []
    metas: list[Any] = []
    batch_size = max(1, int(method.localize_batch_size))
    say(f"Localizing {n} queries ...")
    bar = tqdm(total=n, desc=f"localize {method.name}", unit="query", disable=not progress, dynamic_ncols=True)
    for start in range(0, n, batch_size):
        batch = [query_data[i] for i in range(start, min(n, start + batch_size))]
        t0 = time.perf_counter()
        out = method.localize(batch, context)
        elapsed = (time.perf_counter() - t0) / len(batch)
        if len(out) != len(batch):
            raise MaplocError(f"{method.name}.localize returned {len(out)} estimates for {len(batch)} queries")
        estimates.extend(e if e.seconds > 0 else attrs.evolve(e, seconds=elapsed) for e in out)
        metas.extend(SampleMeta.of(q) for q in batch)
        bar.update(len(batch))
    bar.close()

    thresholds, tolerance = evaluation_setup(method.config)
    map_meta = [map_data.metadata(i) for i in range(len(map_data))]
    variants = dict(method.variants(metas, estimates, context) or {})
    say(f"Scoring {n} queries ({method.metric_family}; {1 + len(variants)} predictions file"
        f"{'s' if variants else ''}), writing the report and plots ...")
    manifest = Manifest(family=method.metric_family, method=method.name, dataset=dataset_name, num_queries=n,
                        distance_thresholds_m=thresholds, frame_tolerance=tolerance)
    write_run_predictions(run_dir / "predictions", manifest, [q.name for q in metas], [m.name for m in map_meta],
                          estimates, variants)
    # the metrics come from the files just written, as `maploc evaluate RUN` computes them
    scored = score_run(run_dir / "predictions", metas, map_meta, run_dir=run_dir)
    metrics = scored.metrics
    write_report(run_dir, scored.evaluation_result(), method.metric_family, f"{method.name} on {type(query_data).__name__}")
    method.plots(run_dir, query_data, estimates)
    report = report_text(method.name, method.metric_family, scored, method.report_sections(run_dir, metrics) or [],
                         pm, run_dir)
    atomic_write_text(run_dir / "report.txt", report + "\n")
    return metrics, report

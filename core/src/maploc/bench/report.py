"""The bench's outputs: ``results.csv`` (one row per dataset x condition x method/row x seed),
``report.md`` (one table per dataset x condition x metric family: rows = methods, their variants and
baselines, then the reference rows; mean ± spread over seeds) and ``index.html`` (the same tables and
the overlaid recall curves per condition, inline SVG, viewable offline).

Spread: the sample standard deviation over seeds (``ddof = 1``); shown only with two seeds or more.
A metric that is not finite in some seed (e.g. ``median_translation_cm = inf`` when most queries
failed) is averaged over the seeds where it is finite, and ``inf`` when it is in none.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from maploc.bench.suite import Job, Suite
from maploc.files import atomic_write_text

__all__ = ["Record", "split_metrics", "mean_spread", "format_cell", "write_reports", "RECALL_CURVES"]

#: The metrics drawn as one recall curve per row, per family (x: the threshold, left to right).
RECALL_CURVES: dict[str, tuple[str, ...]] = {
    "pose6dof": ("recall_5cm_1deg", "recall_5cm_5deg", "recall_25cm_2deg", "recall_50cm_5deg", "recall_1m_5deg",
                 "recall_5m_10deg"),
    "se2": ("recall_1m", "recall_3m", "recall_5m"),
    "retrieval": ("recall_at_1", "recall_at_5", "recall_at_10", "recall_at_20"),
    "sequence": ("recall_at_1", "recall_at_100_precision", "pr_auc"),
}

ALL = "all"  # the condition name of the metrics over every scored query
#: title suffix and first paragraph of a report scored on the validation blocks (``maploc bench --region val``)
VAL_NOTE = ("validation blocks",
            "Scored on the VALIDATION blocks of each spatial split (queries no run trained on, held apart from the test "
            "blocks): the figures to choose settings and defaults on. The published figures are the test-block report "
            "one folder up.")

#: The columns of a second match radius, by prefix, per family (``recall_at_1_within_10m``).
_WITHIN = {"retrieval": ("recall_at_1_within_", "recall_at_5_within_"), "sequence": ("recall_at_1_within_",)}


def _within_order(key: str) -> tuple[float, str]:
    """Radius first, then R@1 before R@5."""
    try:
        return float(key.rsplit("_within_", 1)[1].rstrip("m")), key
    except ValueError:
        return math.inf, key


@attrs.frozen
class Record:
    """One scored run: its job, metric family, flat metrics (``metrics.json``'s names), the manifest's
    variants (``name -> {"baseline": bool, ...}``) and run folder."""

    job: Job
    family: str
    metrics: dict[str, float]
    variants: dict[str, dict[str, Any]]
    run_dir: Path


def split_metrics(metrics: Mapping[str, float], method: str) -> dict[tuple[str, str], dict[str, float]]:
    """``{(row, condition): {metric: value}}`` from flat metric names ``[row:][condition/]metric``;
    the method's own row is ``method``, the condition over all queries ``all``."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        row, _, rest = key.rpartition(":") if ":" in key else ("", "", key)
        condition, _, metric = rest.rpartition("/") if "/" in rest else (ALL, "", rest)
        out.setdefault((row or method, condition), {})[metric] = value
    return out


def row_kind(row: str, method: str, variants: Mapping[str, Mapping[str, Any]]) -> str:
    """``method``, ``baseline``, ``variant`` or ``reference`` (chance, prior, coverage)."""
    from maploc.evaluation.scoring import REFERENCE_ROWS

    if row == method:
        return "method"
    if row in REFERENCE_ROWS:
        return "reference"
    return "baseline" if (variants.get(row) or {}).get("baseline") else "variant"


def mean_spread(values: Sequence[float]) -> tuple[float, float | None, int]:
    """``(mean, spread, n)`` of the finite values: spread is the sample standard deviation (ddof 1),
    ``None`` for fewer than two; ``(inf, None, 0)`` when there are values but none finite, ``(nan, None, 0)``
    for none."""
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return (math.inf if any(isinstance(v, (int, float)) and math.isinf(v) for v in values) else math.nan), None, 0
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, None, 1
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return mean, math.sqrt(var), len(finite)


def format_cell(values: Sequence[float], *, spread: bool = True) -> str:
    """``mean ± spread`` (``mean`` alone for one seed or ``spread=False``, ``-`` for none), 4 significant digits."""
    mean, sd, _ = mean_spread(values)
    if math.isnan(mean):
        return "-"
    if sd is not None and sd <= 1e-9 * max(1.0, abs(mean)):
        sd = 0.0  # equal in every seed up to rounding
    text = f"{mean:.4g}"
    return text if sd is None or not spread else f"{text} ± {sd:.2g}"


def _long_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        for (row, condition), metrics in split_metrics(r.metrics, r.job.method).items():
            rows.append({"dataset": r.job.dataset_label, "condition": condition, "family": r.family,
                         "method": r.job.method_label, "row": row,
                         "kind": row_kind(row, r.job.method, r.variants), "seed": r.job.seed,
                         "run_dir": str(r.run_dir), **metrics})
    return rows


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    fixed = ["dataset", "condition", "family", "method", "row", "kind", "seed", "run_dir"]
    extra = sorted({k for r in rows for k in r} - set(fixed))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fixed + extra, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def tables(records: Sequence[Record]) -> list[tuple[str, str, str, list[str], list[tuple[str, list[str]]],
                                                  dict[str, list[float]]]]:
    """One table per dataset x condition x family, in suite order: ``(dataset, condition, family,
    columns, [(row label, seeds, [cell, ...])], {row label: [mean of each RECALL_CURVES metric]})``.

    Rows: each method followed by its variants and baselines (``method: row``), then the reference rows;
    a reference row equal in every method is shown once (``chance``), else per method (``chance [m]``).
    """
    from maploc.evaluation.scoring import HEADLINE

    long = _long_rows(records)
    keys: list[tuple[str, str, str]] = []
    for r in long:
        k = (r["dataset"], r["condition"], r["family"])
        if k not in keys:
            keys.append(k)
    first: dict[str, int] = {}
    for k in keys:
        first.setdefault(k[0], len(first))
    keys.sort(key=lambda k: (first[k[0]], k[1] != ALL, k[1], k[2]))
    out = []
    for dataset, condition, family in keys:
        rows = [r for r in long if (r["dataset"], r["condition"], r["family"]) == (dataset, condition, family)]
        columns = [c for c in HEADLINE.get(family, ()) if any(c in r for r in rows)]
        # a second match radius (retrieval, sequence): R@1 (and R@5 for retrieval) within it
        columns += sorted({k for r in rows for k in r if k.startswith(_WITHIN[family])}, key=_within_order) \
            if family in _WITHIN else []
        groups: dict[str, list[dict[str, Any]]] = {}
        method_order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
        for r in sorted(rows, key=lambda r: (r["kind"] == "reference", method_order[r["method"]], r["kind"] != "method")):
            if r["kind"] == "reference":
                label = r["row"]
            elif r["kind"] == "method":
                label = r["method"]
            else:
                label = f"{r['method']}: {r['row']}" + (" (baseline)" if r["kind"] == "baseline" else "")
            groups.setdefault(label if r["kind"] != "reference" else f"\0{label}\0{r['method']}", []).append(r)
        final: dict[str, list[dict[str, Any]]] = {}
        refs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for label, rs in groups.items():
            if label.startswith("\0"):
                _, name, method = label.split("\0")
                refs.setdefault(name, {})[method] = rs
            else:
                final[label] = rs
        for name, per_method in refs.items():
            cells = {m: [format_cell([r.get(c, math.nan) for r in rs], spread=False) for c in columns]
                     for m, rs in per_method.items()}
            if len({tuple(v) for v in cells.values()}) == 1:
                final[name] = next(iter(per_method.values()))
            else:
                for m, rs in per_method.items():
                    final[f"{name} [{m}]"] = rs
        body = [(label, len(rs), [format_cell([r.get(c, math.nan) for r in rs], spread=not c.startswith("num_")) for c in columns]) for label, rs in final.items()]
        curves = {label: [mean_spread([r.get(c, math.nan) for r in rs])[0] for c in RECALL_CURVES.get(family, ())]
                  for label, rs in final.items()}
        out.append((dataset, condition, family, columns, body, curves))
    return out


def _markdown(suite: Suite, tabs: Sequence[Any], skipped: Sequence[str],
              failed: Sequence[str], region: str = "test") -> str:
    lines = [f"# Bench `{suite.name}`" + (f" — {VAL_NOTE[0]}" if region == "val" else ""), ""]
    if region == "val":
        lines += [VAL_NOTE[1], ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += ["Values: mean ± sample standard deviation over seeds (ddof 1) when a row has several seeds; recall in "
              "percent. Reference rows (chance, admissible_chance, prior, coverage) are computed by the core from the "
              "ground truth.", ""]
    from maploc.bench.suite import dataset_scoring

    radii = {label: rule.distance_thresholds_m for label, rule in dataset_scoring(suite).items()}
    for dataset, condition, family, columns, body, _ in tabs:
        lines += [f"## {dataset} — {'all queries' if condition == ALL else 'condition ' + condition} ({family})", ""]
        if family in _WITHIN and radii.get(dataset):
            lines += [f"A match: a map sample within {radii[dataset][0]:g} m of the query (`recall_at_N`), or within the "
                      "radius in the column's name (`..._within_<d>m`).", ""]
        lines += ["| row | seeds | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
        for label, n, cells in body:
            lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    if skipped:
        lines += ["## Skipped", ""] + [f"- {s}" for s in skipped] + [""]
    if failed:
        lines += ["## Failed", ""] + [f"- {s}" for s in failed] + [""]
    return "\n".join(lines)


def _svg(family: str, curves: Mapping[str, list[float]], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.scoring import REFERENCE_ROWS

    names = RECALL_CURVES.get(family, ())
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, ys in curves.items():
        if not ys or all(not math.isfinite(y) for y in ys):
            continue
        style = "--" if label.split(" [")[0] in REFERENCE_ROWS else "-"
        ax.plot(range(len(ys)), ys, style, marker="o", label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("recall_", "").replace("at_", "@") for n in names], rotation=20, fontsize=8)
    ax.set_ylabel("percent")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _html(suite: Suite, tabs: Sequence[Any], skipped: Sequence[str], failed: Sequence[str],
          region: str = "test") -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>maploc bench {e(suite.name)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}</style>",
             f"</head><body><h1>maploc bench <code>{e(suite.name)}</code>"
             + (f" — {e(VAL_NOTE[0])}</h1><p><b>{e(VAL_NOTE[1])}</b></p>" if region == "val" else "</h1>")
             + f"<p>{e(suite.description)}</p>",
             "<p>Values: mean ± sample standard deviation over seeds; recall in percent.</p>"]
    for dataset, condition, family, columns, body, curves in tabs:
        title = f"{dataset} — {'all queries' if condition == ALL else 'condition ' + condition} ({family})"
        parts.append(f"<h2>{e(title)}</h2><table><tr><th>row</th><th>seeds</th>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
        for label, n, cells in body:
            parts.append(f"<tr><td>{e(label)}</td><td>{n}</td>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
        if RECALL_CURVES.get(family):
            parts.append(_svg(family, curves, title))
    for name, items in (("Skipped", skipped), ("Failed", failed)):
        if items:
            parts.append(f"<h2>{name}</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in items) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_reports(suite: Suite, out: Path, records: Sequence[Record], *, skipped: Sequence[str] = (),
                  failed: Sequence[str] = (), region: str = "test") -> None:
    """Writes ``out/results.csv``, ``out/report.md`` and ``out/index.html`` from ``records`` (scored on the
    spatial splits' ``region`` blocks: ``test``, or ``val``, which the pages name as validation figures)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "results.csv", _long_rows(records))
    tabs = tables(records)
    atomic_write_text(out / "report.md", _markdown(suite, tabs, skipped, failed, region))
    atomic_write_text(out / "index.html", _html(suite, tabs, skipped, failed, region))

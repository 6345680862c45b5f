"""What SeqSLAM and DeepSeqSLAM share: the evaluation config, their estimates and the plots.

Both methods return, per query, ``PoseEstimate.retrieval``: the top-5 map indices, best first,
with scores (higher is better); the first is the match and ``confidence`` its score. The
single-frame matcher (``ds = 1``) is the ``single_frame`` baseline (:class:`maploc.api.Variant`);
the core scores both per query condition beside the exact chance level (``maploc evaluate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from maploc.config import at_least, greater_than
from maploc.types import PoseEstimate, Retrieval

__all__ = ["EvalConfig", "SINGLE_FRAME", "estimate", "pr_curves", "plot_pr_curves", "plot_difference_matrix",
           "example_pairs", "plot_examples"]

#: The name of the single-frame (``ds = 1``) baseline's predictions (``RUN/predictions/single_frame.txt``).
SINGLE_FRAME = "single_frame"


@attrs.frozen(kw_only=True)
class EvalConfig:
    """Evaluation settings.

    Attributes:
        distance_threshold_m: a map frame within this distance (metres) of the query is a true
            match (datasets with poses; index ground truth is used where the dataset has it).
        plot_max_queries: the difference-matrix plot keeps at most this many query rows.
        plot_max_refs: ... and is skipped when the map has more frames than this.
        examples: matched query/reference pairs shown in the examples figure.
    """

    distance_threshold_m: float = attrs.field(default=10.0, validator=greater_than(0))
    plot_max_queries: int = attrs.field(default=600, validator=at_least(1))
    plot_max_refs: int = attrs.field(default=4000, validator=at_least(1))
    examples: int = attrs.field(default=4, validator=at_least(0))


def estimate(result: Any, b: int, seconds: float, **extras: Any) -> PoseEstimate:
    """Query ``b``'s :class:`~maploc.types.PoseEstimate` of a
    :class:`~maploc_seqslam.search.SearchResult`: the ranked references ``topk[b]`` (map indices,
    best first) with their scores ``topk_scores[b]`` (higher is better); the first is the match and
    ``confidence`` its score (the ``sequence`` family's convention). ``extras``: scalar CSV columns."""
    indices = [int(j) for j in result.topk[b]]
    scores = [float(v) for v in result.topk_scores[b]]
    return PoseEstimate(success=True, confidence=scores[0], seconds=seconds,
                        retrieval=Retrieval(indices=indices, scores=scores), extras=extras)


def pr_curves(
    map_metas: Sequence[Any], query_metas: Sequence[Any], rows: Mapping[str, Sequence[PoseEstimate]],
    distance_threshold_m: float,
) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Precision-recall curves of every row (the method, its ``single_frame`` baseline) per query
    condition, scored by the core (:func:`maploc.evaluation.evaluate`, ``sequence`` family: the
    ground truth and the curves of ``metrics.json``), plus ``all`` when there are several conditions.

    Args:
        map_metas: the map split's metadata, in order.
        query_metas: the evaluated queries' metadata (``condition`` set), in order.
        rows: ``row name -> estimates`` in query order.
        distance_threshold_m: see :class:`EvalConfig`.

    Returns:
        ``(row, condition) -> {"precision", "recall"}`` (fractions).
    """
    from maploc.evaluation import evaluate

    groups: dict[str, list[int]] = {}
    for i, q in enumerate(query_metas):
        groups.setdefault(str(q.condition), []).append(i)
    if len(groups) > 1:
        groups = {"all": list(range(len(query_metas))), **groups}
    curves: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for row, estimates in rows.items():
        for condition, idx in groups.items():
            result = evaluate("sequence", [query_metas[i] for i in idx], [estimates[i] for i in idx],
                              map_samples=map_metas, distance_threshold_m=distance_threshold_m)
            curves[(row, condition)] = {"precision": result.curves["precision"], "recall": result.curves["recall"]}
    return curves


def plot_pr_curves(run_dir: Path, curves: Mapping[tuple[str, str], Mapping[str, np.ndarray]], main_row: str,
                   title: str) -> Path:
    """PR curves per condition (solid: the method's row ``main_row``, dashed: the others, e.g. the
    single-frame baseline); writes ``pr_curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for (row, condition), c in curves.items():
        ax.plot(c["recall"], c["precision"], "-" if row == main_row else "--", label=f"{condition} ({row})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7)
    path = run_dir / "pr_curves.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_difference_matrix(
    run_dir: Path, raw: np.ndarray | None, enhanced: np.ndarray, truth: np.ndarray, matches: np.ndarray,
    title: str, filename: str = "difference_matrix.png",
) -> Path:
    """Difference matrix (queries x references) raw and enhanced, with the ground truth (outline)
    and the matches (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    panels = [("raw difference", raw), ("enhanced", enhanced)] if raw is not None else [("scores", enhanced)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    qi, rj = np.nonzero(truth)
    for ax, (label, data) in zip(axes[0], panels):
        ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.scatter(rj, qi, s=0.5, c="white", alpha=0.25, label="ground truth")
        ok = truth[np.arange(len(matches)), matches]
        ax.scatter(matches[ok], np.flatnonzero(ok), s=3, c="lime", label="match (correct)")
        ax.scatter(matches[~ok], np.flatnonzero(~ok), s=3, c="red", label="match (wrong)")
        ax.set_xlabel("reference frame")
        ax.set_ylabel("query frame")
        ax.set_title(f"{title}: {label}")
    axes[0][-1].legend(fontsize=6, loc="lower right")
    path = run_dir / filename
    save_figure(fig, path)
    plt.close(fig)
    return path


def example_pairs(
    queries: Any, map_data: Any, map_metas: Sequence[Any], estimates: Sequence[PoseEstimate],
    distance_threshold_m: float, count: int,
) -> list[tuple[np.ndarray, np.ndarray, str, bool]]:
    """``count`` queries spread over the run and their matches, for :func:`plot_examples`.

    A match is right when it is a true match of the query by the core's ground truth
    (:func:`maploc.evaluation.evaluate.truth_matrix`: within ``distance_threshold_m`` metres, or the dataset's
    index ground truth), the rule the scores use.

    Returns:
        ``(query image (H, W, 3), matched map image (H, W, 3), caption, right)`` per example.
    """
    from maploc.evaluation.evaluate import truth_matrix

    pairs: list[tuple[np.ndarray, np.ndarray, str, bool]] = []
    if not count or not estimates:
        return pairs
    for i in np.linspace(0, len(estimates) - 1, num=min(count, len(estimates))).astype(int):
        e = estimates[int(i)]
        if e.retrieval is None or not len(e.retrieval):
            continue
        j = int(e.retrieval.indices[0])
        right = bool(truth_matrix([queries.metadata(int(i))], map_metas, distance_threshold_m)[0, j])
        q, r = queries[int(i)], map_data[j]
        caption = f"{q.name} -> {map_metas[j].name} (confidence {e.confidence:.2f})"
        pairs.append((q.image.permute(1, 2, 0).numpy(), r.image.permute(1, 2, 0).numpy(), caption, right))
    return pairs


def plot_examples(
    run_dir: Path, pairs: Sequence[tuple[Any, ...]], distance_threshold_m: float | None = None
) -> Path | None:
    """Query / matched reference images side by side, each match framed green (right) or red (wrong).

    Args:
        run_dir: writes ``examples.png`` here.
        pairs: ``(query (H, W, 3), ref, caption)`` or ``(query, ref, caption, right)`` (see :func:`example_pairs`);
            without ``right`` the match is not marked.
        distance_threshold_m: the success radius said in the title (``None``: not said).

    Returns:
        The path, or ``None`` for no pairs.
    """
    if not pairs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    fig, axes = plt.subplots(len(pairs), 2, figsize=(6, 2.2 * len(pairs)), squeeze=False)
    for row, pair in zip(axes, pairs):
        q, r, caption = pair[:3]
        right = pair[3] if len(pair) > 3 else None
        row[0].imshow(q)
        row[1].imshow(r)
        if right is not None:
            caption = f"{'RIGHT' if right else 'WRONG'}: {caption}"
            for spine in row[1].spines.values():
                spine.set_edgecolor("green" if right else "red")
                spine.set_linewidth(4)
        row[0].set_title(caption, fontsize=7, loc="left", color="black" if right is None else
                         ("darkgreen" if right else "darkred"))  # fmt: skip
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    title = "query (left) and its match (right)"
    if distance_threshold_m is not None:
        title += f"; green: a true match (within {distance_threshold_m:g} m), red: wrong"
    fig.suptitle(title, fontsize=8)
    path = run_dir / "examples.png"
    save_figure(fig, path)
    plt.close(fig)
    return path

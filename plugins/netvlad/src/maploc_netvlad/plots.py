"""Plots of the retrieval methods, from the estimates and the core's ground truth
(:func:`maploc.evaluation.truth_matrix`), over the queries the core scores (those in test blocks when the
run has a spatial split):

* ``recall_at_n_conditions.png``: recall@N within ``eval.distance_threshold_m`` per condition: the method (solid),
  the ``thumbnails`` baseline (dashed) and the exact chance level of a random ranking (dotted;
  :func:`maploc.evaluation.reference.random_ranking_recall`). (The core's ``recall_at_n.png`` has all queries.)
* ``top5_example.png``: a query and its top-5 (correct ones framed green, wrong red).
* ``descriptor_pca.png``: PCA of map and query descriptors coloured by place (when the map was encoded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maploc.api import Dataset

__all__ = ["retrieval_plots", "recall_curve", "recall_title"]

#: recall@N is plotted for N = 1 .. MAX_N
MAX_N = 20


def recall_curve(ranked: list[tuple[int, ...]], truth: np.ndarray, max_n: int) -> np.ndarray:
    """``(max_n,)`` recall@N for N = 1..max_n in percent of the queries: a query counts when one of its first N map
    indices is correct.

    Args:
        ranked: per query, map indices best first (any length, possibly empty).
        truth: ``(Q, M)`` bool ground truth.
        max_n: the largest N.
    """
    q = len(ranked)
    if q == 0:
        return np.zeros(max_n)
    hits = np.zeros((q, max_n), dtype=bool)
    for i, r in enumerate(ranked):
        r = np.asarray(r[:max_n], dtype=np.int64)
        hits[i, : len(r)] = truth[i, r]
    return 100.0 * np.cumsum(hits, axis=1).clip(max=1).mean(axis=0)


def recall_title(method_name: str, num_queries: int, test_blocks: bool) -> str:
    """The title of ``recall_at_n_conditions.png``: which queries it shows (the subset the core's tables score)."""
    subset = "the test blocks' queries" if test_blocks else "every query"
    return (f"{method_name}: recall@N per condition, {num_queries} scored queries ({subset}, as in the report's "
            "condition tables; N = 1 is their recall_at_1)")


def _ranked(estimates: list[Any]) -> list[tuple[int, ...]]:
    return [e.retrieval.indices if e.success and e.retrieval is not None else () for e in estimates]


def retrieval_plots(method: Any, run_dir: Path, queries: Dataset) -> list[Path]:
    """Writes the plots listed in the module docstring into ``run_dir``; returns their paths (none before
    :meth:`~maploc_netvlad.retrieval.RetrievalMethod.variants` ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation import truth_matrix
    from maploc.evaluation.reference import random_ranking_recall
    from maploc.evaluation.report import save_figure

    from .split import positions

    if method.scored is None or not method.scored[0]:
        return []
    metas, own, thumbs = method.scored
    keep = np.ones(len(metas), dtype=bool)
    if method.split is not None:
        keep = np.asarray(method.split.mask(positions(metas), "test"), dtype=bool)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return []
    metas = [metas[i] for i in idx]
    own, thumbs = _ranked([own[i] for i in idx]), _ranked([thumbs[i] for i in idx])
    threshold = method.config.eval.distance_threshold_m
    truth = truth_matrix(metas, method.map_meta, threshold)
    conditions = [m.condition for m in metas]
    paths = []
    # 1. recall@N per condition
    fig, ax = plt.subplots(figsize=(6, 4))
    n = np.arange(1, MAX_N + 1)
    for j, c in enumerate(sorted(set(conditions))):
        mask = np.array([x == c for x in conditions])
        color = f"C{j % 10}"
        sub = truth[mask]
        ax.plot(n, recall_curve([own[i] for i in np.flatnonzero(mask)], sub, MAX_N), "-", color=color,
                label=f"{method.name} {c} ({int(mask.sum())} queries)")
        ax.plot(n, recall_curve([thumbs[i] for i in np.flatnonzero(mask)], sub, MAX_N), "--", color=color,
                label=f"thumbnails {c}")
        ax.plot(n, random_ranking_recall(sub.sum(axis=1), sub.shape[1], list(n)), ":", color=color,
                label=f"chance {c}")
    ax.set_xlabel("N (retrieved map images)")
    ax.set_ylabel(f"recall@N within {threshold:g} m (%)")
    ax.set_title(recall_title(method.name, len(metas), method.split is not None), fontsize=8)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    paths.append(save_figure(fig, run_dir / "recall_at_n_conditions.png"))
    # 2. a query and its top-5 (correct ones framed green, wrong red)
    if method.map_data is not None:
        qi = len(metas) // 2
        top = list(own[qi][:5])
        fig, axes = plt.subplots(1, 1 + len(top), figsize=(2.4 * (1 + len(top)), 2.4))
        axes = np.atleast_1d(axes)
        q = queries[int(idx[qi])]
        axes[0].imshow(q.image.permute(1, 2, 0).numpy())
        axes[0].set_title(f"query ({q.condition})\n{q.name}", fontsize=7)
        q_xy = positions([q])[0]
        for ax_, r in zip(axes[1:], top):
            s = method.map_data[r]
            ok = bool(truth[qi, r])
            ax_.imshow(s.image.permute(1, 2, 0).numpy())
            for spine in ax_.spines.values():
                spine.set_edgecolor("green" if ok else "red")
                spine.set_linewidth(4)
            dist = float(np.linalg.norm(positions([s])[0] - q_xy))
            ax_.set_title(f"{s.name}\n{dist:.1f} m" if np.isfinite(dist) else s.name, fontsize=7)
        for ax_ in axes:
            ax_.set_xticks([])
            ax_.set_yticks([])
        paths.append(save_figure(fig, run_dir / "top5_example.png"))
    # 3. PCA of map + query descriptors coloured by place (index of the nearest map image)
    if method.map_descriptors is not None and len(method.map_descriptors) >= 3:
        from sklearn.decomposition import PCA

        qd = np.stack([method.query_log[m.name]["descriptor"] for m in metas])
        x = np.concatenate([method.map_descriptors, qd])
        xy = PCA(n_components=2, random_state=0).fit_transform(x)
        m = len(method.map_descriptors)
        map_xy, q_xy = positions(method.map_meta), positions(metas)
        if np.isfinite(map_xy).all() and np.isfinite(q_xy).all():
            place_q = np.linalg.norm(q_xy[:, None] - map_xy[None], axis=2).argmin(axis=1)
        else:
            place_q = truth.argmax(axis=1)
        place = np.r_[np.arange(m), place_q]
        fig, ax = plt.subplots(figsize=(5, 4))
        sc = ax.scatter(xy[:m, 0], xy[:m, 1], c=place[:m], cmap="viridis", marker="o", s=12, label="map")
        ax.scatter(xy[m:, 0], xy[m:, 1], c=place[m:], cmap="viridis", marker="x", s=16, label="queries")
        fig.colorbar(sc, ax=ax, label="place (index of the nearest map image)")
        ax.set_title(f"PCA of {method.name} descriptors")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, run_dir / "descriptor_pca.png"))
    for fig_num in plt.get_fignums():
        plt.close(fig_num)
    return paths

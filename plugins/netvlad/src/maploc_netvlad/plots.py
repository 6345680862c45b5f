"""Plots of the retrieval methods: recall@N per condition, a query with its top-5, PCA of descriptors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maploc.api import Dataset
from maploc.types import PoseEstimate

from .report import NS, recall_curve

__all__ = ["retrieval_plots"]


def retrieval_plots(method: Any, run_dir: Path, queries: Dataset, estimates: Sequence[PoseEstimate]) -> list[Path]:
    """Writes ``recall_at_n.png``, ``top5_example.png`` and ``descriptor_pca.png``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    b = getattr(method, "breakdown", None)
    if b is None:
        return []
    cfg = method.config
    paths = []
    # 1. recall@N curves per condition (method solid, nn-retrieval dashed)
    fig, ax = plt.subplots(figsize=(6, 4))
    n = np.arange(1, max(NS) + 1)
    conds = sorted(set(b.conditions))
    for j, c in enumerate(conds):
        mask = np.array([x == c for x in b.conditions])
        color = f"C{j % 10}"
        for key, style in (("method", "-"), ("nn-retrieval", "--")):
            curve = recall_curve(b.ranked[key][mask], b.truth[cfg.eval.distance_threshold_m][mask], max(NS))
            ax.plot(n, curve, style, color=color, label=f"{method.name if key == 'method' else key} {c}")
    ax.set_xlabel("N (retrieved map images)")
    ax.set_ylabel(f"recall@N within {cfg.eval.distance_threshold_m:g} m (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(save_figure(fig, run_dir / "recall_at_n.png") or run_dir / "recall_at_n.png")
    plt.close(fig)
    # 2. a query and its top-5 (correct ones framed green, wrong red)
    if len(b.ranked["method"]) and method.map_data is not None:
        qi = len(b.ranked["method"]) // 2
        top = [int(r) for r in b.ranked["method"][qi, :5] if r >= 0]
        fig, axes = plt.subplots(1, 1 + len(top), figsize=(2.4 * (1 + len(top)), 2.4))
        axes = np.atleast_1d(axes)
        q = queries[qi]
        axes[0].imshow(q.image.permute(1, 2, 0).numpy())
        axes[0].set_title(f"query\n{q.name}", fontsize=7)
        for ax_, r in zip(axes[1:], top):
            s = method.map_data[r]
            ok = bool(b.truth[cfg.eval.distance_threshold_m][qi, r])
            ax_.imshow(s.image.permute(1, 2, 0).numpy())
            for spine in ax_.spines.values():
                spine.set_edgecolor("green" if ok else "red")
                spine.set_linewidth(4)
            ax_.set_title(f"{s.name}\n{b.distances[qi, r]:.1f} m" if np.isfinite(b.distances[qi, r]) else s.name,
                          fontsize=7)
        for ax_ in axes:
            ax_.set_xticks([])
            ax_.set_yticks([])
        paths.append(save_figure(fig, run_dir / "top5_example.png") or run_dir / "top5_example.png")
        plt.close(fig)
    # 3. PCA of map + query descriptors coloured by place (position along the map sequence)
    if method.map_descriptors is not None and len(method.query_log) and len(method.map_descriptors) >= 3:
        from sklearn.decomposition import PCA

        qd = np.stack([r["descriptor"] for r in method.query_log])
        x = np.concatenate([method.map_descriptors, qd])
        xy = PCA(n_components=2, random_state=0).fit_transform(x)
        m = len(method.map_descriptors)
        if b.distances.size and np.isfinite(b.distances).all():
            place_q = b.distances.argmin(axis=1)
        else:
            place_q = b.truth[cfg.eval.distance_threshold_m].argmax(axis=1)
        place = np.r_[np.arange(m), place_q[: len(qd)]]
        fig, ax = plt.subplots(figsize=(5, 4))
        sc = ax.scatter(xy[:m, 0], xy[:m, 1], c=place[:m], cmap="viridis", marker="o", s=12, label="map")
        ax.scatter(xy[m:, 0], xy[m:, 1], c=place[m:], cmap="viridis", marker="x", s=16, label="queries")
        fig.colorbar(sc, ax=ax, label="place (index of the nearest map image)")
        ax.set_title(f"PCA of {method.name} descriptors")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, run_dir / "descriptor_pca.png") or run_dir / "descriptor_pca.png")
        plt.close(fig)
    return paths

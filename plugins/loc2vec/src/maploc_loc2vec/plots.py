"""Plots of a ``loc2vec`` run, written into the run directory (after :meth:`Loc2VecMethod.build_map` and
``localize``):

* ``embeddings_pca.png`` / ``embeddings_tsne.png``: the reference embeddings projected to 2-D by PCA and by
  t-SNE (scikit-learn; van der Maaten & Hinton, JMLR 2008), each point coloured by the tile's dominant channel
  (the channel covering the most pixels).
* ``nearest_neighbours.png``: query tiles (random rotation, off the reference grid) and their top-5 reference
  tiles by embedding distance, titled with the ground distance to the query (green: within
  ``eval.distance_threshold_m``).
* ``interpolation.png``: the nearest reference tile to each embedding on the great-circle path (normalised
  linear interpolation) between the embeddings of two distant reference tiles.
* ``split.png``: the map with the train / val / test blocks, the guard bands (``val_guard_m`` around val blocks:
  training tile centres keep out of it; ``guard_m`` around test blocks: training and val tile centres keep out of
  it), and the query positions (only for :class:`~maploc_loc2vec.data.OsmTileDataset`).

Map data © OpenStreetMap contributors, ODbL 1.0 (the attribution is printed on every figure showing real map
data).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .channels import channel_palette, render_rgb, unpack_tiles

__all__ = ["write_plots", "plot_projections", "plot_nearest_neighbours", "plot_interpolation", "plot_split",
           "guard_bands"]

log = logging.getLogger(__name__)
ATTRIBUTION = "© OpenStreetMap contributors (ODbL)"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    from maploc.evaluation.report import save_figure

    return save_figure(fig, path)


def _attribution(fig: Any, source: str | None) -> None:
    if not (source or "").startswith("synthetic"):
        fig.text(0.01, 0.005, ATTRIBUTION, fontsize=7, color="0.3")


def _rgb_image(tile: np.ndarray, names: Sequence[str]) -> np.ndarray:
    return render_rgb(tile[None], tuple(names))[0].permute(1, 2, 0).numpy()


def plot_projections(
    path_pca: Path, path_tsne: Path, embeddings: np.ndarray, dominant: np.ndarray, names: Sequence[str],
    *, max_points: int = 1500, seed: int = 0, source: str | None = None,
) -> list[Path]:
    """PCA and t-SNE scatter plots of embeddings coloured by dominant channel.

    Args:
        path_pca: output ``.png`` of the PCA plot.
        path_tsne: output ``.png`` of the t-SNE plot.
        embeddings: ``(N, D)`` float32.
        dominant: ``(N,)`` int channel index (``-1`` = empty tile).
        names: the channel names.
        max_points: a random subset of at most this many points is shown.
        seed: subset and t-SNE seed.
        source: the map source (for the attribution).

    Returns:
        The two paths (only the PCA one when fewer than 5 points).
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    plt = _plt()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(embeddings))[:max_points]
    x, dom = embeddings[idx], dominant[idx]
    palette = channel_palette(tuple(names))
    colors = np.where(dom[:, None] >= 0, palette[np.clip(dom, 0, None)], 0.6)
    projections = [("PCA", path_pca, PCA(n_components=2, random_state=seed).fit_transform(x) if len(x) >= 2 else None)]
    if len(x) >= 5:
        perplexity = float(min(30.0, (len(x) - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        projections.append(("t-SNE", path_tsne, tsne.fit_transform(x)))
    written = []
    for title, path, xy in projections:
        if xy is None:
            continue
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=6, linewidths=0)
        present = sorted(set(dom.tolist()) - {-1})
        for k in present:
            ax.scatter([], [], c=[palette[k]], s=30, label=f"{names[k]} ({int((dom == k).sum())})")
        ax.legend(title="dominant channel", fontsize=7, loc="best", markerscale=1.0)
        ax.set_title(f"{title} of {len(x)} reference-tile embeddings ({embeddings.shape[1]}-D)")
        ax.set_xticks([])
        ax.set_yticks([])
        _attribution(fig, source)
        written.append(_save(fig, path))
    return written


def plot_nearest_neighbours(
    path: Path, query_tiles: np.ndarray, query_xy: np.ndarray, neighbour_tiles: np.ndarray, neighbour_xy: np.ndarray,
    names: Sequence[str], threshold_m: float, *, source: str | None = None,
) -> Path:
    """A grid: one row per query, the query tile then its top-k reference tiles.

    Args:
        path: output ``.png``.
        query_tiles: ``(Q, K, S, S)`` query tiles.
        query_xy: ``(Q, 2)`` true query centres (metres).
        neighbour_tiles: ``(Q, k, K, S, S)`` retrieved reference tiles, best first.
        neighbour_xy: ``(Q, k, 2)`` their centres (metres).
        names: channel names.
        threshold_m: titles are green within this ground distance.
        source: the map source (for the attribution).
    """
    plt = _plt()
    q, k = neighbour_tiles.shape[:2]
    fig, axes = plt.subplots(q, k + 1, figsize=(1.9 * (k + 1), 2.0 * q + 0.3), squeeze=False)
    for i in range(q):
        axes[i, 0].imshow(_rgb_image(query_tiles[i], names), interpolation="nearest")
        axes[i, 0].set_title(f"query ({query_xy[i, 0]:.0f}, {query_xy[i, 1]:.0f})", fontsize=8)
        for j in range(k):
            d = float(np.hypot(*(neighbour_xy[i, j] - query_xy[i])))
            ax = axes[i, j + 1]
            ax.imshow(_rgb_image(neighbour_tiles[i, j], names), interpolation="nearest")
            ax.set_title(f"#{j + 1}: {d:.0f} m away", fontsize=8, color="green" if d <= threshold_m else "red")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Query tiles (random rotation) and their nearest reference tiles (north up) by embedding")
    _attribution(fig, source)
    return _save(fig, path)


def plot_interpolation(
    path: Path, tiles: np.ndarray, weights: np.ndarray, xy: np.ndarray, names: Sequence[str], *, source: str | None = None
) -> Path:
    """A strip of tiles: the nearest reference tile at each interpolation weight.

    Args:
        path: output ``.png``.
        tiles: ``(T, K, S, S)`` the tiles, first and last are the two endpoints.
        weights: ``(T,)`` interpolation weights in ``[0, 1]``.
        xy: ``(T, 2)`` the tiles' centres (metres).
        names: channel names.
        source: the map source (for the attribution).
    """
    plt = _plt()
    t = len(tiles)
    fig, axes = plt.subplots(1, t, figsize=(1.9 * t, 2.4), squeeze=False)
    for i in range(t):
        ax = axes[0, i]
        ax.imshow(_rgb_image(tiles[i], names), interpolation="nearest")
        ax.set_title(f"w={weights[i]:.2f}\n({xy[i, 0]:.0f}, {xy[i, 1]:.0f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Interpolation in embedding space: nearest reference tile to normalize((1-w) e_A + w e_B)")
    _attribution(fig, source)
    return _save(fig, path)


def guard_bands(blocks: Any) -> dict[str, float]:
    """The guard band (metres) drawn around the blocks of each held-out split of a
    :class:`maploc.data.split.SpatialSplit`: ``val`` -> ``val_guard_m`` (training tile centres keep this far from
    val blocks), ``test`` -> ``guard_m`` (training and val tile centres keep this far from test blocks)."""
    return {"val": float(blocks.val_guard_m), "test": float(blocks.guard_m)}


def plot_split(path: Path, dataset: Any, query_xy: np.ndarray | None = None) -> Path:
    """The map (coloured channels, 4 m per pixel) with the block split, the guard band of each held-out split
    (:func:`guard_bands`) and the query positions."""
    import matplotlib.patches as mpatches

    plt = _plt()
    raster = dataset.raster
    step = max(1, int(round(4.0 / raster.resolution_m)))
    labels = raster.labels[:, ::step, ::step]
    rgb = render_rgb(labels, tuple(raster.class_names)).permute(1, 2, 0).numpy()
    x0, y0, x1, y1 = raster.extent
    fig, ax = plt.subplots(figsize=(7, 7 * (y1 - y0) / max(x1 - x0, 1e-6) * 0.9 + 0.5))
    ax.imshow(rgb, extent=(x0, x1, y0, y1), interpolation="nearest")
    blocks = dataset.blocks
    bands = guard_bands(blocks)
    styles = {"train": ("0.2", ""), "val": ("tab:blue", "//"), "test": ("tab:red", "\\\\")}
    for split, (edge, hatch) in styles.items():
        for bx0, by0, bx1, by1 in blocks.rects(split):
            ax.add_patch(mpatches.Rectangle((bx0, by0), bx1 - bx0, by1 - by0, facecolor="none", edgecolor=edge,
                                            hatch=hatch, linewidth=1.2 if split != "train" else 0.5, alpha=0.8))
            if split in bands:  # the points within bands[split] of the block: a rectangle with rounded corners
                g = bands[split]
                ax.add_patch(mpatches.FancyBboxPatch((bx0, by0), bx1 - bx0, by1 - by0, boxstyle=f"round,pad={g}",
                                                     facecolor="none", edgecolor=edge, linestyle=":", linewidth=0.8))
    if query_xy is not None and len(query_xy):
        ax.scatter(query_xy[:, 0], query_xy[:, 1], s=4, c="k", label=f"{len(query_xy)} queries")
    handles = [mpatches.Patch(facecolor="none", edgecolor=styles[s][0], hatch=styles[s][1], label=f"{s} blocks")
               for s in styles]
    handles.append(mpatches.Patch(facecolor="none", edgecolor=styles["val"][0], linestyle=":",
                                  label=f"val guard {bands['val']:.0f} m (train)"))
    handles.append(mpatches.Patch(facecolor="none", edgecolor=styles["test"][0], linestyle=":",
                                  label=f"test guard {bands['test']:.0f} m (train, val)"))
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="upper right")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x east [m]")
    ax.set_ylabel("y north [m]")
    ax.set_title(f"Block split: {blocks.describe()}", fontsize=9)
    _attribution(fig, raster.source)
    return _save(fig, path)


def _reference_tiles(method: Any, indices: np.ndarray) -> np.ndarray:
    flat = np.asarray(indices).reshape(-1)
    data = method.map_data
    if hasattr(data, "tiles"):
        tiles = data.tiles(flat.tolist())
    else:
        samples = [data[int(i)] for i in flat]
        tiles = unpack_tiles(np.stack([np.asarray(s.extras["tile"]) for s in samples]), int(samples[0].extras["num_channels"]))
    return tiles.reshape(*np.asarray(indices).shape, *tiles.shape[1:])


def write_plots(method: Any, run_dir: Path, queries: Any, estimates: Sequence[Any]) -> list[Path]:
    """Writes every plot of the module docstring for a method after ``build_map`` and ``localize``.

    Args:
        method: a :class:`~maploc_loc2vec.method.Loc2VecMethod` with its map built.
        run_dir: the run directory.
        queries: the query dataset (its samples carry packed tiles).
        estimates: the estimates of the first ``len(estimates)`` queries, in order.

    Returns:
        The written paths.
    """
    cfg = method.config.eval
    run_dir.mkdir(parents=True, exist_ok=True)
    data = method.map_data
    names = tuple(getattr(data, "channel_names", ())) or tuple(f"c{k}" for k in range(method.config.model.in_chans))
    raster = getattr(data, "raster", None)
    source = getattr(raster, "source", None)
    paths = plot_projections(run_dir / "embeddings_pca.png", run_dir / "embeddings_tsne.png", method.map_embeddings,
                             method.map_dominant, names, max_points=cfg.projection_points, source=source)

    # nearest-neighbour grid
    shown = [i for i, e in enumerate(estimates) if e.success and e.retrieval is not None and len(e.retrieval)]
    shown = shown[: cfg.plot_queries]
    if shown:
        samples = [queries[i] for i in shown]
        q_tiles = method.query_tiles(samples).numpy()
        q_xy = np.array([[s.pose2.x, s.pose2.y] for s in samples])
        k = min(5, *(len(estimates[i].retrieval) for i in shown))
        top = np.array([list(estimates[i].retrieval.indices[:k]) for i in shown])
        paths.append(plot_nearest_neighbours(
            run_dir / "nearest_neighbours.png", q_tiles, q_xy, _reference_tiles(method, top), method.map_xy[top],
            names, cfg.distance_threshold_m, source=source,
        ))

    # interpolation strip between two distant reference tiles
    n = len(method.map_names)
    if n >= 2:
        rng = np.random.default_rng(0)
        a = int(rng.integers(n))
        far = np.hypot(*(method.map_xy - method.map_xy[a]).T)
        b = int(np.argmax(far))
        weights = np.linspace(0.0, 1.0, max(2, cfg.interpolation_steps))
        e = torch.from_numpy(method.map_embeddings[[a, b]])
        path = torch.nn.functional.normalize((1 - torch.from_numpy(weights)[:, None].float()) * e[0] + torch.from_numpy(
            weights)[:, None].float() * e[1], dim=1)
        _, nearest = method.index.search(path.numpy().astype(np.float32), 1)
        nearest = nearest[:, 0]
        nearest[0], nearest[-1] = a, b
        paths.append(plot_interpolation(run_dir / "interpolation.png", _reference_tiles(method, nearest), weights,
                                        method.map_xy[nearest], names, source=source))

    if hasattr(data, "blocks") and raster is not None:
        metas = [queries.metadata(i) for i in range(len(estimates))]
        q_xy_all = np.array([[m.pose2.x, m.pose2.y] for m in metas if m.pose2 is not None]).reshape(-1, 2)
        paths.append(plot_split(run_dir / "split.png", data, q_xy_all))
    return paths


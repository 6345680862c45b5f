"""Plots of a ``bev_osm`` run: per query the image, the BEV (features and confidence) and the position
likelihood over the OSM crop with truth and estimate; the yaw likelihood; recall curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["write_plots"]


def write_plots(method: Any, run_dir: Path, queries: Any, estimates: Sequence[Any], max_queries: int = 4) -> list[Path]:
    """Writes ``bev_osm_query_<i>.png`` for up to ``max_queries`` successful queries spread over the split and
    ``bev_osm_recall.png`` (single-frame error curves over the scored queries: those in test blocks when the run
    has a split); returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    from .data import cell_of, north_up_crop
    from .geometry import gravity_rectify

    cfg, size = method.config, method.crop_cells
    paths: list[Path] = []
    ok = [i for i, e in enumerate(estimates) if e.success]
    picks = [ok[k] for k in np.linspace(0, len(ok) - 1, min(max_queries, len(ok))).astype(int)] if ok else []
    device = next(method.model.parameters()).device
    for n, i in enumerate(picks):
        q, e = queries[i], estimates[i]
        cx, cy = e.extras["prior_x_m"], e.extras["prior_y_m"]
        image, K, _ = gravity_rectify(q.image, q.camera.K.float(), q.T_cam2world.R.float(), cfg.search.max_tilt_deg)
        crop = north_up_crop(method.raster, cx, cy, size)
        with torch.no_grad():
            out = method.model(image[None].to(device), K[None].to(device), torch.from_numpy(crop)[None].to(device),
                               cfg.search.num_yaws_eval)  # fmt: skip
        vol = out["log_volume"][0].cpu()
        fig, ax = plt.subplots(1, 5, figsize=(20, 4))
        ax[0].imshow(q.image.permute(1, 2, 0).numpy())
        ax[0].set_title(f"{q.name} (rendered)")
        feats = out["bev"]["features"][0, :3].cpu().permute(1, 2, 0).numpy()
        ax[1].imshow((feats - feats.min()) / (np.ptp(feats) + 1e-9))
        ax[1].set_title("BEV features\n(3 channels, forward up)")
        ax[2].imshow(out["bev"]["confidence"][0].cpu().numpy(), vmin=0, vmax=1)
        ax[2].set_title("BEV confidence")
        pos = torch.logsumexp(vol, dim=0).numpy()
        ax[3].imshow(crop.max(axis=0), cmap="gray_r", alpha=0.5)
        ax[3].imshow(pos, alpha=0.6)
        gr, gc = cell_of(q.pose2.x, q.pose2.y, cx, cy, size, cfg.model.cell_m)
        er, ec = cell_of(e.pose2.x, e.pose2.y, cx, cy, size, cfg.model.cell_m)
        ax[3].plot([gc], [gr], "g+", ms=14, label="truth")
        ax[3].plot([ec], [er], "rx", ms=10, label="estimate")
        snap = method._side.get(q.name, {}).get("road_snap")
        if snap is not None:
            sr, sc = cell_of(*snap, cx, cy, size, cfg.model.cell_m)
            ax[3].plot([sc], [sr], "b^", ms=7, label="road snap (baseline)")
        ax[3].legend(loc="upper left", fontsize=7, framealpha=0.6)
        ax[3].set_title("position log-likelihood\nover the OSM crop (north up)")
        yaw_l = torch.logsumexp(vol.reshape(vol.shape[0], -1), dim=1).exp().numpy()
        ax[4].plot(np.degrees(np.arange(len(yaw_l)) * 2 * math.pi / len(yaw_l)), yaw_l)
        ax[4].axvline(math.degrees(q.pose2.yaw % (2 * math.pi)), color="g", label="truth")
        ax[4].set_xlabel("yaw (deg from east)")
        ax[4].set_title("yaw likelihood")
        ax[4].legend()
        fig.text(0.01, 0.01, "Map data © OpenStreetMap contributors, ODbL 1.0", fontsize=8)
        path = Path(run_dir) / f"bev_osm_query_{n}.png"
        save_figure(fig, path)
        plt.close(fig)
        paths.append(path)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    metas = [queries.metadata(i) for i in range(len(estimates))]
    scored = list(range(len(metas)))
    if method.split is not None:  # the queries the core scores: those in test blocks
        xy = np.array([[m.pose2.x, m.pose2.y] for m in metas], np.float64).reshape(-1, 2)
        scored = [int(i) for i in np.flatnonzero(method.split.mask(xy, "test"))]
    p = np.sort([math.hypot(estimates[i].pose2.x - metas[i].pose2.x, estimates[i].pose2.y - metas[i].pose2.y)
                 if estimates[i].success else np.inf for i in scored])  # fmt: skip
    y = np.sort([abs(math.degrees((estimates[i].pose2.yaw - metas[i].pose2.yaw + math.pi) % (2 * math.pi) - math.pi))
                 if estimates[i].success else np.inf for i in scored])  # fmt: skip
    frac = np.arange(1, len(p) + 1) / max(1, len(p)) * 100
    ax[0].plot(p, frac)
    ax[0].set_xlim(0, 20)
    ax[0].set_xlabel("position error (m)")
    ax[0].set_ylabel("recall (%)")
    ax[1].plot(y, frac)
    ax[1].set_xlim(0, 30)
    ax[1].set_xlabel("yaw error (deg)")
    fig.suptitle(f"bev_osm, single frame: {len(scored)} scored queries")
    path = Path(run_dir) / "bev_osm_recall.png"
    save_figure(fig, path)
    plt.close(fig)
    paths.append(path)
    return paths

"""TransPose's reporting: the uncertainty calibration (Spearman correlation and reliability plot), the
uncertainty map, the comparison figure (real query, nearest synthetic view, both models'
scene-coordinate errors, predicted sigma) and the report sections. The metrics of TransPose, the
real-only baseline and the other uncertainty setting are the core's table (``variants``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maploc.evaluation.report import save_figure
from maploc.files import atomic_write_text
from maploc.types import PoseEstimate, Sample
from maploc_dsac.losses import scene_coordinates_from_depth
from maploc_dsac.transpose.uncertainty import calibration, sigma_from_log_variance

__all__ = ["scene_coordinate_errors", "uncertainty_outputs", "comparison_figure", "sections", "nearest_view"]


def _model_outputs(method: Any, sample: Sample) -> tuple[Tensor, Tensor | None]:
    """Scene coordinates ``(3, h, w)`` and log-variance ``(h, w)`` (or None) without exclusion."""
    saved, method.exclude_fraction = getattr(method, "exclude_fraction", 0.0), 0.0
    try:
        out = method.predict(sample.image[None])
    finally:
        method.exclude_fraction = saved
    sc = out["scene_coordinates"][0].float().cpu()
    lv = out.get("log_variance")
    return sc, None if lv is None else lv[0, 0].float().cpu()


def scene_coordinate_errors(sample: Sample, predicted: Tensor) -> tuple[Tensor, Tensor]:
    """``(error (h, w) metres, valid (h, w) bool)`` of ``predicted (3, h, w)`` against the
    ground truth from the sample's depth and pose."""
    h, w = predicted.shape[-2:]
    gt, valid = scene_coordinates_from_depth(
        sample.depth[None].float(), sample.camera.K[None].float(), sample.T_cam2world.R[None].float(),
        sample.T_cam2world.t[None].float(), h, w,
    )
    return torch.linalg.vector_norm(predicted - gt[0], dim=0), valid[0]


def uncertainty_outputs(method: Any, run_dir: Path, samples: Sequence[Sample]) -> list[Path]:
    """Calibration of the predicted sigma against the actual error over every query cell with
    depth: ``calibration.json`` and ``calibration.png`` (reliability plot: RMS error per sigma bin
    against the model's ``sqrt(3) sigma``). Sets ``method.calibration_result``."""
    sigmas, errors = [], []
    for q in samples:
        if q.depth is None or q.T_cam2world is None:
            continue
        sc, lv = _model_outputs(method, q)
        if lv is None:
            return []
        err, valid = scene_coordinate_errors(q, sc)
        sigmas.append(sigma_from_log_variance(lv)[valid].numpy())
        errors.append(err[valid].numpy())
    if not sigmas:
        return []
    sigma, error = np.concatenate(sigmas), np.concatenate(errors)
    result = calibration(sigma, error, bins=method.config.uncertainty.calibration_bins)
    method.calibration_result = result
    paths = [atomic_write_text(run_dir / "calibration.json", json.dumps(result, indent=2) + "\n")]
    plt = _pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = result["bins"]
    if bins:
        rms = np.array([b[1] for b in bins]) * 100
        pred = np.array([b[2] for b in bins]) * 100
        ax[0].plot(pred, rms, "o-", label="measured RMS error per sigma bin")
        top = float(max(pred.max(), rms.max())) * 1.05
        ax[0].plot([0, top], [0, top], "k--", label="perfect calibration")
        ax[0].set_xlabel("predicted RMS error sqrt(3) sigma (cm)")
        ax[0].set_ylabel("actual RMS error (cm)")
        ax[0].legend(fontsize=8)
        ax[0].set_title(f"reliability, {result['cells']} query cells")
    ax[1].scatter(sigma * 100, error * 100, s=3, alpha=0.4)
    ax[1].set_xscale("log")
    ax[1].set_yscale("log")
    from matplotlib.ticker import NullFormatter

    ax[1].xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a narrow log axis overlap
    ax[1].set_xlabel("predicted sigma (cm)")
    ax[1].set_ylabel("actual error (cm)")
    ax[1].set_title(f"Spearman rho = {result['spearman']:.3f}")
    fig.suptitle("TransPose uncertainty calibration on the query frames")
    paths.append(save_figure(fig, run_dir / "calibration.png"))
    return paths


def nearest_view(data: Any, query: Sample, metres_per_degree: float = 0.01) -> int | None:
    """Index of the view of a DSAC*-layout ``data`` whose pose is nearest the query's: the smallest
    ``|t - t_q| + metres_per_degree * angle`` (10 degrees count as 10 cm)."""
    from maploc.data import io

    if data is None or query.T_cam2world is None or not hasattr(data, "pose_files"):
        return None
    best, best_d = None, math.inf
    Rq, tq = query.T_cam2world.R.double(), query.T_cam2world.t.double()
    for i, f in enumerate(data.pose_files):
        T = io.read_pose(f)
        R, t = T.R.double(), T.t.double()
        cos = float(((torch.trace(R.T @ Rq) - 1) / 2).clamp(-1, 1))
        d = float(torch.linalg.vector_norm(t - tq)) + metres_per_degree * math.degrees(math.acos(cos))
        if d < best_d:
            best, best_d = i, d
    return best


def comparison_figure(method: Any, run_dir: Path, samples: Sequence[Sample], estimates: Sequence[PoseEstimate]) -> list[Path]:
    """``transpose_comparison.png`` for query ``plot_query``: the real query, the nearest synthetic
    view (rendered), the scene-coordinate error of the baseline and of TransPose, the predicted sigma;
    ``uncertainty_map.png``: the sigma map alone."""
    k = min(max(method.config.plot_query, 0), len(samples) - 1)
    q = samples[k]
    if q.depth is None or q.T_cam2world is None:
        return []
    plt = _pyplot()
    sc, lv = _model_outputs(method, q)
    err_tp, valid = scene_coordinate_errors(q, sc)
    kind = "real query" if getattr(method, "query_dataset", None) == "7scenes" else "query"
    panels: list[tuple[str, Any, dict[str, Any]]] = [(f"{kind} {q.name}", q.image.permute(1, 2, 0).numpy(), {})]
    j = nearest_view(method.synthetic_data, q)
    if j is not None:
        v = method.synthetic_data[j]
        panels.append((f"nearest synthetic view (rendered) {v.name}", v.image.permute(1, 2, 0).numpy(), {}))
    errs = []
    if method.baseline is not None:
        sc_b, _ = _model_outputs(method.baseline, q)
        err_b, _ = scene_coordinate_errors(q, sc_b)
        errs.append(("DSAC* (real only)", err_b))
    errs.append(("TransPose", err_tp))
    vmax = max(float(np.nanpercentile(e[valid].numpy() * 100, 95)) if bool(valid.any()) else 1.0 for _, e in errs)
    for label, e in errs:
        shown = np.where(valid.numpy(), e.numpy() * 100, np.nan)
        med = float(np.median(e[valid].numpy() * 100)) if bool(valid.any()) else math.nan
        panels.append((f"{label}: scene-coordinate error (cm), median {med:.0f}", shown,
                       {"cmap": "magma_r", "vmin": 0, "vmax": vmax, "interpolation": "nearest"}))
    paths: list[Path] = []
    if lv is not None:
        sigma = sigma_from_log_variance(lv).numpy() * 100
        panels.append(("TransPose predicted sigma (cm)", sigma, {"cmap": "viridis", "interpolation": "nearest"}))
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].imshow(q.image.permute(1, 2, 0).numpy())
        ax[0].set_title(f"{kind} {q.name}")
        im = ax[1].imshow(sigma, cmap="viridis", interpolation="nearest")
        ax[1].set_title("predicted sigma per 8x8 cell (cm)")
        fig.colorbar(im, ax=ax[1], fraction=0.035)
        for a in ax:
            a.axis("off")
        paths.append(save_figure(fig, run_dir / "uncertainty_map.png"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for ax, (title, img, kw) in zip(np.atleast_1d(axes), panels):
        im = ax.imshow(img, **kw)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
        if kw:
            fig.colorbar(im, ax=ax, fraction=0.035)
    e = estimates[k]
    fig.suptitle(f"{kind} {q.name}: TransPose " + (f"{e.num_inliers} inliers" if e.success else "failed"))
    paths.append(save_figure(fig, run_dir / "transpose_comparison.png"))
    return paths


def sections(method: Any) -> list[tuple[str, str]]:
    """Report sections from what ``method`` (a ``TransPoseMethod``) computed in this run."""
    out: list[tuple[str, str]] = []
    cfg = method.config
    name = getattr(method, "query_dataset", None)
    if name == "7scenes":
        lines = ["The query frames are real (7-Scenes photographs, the query split of the run)."]
    elif name == "sim-city":
        lines = ["Every image is rendered (sim-city: OpenGL renders of an OpenStreetMap map), queries included."]
    elif name is not None:
        lines = [f"The query frames are the query split of the `{name}` dataset."]
    else:
        lines = ["The query frames are the query split of the run."]
    if method.synthetic_data is not None:
        lines.append(
            f"Training: {method.num_real_frames} real frames and {len(method.synthetic_data)} rendered views "
            f"({method.synthetic_root}), rendered from a TSDF model fused from the real frames in "
            f"{method.synthesis_seconds:.1f} s (0 s when cached); stream {method._stream}; render augmentation "
            f"{'on' if cfg.render_augment.enabled else 'off'}; synthetic fraction {cfg.synthetic.fraction}."
        )
    elif cfg.synthetic.num_views == 0:
        lines.append("synthetic.num_views=0: no TSDF renders; TransPose trained on the training split only.")
    if method.transpose_seconds is not None:
        lines.append(f"Training time: TransPose {method.transpose_seconds:.1f} s, baseline "
                     f"{method.baseline_seconds if method.baseline_seconds is not None else math.nan:.1f} s "
                     f"({cfg.total_steps()} steps each, batch {cfg.train.batch_size}, the same seed and initial weights).")
    out.append(("TransPose data (real / rendered)", "\n".join(lines)))
    c = method.calibration_result
    if c is not None:
        rows = [f"Spearman correlation of predicted sigma and actual error: {c['spearman']:.3f} over {c['cells']} query cells",
                f"{'mean sigma (cm)':>16}  {'rms error (cm)':>15}  {'sqrt(3) sigma (cm)':>18}  cells"]
        rows += [f"{b[0] * 100:16.2f}  {b[1] * 100:15.2f}  {b[2] * 100:18.2f}  {b[3]}" for b in c["bins"]]
        out.append(("Uncertainty calibration (KFNet-style isotropic sigma) on the queries", "\n".join(rows)))
    if method.baseline is not None and method.baseline.stage_log:
        from maploc_dsac.plots import format_training_stages

        out.append(("Baseline DSAC* (real only) training stages", format_training_stages(method.baseline.stage_log)))
    return out


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


"""Run-directory outputs of the ``dsac`` method: DSAC*'s pose file and the scene-coordinate error plot.

``poses_dsac.txt`` follows DSAC*'s ``test.py`` (Brachmann & Rother, TPAMI 2021, public code), which
writes, per test image, ``file qw qx qy qz tx ty tz r_err t_err`` where the quaternion and the
translation are those of the **inverse** of the estimated camera-to-world pose (``out_pose =
out_pose.inverse()`` before writing), i.e. of the **world-to-camera** transform
``x_cam = R_world2cam x_world + t_world2cam``, with ``q_w = cos(angle / 2) >= 0``. Differences, both
stated in the file's header comment: the name is maploc's sample name (unique across sequences,
e.g. ``seq-01/frame-000000``) instead of the bare image file name, and the last column is the
translation error in **centimetres** (``test.py`` writes metres in that column although it prints
centimetres). A failed query has ``nan`` pose values and ``inf`` errors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maploc.files import atomic_write_bytes, atomic_write_text
from maploc.types import PoseEstimate, Sample
from maploc_dsac.network import OUTPUT_STRIDE

__all__ = ["write_poses_dsac", "read_poses_dsac", "plot_scene_coordinate_error", "format_training_stages", "POSES_HEADER"]

POSES_HEADER = (
    "# DSAC* pose file (test.py convention): name qw qx qy qz tx ty tz rot_err_deg trans_err_cm\n"
    "# (qw, qx, qy, qz), (tx, ty, tz): the estimated WORLD-TO-CAMERA rotation (w >= 0) and translation (metres),\n"
    "# x_cam = R x_world + t. Errors against the ground truth; failed queries: nan pose, inf errors.\n"
)


def write_poses_dsac(path: str | os.PathLike[str], queries: Sequence[Sample], estimates: Sequence[PoseEstimate]) -> Path:
    """Writes ``poses_dsac.txt`` (see the module docstring for the convention).

    Args:
        path: the file to write (atomically).
        queries: the query samples (ground truth used for the error columns when present).
        estimates: one estimate per query, same order.

    Returns:
        ``path``.

    Raises:
        ValueError: if the lengths differ.
    """
    from maploc.geometry.errors import pose_error

    if len(queries) != len(estimates):
        raise ValueError(f"got {len(queries)} queries but {len(estimates)} estimates")
    lines = [POSES_HEADER]
    for q, e in zip(queries, estimates):
        name = q.name.replace(" ", "_")
        if not e.success or e.T_cam2world is None:
            lines.append(f"{name} " + " ".join(["nan"] * 7) + " inf inf\n")
            continue
        T_w2c = e.T_cam2world.to(torch.float64).inverse()
        qv = T_w2c.quaternion().tolist()  # (w, x, y, z), w >= 0
        t = T_w2c.t.tolist()
        r_err = t_err = math.inf
        if q.T_cam2world is not None:
            gt = q.T_cam2world.to(torch.float64)
            re, te = pose_error(e.T_cam2world.R.double(), e.T_cam2world.t.double(), gt.R, gt.t)
            r_err, t_err = float(re), float(te) * 100.0
        lines.append(
            f"{name} {qv[0]:.6f} {qv[1]:.6f} {qv[2]:.6f} {qv[3]:.6f} {t[0]:.6f} {t[1]:.6f} {t[2]:.6f} "
            f"{r_err:.6f} {t_err:.6f}\n"
        )
    path = Path(path)
    atomic_write_text(path, "".join(lines))
    return path


def read_poses_dsac(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray, float, float]]:
    """Reads a file written by :func:`write_poses_dsac`: ``name -> (q_wxyz (4,), t (3,), rot_err_deg,
    trans_err_cm)`` (world-to-camera, metres)."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        values = np.array([float(v) for v in parts[1:]], dtype=np.float64)
        out[parts[0]] = (values[:4], values[4:7], float(values[7]), float(values[8]))
    return out


def plot_scene_coordinate_error(
    path: str | os.PathLike[str],
    sample: Sample,
    predicted: Tensor,
    target: Tensor,
    valid: Tensor,
    inliers: Tensor | None = None,
    title: str = "",
) -> Path:
    """Three panels: the query image, the predicted scene coordinates' error (cm, per 8x8 cell,
    against the ground truth from depth and pose) over the grey image with the RANSAC inliers
    marked, and the histogram of the errors.

    Args:
        path: the ``.png`` file (written atomically).
        sample: the query.
        predicted: ``(3, h, w)`` predicted scene coordinates, metres.
        target: ``(3, h, w)`` ground truth, metres.
        valid: ``(h, w)`` bool, where the ground truth is known.
        inliers: optional ``(h, w)`` bool, the RANSAC inliers of the final pose (outlined).
        title: the figure title.

    Returns:
        ``path``.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    err_cm = (torch.linalg.vector_norm(predicted.float() - target.float(), dim=0) * 100).cpu().numpy()
    valid_np = valid.cpu().numpy().astype(bool)
    shown = np.where(valid_np, err_cm, np.nan)
    h, w = err_cm.shape
    H, W = sample.image.shape[-2:]
    image = sample.image.permute(1, 2, 0).cpu().numpy()
    stride = OUTPUT_STRIDE
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    axes[0].imshow(image, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
    axes[0].set_title(f"query {sample.name} ({W}x{H} network input)")
    axes[0].axis("off")
    finite = err_cm[valid_np]
    vmax = float(np.percentile(finite, 95)) if finite.size else 1.0
    # cell (i, j) covers pixels [8 j, 8 j + 8) x [8 i, 8 i + 8): draw it there, over the grey image
    axes[1].imshow(image.mean(-1), cmap="gray", extent=(-0.5, W - 0.5, H - 0.5, -0.5))
    cells = (-0.5, stride * w - 0.5, stride * h - 0.5, -0.5)
    im = axes[1].imshow(shown, cmap="magma_r", vmin=0.0, vmax=max(vmax, 1e-3), interpolation="nearest",
                        extent=cells, alpha=0.8)
    if inliers is not None and bool(inliers.any()):
        ii, jj = np.nonzero(inliers.cpu().numpy())
        axes[1].scatter(stride * jj + stride // 2, stride * ii + stride // 2, s=6, c="cyan", marker="o",
                        label=f"{len(ii)} RANSAC inliers")
        axes[1].legend(loc="lower right", fontsize=8)
    axes[1].set_xlim(-0.5, W - 0.5)
    axes[1].set_ylim(H - 0.5, -0.5)
    axes[1].set_title("scene coordinate error per 8x8 cell (cm)")
    axes[1].axis("off")
    fig.colorbar(im, ax=axes[1], fraction=0.035)
    if finite.size:
        axes[2].hist(np.clip(finite, 0, 3 * vmax), bins=40, color="0.3")
        med = float(np.median(finite))
        within = 100.0 * float((finite <= 10.0).mean())
        axes[2].axvline(med, color="r", linestyle="--", label=f"median {med:.1f} cm")
        axes[2].set_title(f"{finite.size} cells with depth; {within:.0f}% within 10 cm")
        axes[2].legend()
    else:
        axes[2].set_title("no ground-truth depth")
    axes[2].set_xlabel("error (cm)")
    fig.suptitle(title)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def format_training_stages(stages: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per training stage that ran: steps, learning rate, first and last loss, images, time."""
    lines = []
    for stage, info in stages.items():
        lines.append(
            f"{stage:<13} steps {info['first_step']}-{info['last_step']} ({info['steps']}), lr {info['lr']:.3g}, "
            f"loss {_format_loss(info['loss_first'])} -> {_format_loss(info['loss_last'])}, {info['images']} images, "
            f"{info.get('wall_seconds', 0.0):.1f} s ({info['seconds']:.1f} s in forward+loss)"
            + (f", {info['skipped_steps']} steps skipped (no RANSAC hypothesis)" if info.get("skipped_steps") else "")
        )
    return "\n".join(lines)


def _format_loss(loss: float | None) -> str:
    return "n/a" if loss is None else f"{loss:.4g}"

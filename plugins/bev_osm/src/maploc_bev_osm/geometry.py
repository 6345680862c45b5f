"""Camera geometry of the BEV: gravity rectification and the polar-to-Cartesian projection.

Reference: Sarlin et al., "OrienterNet", CVPR 2023, Sec. 3.2 (gravity-aligned image, per-pixel distribution
over log-spaced depth bins, polar representation per image column, resampling to a Cartesian grid).

Frames: the camera frame is OpenCV's (x right, y down, z forward); the world frame is the OSM map frame with z up
(x east, y north, metres). Template layout: see :mod:`maploc_bev_osm.matching`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RectificationError", "depth_bins", "gravity_rectify", "polar_to_bev", "tilt_deg", "virtual_rotation"]


class RectificationError(ValueError):
    """The camera's roll/pitch is beyond what rectification supports (a counted failure, not a crash)."""


def virtual_rotation(R_cam2world: Tensor) -> Tensor:
    """``R_virt2world`` of the gravity-aligned virtual camera that shares the camera's centre and heading.

    Args:
        R_cam2world: ``(3, 3)`` rotation, OpenCV camera to z-up world.

    Returns:
        ``(3, 3)``: the virtual camera looks horizontally along the camera's heading, its y axis points down
        (world -z).

    Raises:
        RectificationError: the optical axis is (nearly) vertical, so the heading is undefined.
    """
    z = R_cam2world[:, 2]
    horizontal = torch.stack([z[0], z[1], torch.zeros_like(z[0])])
    norm = horizontal.norm()
    if float(norm) < 1e-3:
        raise RectificationError("the camera looks straight up or down; its heading is undefined")
    z_v = horizontal / norm
    y_v = torch.tensor([0.0, 0.0, -1.0], dtype=R_cam2world.dtype)
    x_v = torch.linalg.cross(y_v, z_v)
    return torch.stack([x_v, y_v, z_v], dim=1)


def tilt_deg(R_cam2world: Tensor) -> float:
    """Angle between the camera's y axis (image down) and the world down direction, degrees (roll+pitch)."""
    down = R_cam2world[:, 1]
    return math.degrees(math.acos(max(-1.0, min(1.0, float(-down[2])))))


def gravity_rectify(image: Tensor, K: Tensor, R_cam2world: Tensor, max_tilt_deg: float = 30.0
                    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Warps an image to the gravity-aligned virtual camera (roll and pitch removed; same centre and heading).

    The virtual camera keeps the intrinsics ``K`` (same focal length and principal point); pixels are mapped by
    the homography ``K R_cam2virt K^-1`` (bilinear, zeros outside). A tilt under 0.01 degrees returns the image
    unchanged.

    Args:
        image: ``(C, H, W)`` float.
        K: ``(3, 3)`` pinhole intrinsics, pixels.
        R_cam2world: ``(3, 3)``.
        max_tilt_deg: the largest roll/pitch (:func:`tilt_deg`) accepted.

    Returns:
        the rectified image ``(C, H, W)``, its intrinsics ``(3, 3)`` and ``R_virt2world`` ``(3, 3)``.

    Raises:
        RectificationError: tilt beyond ``max_tilt_deg`` or a vertical optical axis.
    """
    tilt = tilt_deg(R_cam2world)
    if tilt > max_tilt_deg:
        raise RectificationError(f"camera roll/pitch {tilt:.1f} deg is beyond the supported {max_tilt_deg:.1f} deg")
    R = R_cam2world.double()
    R_v = virtual_rotation(R)
    if tilt < 0.01:
        return image, K, R_v.to(R_cam2world.dtype)
    c, h, w = image.shape
    Kd = K.double()
    # virtual pixel -> camera pixel: K R_world2cam R_virt2world K^-1
    H = Kd @ R.T @ R_v @ torch.linalg.inv(Kd)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    p = torch.stack([u, v, torch.ones_like(u)], dim=-1) @ H.T
    uv = p[..., :2] / p[..., 2:].clamp_min(1e-9)
    grid = torch.stack([(2 * uv[..., 0] + 1) / w - 1, (2 * uv[..., 1] + 1) / h - 1], dim=-1).to(image.dtype)
    out = F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    return out, K, R_v.to(R_cam2world.dtype)


def depth_bins(num_bins: int, min_depth_m: float, max_depth_m: float) -> Tensor:
    """``(num_bins,)`` float64 log-spaced depths from ``min_depth_m`` to ``max_depth_m`` (metres)."""
    return torch.logspace(math.log10(min_depth_m), math.log10(max_depth_m), num_bins, dtype=torch.float64)


def polar_to_bev(polar: Tensor, K: Tensor, stride: float, half_cells: int, cell_m: float, min_depth_m: float,
                 max_depth_m: float) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Resamples per-column polar features to the Cartesian BEV template in front of the camera (bilinear).

    Cell ``(i, j)`` of the ``S = 2 n + 1`` template (``n = half_cells``) lies ``f = (n - i) cell_m`` ahead and
    ``r = (j - n) cell_m`` right of the camera; it samples feature column ``u = (fx r / f + cx + 0.5) / stride
    - 0.5`` and depth bin ``(D - 1) log(f / min) / log(max / min)``. Cells behind the camera, outside the field of
    view or the depth range are zero and invalid.

    Args:
        polar: ``(B, C, D, Wf)`` features per log-depth bin and feature column.
        K: ``(B, 3, 3)`` intrinsics of the (rectified) image, in image pixels.
        stride: image pixels per feature column.
        half_cells, cell_m: template half-size (cells) and cell size (metres).
        min_depth_m, max_depth_m: the depth range of the D bins.

    Returns:
        ``(B, C, S, S)`` BEV features and ``(B, S, S)`` bool validity.
    """
    b, c, d, wf = polar.shape
    s = 2 * half_cells + 1
    idx = torch.arange(s, dtype=polar.dtype, device=polar.device)
    fwd = ((half_cells - idx) * cell_m)[:, None].expand(s, s)
    right = ((idx - half_cells) * cell_m)[None, :].expand(s, s)
    safe = fwd.clamp_min(1e-6)
    fx, cx = K[:, 0, 0].to(polar.dtype), K[:, 0, 2].to(polar.dtype)
    u_img = fx[:, None, None] * (right / safe)[None] + cx[:, None, None]
    u = (u_img + 0.5) / stride - 0.5  # feature column
    bin_f = (d - 1) * torch.log(safe / min_depth_m) / math.log(max_depth_m / min_depth_m)
    bin_f = bin_f[None].expand(b, s, s)
    valid = (fwd[None] >= min_depth_m) & (fwd[None] <= max_depth_m) & (u >= -0.5) & (u <= wf - 0.5)
    grid = torch.stack([(2 * u + 1) / wf - 1, (2 * bin_f + 1) / d - 1], dim=-1)
    out = F.grid_sample(polar, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out * valid[:, None].to(out.dtype), valid

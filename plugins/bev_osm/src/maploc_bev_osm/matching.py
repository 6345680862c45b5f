"""Exhaustive matching of a BEV template against neural map features over every position and yaw.

Reference: Sarlin et al., "OrienterNet: Visual Localization in 2D Public Maps with Neural Matching", CVPR 2023,
Sec. 3.3 (template rotated to N yaw bins, correlated with the map features over every position, log-softmax
over the whole (yaw, y, x) volume), Sec. 3.4 (negative log-likelihood of the ground-truth pose; pose from the
argmax) and Sec. 3.5 (sequential fusion of probability volumes).

Conventions (stated once for the plugin):

* A **map crop** is north-up (row 0 north, column 0 west), square cells of ``cell_m`` metres; cell ``(r, c)``
  has its centre at ``x = x_c + (c + 0.5 - W / 2) * cell_m`` (east), ``y = y_c + (H / 2 - r - 0.5) * cell_m``
  (north), the layout of :meth:`maploc_osm.MapRaster.crop` at ``yaw = pi / 2``.
* A **BEV template** is square, odd side ``S = 2 n + 1``, camera at cell ``(n, n)``; cell ``(i, j)`` lies
  ``(n - i) * cell_m`` metres ahead and ``(j - n) * cell_m`` metres right of the camera.
* **Yaw** is ``Pose2.yaw``: radians counter-clockwise from east; yaw bin ``k`` of ``N`` is ``2 pi k / N``.
* The score volume is ``(B, N, H, W)``: ``score[b, k, r, c]`` = the camera at crop cell ``(r, c)`` with yaw bin
  ``k``; ``score = sum_c,i,j map[c, r + i - n, c + j - n] * rotated_template_k[c, i, j]`` (zero outside the crop).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from maploc.api import Matcher

__all__ = [
    "ExhaustiveMatcher",
    "correlate_direct",
    "correlate_fft",
    "expectation_pose",
    "fuse_log_volumes",
    "log_softmax_volume",
    "nll_loss",
    "restrict_to_square",
    "rotate_templates",
]


def rotate_templates(template: Tensor, num_yaws: int) -> Tensor:
    """The BEV template turned to every yaw bin, bilinearly (differentiable).

    Args:
        template: ``(B, C, S, S)`` float, ``S`` odd, the BEV in the template layout (forward = row 0 side).
        num_yaws: N, yaw bins over a full turn.

    Returns:
        ``(B, N, C, S, S)``: slice ``k`` is the template as it lies on the north-up map when the camera heading is
        ``2 pi k / N`` (slice ``N / 4`` is the template itself, heading north).

    Raises:
        ValueError: non-square or even-sized template, ``num_yaws < 1``.
    """
    if template.ndim != 4 or template.shape[-1] != template.shape[-2] or template.shape[-1] % 2 == 0:
        raise ValueError(f"template must be (B, C, S, S) with S odd, got {tuple(template.shape)}")
    if num_yaws < 1:
        raise ValueError(f"num_yaws must be >= 1, got {num_yaws}")
    b, c, s, _ = template.shape
    n = (s - 1) / 2
    yaws = torch.arange(num_yaws, dtype=template.dtype, device=template.device) * (2 * math.pi / num_yaws)
    idx = torch.arange(s, dtype=template.dtype, device=template.device)
    east = (idx - n)[None, :].expand(s, s)  # map cell offset, in cells: column -> east
    north = (n - idx)[:, None].expand(s, s)  # row -> north
    cos, sin = torch.cos(yaws)[:, None, None], torch.sin(yaws)[:, None, None]
    forward = east * cos + north * sin  # (N, S, S)
    right = east * sin - north * cos
    src_i, src_j = n - forward, n + right  # template cell sampled
    grid = torch.stack([(2 * src_j + 1) / s - 1, (2 * src_i + 1) / s - 1], dim=-1)  # (N, S, S, 2) x, y
    rep = template[:, None].expand(b, num_yaws, c, s, s).reshape(b * num_yaws, c, s, s)
    grid = grid[None].expand(b, num_yaws, s, s, 2).reshape(b * num_yaws, s, s, 2)
    out = F.grid_sample(rep, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(b, num_yaws, c, s, s)


def _check(map_features: Tensor, templates: Tensor) -> None:
    if map_features.ndim != 4 or templates.ndim != 5:
        raise ValueError(f"need map (B, C, H, W) and templates (B, N, C, S, S), got {tuple(map_features.shape)} "
                         f"and {tuple(templates.shape)}")  # fmt: skip
    if map_features.shape[:2] != (templates.shape[0], templates.shape[2]) or templates.shape[-1] % 2 == 0:
        raise ValueError(f"map {tuple(map_features.shape)} and templates {tuple(templates.shape)} disagree")


def correlate_direct(map_features: Tensor, templates: Tensor) -> Tensor:
    """Cross-correlation computed directly (no FFT), zero padding, output the size of the map.

    One matrix product per template row ``i``: the map rows ``r + i - n`` unfolded over the ``S`` column offsets,
    ``(C S, H W)``, times that template row of every yaw, ``(N, C S)``. Same multiply-adds as a convolution
    (``B N C S^2 H W``), BLAS-efficient, and memory bounded by ``C S H W`` per batch element (``torch``'s CPU
    ``conv2d`` with a 65 x 65 kernel takes minutes per yaw bin: the batch-8 benchmark "hang").

    Args:
        map_features: ``(B, C, H, W)``.
        templates: ``(B, N, C, S, S)`` from :func:`rotate_templates`, ``S = 2 n + 1``.

    Returns:
        ``(B, N, H, W)`` scores (module docstring formula).
    """
    _check(map_features, templates)
    b, c, h, w = map_features.shape
    _, n_yaw, _, s, _ = templates.shape
    n = s // 2
    padded = F.pad(map_features, (n, n, n, n))  # (B, C, H + 2n, W + 2n)
    outs = []
    for k in range(b):
        out = map_features.new_zeros(n_yaw, h * w)
        for i in range(s):  # template row i reads map row r + i - n = padded row r + i
            band = padded[k, :, i:i + h, :].unfold(2, w, 1)  # (C, H, S, W): column offset j at dim 2
            band = band.permute(0, 2, 1, 3).reshape(c * s, h * w)
            out = out + templates[k, :, :, i, :].reshape(n_yaw, c * s) @ band
        outs.append(out.reshape(n_yaw, h, w))
    return torch.stack(outs)


def correlate_fft(map_features: Tensor, templates: Tensor, chunk_yaws: int | None = None) -> Tensor:
    """:func:`correlate_direct` computed with real FFTs (batched over B and N); equal up to rounding.

    The signals are zero-padded to ``H + n`` by ``W + n`` (``n = S // 2``), enough that the circular correlation
    never wraps into the output window. ``chunk_yaws`` bounds the memory: yaw bins are transformed that many at a
    time (``None``: all at once).
    """
    if chunk_yaws is not None and templates.shape[1] > chunk_yaws:
        return torch.cat([correlate_fft(map_features, templates[:, k:k + chunk_yaws])
                          for k in range(0, templates.shape[1], chunk_yaws)], dim=1)  # fmt: skip
    _check(map_features, templates)
    b, c, h, w = map_features.shape
    s = templates.shape[-1]
    n = s // 2
    size = (h + n, w + n)
    fm = torch.fft.rfft2(map_features, s=size)  # (B, C, Lh, Lw/2+1)
    padded = F.pad(templates, (0, size[1] - s, 0, size[0] - s))
    padded = torch.roll(padded, shifts=(-n, -n), dims=(-2, -1))  # template cell n at index 0
    ft = torch.fft.rfft2(padded)  # (B, N, C, Lh, Lw/2+1)
    prod = torch.einsum("bchw,bkchw->bkhw", fm, ft.conj())
    out = torch.fft.irfft2(prod, s=size)
    return out[..., :h, :w]


def log_softmax_volume(scores: Tensor, log_prior: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
    """Log-probabilities over the whole ``(N, H, W)`` volume of each batch element.

    Args:
        scores: ``(B, N, H, W)``.
        log_prior: optional ``(B, H, W)`` (or ``(B, 1, H, W)``) log-prior added to every yaw.
        valid: optional ``(B, H, W)`` bool: cells allowed (others get ``-inf``).

    Returns:
        ``(B, N, H, W)``, ``logsumexp`` over the last three dimensions equal to 0.
    """
    if log_prior is not None:
        scores = scores + (log_prior if log_prior.ndim == 4 else log_prior[:, None])
    if valid is not None:
        scores = scores.masked_fill(~valid[:, None], float("-inf"))
    b = scores.shape[0]
    return torch.log_softmax(scores.reshape(b, -1), dim=-1).reshape(scores.shape)


def nll_loss(log_volume: Tensor, gt_cell: Tensor) -> Tensor:
    """Negative log-likelihood of the ground-truth cell (OrienterNet, Sec. 3.4), averaged over the batch.

    Args:
        log_volume: ``(B, N, H, W)`` from :func:`log_softmax_volume`.
        gt_cell: ``(B, 3)`` long ``(yaw bin, row, column)``.

    Returns:
        scalar tensor.
    """
    b = torch.arange(log_volume.shape[0], device=log_volume.device)
    return -log_volume[b, gt_cell[:, 0], gt_cell[:, 1], gt_cell[:, 2]].mean()


def expectation_pose(log_volume: Tensor, window: int = 2) -> tuple[Tensor, Tensor]:
    """Pose from a probability volume: the argmax, refined by the expectation in a window around it.

    Args:
        log_volume: ``(B, N, H, W)`` log-probabilities.
        window: half-size of the window, in cells and yaw bins (yaw wraps around).

    Returns:
        ``(B, 3)`` float ``(row, column, yaw)`` in continuous cell units and radians (yaw in ``[0, 2 pi)``), and
        ``(B, 3)`` long, the argmax ``(yaw bin, row, column)``.
    """
    b, n_yaw, h, w = log_volume.shape
    flat = log_volume.reshape(b, -1).argmax(dim=-1)
    k, r, c = flat // (h * w), (flat // w) % h, flat % w
    offsets = torch.arange(-window, window + 1, device=log_volume.device)
    out = []
    for i in range(b):
        ks = (k[i] + offsets) % n_yaw
        rs = (r[i] + offsets).clamp(0, h - 1).unique()
        cs = (c[i] + offsets).clamp(0, w - 1).unique()
        p = log_volume[i][ks][:, rs][:, :, cs].exp()  # (Kw, Rw, Cw)
        p = p / p.sum().clamp_min(1e-30)
        row = (p.sum(dim=(0, 2)) * rs.to(p.dtype)).sum()
        col = (p.sum(dim=(0, 1)) * cs.to(p.dtype)).sum()
        angles = ks.to(p.dtype) * (2 * math.pi / n_yaw)
        pk = p.sum(dim=(1, 2))
        yaw = torch.atan2((pk * torch.sin(angles)).sum(), (pk * torch.cos(angles)).sum()) % (2 * math.pi)
        out.append(torch.stack([row, col, yaw]))
    return torch.stack(out), torch.stack([k, r, c], dim=-1)


def restrict_to_square(log_volume: Tensor, halfwidth_m: float, cell_m: float) -> Tensor:
    """The log-probabilities renormalised over the cells that meet the centred square of half-side ``halfwidth_m``
    (the support of a uniform position prior around the crop centre); the other cells get ``-inf``.

    This is Bayes' rule with the prior's support: OrienterNet (Sarlin et al., CVPR 2023, Sec. 3.5) multiplies the
    volume by a GPS prior; here the prior is uniform over the square, so the product is a restriction.

    Args:
        log_volume: ``(..., H, W)`` log-probabilities over a north-up crop centred on the prior (any leading
            dimensions, e.g. yaw bins); normalised over its last three dimensions, or two when it has two.
        halfwidth_m: half-side of the square, metres (>= 0).
        cell_m: cell size, metres (> 0).

    Returns:
        Same shape and dtype, ``logsumexp`` over the last ``min(3, ndim)`` dimensions equal to 0.

    Raises:
        ValueError: negative ``halfwidth_m`` or non-positive ``cell_m``.
    """
    if halfwidth_m < 0 or cell_m <= 0:
        raise ValueError(f"halfwidth_m must be >= 0 and cell_m > 0, got {halfwidth_m} and {cell_m}")
    h, w = log_volume.shape[-2:]
    reach = halfwidth_m + 0.5 * cell_m + 1e-9  # a cell whose centre is within half a cell of the square meets it
    cols = (torch.arange(w, dtype=torch.float64) + 0.5 - w / 2) * cell_m
    rows = (h / 2 - 0.5 - torch.arange(h, dtype=torch.float64)) * cell_m
    keep = (rows.abs()[:, None] <= reach) & (cols.abs()[None, :] <= reach)
    masked = log_volume.masked_fill(~keep.to(log_volume.device), float("-inf"))
    dims = min(3, log_volume.ndim)
    flat = masked.reshape(*masked.shape[:-dims], -1)
    return torch.log_softmax(flat, dim=-1).reshape(masked.shape)


def fuse_log_volumes(log_volumes: Tensor, rel_poses: Tensor, cell_m: float, crop_centres: Tensor) -> Tensor:
    """Sequential fusion (OrienterNet, Sec. 3.5): the volume of the last frame times those of earlier frames,
    each moved to the last frame by the relative pose (as odometry gives it).

    Args:
        log_volumes: ``(T, N, H, W)`` log-probabilities of T frames, each over its own north-up crop.
        rel_poses: ``(T, 3)`` pose of frame t in the body frame of the last frame: ``(forward m, left m, dyaw rad)``
            (the last row is zeros).
        cell_m: cell size, metres.
        crop_centres: ``(T, 2)`` map-frame ``(x, y)`` metres of each crop's centre.

    Returns:
        ``(N, H, W)`` fused log-probabilities over the last frame's crop (normalized).
    """
    t_count, n_yaw, h, w = log_volumes.shape
    fused = log_volumes[-1].clone()
    yaws = torch.arange(n_yaw, dtype=log_volumes.dtype, device=log_volumes.device) * (2 * math.pi / n_yaw)
    for t in range(t_count - 1):
        fwd, left, dyaw = (float(v) for v in rel_poses[t])
        # frame t's position = last position + R(yaw) (fwd, left); its crop is offset by the centre difference
        dx = torch.cos(yaws) * fwd - torch.sin(yaws) * left  # (N,) metres east
        dy = torch.sin(yaws) * fwd + torch.cos(yaws) * left
        shift_c = (dx + float(crop_centres[-1, 0] - crop_centres[t, 0])) / cell_m  # columns
        shift_r = -(dy + float(crop_centres[-1, 1] - crop_centres[t, 1])) / cell_m  # rows
        kshift = round(dyaw / (2 * math.pi / n_yaw))
        src = torch.roll(log_volumes[t], shifts=-kshift, dims=0)  # src[k] = volume at yaw bin k + kshift
        cols = torch.arange(w, dtype=src.dtype)[None, None, :] + shift_c[:, None, None]
        rows = torch.arange(h, dtype=src.dtype)[None, :, None] + shift_r[:, None, None]
        grid = torch.stack([((2 * cols + 1) / w - 1).expand(n_yaw, h, w), ((2 * rows + 1) / h - 1).expand(n_yaw, h, w)],
                           dim=-1)  # fmt: skip
        prob = F.grid_sample(src.exp()[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        fused = fused + torch.log(prob[:, 0].clamp_min(1e-12))
    return torch.log_softmax(fused.reshape(-1), dim=0).reshape(n_yaw, h, w)


class ExhaustiveMatcher(Matcher):
    """The ``bev-osm-exhaustive`` matcher: ``match((template, num_yaws), (map_features, log_prior))`` -> the
    ``(B, N, H, W)`` log-probability volume (FFT correlation by default, ``method="direct"`` for convolution)."""

    def __init__(self, method: str = "fft") -> None:
        if method not in ("fft", "direct"):
            raise ValueError(f"method must be 'fft' or 'direct', got {method!r}")
        self.method = method

    def match(self, query_features: Any, map_representation: Any) -> Tensor:
        """``query_features = (template (B, C, T, T) float, num_yaws: int)``, ``map_representation =
        (map_features (B, C, H, W) float, log_prior (B, H, W) float or None)`` -> ``(B, num_yaws, H, W)``
        log-probabilities over (yaw bin, map row, map column), normalised over the whole volume
        (OrienterNet, Sarlin et al. CVPR 2023, Sec. 3.3)."""
        template, num_yaws = query_features
        map_features, log_prior = map_representation
        templates = rotate_templates(template, int(num_yaws))
        corr = correlate_fft if self.method == "fft" else correlate_direct
        return log_softmax_volume(corr(map_features, templates), log_prior)

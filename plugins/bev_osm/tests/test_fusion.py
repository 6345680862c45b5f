"""Sequential fusion (OrienterNet, Sarlin et al. CVPR 2023, Sec. 3.5) against an independent oracle: crops with
different centres, relative poses with non-zero yaw and odometry drift.

The oracle below is written from the conventions of :mod:`maploc_bev_osm.matching` (crop layout, yaw bins) and
plain SE(2) composition, cell by cell in NumPy; it shares no code with ``fuse_log_volumes``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maploc_bev_osm.matching import expectation_pose, fuse_log_volumes


def _bilinear_zero_outside(p: np.ndarray, r: float, c: float) -> float:
    """``p (H, W)`` at the continuous cell ``(r, c)`` (cell centres at integers), bilinear, 0 outside the grid."""
    h, w = p.shape
    r0, c0 = math.floor(r), math.floor(c)
    out = 0.0
    for rr, wr in ((r0, 1 - (r - r0)), (r0 + 1, r - r0)):
        for cc, wc in ((c0, 1 - (c - c0)), (c0 + 1, c - c0)):
            if 0 <= rr < h and 0 <= cc < w:
                out += wr * wc * p[rr, cc]
    return out


def fuse_oracle(log_volumes: np.ndarray, rel_poses: np.ndarray, cell_m: float, centres: np.ndarray) -> np.ndarray:
    """For every hypothesis (yaw bin k, cell r, c) of the last frame: its map pose, the pose of frame t that the
    odometry implies (x_t = x + R(yaw) (fwd, left), yaw_t = yaw + dyaw), that pose's cell in frame t's own crop
    and the nearest yaw bin; the product of the frames' probabilities there, normalised."""
    t_count, n_yaw, h, w = log_volumes.shape
    xc, yc = centres[-1]
    out = np.zeros((n_yaw, h, w))
    for k in range(n_yaw):
        yaw = 2 * math.pi * k / n_yaw
        for r in range(h):
            for c in range(w):
                x = xc + (c + 0.5 - w / 2) * cell_m
                y = yc + (h / 2 - r - 0.5) * cell_m
                total = float(log_volumes[-1, k, r, c])
                for t in range(t_count - 1):
                    fwd, left, dyaw = rel_poses[t]
                    xt = x + math.cos(yaw) * fwd - math.sin(yaw) * left
                    yt = y + math.sin(yaw) * fwd + math.cos(yaw) * left
                    kt = round((yaw + dyaw) / (2 * math.pi / n_yaw)) % n_yaw
                    ct = (xt - centres[t, 0]) / cell_m + w / 2 - 0.5
                    rt = h / 2 - 0.5 - (yt - centres[t, 1]) / cell_m
                    p = _bilinear_zero_outside(np.exp(log_volumes[t, kt]), rt, ct)
                    total += math.log(max(p, 1e-12))
                out[k, r, c] = total
    flat = out.reshape(-1)
    return (flat - (flat.max() + np.log(np.exp(flat - flat.max()).sum()))).reshape(out.shape)


def _random_log_volumes(t: int, n_yaw: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = 3.0 * torch.randn(t, n_yaw * h * w, generator=g, dtype=torch.float64)
    return torch.log_softmax(v, dim=1).reshape(t, n_yaw, h, w)


@pytest.mark.parametrize(
    ("rel_poses", "centres", "cell_m"),
    [
        # different crop centres (whole and fractional cells), zero relative yaw
        ([[-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[2.0, -4.0], [0.0, 0.0]], 1.0),
        # a left turn of 90 deg plus 4 deg of odometry drift, fractional offsets, 3 frames, 2 m cells
        ([[-5.3, 1.7, math.radians(-94.0)], [-2.2, -0.6, math.radians(-41.0)], [0.0, 0.0, 0.0]],
         [[-3.1, 5.0], [1.0, 2.6], [0.4, -0.2]], 2.0),
        # a right turn, the earlier crops far off (part of their hypotheses fall outside: probability 0 there)
        ([[-4.0, 3.0, math.radians(138.0)], [0.0, 0.0, 0.0]], [[7.0, -6.0], [-1.5, 0.5]], 1.0),
    ],
)
def test_fusion_equals_the_oracle(rel_poses, centres, cell_m):
    n_yaw, h, w = 8, 9, 11
    vols = _random_log_volumes(len(rel_poses), n_yaw, h, w, seed=len(rel_poses))
    rel, cen = torch.tensor(rel_poses, dtype=torch.float64), torch.tensor(centres, dtype=torch.float64)
    fused = fuse_log_volumes(vols, rel, cell_m, cen)
    expect = fuse_oracle(vols.numpy(), rel.numpy(), cell_m, cen.numpy())
    assert fused.shape == (n_yaw, h, w)
    np.testing.assert_allclose(fused.numpy(), expect, rtol=0, atol=1e-9)


def _peaked(n_yaw: int, h: int, w: int, k: int, r: int, c: int) -> torch.Tensor:
    """A log-volume with a broad peak at (k, r, c) (Gaussian over 1.5 cells, one yaw bin)."""
    rr, cc = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    v = torch.full((n_yaw, h, w), -30.0, dtype=torch.float64)
    v[k] = -((rr - r) ** 2 + (cc - c) ** 2) / (2 * 1.5**2)
    return v


def test_fusion_finds_the_pose_on_a_turn_with_drift():
    """Three frames on an L-shaped path (east, then north), each crop centred elsewhere; the last frame alone
    prefers a distractor, the odometry (drifted by 0.4 m and 5 deg) brings the earlier frames' evidence to the
    true pose."""
    n_yaw, h, w, cell = 16, 25, 25, 1.0
    bin_ = 2 * math.pi / n_yaw
    # map poses (x, y, yaw): frame 0 heading east, frame 1 at the corner heading north, frame 2 further north
    poses = [(-6.0, -3.0, 0.0), (0.0, -3.0, 4 * bin_), (0.0, 3.0, 4 * bin_)]
    centres = torch.tensor([[-4.0, -1.0], [3.0, -5.0], [1.0, 2.0]], dtype=torch.float64)

    def cell_of(t):
        x, y, yaw = poses[t]
        c = (x - float(centres[t, 0])) / cell + w / 2 - 0.5
        r = h / 2 - 0.5 - (y - float(centres[t, 1])) / cell
        return round(yaw / bin_), round(r), round(c)

    vols = [_peaked(n_yaw, h, w, *cell_of(t)) for t in range(3)]
    k2, r2, c2 = cell_of(2)
    vols[2][k2, 3, 20] = 2.0  # the distractor: the last frame alone picks it
    vols = torch.log_softmax(torch.stack(vols).reshape(3, -1), dim=1).reshape(3, n_yaw, h, w)

    def rel(t, drift_m=0.4, drift_rad=math.radians(5.0)):
        """Frame t in the body frame of the last (forward, left, dyaw), drifted."""
        (x, y, yaw), (xl, yl, yawl) = poses[t], poses[2]
        dx, dy = x - xl, y - yl
        fwd = math.cos(yawl) * dx + math.sin(yawl) * dy
        left = -math.sin(yawl) * dx + math.cos(yawl) * dy
        return [fwd + drift_m, left - drift_m, yaw - yawl + drift_rad]

    rel_poses = torch.tensor([rel(0), rel(1), [0.0, 0.0, 0.0]], dtype=torch.float64)
    _, alone = expectation_pose(vols[2][None], 0)
    assert alone[0].tolist() == [k2, 3, 20]
    fused = fuse_log_volumes(vols, rel_poses, cell, centres)
    _, arg = expectation_pose(fused[None], 0)
    assert arg[0].tolist() == [k2, r2, c2]
    np.testing.assert_allclose(fused.numpy(), fuse_oracle(vols.numpy(), rel_poses.numpy(), cell, centres.numpy()),
                               rtol=0, atol=1e-9)

"""Exhaustive matching: FFT equals direct correlation, rotation, volume, loss, pose read-out, fusion, gradcheck."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maploc_bev_osm.matching import (
    ExhaustiveMatcher,
    correlate_direct,
    correlate_fft,
    expectation_pose,
    fuse_log_volumes,
    log_softmax_volume,
    nll_loss,
    restrict_to_square,
    rotate_templates,
)


@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 2), c=st.integers(1, 3), n_yaw=st.integers(1, 4), h=st.integers(3, 12), w=st.integers(3, 12),
       half=st.integers(0, 4), seed=st.integers(0, 10_000))
def test_fft_equals_direct_float64(b, c, n_yaw, h, w, half, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(b, c, h, w, dtype=torch.float64, generator=g)
    t = torch.randn(b, n_yaw, c, 2 * half + 1, 2 * half + 1, dtype=torch.float64, generator=g)
    assert torch.allclose(correlate_fft(m, t), correlate_direct(m, t), atol=1e-9)
    assert torch.allclose(correlate_fft(m, t, chunk_yaws=1), correlate_direct(m, t), atol=1e-9)


def test_direct_matches_explicit_sum():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(1, 2, 6, 7, dtype=torch.float64, generator=g)
    t = torch.randn(1, 1, 2, 3, 3, dtype=torch.float64, generator=g)
    out = correlate_direct(m, t)
    r, c = 2, 4
    expect = sum(float(m[0, ch, r + i - 1, c + j - 1] * t[0, 0, ch, i, j]) for ch in range(2) for i in range(3)
                 for j in range(3))
    assert out[0, 0, r, c].item() == pytest.approx(expect)


def test_rotation_conventions():
    s = 7
    t = torch.zeros(1, 1, s, s, dtype=torch.float64)
    t[0, 0, 1, 3] = 1.0  # 2 cells straight ahead of the camera (centre 3, 3)
    rot = rotate_templates(t, 4)  # yaws 0 (east), 90 (north), 180 (west), 270 (south)
    # north: unchanged; east: the cell lies 2 cells east = column 5, row 3; west: column 1; south: row 5
    assert rot[0, 1, 0, 1, 3] == pytest.approx(1.0)
    assert rot[0, 0, 0, 3, 5] == pytest.approx(1.0)
    assert rot[0, 2, 0, 3, 1] == pytest.approx(1.0)
    assert rot[0, 3, 0, 5, 3] == pytest.approx(1.0)


def test_matching_recovers_planted_pose():
    g = torch.Generator().manual_seed(1)
    c, size, half, n_yaw = 4, 32, 5, 16
    m = torch.randn(1, c, size, size, generator=g, dtype=torch.float64)
    k_true, r_true, c_true = 5, 14, 19
    # the template that sees the map at (r, c) with yaw bin k: read the map through the rotation's inverse
    template = torch.randn(1, c, 2 * half + 1, 2 * half + 1, dtype=torch.float64, generator=g)
    rot = rotate_templates(template, n_yaw)[0, k_true]
    m[0, :, r_true - half:r_true + half + 1, c_true - half:c_true + half + 1] = rot * 3
    vol = ExhaustiveMatcher("fft").match((template, n_yaw), (m, None))
    _, arg = expectation_pose(vol, 1)
    assert arg[0].tolist() == [k_true, r_true, c_true]
    assert torch.logsumexp(vol.flatten(), 0).item() == pytest.approx(0.0, abs=1e-9)


def test_volume_prior_valid_and_loss():
    scores = torch.zeros(2, 4, 3, 3, dtype=torch.float64)
    prior = torch.zeros(2, 3, 3, dtype=torch.float64)
    prior[:, 1, 1] = math.log(10.0)
    valid = torch.ones(2, 3, 3, dtype=torch.bool)
    valid[:, 0, 0] = False
    vol = log_softmax_volume(scores, prior, valid)
    assert vol[0, 0, 0, 0] == -math.inf
    p = vol.exp()
    assert p[0, 2, 1, 1].item() == pytest.approx(10 / (4 * (10 + 7)))
    loss = nll_loss(vol, torch.tensor([[2, 1, 1], [0, 2, 2]]))
    assert loss.item() == pytest.approx(-(math.log(10 / 68) + math.log(1 / 68)) / 2)


def test_expectation_refines_between_cells_and_wraps_yaw():
    vol = torch.full((1, 8, 5, 5), -50.0, dtype=torch.float64)
    vol[0, 0, 2, 2] = 0.0
    vol[0, 7, 2, 3] = 0.0  # equal mass at yaw bins 0 and 7 (wrap) and columns 2 and 3
    pose, _ = expectation_pose(vol, 1)
    assert pose[0, 0].item() == pytest.approx(2.0, abs=1e-6)
    assert pose[0, 1].item() == pytest.approx(2.5, abs=1e-6)
    yaw = pose[0, 2].item()
    assert min(abs(yaw - (2 * math.pi - math.pi / 8)), abs(yaw + math.pi / 8)) < 1e-6


def test_fusion_sharpens_with_exact_odometry():
    n_yaw, size, cell = 4, 21, 1.0
    # frame 0 is 3 m behind the last frame, heading north (bin 1); both crops centred at the same point
    def blob(r, c, k):
        v = torch.full((n_yaw, size, size), -20.0, dtype=torch.float64)
        v[k, r, c] = 0.0
        v[k, 3, 3] = -0.5  # a distractor with different positions in each frame
        return torch.log_softmax(v.flatten(), 0).reshape(v.shape)
    last = blob(10, 10, 1)
    last[1, 3, 3] = last[1, 10, 10] + 0.1  # the last frame alone prefers the distractor
    first = blob(13, 10, 1)
    fused = fuse_log_volumes(torch.stack([first, last]), torch.tensor([[-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
                             cell, torch.zeros(2, 2))
    _, arg_last = expectation_pose(last[None], 0)
    _, arg = expectation_pose(fused[None], 0)
    assert arg_last[0].tolist() == [1, 3, 3]
    assert arg[0].tolist() == [1, 10, 10]


def test_gradcheck_matching():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)

    def f(m, t):
        return log_softmax_volume(correlate_fft(m, rotate_templates(t, 3)))

    assert torch.autograd.gradcheck(f, (m, t), eps=1e-6, atol=1e-5)


def test_bad_shapes():
    with pytest.raises(ValueError):
        rotate_templates(torch.zeros(1, 1, 4, 4), 4)
    with pytest.raises(ValueError):
        correlate_fft(torch.zeros(1, 2, 5, 5), torch.zeros(1, 3, 3, 3, 3))
    with pytest.raises(ValueError):
        ExhaustiveMatcher("nope")


@settings(max_examples=30, deadline=None)
@given(size=st.integers(4, 24), cell=st.sampled_from([0.5, 1.0, 2.0]), half=st.floats(0.0, 12.0),
       n_yaw=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_restrict_to_square_keeps_the_ratios_inside_and_nothing_outside(size, cell, half, n_yaw, seed):
    """Bayes with a uniform prior over the square: outside cells get probability 0, inside cells keep their ratios,
    and the result is normalised over the whole volume; a cell meets the square when its centre is within half a
    cell of it."""
    g = torch.Generator().manual_seed(seed)
    vol = torch.log_softmax(torch.randn(n_yaw * size * size, generator=g, dtype=torch.float64), 0).reshape(
        n_yaw, size, size)
    out = restrict_to_square(vol, half, cell)
    centres = (torch.arange(size, dtype=torch.float64) + 0.5 - size / 2) * cell  # column offsets (rows: mirrored)
    inside_1d = centres.abs() <= half + cell / 2 + 1e-9
    inside = inside_1d.flip(0)[:, None] & inside_1d[None, :]
    assert torch.equal(torch.isfinite(out[0]), inside)
    if inside.any():
        assert torch.logsumexp(out.reshape(-1), 0).abs() < 1e-9
        diff = (out - vol)[:, inside]
        assert torch.allclose(diff, diff.reshape(-1)[0].expand_as(diff))  # one constant shift: ratios kept


def test_restrict_to_square_centre_cells_and_bad_values():
    vol = torch.log_softmax(torch.zeros(1, 64, 64).reshape(-1), 0).reshape(1, 64, 64)
    out = restrict_to_square(vol, 16.0, 1.0)
    assert int(torch.isfinite(out).sum()) == 34 * 34  # offsets -16.5 .. 16.5 m around the prior
    assert int(torch.isfinite(restrict_to_square(vol, 0.0, 1.0)).sum()) == 4  # the 4 cells touching the centre
    with pytest.raises(ValueError, match="halfwidth_m must be >= 0"):
        restrict_to_square(vol, -1.0, 1.0)
    with pytest.raises(ValueError, match="cell_m > 0"):
        restrict_to_square(vol, 1.0, 0.0)

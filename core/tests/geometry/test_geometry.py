"""Property tests of maploc.geometry, with scipy and numpy as oracles and gradcheck in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from maploc import geometry as g
from maploc.testing import strategies as mst

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PI = math.pi


def to_xyzw(q_wxyz: np.ndarray) -> np.ndarray:
    return np.asarray(q_wxyz)[..., [1, 2, 3, 0]]


def to_wxyz(q_xyzw: np.ndarray) -> np.ndarray:
    return np.asarray(q_xyzw)[..., [3, 0, 1, 2]]


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def assert_rotation(R: torch.Tensor, atol: float = 1e-12) -> None:
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    assert max_abs(R.transpose(-1, -2) @ R, eye) < atol
    assert max_abs(torch.linalg.det(R), torch.ones(R.shape[:-2])) < atol


@st.composite
def stacked(draw, strategy, shape=(2, 3)):
    n = math.prod(shape)
    items = [draw(strategy) for _ in range(n)]
    return torch.stack(items).reshape(shape + items[0].shape)


# Angle ranges: identity neighbourhood, Taylor-switch neighbourhood, generic, half turns.
ANGLE_RANGES = {
    "tiny": (1e-12, 1e-7),
    "small": (1e-4, 2e-2),
    "generic": (0.0, PI),
    "near_pi": (PI - 1e-6, PI),
}


# --------------------------------------------------------------------------------------------
# quaternions
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(mst.unit_quaternions(), st.floats(0.1, 10.0), st.sampled_from([-1.0, 1.0]))
def test_quaternion_to_matrix_matches_scipy(q, scale, sign):
    R = g.quaternion_to_matrix(q * scale * sign)
    expected = Rotation.from_quat(to_xyzw(q.numpy())).as_matrix()
    assert max_abs(R, expected) < 1e-14
    assert_rotation(R)


@SETTINGS
@given(mst.rotations())
def test_matrix_to_quaternion_matches_scipy(R):
    q = g.matrix_to_quaternion(R)
    expected = to_wxyz(Rotation.from_matrix(R.numpy()).as_quat())
    expected = expected * (1.0 if expected[0] >= 0 else -1.0)
    assert float(q[0]) >= 0
    assert abs(float(torch.linalg.vector_norm(q)) - 1) < 1e-14
    # At w == 0 exactly the sign is a free choice; otherwise it is fixed by w >= 0.
    err = min(max_abs(q, expected), max_abs(q, -expected)) if abs(expected[0]) < 1e-12 else max_abs(q, expected)
    assert err < 1e-14


@SETTINGS
@pytest.mark.parametrize("angles", list(ANGLE_RANGES.values()), ids=list(ANGLE_RANGES))
@given(data=st.data())
def test_matrix_quaternion_round_trip(angles, data):
    R = data.draw(mst.rotations(*angles))
    q = g.matrix_to_quaternion(R)
    assert max_abs(g.quaternion_to_matrix(q), R) < 1e-14
    q2 = g.matrix_to_quaternion(g.quaternion_to_matrix(q))
    assert min(max_abs(q2, q), max_abs(q2, -q)) < 1e-14


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_matrix_to_quaternion_half_turns_each_branch(axis):
    """Half turns make w == 0; only the x/y/z Shepperd branches can recover them."""
    v = torch.zeros(3, dtype=torch.float64)
    v[axis] = PI
    R = g.axis_angle_to_matrix(v)
    q = g.matrix_to_quaternion(R)
    expected = torch.zeros(4, dtype=torch.float64)
    expected[axis + 1] = 1.0
    assert min(max_abs(q, expected), max_abs(q, -expected)) < 1e-15


def test_matrix_to_quaternion_ignores_small_non_orthogonality():
    R = torch.tensor(Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix())
    q_ref = g.matrix_to_quaternion(R)
    noisy = R + 1e-7 * torch.tensor([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0], [2.0, 0.0, -0.7]], dtype=torch.float64)
    q = g.matrix_to_quaternion(noisy)
    assert abs(float(torch.linalg.vector_norm(q)) - 1) < 1e-14
    assert max_abs(q, q_ref) < 1e-6


# --------------------------------------------------------------------------------------------
# axis-angle
# --------------------------------------------------------------------------------------------
@SETTINGS
@pytest.mark.parametrize("angles", list(ANGLE_RANGES.values()), ids=list(ANGLE_RANGES))
@given(data=st.data())
def test_axis_angle_to_matrix_matches_scipy(angles, data):
    v = data.draw(mst.axis_angles(*angles))
    R = g.axis_angle_to_matrix(v)
    assert max_abs(R, Rotation.from_rotvec(v.numpy()).as_matrix()) < 1e-14
    assert_rotation(R)


@SETTINGS
@given(mst.axis_angles(0.0, 30.0))
def test_axis_angle_to_matrix_large_angles(v):
    assert max_abs(g.axis_angle_to_matrix(v), Rotation.from_rotvec(v.numpy()).as_matrix()) < 1e-13


@SETTINGS
@pytest.mark.parametrize("angles", list(ANGLE_RANGES.values()), ids=list(ANGLE_RANGES))
@given(data=st.data())
def test_matrix_to_axis_angle_matches_scipy_and_input(angles, data):
    v = data.draw(mst.axis_angles(*angles))
    R = torch.tensor(Rotation.from_rotvec(v.numpy()).as_matrix())
    w = g.matrix_to_axis_angle(R)
    angle = float(torch.linalg.vector_norm(v))
    scipy_v = Rotation.from_matrix(R.numpy()).as_rotvec()
    if angle > PI - 1e-9:  # v and -v are the same rotation at a half turn
        assert min(max_abs(w, v), max_abs(w, -v)) < 1e-8
        assert min(max_abs(w, scipy_v), max_abs(w, -scipy_v)) < 1e-8
    else:
        # relative accuracy, so that tiny angles are checked meaningfully
        assert max_abs(w, v) <= 1e-9 * angle + 1e-15
        assert max_abs(w, scipy_v) <= 1e-9 * angle + 1e-15
    assert float(torch.linalg.vector_norm(w)) <= PI + 1e-15
    assert max_abs(g.axis_angle_to_matrix(w), R) < 1e-14


def test_axis_angle_identity_is_exact():
    assert max_abs(g.axis_angle_to_matrix(torch.zeros(3, dtype=torch.float64)), np.eye(3)) == 0.0
    assert max_abs(g.matrix_to_axis_angle(torch.eye(3, dtype=torch.float64)), np.zeros(3)) == 0.0


def test_axis_angle_continuous_across_series_switch():
    axis = torch.tensor([0.48, -0.6, 0.64], dtype=torch.float64)
    # axis_angle_to_matrix switches at |v| = 1e-2
    below = g.axis_angle_to_matrix(axis * 1e-2 * (1 - 1e-9))
    above = g.axis_angle_to_matrix(axis * 1e-2 * (1 + 1e-9))
    assert max_abs(below, above) < 1e-10
    # matrix_to_axis_angle switches at |sin(angle / 2)| = 1e-3
    angle = 2 * math.asin(1e-3)
    for s in (1 - 1e-9, 1 + 1e-9):
        v = axis * angle * s
        R = torch.tensor(Rotation.from_rotvec(v.numpy()).as_matrix())
        assert max_abs(g.matrix_to_axis_angle(R), v) < 5e-17


# --------------------------------------------------------------------------------------------
# angles, projection to SO(3)
# --------------------------------------------------------------------------------------------
@SETTINGS
@pytest.mark.parametrize("angles", list(ANGLE_RANGES.values()), ids=list(ANGLE_RANGES))
@given(data=st.data())
def test_rotation_angle_matches_scipy_magnitude(angles, data):
    v = data.draw(mst.axis_angles(*angles))
    R = torch.tensor(Rotation.from_rotvec(v.numpy()).as_matrix())
    angle = float(torch.linalg.vector_norm(v))
    est = float(g.rotation_angle(R))
    assert 0.0 <= est <= PI
    assert abs(est - angle) <= 1e-9 * angle + 2e-15
    assert abs(est - Rotation.from_matrix(R.numpy()).magnitude()) <= 1e-9 * angle + 2e-15


def test_rotation_angle_float32_accurate_near_zero_and_pi():
    """arccos((trace - 1) / 2) would be off by ~1e-4 rad here in float32; atan2 is not."""
    axis = np.array([0.36, 0.48, 0.8])
    for angle in (1e-3, PI - 1e-3):
        R = torch.tensor(Rotation.from_rotvec(axis * angle).as_matrix(), dtype=torch.float32)
        est = g.rotation_angle(R)
        assert est.dtype == torch.float32
        assert abs(float(est) - angle) < 2e-6


@SETTINGS
@given(mst.rotations(), mst.rotations())
def test_relative_rotation_angle(R1, R2):
    expected = (Rotation.from_matrix(R1.numpy()).inv() * Rotation.from_matrix(R2.numpy())).magnitude()
    assert abs(float(g.relative_rotation_angle(R1, R2)) - expected) < 1e-12
    assert abs(float(g.relative_rotation_angle(R2, R1)) - expected) < 1e-12
    assert float(g.relative_rotation_angle(R1, R1)) < 1e-7


@SETTINGS
@given(mst.rotations(), st.lists(st.floats(-1e-3, 1e-3), min_size=9, max_size=9))
def test_project_to_so3(R, noise):
    M = R + torch.tensor(noise, dtype=torch.float64).reshape(3, 3)
    P = g.project_to_so3(M)
    assert_rotation(P)
    # nearest rotation: no farther from M than the rotation M was made from
    assert float(torch.linalg.norm(M - P)) <= float(torch.linalg.norm(M - R)) + 1e-12
    assert max_abs(g.project_to_so3(R), R) < 1e-12
    # a reflection still gives a proper rotation
    assert_rotation(g.project_to_so3(-R))


@SETTINGS
@given(mst.translations(), mst.translations())
def test_skew_is_cross_product(v, w):
    assert max_abs(g.skew(v) @ w, np.cross(v.numpy(), w.numpy())) < 1e-12
    assert max_abs(g.skew(v), -g.skew(v).T) == 0.0


# --------------------------------------------------------------------------------------------
# batching, dtypes, errors
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(stacked(mst.rotations()), stacked(mst.rotations()))
def test_rotation_functions_are_batched(R, R2):
    assert R.shape == (2, 3, 3, 3)
    q = g.matrix_to_quaternion(R)
    v = g.matrix_to_axis_angle(R)
    a = g.rotation_angle(R)
    rel = g.relative_rotation_angle(R, R2)
    assert q.shape == (2, 3, 4) and v.shape == (2, 3, 3) and a.shape == (2, 3) and rel.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert max_abs(q[i, j], g.matrix_to_quaternion(R[i, j])) < 1e-14
            assert max_abs(v[i, j], g.matrix_to_axis_angle(R[i, j])) < 1e-14
            assert max_abs(a[i, j], g.rotation_angle(R[i, j])) < 1e-14
            assert max_abs(rel[i, j], g.relative_rotation_angle(R[i, j], R2[i, j])) < 1e-14
    assert max_abs(g.quaternion_to_matrix(q), R) < 1e-14
    assert max_abs(g.axis_angle_to_matrix(v), R) < 1e-14
    assert max_abs(g.project_to_so3(R), R) < 1e-12


@SETTINGS
@given(mst.rotations())
def test_float32_agrees_with_float64(R):
    R32 = R.float()
    for fn in (g.matrix_to_quaternion, g.matrix_to_axis_angle, g.rotation_angle, g.project_to_so3):
        out32, out64 = fn(R32), fn(R.float().double())
        assert out32.dtype == torch.float32
        if fn is g.matrix_to_axis_angle and float(g.rotation_angle(R)) > PI - 1e-3:
            continue  # sign of a half-turn vector is not defined
        if fn is g.matrix_to_quaternion and abs(float(out64[0])) < 1e-3:
            continue  # likewise for w ~ 0
        assert max_abs(out32, out64) < 2e-5
    q = g.matrix_to_quaternion(R).float()
    assert g.quaternion_to_matrix(q).dtype == torch.float32
    assert max_abs(g.quaternion_to_matrix(q), R) < 1e-6
    v = g.matrix_to_axis_angle(R).float()
    assert max_abs(g.axis_angle_to_matrix(v), R) < 2e-6


def test_wrong_shapes_raise():
    with pytest.raises(ValueError, match="q must have shape"):
        g.quaternion_to_matrix(torch.zeros(3))
    with pytest.raises(ValueError, match="R must have shape"):
        g.matrix_to_quaternion(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="v must have shape"):
        g.axis_angle_to_matrix(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="floating-point"):
        g.axis_angle_to_matrix(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="t must have shape"):
        g.to_matrix(torch.eye(3), torch.zeros(4))
    with pytest.raises(ValueError, match="points must have shape"):
        g.transform_points(torch.eye(3), torch.zeros(3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="K must have shape"):
        g.project(torch.ones(5, 3), torch.eye(4))
    with pytest.raises(ValueError, match="T must have shape"):
        g.from_matrix(torch.eye(3))


# --------------------------------------------------------------------------------------------
# SE(3)
# --------------------------------------------------------------------------------------------
def np_matrix(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R.numpy(), t.numpy()
    return T


@SETTINGS
@given(mst.poses())
def test_se3_matrix_round_trip(pose):
    R, t = pose
    T = g.to_matrix(R, t)
    assert T.shape == (4, 4)
    assert max_abs(T, np_matrix(R, t)) == 0.0
    R2, t2 = g.from_matrix(T)
    assert max_abs(R2, R) == 0.0 and max_abs(t2, t) == 0.0
    R3, t3 = g.from_matrix(T[:3])
    assert max_abs(R3, R) == 0.0 and max_abs(t3, t) == 0.0


@SETTINGS
@given(mst.poses(), mst.poses(), mst.poses())
def test_se3_group_laws(a, b, c):
    eye, zero = torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    # composition is the matrix product
    ab = g.compose(*a, *b)
    assert max_abs(g.to_matrix(*ab), np_matrix(*a) @ np_matrix(*b)) < 1e-12
    # associativity
    left = g.compose(*ab, *c)
    right = g.compose(*a, *g.compose(*b, *c))
    assert max_abs(left[0], right[0]) < 1e-13 and max_abs(left[1], right[1]) < 1e-12
    # identity
    for R, t in (g.compose(*a, eye, zero), g.compose(eye, zero, *a)):
        assert max_abs(R, a[0]) == 0.0 and max_abs(t, a[1]) == 0.0
    # inverse, on both sides, and against the numpy matrix inverse
    inv = g.invert(*a)
    for R, t in (g.compose(*a, *inv), g.compose(*inv, *a)):
        assert max_abs(R, eye) < 1e-14 and max_abs(t, zero) < 1e-13
    assert max_abs(g.to_matrix(*inv), np.linalg.inv(np_matrix(*a))) < 1e-12


@SETTINGS
@given(mst.poses(), mst.poses(), mst.points_in_front(max_points=8))
def test_transform_points(a, b, points):
    R, t = a
    out = g.transform_points(R, t, points)
    assert max_abs(out, points.numpy() @ R.numpy().T + t.numpy()) < 1e-12
    # applying a composition equals applying b then a
    Rc, tc = g.compose(*a, *b)
    assert max_abs(g.transform_points(Rc, tc, points), g.transform_points(R, t, g.transform_points(*b, points))) < 1e-11
    # inverse undoes
    assert max_abs(g.transform_points(*g.invert(R, t), out), points) < 1e-12


@SETTINGS
@given(stacked(mst.rotations(), (4,)), stacked(mst.translations(), (4,)), mst.points_in_front(max_points=6))
def test_transform_points_broadcasts(R, t, points):
    out = g.transform_points(R, t, points)  # (4, 3, 3) pose with (N, 3) points
    assert out.shape == (4, points.shape[0], 3)
    for i in range(4):
        assert max_abs(out[i], g.transform_points(R[i], t[i], points)) < 1e-13
    batched = torch.stack([points, 2 * points])  # (2, N, 3) with a (2, 1, ...) pose
    out2 = g.transform_points(R[:2, None], t[:2, None], batched[:, None])
    assert out2.shape == (2, 1, points.shape[0], 3)
    assert max_abs(out2[1, 0], g.transform_points(R[1], t[1], 2 * points)) < 1e-12


# --------------------------------------------------------------------------------------------
# camera
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(mst.cameras(), st.data())
def test_project_matches_numpy_and_round_trips(cam, data):
    K, W, H = cam
    points = data.draw(mst.points_in_front(K, W, H))
    uv, valid = g.project(points, K)
    assert uv.shape == (points.shape[0], 2) and valid.shape == (points.shape[0],)
    assert bool(valid.all())
    hom = points.numpy() @ K.numpy().T
    assert max_abs(uv, hom[:, :2] / hom[:, 2:]) < 1e-9
    # inside the image, by construction of the strategy
    assert float(uv[:, 0].min()) >= -0.5 - 1e-9 and float(uv[:, 0].max()) <= W - 0.5 + 1e-9
    # unproject with the true depth returns the points
    assert max_abs(g.unproject(uv, points[:, 2], K), points) < 1e-9
    # and projecting an unprojection returns the pixels
    depth = torch.linspace(0.5, 3.0, points.shape[0], dtype=torch.float64)
    assert max_abs(g.project(g.unproject(uv, depth, K), K)[0], uv) < 1e-9


def test_project_invalid_points_are_flagged_and_finite():
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    points = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 0.0], [1.0, 2.0, -3.0], [1.0, 2.0, 1e-7], [0.0, 0.0, 1e-5]])
    uv, valid = g.project(points, K)
    assert valid.tolist() == [True, False, False, False, True]
    assert bool(torch.isfinite(uv).all())
    assert max_abs(uv[0], [320 + 125, 240 + 250]) < 1e-4
    _, valid2 = g.project(points, K, min_depth=2.0)
    assert valid2.tolist() == [True, False, False, False, False]
    # no NaN gradients leak from the invalid points
    p = points.clone().requires_grad_(True)
    g.project(p, K)[0].sum().backward()
    assert bool(torch.isfinite(p.grad).all())


def test_project_with_skew_and_batched_K():
    K = torch.tensor([[[400.0, 3.0, 300.0], [0.0, 420.0, 200.0], [0.0, 0.0, 1.0]], [[100.0, 0, 50], [0, 100, 60], [0, 0, 1]]])
    points = torch.tensor([[0.5, -0.25, 2.0], [-1.0, 1.0, 4.0]], dtype=torch.float32)
    uv, _ = g.project(points, K)  # (2, 3, 3) cameras broadcast against (N, 3) points
    assert uv.shape == (2, 2, 2)
    assert max_abs(uv[0, 0], [400 * 0.25 + 3 * -0.125 + 300, 420 * -0.125 + 200]) < 1e-4
    assert max_abs(uv[1, 1], [100 * -0.25 + 50, 100 * 0.25 + 60]) < 1e-4
    assert max_abs(g.unproject(uv, points[:, 2].expand(2, 2), K), points.expand(2, 2, 3)) < 1e-5


def test_pixel_grid():
    grid = g.pixel_grid(3, 4, dtype=torch.float64)
    assert grid.shape == (3, 4, 2) and grid.dtype == torch.float64
    assert grid[2, 1].tolist() == [1.0, 2.0]
    assert grid[0, 0].tolist() == [0.0, 0.0]
    assert grid[..., 0].max() == 3 and grid[..., 1].max() == 2


@SETTINGS
@given(mst.cameras(max_size=64), st.floats(0.1, 50.0))
def test_backproject_fronto_parallel_plane(cam, finite_depth):
    K, W, H = cam
    depth = torch.full((H, W), finite_depth, dtype=torch.float64)
    points, valid = g.backproject_depth(depth, K)
    assert points.shape == (H, W, 3) and bool(valid.all())
    assert max_abs(points[..., 2], depth) == 0.0
    u = torch.arange(W, dtype=torch.float64)
    expected_x = (u - K[0, 2]) / K[0, 0] * finite_depth
    assert max_abs(points[3 % H, :, 0], expected_x) < 1e-10
    v = torch.arange(H, dtype=torch.float64)
    assert max_abs(points[:, 5 % W, 1], (v - K[1, 2]) / K[1, 1] * finite_depth) < 1e-10


@SETTINGS
@given(mst.cameras(max_size=48), mst.unit_vectors(), st.floats(1.0, 10.0))
def test_backproject_tilted_plane_and_invalid_pixels(cam, normal, offset):
    K, W, H = cam
    n = normal.clone()
    n[2] = abs(float(n[2])) + 0.5  # plane faces the camera everywhere in the image
    n = n / torch.linalg.vector_norm(n)
    # plane n . X = offset; a pixel's ray is X = z * K^-1 (u, v, 1)
    uv1 = torch.cat([g.pixel_grid(H, W, torch.float64), torch.ones(H, W, 1, dtype=torch.float64)], -1)
    rays = uv1 @ torch.linalg.inv(K).T
    depth = offset / (rays @ n)
    assume(bool((depth > 0).all()))
    depth[0, 0], depth[-1, -1], depth[0, -1], depth[-1, 0] = 0.0, float("nan"), -1.0, float("inf")
    points, valid = g.backproject_depth(depth, K)
    expected_valid = torch.ones(H, W, dtype=torch.bool)
    expected_valid[0, 0] = expected_valid[-1, -1] = expected_valid[0, -1] = expected_valid[-1, 0] = False
    assert torch.equal(valid, expected_valid)
    assert max_abs((points @ n)[valid], torch.full((int(valid.sum()),), offset, dtype=torch.float64)) < 1e-9
    assert float(points[~valid].abs().max()) == 0.0
    # every point projects back to its own pixel
    uv, ok = g.project(points[valid][None], K)
    assert bool(ok.all()) and max_abs(uv[0], g.pixel_grid(H, W, torch.float64)[valid]) < 1e-8


def test_backproject_batched():
    K = torch.tensor([[[10.0, 0, 1], [0, 10, 1], [0, 0, 1]], [[20.0, 0, 0], [0, 20, 0], [0, 0, 1]]])
    depth = torch.stack([torch.full((2, 3), 2.0), torch.full((2, 3), 4.0)])
    points, valid = g.backproject_depth(depth, K)
    assert points.shape == (2, 2, 3, 3) and bool(valid.all())
    assert max_abs(points[0, 1, 2], [(2 - 1) / 10 * 2, 0.0, 2.0]) < 1e-6
    assert max_abs(points[1, 1, 2], [2 / 20 * 4, 1 / 20 * 4, 4.0]) < 1e-6


@SETTINGS
@given(mst.cameras(), st.floats(0.1, 4.0), st.floats(0.1, 4.0), st.data())
def test_scale_intrinsics_matches_pixel_transform(cam, sx, sy, data):
    K, W, H = cam
    points = data.draw(mst.points_in_front(K, W, H))
    uv, _ = g.project(points, K)
    K2 = g.scale_intrinsics(K, sx, sy)
    uv2, _ = g.project(points, K2)
    expected = torch.stack([sx * (uv[:, 0] + 0.5) - 0.5, sy * (uv[:, 1] + 0.5) - 0.5], -1)
    assert max_abs(uv2, expected) < 1e-8
    assert max_abs(K2[2], [0, 0, 1]) == 0.0
    # scaling back recovers K
    assert max_abs(g.scale_intrinsics(K2, 1 / sx, 1 / sy), K) < 1e-9


def test_scale_intrinsics_keeps_centred_principal_point_centred():
    W, H = 640, 480
    K = torch.tensor([[500.0, 0, (W - 1) / 2], [0, 500, (H - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    K2 = g.scale_intrinsics(K, 0.25, 0.5)
    assert max_abs(K2, [[125.0, 0, (160 - 1) / 2], [0, 250, (240 - 1) / 2], [0, 0, 1]]) < 1e-12
    batched = g.scale_intrinsics(K.expand(2, 3, 3), torch.tensor([0.25, 2.0]), torch.tensor([0.5, 2.0]))
    assert max_abs(batched[0], K2) < 1e-12
    assert max_abs(batched[1, 0, 2], 2 * (W - 1) / 2 + 0.5) < 1e-12


@SETTINGS
@given(mst.cameras(), st.integers(0, 200), st.integers(0, 200), st.data())
def test_crop_intrinsics_matches_pixel_shift(cam, left, top, data):
    K, W, H = cam
    points = data.draw(mst.points_in_front(K, W, H))
    uv, _ = g.project(points, K)
    uv2, _ = g.project(points, g.crop_intrinsics(K, left, top))
    assert max_abs(uv2, uv - torch.tensor([left, top], dtype=torch.float64)) < 1e-9
    assert max_abs(g.crop_intrinsics(K, left, top)[:, :2], K[:, :2]) == 0.0


def test_crop_of_scaled_image_equals_pixel_maps():
    """Resize then crop, applied to a point, equals the composition of the pixel maps."""
    K = torch.tensor([[300.0, 0, 100.0], [0, 310.0, 80.0], [0, 0, 1]], dtype=torch.float64)
    X = torch.tensor([[0.3, -0.2, 2.5]], dtype=torch.float64)
    u, v = g.project(X, K)[0][0].tolist()
    K2 = g.crop_intrinsics(g.scale_intrinsics(K, 0.5, 0.5), 10, 20)
    uv2, _ = g.project(X, K2)
    assert max_abs(uv2[0], [0.5 * (u + 0.5) - 0.5 - 10, 0.5 * (v + 0.5) - 0.5 - 20]) < 1e-10


# --------------------------------------------------------------------------------------------
# pose errors
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(mst.poses())
def test_pose_error_zero_for_identical_poses(pose):
    rot, trans = g.pose_error(*pose, *pose)
    assert float(rot) < 1e-5 and float(trans) == 0.0


@SETTINGS
@given(mst.poses(), mst.axis_angles(1e-3, PI - 1e-3), mst.translations(1.0), st.booleans())
def test_pose_error_known_perturbation(pose, delta, dt, right):
    R, t = pose
    dR = g.axis_angle_to_matrix(delta)
    R_est = R @ dR if right else dR @ R  # camera-frame or world-frame perturbation: same angle
    rot, trans = g.pose_error(R_est, t + dt, R, t)
    assert abs(float(rot) - math.degrees(float(torch.linalg.vector_norm(delta)))) < 1e-8
    assert abs(float(trans) - float(torch.linalg.vector_norm(dt))) < 1e-12


@SETTINGS
@given(mst.poses(), mst.poses())
def test_pose_error_matches_dsacstar_formula(est, gt):
    """DSAC* test.py: angle of R_gt R_est^T (via the quaternion dot product), centre distance."""
    q_est = to_wxyz(Rotation.from_matrix(est[0].numpy()).as_quat())
    q_gt = to_wxyz(Rotation.from_matrix(gt[0].numpy()).as_quat())
    d = min(1.0, abs(float(np.dot(q_est, q_gt))))
    expected_deg = math.degrees(2 * math.acos(d))
    rot, trans = g.pose_error(*est, *gt)
    assert abs(float(rot) - expected_deg) < 1e-5
    assert abs(float(trans) - float(np.linalg.norm(est[1].numpy() - gt[1].numpy()))) < 1e-12


def test_pose_error_batched():
    R = g.axis_angle_to_matrix(torch.tensor([[0.0, 0, 0], [0, 0, PI / 2]], dtype=torch.float64))
    t = torch.tensor([[0.0, 0, 0], [3.0, 4.0, 0]], dtype=torch.float64)
    rot, trans = g.pose_error(R, t, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    assert max_abs(rot, [0.0, 90.0]) < 1e-6
    assert max_abs(trans, [0.0, 5.0]) < 1e-12


# --------------------------------------------------------------------------------------------
# SE(2)
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(st.floats(-1e3, 1e3))
def test_wrap_angle_range_and_equivalence(a):
    for dtype in (torch.float64, torch.float32):
        x = torch.tensor(a, dtype=dtype)
        w = g.wrap_angle(x)
        assert w.dtype == dtype
        pi = float(torch.tensor(PI, dtype=dtype))  # float32(pi) > pi
        assert -pi <= float(w) < pi
        assert float(w) == float(g.wrap_angle(w)) or abs(float(w) + PI) < 1e-6  # idempotent
        tol = 1e-9 if dtype == torch.float64 else 2e-4
        assert abs(math.cos(float(w)) - math.cos(a)) < tol and abs(math.sin(float(w)) - math.sin(a)) < tol


def test_wrap_angle_known_values():
    a = torch.tensor([0.0, PI, -PI, 1.5 * PI, -1.5 * PI, 4 * PI + 0.1, -1e-20, 1e-20], dtype=torch.float64)
    w = g.wrap_angle(a)
    assert max_abs(w, [0.0, -PI, -PI, -0.5 * PI, 0.5 * PI, 0.1, -1e-20, 1e-20]) < 1e-12
    assert float(w[6]) == -1e-20
    assert bool((w < PI).all())
    # values next to odd multiples of pi where a - 2 pi floor((a + pi) / 2 pi) rounds out of range
    for value, dtype in ((-12337.03515625, torch.float32), (-12311.90234375, torch.float32), (-12531.813095169686, torch.float64)):
        w = g.wrap_angle(torch.tensor(value, dtype=dtype))
        pi = float(torch.tensor(PI, dtype=dtype))
        assert -pi <= float(w) < pi and abs(math.remainder(float(w) - value, 2 * PI)) < 1e-2


@SETTINGS
@given(st.floats(-100, 100), st.floats(-100, 100), st.floats(-10, 10))
def test_se2_round_trip(x, y, yaw):
    T = g.se2_matrix(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64), torch.tensor(yaw, dtype=torch.float64))
    # mixed dtypes promote (a float32 yaw must not truncate float64 x, y)
    assert g.se2_matrix(torch.tensor(x, dtype=torch.float64), 0.0, torch.tensor(yaw)).dtype == torch.float64
    c, s = math.cos(yaw), math.sin(yaw)
    assert max_abs(T, [[c, -s, x], [s, c, y], [0, 0, 1]]) < 1e-12
    x2, y2, yaw2 = g.se2_from_matrix(T)
    assert float(x2) == x and float(y2) == y
    assert float(g.angle_difference(yaw2, torch.tensor(yaw, dtype=torch.float64))) < 1e-6
    assert -PI <= float(yaw2) <= PI


@SETTINGS
@given(st.floats(-50, 50), st.floats(-50, 50), st.floats(-PI, PI), st.lists(st.floats(-20, 20), min_size=2, max_size=12))
def test_se2_transform_points(x, y, yaw, coords):
    pts = torch.tensor(coords[: len(coords) // 2 * 2], dtype=torch.float64).reshape(-1, 2)
    x_, y_, yaw_ = (torch.tensor(v, dtype=torch.float64) for v in (x, y, yaw))
    out = g.se2_transform_points(x_, y_, yaw_, pts)
    T = g.se2_matrix(x_, y_, yaw_).numpy()
    expected = (np.c_[pts.numpy(), np.ones(len(pts))] @ T.T)[:, :2]
    assert max_abs(out, expected) < 1e-10
    # batched pose over a shared point set
    outb = g.se2_transform_points(torch.stack([x_, x_ + 1]), torch.stack([y_, y_]), torch.stack([yaw_, yaw_]), pts)
    assert outb.shape == (2,) + pts.shape
    assert max_abs(outb[1] - outb[0], np.tile([1.0, 0.0], (len(pts), 1))) < 1e-10


@SETTINGS
@given(st.floats(-20, 20), st.floats(-20, 20))
def test_angle_difference(a, b):
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    d = float(g.angle_difference(ta, tb))
    assert 0 <= d <= PI
    assert abs(d - float(g.angle_difference(tb, ta))) < 1e-12
    # equals the geodesic distance of the 2-D rotations
    expected = abs(math.atan2(math.sin(a - b), math.cos(a - b)))
    assert abs(d - expected) < 1e-9


def test_angle_difference_across_the_cut():
    assert abs(float(g.angle_difference(torch.tensor(PI - 0.1), torch.tensor(-PI + 0.1))) - 0.2) < 1e-6
    assert abs(float(g.angle_difference(torch.tensor(0.3), torch.tensor(0.3 + 4 * PI))) - 0.0) < 1e-5


# --------------------------------------------------------------------------------------------
# gradients (float64 gradcheck)
# --------------------------------------------------------------------------------------------
def f64(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).requires_grad_(True)


def gradcheck(fn, *inputs) -> None:
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_quaternion_to_matrix():
    gradcheck(g.quaternion_to_matrix, f64(0.3, -1.2, 0.5, 2.0))
    gradcheck(g.quaternion_to_matrix, f64([1.0, 0.0, 0.0, 0.0], [0.1, 0.2, -0.9, 0.4]))


@pytest.mark.parametrize(
    "v", [(0.3, -1.2, 0.5), (0.0, 0.0, 0.0), (1e-5, -2e-5, 3e-6), (6e-3, -8e-3, 0.0), (0.0, 3.0, 0.1)],
    ids=["generic", "zero", "tiny", "near_series_switch", "near_pi"],
)
def test_gradcheck_axis_angle_to_matrix(v):
    gradcheck(g.axis_angle_to_matrix, f64(*v))


def test_axis_angle_to_matrix_gradient_at_zero_is_skew():
    v = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(g.axis_angle_to_matrix, v)  # (3, 3, 3)
    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = 1
        assert max_abs(jac[..., i], g.skew(e)) < 1e-15


@pytest.mark.parametrize(
    "rotvec",
    [(0.3, -1.2, 0.5), (3.0, 0.2, 0.1), (0.1, 2.9, -0.3), (0.1, 0.2, -3.0), (1e-4, 2e-4, -1e-4)],
    ids=["w_branch", "x_branch", "y_branch", "z_branch", "near_identity"],
)
def test_gradcheck_matrix_to_quaternion_and_axis_angle(rotvec):
    R = torch.tensor(Rotation.from_rotvec(rotvec).as_matrix()).requires_grad_(True)
    gradcheck(g.matrix_to_quaternion, R)
    gradcheck(g.matrix_to_axis_angle, R)


@pytest.mark.parametrize("angle", [0.5, 2.0, 3.0])
def test_gradcheck_rotation_angle(angle):
    R = torch.tensor(Rotation.from_rotvec(np.array([0.36, -0.48, 0.8]) * angle).as_matrix()).requires_grad_(True)
    gradcheck(g.rotation_angle, R)
    R2 = torch.tensor(Rotation.from_rotvec([0.1, 0.2, 0.3]).as_matrix()).requires_grad_(True)
    gradcheck(g.relative_rotation_angle, R, R2)


def test_rotation_angle_gradient_finite_at_identity():
    R = torch.eye(3, dtype=torch.float64, requires_grad=True)
    g.rotation_angle(R).backward()
    assert bool(torch.isfinite(R.grad).all())
    v = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    g.matrix_to_axis_angle(g.axis_angle_to_matrix(v)).sum().backward()
    assert max_abs(v.grad, [1.0, 1.0, 1.0]) < 1e-12  # d(log(exp(v)))/dv = I at 0


def test_gradcheck_project_and_unproject():
    points = f64([0.3, -0.2, 2.0], [-1.0, 0.5, 4.0], [0.1, 0.1, 0.7])
    K = f64([500.0, 1.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0])
    gradcheck(lambda p, k: g.project(p, k)[0], points, K)
    uv = f64([10.0, 20.0], [300.0, -4.0])
    depth = f64(2.0, 5.0)
    gradcheck(g.unproject, uv, depth, K)
    gradcheck(lambda d, k: g.backproject_depth(d, k)[0], f64([1.0, 2.0, 3.0], [0.5, 0.1, 2.0]), K)
    gradcheck(lambda k: g.scale_intrinsics(k, 0.5, 0.25), K)


def test_gradcheck_transform_points_and_compose():
    R = torch.tensor(Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix()).requires_grad_(True)
    t = f64(1.0, -2.0, 0.5)
    points = f64([0.3, -0.2, 2.0], [-1.0, 0.5, 4.0])
    gradcheck(g.transform_points, R, t, points)
    gradcheck(lambda r, tt: g.compose(r, tt, r, tt)[1], R, t)
    gradcheck(lambda yaw, p: g.se2_transform_points(torch.tensor(1.0), torch.tensor(2.0), yaw, p), f64(0.7), points[:, :2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    dev = torch.device("cuda")
    v = torch.tensor([[0.3, -1.2, 0.5], [0.0, 0.0, 0.0]], device=dev)
    R = g.axis_angle_to_matrix(v)
    assert R.device.type == "cuda"
    assert max_abs(g.matrix_to_axis_angle(R).cpu(), v.cpu()) < 1e-5
    assert max_abs(g.rotation_angle(R).cpu(), [math.sqrt(0.09 + 1.44 + 0.25), 0.0]) < 1e-5
    K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]], device=dev)
    points, valid = g.backproject_depth(torch.ones(2, 8, 10, device=dev), K)
    uv, ok = g.project(points.reshape(2, -1, 3), K)
    assert bool(ok.all()) and bool(valid.all())
    grid = g.pixel_grid(8, 10, device=dev).reshape(-1, 2)
    assert max_abs(uv[1].cpu(), grid.cpu()) < 1e-4


# --------------------------------------------------------------------------------------------
# the shared strategies themselves
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(mst.unit_quaternions(), mst.rotations(), mst.rotations(0.5, 0.6), mst.poses(translation_bound=2.0))
def test_strategies_generate_what_they_promise(q, R, R_range, pose):
    assert q.dtype == torch.float64 and abs(float(torch.linalg.vector_norm(q)) - 1) < 1e-15
    assert_rotation(R)
    assert_rotation(R_range)
    assert 0.5 - 1e-12 <= Rotation.from_matrix(R_range.numpy()).magnitude() <= 0.6 + 1e-12
    assert_rotation(pose[0])
    assert pose[1].shape == (3,) and float(pose[1].abs().max()) <= 2.0


@SETTINGS
@given(mst.cameras(square_pixels=True), st.data())
def test_camera_strategy_is_plausible(cam, data):
    K, W, H = cam
    assert 16 <= W <= 1024 and 16 <= H <= 1024
    fov = 2 * math.degrees(math.atan(W / (2 * float(K[0, 0]))))
    assert 30 - 1e-9 <= fov <= 120 + 1e-9
    assert float(K[0, 0]) == float(K[1, 1]) and max_abs(K[2], [0, 0, 1]) == 0.0
    assert abs(float(K[0, 2]) - (W - 1) / 2) <= 0.1 * W + 1e-9
    points = data.draw(mst.points_in_front(min_depth=1.0, max_depth=2.0, max_points=5))
    assert 1 <= len(points) <= 5 and float(points[:, 2].min()) >= 1.0 and float(points[:, 2].max()) <= 2.0
    with pytest.raises(ValueError, match="none of them"):
        data.draw(mst.points_in_front(K=K))

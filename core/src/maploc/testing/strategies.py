"""Hypothesis strategies for geometry tests, reusable by every plugin.

Everything is generated from hypothesis primitives only (no hidden random state), so failures
shrink and replay deterministically. Values are float64 ``torch`` tensors on the CPU; convert with
``.to(dtype)`` where a test needs float32. Rotations are built with numpy / scipy formulas that do
not go through :mod:`maploc.geometry`, so they can serve as an independent oracle.

Example::

    from hypothesis import given
    from maploc.testing import strategies as mst

    @given(mst.poses(), mst.cameras())
    def test_something(pose, camera):
        R, t = pose
        K, width, height = camera
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor

__all__ = [
    "angles",
    "axis_angles",
    "cameras",
    "finite_floats",
    "points_in_front",
    "poses",
    "rotations",
    "translations",
    "unit_quaternions",
    "unit_vectors",
]


def finite_floats(min_value: float, max_value: float) -> st.SearchStrategy[float]:
    """Finite float64 values in ``[min_value, max_value]`` (no NaN, no infinity)."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False, allow_infinity=False, width=64)


def angles(min_value: float = -math.pi, max_value: float = math.pi) -> st.SearchStrategy[float]:
    """Angles in radians in ``[min_value, max_value]`` (python floats)."""
    return finite_floats(min_value, max_value)


@st.composite
def unit_quaternions(draw: st.DrawFn) -> Tensor:
    """Unit quaternions ``(w, x, y, z)``, uniformly distributed over SO(3), as ``(4,)`` float64.

    Uses Shoemake's subgroup algorithm (Graphics Gems III, 1992): three uniform numbers map to a
    uniform unit quaternion, so no zero quaternion can occur and no filtering is needed. The sign
    is not canonicalised (``w`` may be negative). Shrinks towards ``(0, 1, 0, 0)`` (a half turn).
    """
    u1, u2, u3 = (draw(finite_floats(0.0, 1.0)) for _ in range(3))
    a, b = math.sqrt(1.0 - u1), math.sqrt(u1)
    x, y = a * math.sin(2 * math.pi * u2), a * math.cos(2 * math.pi * u2)
    z, w = b * math.sin(2 * math.pi * u3), b * math.cos(2 * math.pi * u3)
    q = np.array([w, x, y, z], dtype=np.float64)
    return torch.from_numpy(q / np.linalg.norm(q))


@st.composite
def unit_vectors(draw: st.DrawFn) -> Tensor:
    """Unit vectors uniformly distributed on the sphere (Archimedes' method), ``(3,)`` float64."""
    z = draw(finite_floats(-1.0, 1.0))
    phi = draw(finite_floats(0.0, 2 * math.pi))
    r = math.sqrt(max(0.0, 1.0 - z * z))
    v = np.array([r * math.cos(phi), r * math.sin(phi), z], dtype=np.float64)
    return torch.from_numpy(v / np.linalg.norm(v))


@st.composite
def axis_angles(draw: st.DrawFn, min_angle: float = 0.0, max_angle: float = math.pi) -> Tensor:
    """Rotation vectors ``angle * axis`` with a uniform axis and ``angle`` in ``[min_angle, max_angle]``.

    Args:
        min_angle: smallest angle in radians (``>= 0``).
        max_angle: largest angle in radians.

    Returns:
        A strategy for ``(3,)`` float64 tensors.
    """
    if not 0.0 <= min_angle <= max_angle:
        raise ValueError(f"need 0 <= min_angle <= max_angle, got {min_angle}, {max_angle}")
    axis = draw(unit_vectors())
    angle = draw(finite_floats(min_angle, max_angle))
    return axis * angle


def _quat_wxyz_to_matrix_np(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _rotvec_to_matrix_np(v: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(v))
    if angle == 0.0:
        return np.eye(3)
    k = v / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * (K @ K)


@st.composite
def rotations(draw: st.DrawFn, min_angle: float | None = None, max_angle: float | None = None) -> Tensor:
    """Rotation matrices as ``(3, 3)`` float64 tensors.

    With no arguments the rotations are uniform over SO(3) (from :func:`unit_quaternions`). With
    ``min_angle`` and/or ``max_angle`` (radians) the rotation angle is drawn uniformly from that
    range about a uniform axis, which is how to target the identity (``max_angle=1e-6``) or half
    turns (``min_angle=math.pi - 1e-6``).
    """
    if min_angle is None and max_angle is None:
        q = draw(unit_quaternions()).numpy()
        R = _quat_wxyz_to_matrix_np(q)
    else:
        v = draw(axis_angles(0.0 if min_angle is None else min_angle, math.pi if max_angle is None else max_angle))
        R = _rotvec_to_matrix_np(v.numpy())
    return torch.from_numpy(np.ascontiguousarray(R))


@st.composite
def translations(draw: st.DrawFn, bound: float = 10.0) -> Tensor:
    """Translations with each coordinate in ``[-bound, bound]`` metres, ``(3,)`` float64."""
    return torch.tensor([draw(finite_floats(-bound, bound)) for _ in range(3)], dtype=torch.float64)


@st.composite
def poses(
    draw: st.DrawFn, translation_bound: float = 10.0, min_angle: float | None = None, max_angle: float | None = None
) -> tuple[Tensor, Tensor]:
    """Rigid transforms ``(R (3, 3), t (3,))`` in float64.

    Args:
        translation_bound: each coordinate of ``t`` lies in ``[-bound, bound]`` metres.
        min_angle: optional smallest rotation angle, radians (see :func:`rotations`).
        max_angle: optional largest rotation angle, radians.
    """
    return draw(rotations(min_angle=min_angle, max_angle=max_angle)), draw(translations(translation_bound))


@st.composite
def cameras(
    draw: st.DrawFn,
    min_size: int = 16,
    max_size: int = 1024,
    min_fov_deg: float = 30.0,
    max_fov_deg: float = 120.0,
    square_pixels: bool = False,
) -> tuple[Tensor, int, int]:
    """Plausible pinhole cameras ``(K (3, 3) float64, width, height)``.

    The horizontal field of view is in ``[min_fov_deg, max_fov_deg]``; ``fy / fx`` is in
    ``[0.9, 1.1]`` (exactly 1 with ``square_pixels``); the principal point lies within 10 % of the
    image size of the centre ``((W - 1) / 2, (H - 1) / 2)``; there is no skew.
    """
    width = draw(st.integers(min_size, max_size))
    height = draw(st.integers(min_size, max_size))
    fov = math.radians(draw(finite_floats(min_fov_deg, max_fov_deg)))
    fx = width / (2 * math.tan(fov / 2))
    fy = fx if square_pixels else fx * draw(finite_floats(0.9, 1.1))
    cx = (width - 1) / 2 + draw(finite_floats(-0.1, 0.1)) * width
    cy = (height - 1) / 2 + draw(finite_floats(-0.1, 0.1)) * height
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return K, width, height


@st.composite
def points_in_front(
    draw: st.DrawFn,
    K: Tensor | None = None,
    width: int | None = None,
    height: int | None = None,
    min_points: int = 1,
    max_points: int = 16,
    min_depth: float = 0.5,
    max_depth: float = 20.0,
) -> Tensor:
    """Camera-frame points in front of the camera, ``(N, 3)`` float64, metres.

    Each point has depth ``z`` in ``[min_depth, max_depth]``. With a camera (``K``, ``width``,
    ``height``) each point projects inside the image ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``
    (computed with ``K^-1`` here, independently of :mod:`maploc.geometry`); without one its
    normalised coordinates ``x / z`` and ``y / z`` are in ``[-1, 1]``.
    """
    if (K is None) != (width is None) or (K is None) != (height is None):
        raise ValueError("give all of K, width, height or none of them")
    n = draw(st.integers(min_points, max_points))
    pts = []
    Kinv = None if K is None else np.linalg.inv(K.detach().cpu().numpy().astype(np.float64))
    for _ in range(n):
        z = draw(finite_floats(min_depth, max_depth))
        if Kinv is None:
            xn, yn = draw(finite_floats(-1.0, 1.0)), draw(finite_floats(-1.0, 1.0))
        else:
            u = draw(finite_floats(-0.5, width - 0.5))
            v = draw(finite_floats(-0.5, height - 0.5))
            xn, yn, _ = Kinv @ np.array([u, v, 1.0])
        pts.append([xn * z, yn * z, z])
    return torch.tensor(pts, dtype=torch.float64).reshape(n, 3)

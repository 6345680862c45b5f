"""Novel camera poses around and between the mapping frames (TransPose's viewpoint widening).

TransPose (Sim2Real transfer learning for camera pose estimation, built on DSAC*) renders synthetic
views of a real scene from viewpoints the real mapping trajectory lacks; this module decides where
those cameras stand and look. Poses are ``T_cam2world``, metres, OpenCV camera frame (x right,
y down, z forward).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from maploc.errors import ConfigError
from maploc.geometry.rotation import axis_angle_to_matrix, matrix_to_axis_angle
from maploc.types import Pose

__all__ = ["sample_novel_poses", "rotation_angle_deg", "nearest_rotation", "slerp"]


def nearest_rotation(R: np.ndarray) -> np.ndarray:
    """The rotation matrix nearest to ``R`` in Frobenius norm (SVD projection), float64.

    Real pose files store rounded matrices (7-Scenes: ``|R R^T - I| ~ 1e-4``); angles are measured
    between projected rotations.
    """
    U, _, Vt = np.linalg.svd(np.asarray(R, dtype=np.float64))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    return U @ D @ Vt


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotations, degrees: ``atan2(sin, cos)`` of ``M = R_a^T R_b`` with
    ``cos = (trace M - 1) / 2`` and ``sin = |vee(M - M^T)| / 2`` (accurate near 0, unlike ``arccos``).

    Args:
        R_a: ``(..., 3, 3)``; R_b: ``(..., 3, 3)`` (broadcast).

    Returns:
        ``(...)`` float64 degrees in ``[0, 180]``.
    """
    R_a, R_b = np.asarray(R_a, dtype=np.float64), np.asarray(R_b, dtype=np.float64)
    M = np.swapaxes(R_a, -1, -2) @ R_b
    cos = (np.trace(M, axis1=-2, axis2=-1) - 1.0) / 2.0
    vee = np.stack([M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0], M[..., 1, 0] - M[..., 0, 1]], -1)
    sin = np.linalg.norm(vee, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def _exp(rotvec: np.ndarray) -> np.ndarray:
    return axis_angle_to_matrix(torch.from_numpy(np.asarray(rotvec, dtype=np.float64))).numpy()


def _log(R: np.ndarray) -> np.ndarray:
    return matrix_to_axis_angle(torch.from_numpy(np.asarray(R, dtype=np.float64))).numpy()


def slerp(R_a: np.ndarray, R_b: np.ndarray, s: float) -> np.ndarray:
    """Geodesic interpolation ``R_a exp(s log(R_a^T R_b))`` between two rotations (float64);
    ``s = 0`` gives ``R_a``, ``s = 1`` gives ``R_b``, and the angle to ``R_a`` is ``s`` times theirs."""
    return R_a @ _exp(s * _log(R_a.T @ R_b))


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def sample_novel_poses(
    T_cam2world_map: Sequence[Pose], n: int, *, max_angle_deg: float = 60.0, max_translation_m: float = 0.5,
    seed: int = 0, pivot_distance_m: float = 0.0,
) -> list[Pose]:
    """Samples ``n`` camera poses around and between the mapping frames.

    For each pose, independently (one ``numpy`` generator seeded with ``seed``, so a seed
    reproduces the list exactly and the first ``k`` poses do not depend on ``n``):

    1. **Segment.** Two mapping frames ``i`` and ``j`` are drawn uniformly with replacement
       (``i == j`` samples *around* frame ``i``, ``i != j`` *between* them). A fraction
       ``s ~ U[0, 1]`` gives the base pose: centre ``c_b = (1 - s) c_i + s c_j`` (on the segment
       between the two centres) and rotation ``R_b = slerp(R_i, R_j, s)`` (geodesic interpolation).
    2. **Rotation budget.** ``d_b`` = the angle from ``R_b`` to the nearest mapping rotation (any
       frame). If ``d_b > max_angle_deg`` (two mapping frames more than ``2 max_angle_deg`` apart and
       ``s`` near the middle), ``s`` is redrawn (up to 100 times, then ``s`` = 0 or 1 at random, a mapping frame).
    3. **Rotation.** A perturbation ``dR`` of angle ``a ~ U[0, max_angle_deg - d_b]`` about a uniformly
       random axis (world frame): ``R = dR R_b``. By the triangle inequality of the geodesic metric
       on SO(3), the angle from ``R`` to the nearest mapping rotation is ``<= a + d_b <= max_angle_deg``.
    4. **Translation.** With ``pivot_distance_m > 0`` the camera orbits the point
       ``p = c_b + pivot_distance_m * z_b`` (``z_b``: the base optical axis) by ``dR``, so it keeps
       looking at the surface the base camera looked at: offset ``o = (p - c_b) - dR (p - c_b)``;
       with ``pivot_distance_m = 0`` it rotates in place (``o = 0``). ``o`` is shortened to
       ``max_translation_m`` if longer, then a random offset ``r``, uniform in the ball of radius
       ``max_translation_m - |o|``, is added: ``c = c_b + o + r``. So ``|c - c_b| <=
       max_translation_m``: the camera centre lies within ``max_translation_m`` of the segment
       ``[c_i, c_j]`` it was sampled on (for ``i == j``: of the centre ``c_i``).

    Mapping rotations are first projected onto SO(3) (:func:`nearest_rotation`); the bounds hold
    for the returned float32 poses up to float32 rounding (~1e-4 degree, ~1e-6 m).

    Args:
        T_cam2world_map: the mapping frames' camera-to-world poses (at least one).
        n: number of poses to sample (``>= 0``).
        max_angle_deg: bound on the angle to the nearest mapping rotation, degrees, in ``[0, 180]``.
        max_translation_m: bound on the distance of the centre to its segment, metres, ``>= 0``.
        seed: the random seed.
        pivot_distance_m: distance of the orbit point in front of the base camera, metres
            (``0`` = rotate about the camera centre). A scene's median depth makes the rotated
            cameras keep seeing the scene.

    Returns:
        ``n`` float32 :class:`~maploc.types.Pose` (``T_cam2world``).

    Raises:
        ConfigError: for no mapping poses, ``n < 0`` or a bound out of range.
    """
    if len(T_cam2world_map) == 0:
        raise ConfigError("sample_novel_poses: no mapping poses to sample around")
    if n < 0:
        raise ConfigError(f"sample_novel_poses: n must be >= 0, got {n}")
    if not 0.0 <= max_angle_deg <= 180.0:
        raise ConfigError(f"sample_novel_poses: max_angle_deg must be in [0, 180], got {max_angle_deg}")
    if not max_translation_m >= 0.0:
        raise ConfigError(f"sample_novel_poses: max_translation_m must be >= 0, got {max_translation_m}")
    if not pivot_distance_m >= 0.0:
        raise ConfigError(f"sample_novel_poses: pivot_distance_m must be >= 0, got {pivot_distance_m}")
    R_map = np.stack([nearest_rotation(T.R.detach().cpu().double().numpy()) for T in T_cam2world_map])
    c_map = np.stack([T.t.detach().cpu().double().numpy() for T in T_cam2world_map])
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(n):
        i, j = rng.integers(len(R_map), size=2)
        for attempt in range(101):
            s = float(rng.uniform()) if attempt < 100 else float(rng.uniform() >= 0.5)
            R_b = slerp(R_map[i], R_map[j], s)
            d_b = float(rotation_angle_deg(R_b[None], R_map).min())
            if d_b <= max_angle_deg:
                break
        c_b = (1.0 - s) * c_map[i] + s * c_map[j]
        angle = np.radians(rng.uniform(0.0, max(0.0, max_angle_deg - d_b)))
        dR = _exp(angle * _random_unit(rng))
        R = dR @ R_b
        lever = pivot_distance_m * R_b[:, 2]
        orbit = lever - dR @ lever
        length = float(np.linalg.norm(orbit))
        if length > max_translation_m:
            orbit, length = orbit * (max_translation_m / length), max_translation_m
        radius = max(0.0, max_translation_m - length) * float(rng.uniform()) ** (1.0 / 3.0)
        offset = orbit + _random_unit(rng) * radius
        poses.append(Pose(R=torch.from_numpy(R).float(), t=torch.from_numpy(c_b + offset).float()))
    return poses

"""Pose errors as reported by visual-localization benchmarks."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from maploc.geometry.rotation import relative_rotation_angle

__all__ = ["pose_error"]


def pose_error(R_est: Tensor, t_est: Tensor, R_gt: Tensor, t_gt: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation and translation error between estimated and ground-truth camera-to-world poses.

    Both poses must be ``T_cam2world`` (``x_world = R @ x_cam + t``), so ``t`` is the camera
    centre in world coordinates and the translation error is the distance between the estimated
    and true camera centres. The rotation error is the angle of ``R_est^T @ R_gt`` (equal to the
    angle of ``R_gt @ R_est^T``). This matches the evaluation of DSAC* (Brachmann & Rother, TPAMI
    2021, ``test.py``) and the 7-Scenes / Cambridge Landmarks benchmarks. Passing world-to-camera
    poses instead would give a translation error that mixes in the rotation error.

    Args:
        R_est: ``(..., 3, 3)`` estimated camera-to-world rotation.
        t_est: ``(..., 3)`` estimated camera centre in world coordinates, metres.
        R_gt: ``(..., 3, 3)`` ground-truth camera-to-world rotation.
        t_gt: ``(..., 3)`` ground-truth camera centre, metres. Leading dims broadcast.

    Returns:
        ``rotation_error_deg`` ``(...)`` in degrees, in ``[0, 180]``, and ``translation_error_m``
        ``(...)`` in metres.

    Raises:
        ValueError: on wrong trailing shapes.
    """
    if t_est.shape[-1:] != (3,) or t_gt.shape[-1:] != (3,):
        raise ValueError(f"t_est and t_gt must be (..., 3), got {tuple(t_est.shape)} and {tuple(t_gt.shape)}")
    rot = relative_rotation_angle(R_est, R_gt) * (180.0 / math.pi)
    trans = torch.linalg.vector_norm(t_est - t_gt, dim=-1)
    return rot, trans

"""Pure-torch geometry: rotations, SE(3) and SE(2) poses, pinhole cameras and pose errors.

Everything here is batched over arbitrary leading dimensions, differentiable, and works in float32
and float64 on any device. Conventions: SI units (metres, radians), quaternions ``(w, x, y, z)``,
poses ``x_target = R @ x_source + t`` named by their frames (``T_cam2world``), OpenCV camera frame
(x right, y down, z forward) and pixel centres (top-left pixel centred at ``(0, 0)``).
"""

from maploc.geometry.camera import (
    backproject_depth,
    crop_intrinsics,
    pixel_grid,
    project,
    scale_intrinsics,
    unproject,
)
from maploc.geometry.errors import pose_error
from maploc.geometry.rotation import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    project_to_so3,
    quaternion_to_matrix,
    relative_rotation_angle,
    rotation_angle,
    skew,
)
from maploc.geometry.se2 import angle_difference, se2_from_matrix, se2_matrix, se2_transform_points, wrap_angle
from maploc.geometry.se3 import compose, from_matrix, invert, to_matrix, transform_points

__all__ = [
    "angle_difference",
    "axis_angle_to_matrix",
    "backproject_depth",
    "compose",
    "crop_intrinsics",
    "from_matrix",
    "invert",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "pixel_grid",
    "pose_error",
    "project",
    "project_to_so3",
    "quaternion_to_matrix",
    "relative_rotation_angle",
    "rotation_angle",
    "scale_intrinsics",
    "se2_from_matrix",
    "se2_matrix",
    "se2_transform_points",
    "skew",
    "to_matrix",
    "transform_points",
    "unproject",
    "wrap_angle",
]

"""Pinhole cameras of the renderer, camera poses from (x, y, height, yaw, pitch, roll), and their OpenGL matrices.

Frames (as in :mod:`maploc.types`): the **world frame** is the OSM map frame lifted to 3-D: x east, y north, z
up, metres, ground at ``z = 0``. The **camera frame** is OpenCV's: x right, y down, z forward. OpenGL's eye frame
is x right, y up, z backward, so ``T_world2eye = diag(1, -1, -1, 1) @ inverse(T_cam2world)``.

Heading: ``yaw`` is the direction of the optical axis projected on the ground, counter-clockwise from the map x
axis (east), radians, as :class:`maploc.types.Pose2`. ``pitch`` tilts the optical axis up (positive) and
``roll`` turns the camera about its optical axis (positive: its right side goes down, the scene turns
counter-clockwise in the image).
"""

from __future__ import annotations

import math

import numpy as np

from maploc.types import Camera

from .gl import RenderParameterError

__all__ = [
    "camera_pose",
    "make_camera",
    "opengl_projection",
    "opengl_view",
    "pose_yaw",
]

#: The matrix whose columns are the camera axes (x right, y down, z forward) in the body frame (x forward, y left,
#: z up).
_BODY_FROM_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def make_camera(width: int = 320, height: int = 240, fov_deg: float = 70.0) -> Camera:
    """A pinhole camera with square pixels and the principal point at the image centre.

    ``fx = fy = (width / 2) / tan(fov / 2)``; ``(cx, cy) = ((width - 1) / 2, (height - 1) / 2)`` (OpenCV pixel
    centres, as :meth:`maploc.types.Camera.from_focal`).

    Args:
        width: image width in pixels, 8 to 8192.
        height: image height in pixels, 8 to 8192.
        fov_deg: horizontal field of view in degrees, in ``(1, 170)``.

    Returns:
        The camera.

    Raises:
        RenderParameterError: a parameter is out of range (the message names it).
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 8 <= value <= 8192:
            raise RenderParameterError(f"{name} must be an integer number of pixels in [8, 8192], got {value!r}")
    if not isinstance(fov_deg, (int, float)) or not math.isfinite(fov_deg) or not 1.0 < fov_deg < 170.0:
        raise RenderParameterError(f"fov_deg (horizontal field of view) must be in (1, 170) degrees, got {fov_deg!r}")
    focal = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    return Camera.from_focal(focal, int(width), int(height))


def camera_pose(x: float, y: float, z: float, yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """``T_cam2world`` of a camera at ``(x, y, z)`` metres with the given heading, pitch and roll (radians).

    ``R_cam2world = Rz(yaw) @ Ry(-pitch) @ Rx(roll) @ B`` where ``B`` maps the OpenCV camera axes to the body
    axes (x forward, y left, z up); see the module docstring.

    Returns:
        ``(4, 4)`` float64 camera-to-world matrix (OpenCV camera frame, metres).
    """
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(-pitch), math.sin(-pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    Rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    Ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    Rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    T = np.eye(4)
    T[:3, :3] = Rz @ Ry @ Rx @ _BODY_FROM_CAM
    T[:3, 3] = (x, y, z)
    return T


def pose_yaw(T_cam2world: np.ndarray) -> float:
    """The heading (radians, CCW from east) of the optical axis of a ``(4, 4)`` camera-to-world pose.

    Raises:
        RenderParameterError: the optical axis is vertical (no heading).
    """
    forward = np.asarray(T_cam2world, dtype=np.float64)[:3, 2]
    if math.hypot(forward[0], forward[1]) < 1e-9:
        raise RenderParameterError("the camera looks straight up or down: its heading is undefined")
    return math.atan2(forward[1], forward[0])


def opengl_view(T_cam2world: np.ndarray) -> np.ndarray:
    """The OpenGL view matrix (world -> eye, eye frame x right, y up, z backward) of a camera pose.

    Args:
        T_cam2world: ``(4, 4)`` camera-to-world, OpenCV camera frame, metres.

    Returns:
        ``(4, 4)`` float64 ``T_world2eye``.
    """
    T = np.asarray(T_cam2world, dtype=np.float64)
    R, t = T[:3, :3], T[:3, 3]
    world2cam = np.eye(4)
    world2cam[:3, :3] = R.T
    world2cam[:3, 3] = -R.T @ t
    return np.diag([1.0, -1.0, -1.0, 1.0]) @ world2cam


def opengl_projection(camera: Camera, near: float, far: float) -> np.ndarray:
    """The OpenGL projection matrix of a pinhole camera, for an image read back top row first.

    With OpenCV pixel centres (pixel ``(u, v)`` covers ``[u - 0.5, u + 0.5)``), window coordinate ``x_w = u +
    0.5`` and ``y_w = H - (v + 0.5)`` (OpenGL's rows grow upwards; the renderer flips rows on read-back).

    Args:
        camera: intrinsics ``K`` and size.
        near: near clipping distance, metres (> 0).
        far: far clipping distance, metres (> near).

    Returns:
        ``(4, 4)`` float64 matrix, eye coordinates -> clip coordinates.

    Raises:
        RenderParameterError: ``near`` or ``far`` out of range.
    """
    if not (near > 0 and far > near):
        raise RenderParameterError(f"need 0 < near < far, got near={near}, far={far}")
    W, H = camera.width, camera.height
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    P = np.zeros((4, 4))
    P[0, 0] = 2 * fx / W
    P[0, 2] = 1 - 2 * (cx + 0.5) / W
    P[1, 1] = 2 * fy / H
    P[1, 2] = 2 * (cy + 0.5) / H - 1
    P[2, 2] = -(far + near) / (far - near)
    P[2, 3] = -2 * far * near / (far - near)
    P[3, 2] = -1.0
    return P

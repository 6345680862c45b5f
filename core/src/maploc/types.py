"""Value types shared by every method: cameras, poses, samples and pose estimates.

Conventions (stated once, used everywhere):

* Units are SI: metres and radians. Reported metrics carry their unit in their name.
* Poses are named by their frames: ``T_cam2world`` maps points from the camera frame to the world
  frame, ``x_world = R @ x_cam + t``.
* Camera frame: OpenCV convention, x right, y down, z forward (optical axis).
* Quaternions are ordered ``(w, x, y, z)``.
* Images are ``(3, H, W)`` float tensors in ``[0, 1]``; depth maps are ``(H, W)`` float tensors in
  metres with ``0`` marking an invalid pixel.

All types are frozen ``attrs`` classes. Tensors are excluded from ``==`` (use ``allclose``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from maploc.geometry import camera as _cam
from maploc.geometry import rotation as _rot
from maploc.geometry import se3 as _se3

__all__ = ["Camera", "Pose", "Pose2", "Sample", "Correspondences", "PoseEstimate", "Retrieval", "DEFAULT_CONDITION"]

#: The condition of a sample whose dataset names none and that has no sequence name either.
DEFAULT_CONDITION = "default"


def _check_K(instance: Any, attribute: attrs.Attribute, value: Tensor) -> None:
    if not isinstance(value, Tensor) or value.shape[-2:] != (3, 3):
        raise ValueError(f"{attribute.name} must be a (..., 3, 3) tensor, got {getattr(value, 'shape', type(value))}")


@attrs.frozen(kw_only=True, eq=False)
class Camera:
    """A pinhole camera (no distortion).

    Attributes:
        K: ``(3, 3)`` float intrinsic matrix in pixels. The pixel centre convention is that of
            OpenCV: the centre of the top-left pixel is at ``(0, 0)``.
        width: image width in pixels.
        height: image height in pixels.
    """

    K: Tensor = attrs.field(validator=_check_K)
    width: int = attrs.field(converter=int)
    height: int = attrs.field(converter=int)

    def __attrs_post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_focal(
        cls, focal: float, width: int, height: int, cx: float | None = None, cy: float | None = None,
        fy: float | None = None,
    ) -> Camera:
        """Builds a camera from a focal length in pixels; the principal point defaults to the
        image centre ``((width - 1) / 2, (height - 1) / 2)`` unless given."""
        cx = (width - 1) / 2 if cx is None else cx
        cy = (height - 1) / 2 if cy is None else cy
        fy = focal if fy is None else fy
        K = torch.tensor([[focal, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
        return cls(K=K, width=width, height=height)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def scale(self, sx: float, sy: float | None = None) -> Camera:
        """The camera of the image resized by ``(sx, sy)`` (``sy`` defaults to ``sx``).

        Pixel centres are preserved: ``u' = sx * (u + 0.5) - 0.5``. The new size is rounded.
        """
        sy = sx if sy is None else sy
        K = _cam.scale_intrinsics(self.K, sx, sy)
        return Camera(K=K, width=round(self.width * sx), height=round(self.height * sy))

    def resize(self, width: int, height: int) -> Camera:
        """The camera of the image resized to exactly ``width x height`` pixels."""
        return Camera(
            K=_cam.scale_intrinsics(self.K, width / self.width, height / self.height), width=width, height=height
        )

    def resize_to_height(self, height: int) -> Camera:
        """The camera of the image resized to ``height`` pixels, keeping the aspect ratio."""
        width = max(1, round(self.width * height / self.height))
        return self.resize(width, height)

    def crop(self, left: int, top: int, width: int, height: int) -> Camera:
        """The camera of the crop ``[top:top+height, left:left+width]`` of the image.

        Raises:
            ValueError: if the crop is empty.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"crop must be non-empty, got {width}x{height}")
        return Camera(K=_cam.crop_intrinsics(self.K, left, top), width=width, height=height)

    def to(self, *args: Any, **kwargs: Any) -> Camera:
        return attrs.evolve(self, K=self.K.to(*args, **kwargs))

    def __repr__(self) -> str:
        return f"Camera({self.width}x{self.height}, fx={self.fx:.2f}, fy={self.fy:.2f}, cx={self.cx:.2f}, cy={self.cy:.2f})"


def _check_R(instance: Any, attribute: attrs.Attribute, value: Tensor) -> None:
    if not isinstance(value, Tensor) or value.shape[-2:] != (3, 3):
        raise ValueError(f"R must be a (..., 3, 3) tensor, got {getattr(value, 'shape', type(value))}")


@attrs.frozen(kw_only=True, eq=False)
class Pose:
    """A rigid transform in SE(3), batched over any leading dimensions.

    The pose maps points from a source frame to a target frame: ``x_target = R @ x_source + t``;
    name variables by their frames (``T_cam2world``). Operations broadcast over leading dims.

    Attributes:
        R: ``(..., 3, 3)`` rotation matrix (float32 or float64).
        t: ``(..., 3)`` translation in metres, same dtype and leading shape as ``R``.
    """

    R: Tensor = attrs.field(validator=_check_R)
    t: Tensor

    def __attrs_post_init__(self) -> None:
        if self.t.shape[-1:] != (3,) or self.t.shape[:-1] != self.R.shape[:-2]:
            raise ValueError(f"t must have shape {tuple(self.R.shape[:-2]) + (3,)}, got {tuple(self.t.shape)}")

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def identity(cls, batch_shape: Sequence[int] = (), dtype: torch.dtype = torch.float32) -> Pose:
        R = torch.eye(3, dtype=dtype).expand(*batch_shape, 3, 3).clone()
        return cls(R=R, t=torch.zeros(*batch_shape, 3, dtype=dtype))

    @classmethod
    def from_matrix(cls, T: Tensor) -> Pose:
        """From a ``(..., 4, 4)`` (or ``(..., 3, 4)``) homogeneous matrix."""
        T = torch.as_tensor(T)
        if T.shape[-2:] not in ((4, 4), (3, 4)):
            raise ValueError(f"expected a (..., 4, 4) or (..., 3, 4) matrix, got {tuple(T.shape)}")
        return cls(R=T[..., :3, :3].clone(), t=T[..., :3, 3].clone())

    @classmethod
    def from_quaternion(cls, q_wxyz: Tensor, t: Tensor) -> Pose:
        """From a ``(..., 4)`` quaternion ``(w, x, y, z)`` (normalised here) and a ``(..., 3)`` translation."""
        q_wxyz = torch.as_tensor(q_wxyz)
        return cls(R=_rot.quaternion_to_matrix(q_wxyz), t=torch.as_tensor(t, dtype=q_wxyz.dtype))

    @classmethod
    def from_axis_angle(cls, axis_angle: Tensor, t: Tensor) -> Pose:
        """From a ``(..., 3)`` rotation vector (radians) and a ``(..., 3)`` translation."""
        return cls(R=_rot.axis_angle_to_matrix(axis_angle), t=torch.as_tensor(t, dtype=axis_angle.dtype))

    @classmethod
    def stack(cls, poses: Sequence[Pose], dim: int = 0) -> Pose:
        return cls(R=torch.stack([p.R for p in poses], dim), t=torch.stack([p.t for p in poses], dim))

    # -- conversions -------------------------------------------------------------------------
    def matrix(self) -> Tensor:
        """The ``(..., 4, 4)`` homogeneous matrix."""
        return _se3.to_matrix(self.R, self.t)

    def quaternion(self) -> Tensor:
        """The rotation as a ``(..., 4)`` unit quaternion ``(w, x, y, z)`` with ``w >= 0``."""
        return _rot.matrix_to_quaternion(self.R)

    # -- group operations --------------------------------------------------------------------
    def inverse(self) -> Pose:
        R, t = _se3.invert(self.R, self.t)
        return Pose(R=R, t=t)

    def compose(self, other: Pose) -> Pose:
        """``self ∘ other``: apply ``other`` first. ``T_a2c = T_b2c.compose(T_a2b)``."""
        R, t = _se3.compose(self.R, self.t, other.R, other.t)
        return Pose(R=R, t=t)

    def __matmul__(self, other: Pose) -> Pose:
        return self.compose(other)

    def transform(self, points: Tensor) -> Tensor:
        """Applies the pose to ``(..., N, 3)`` points (leading dims broadcast with the pose's)."""
        return _se3.transform_points(self.R, self.t, points)

    # -- tensor-like -------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.t.shape[:-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.R.dtype

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of an unbatched Pose")
        return self.shape[0]

    def __getitem__(self, index: Any) -> Pose:
        if not self.shape:
            raise IndexError("cannot index an unbatched Pose")
        return Pose(R=self.R[index], t=self.t[index])

    def to(self, *args: Any, **kwargs: Any) -> Pose:
        return Pose(R=self.R.to(*args, **kwargs), t=self.t.to(*args, **kwargs))

    def detach(self) -> Pose:
        return Pose(R=self.R.detach(), t=self.t.detach())

    def allclose(self, other: Pose, atol: float = 1e-6, rtol: float = 0.0) -> bool:
        return bool(torch.allclose(self.R, other.R, atol=atol, rtol=rtol) and torch.allclose(self.t, other.t, atol=atol, rtol=rtol))

    def magnitude(self) -> tuple[Tensor, Tensor]:
        """Rotation angle (radians) and translation norm (metres), each of shape ``(...)``."""
        return _rot.rotation_angle(self.R), torch.linalg.vector_norm(self.t, dim=-1)

    def __repr__(self) -> str:
        if self.shape:
            return f"Pose(shape={tuple(self.shape)}, dtype={self.dtype})"
        angle, _ = self.magnitude()
        t = ", ".join(f"{v:.4f}" for v in self.t.tolist())
        return f"Pose(t=[{t}] m, angle={math.degrees(float(angle)):.3f} deg)"


def _wrap(yaw: float) -> float:
    return math.remainder(float(yaw), 2 * math.pi)


@attrs.frozen(kw_only=True)
class Pose2:
    """A pose on a 2-D map (SE(2)): position in metres and heading in radians.

    Attributes:
        x: east (map x axis) in metres.
        y: north (map y axis) in metres.
        yaw: heading in radians, counter-clockwise from the map x axis, wrapped to ``[-pi, pi]``.
    """

    x: float = attrs.field(converter=float)
    y: float = attrs.field(converter=float)
    yaw: float = attrs.field(converter=_wrap)

    def matrix(self) -> Tensor:
        """The ``(3, 3)`` float64 homogeneous matrix mapping body coordinates to map coordinates."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return torch.tensor([[c, -s, self.x], [s, c, self.y], [0.0, 0.0, 1.0]], dtype=torch.float64)

    @classmethod
    def from_matrix(cls, T: Tensor) -> Pose2:
        T = torch.as_tensor(T, dtype=torch.float64)
        return cls(x=float(T[0, 2]), y=float(T[1, 2]), yaw=math.atan2(float(T[1, 0]), float(T[0, 0])))

    def compose(self, other: Pose2) -> Pose2:
        """``self ∘ other`` (apply ``other`` first)."""
        return Pose2.from_matrix(self.matrix() @ other.matrix())

    def inverse(self) -> Pose2:
        return Pose2.from_matrix(torch.linalg.inv(self.matrix()))


def condition_or_default(condition: str, sequence: str) -> str:
    """The one rule for a sample's condition: the dataset's ``condition``, else its ``sequence``, else
    :data:`DEFAULT_CONDITION`."""
    return str(condition or sequence or DEFAULT_CONDITION)


@attrs.frozen(kw_only=True, eq=False)
class Sample:
    """One image with its calibration and (when known) its ground truth.

    Attributes:
        image: ``(3, H, W)`` float32 RGB in ``[0, 1]``.
        camera: the pinhole camera of ``image`` (``camera.width == W``, ``camera.height == H``).
        T_cam2world: camera-to-world pose in metres, or ``None`` when the ground truth is unknown.
        depth: optional ``(H, W)`` float32 depth in metres along the optical axis; ``0`` = invalid.
        pose2: optional map-frame pose (x, y metres, yaw radians) for map localization.
        name: a unique name inside its dataset (e.g. ``seq-01/frame-000000``).
        sequence: the sequence (traversal) this image belongs to.
        timestamp: seconds, or the frame index when no clock exists.
        condition: the capture condition the core groups metrics by (``day``, ``night``, ...), set by
            the dataset. When a dataset leaves it empty it is the ``sequence`` name, or
            :data:`DEFAULT_CONDITION` without one (:func:`condition_or_default`).
        extras: any further per-sample data a dataset provides (read-only by convention).
    """

    image: Tensor
    camera: Camera
    T_cam2world: Pose | None = None
    depth: Tensor | None = None
    pose2: Pose2 | None = None
    name: str = ""
    sequence: str = ""
    timestamp: float = 0.0
    condition: str = ""
    extras: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "condition", condition_or_default(self.condition, self.sequence))
        if self.image.ndim != 3 or self.image.shape[0] != 3:
            raise ValueError(f"{self.name}: image must be (3, H, W), got {tuple(self.image.shape)}")
        H, W = self.image.shape[-2:]
        if (self.camera.height, self.camera.width) != (H, W):
            raise ValueError(
                f"{self.name}: camera is {self.camera.width}x{self.camera.height} but image is {W}x{H}"
            )
        if self.depth is not None and self.depth.shape != (H, W):
            raise ValueError(f"{self.name}: depth must be ({H}, {W}), got {tuple(self.depth.shape)}")


@attrs.frozen(kw_only=True, eq=False)
class Correspondences:
    """2D-3D matches of one query image (what a Matcher hands to a PoseSolver).

    Attributes:
        points2d: ``(N, 2)`` pixel coordinates in the query image.
        points3d: ``(N, 3)`` world coordinates in metres.
        camera: the query camera.
        weights: optional ``(N,)`` non-negative confidence of each match.
    """

    points2d: Tensor
    points3d: Tensor
    camera: Camera
    weights: Tensor | None = None

    def __attrs_post_init__(self) -> None:
        n = self.points2d.shape[0]
        if self.points2d.shape != (n, 2) or self.points3d.shape != (n, 3):
            raise ValueError(
                f"expected points2d (N, 2) and points3d (N, 3), got {tuple(self.points2d.shape)} and {tuple(self.points3d.shape)}"
            )

    def __len__(self) -> int:
        return int(self.points2d.shape[0])


def _int_tuple(values: Any) -> tuple[int, ...]:
    if isinstance(values, Tensor):
        values = values.detach().cpu().tolist()
    return tuple(int(v) for v in values)


def _float_tuple(values: Any) -> tuple[float, ...]:
    if isinstance(values, Tensor):
        values = values.detach().cpu().tolist()
    return tuple(float(v) for v in values)


@attrs.frozen(kw_only=True)
class Retrieval:
    """The ranked map samples of one query (retrieval and sequence matching).

    Attributes:
        indices: ``(K,)`` indices into the map split (``0 .. len(map) - 1``), best first; stored as a
            tuple of ``int`` (a tensor or array is converted).
        scores: ``(K,)`` the method's score of each (higher is better; e.g. a cosine similarity, or
            the negated sequence difference), same order. Empty: no scores (written as ``0``).

    Raises:
        ValueError: a negative index, or ``scores`` of another length than ``indices``.
    """

    indices: tuple[int, ...] = attrs.field(converter=_int_tuple)
    scores: tuple[float, ...] = attrs.field(default=(), converter=_float_tuple)

    def __attrs_post_init__(self) -> None:
        if any(i < 0 for i in self.indices):
            raise ValueError(f"retrieval indices must be >= 0, got {min(self.indices)}")
        if self.scores and len(self.scores) != len(self.indices):
            raise ValueError(f"retrieval has {len(self.indices)} indices but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.indices)

    def top(self, k: int) -> Retrieval:
        """The first ``k`` entries."""
        return Retrieval(indices=self.indices[:k], scores=self.scores[:k])


@attrs.frozen(kw_only=True, eq=False)
class PoseEstimate:
    """The result of localizing one query.

    Attributes:
        T_cam2world: the estimated camera-to-world pose, or ``None`` when nothing was estimated.
        success: ``False`` when the method gave up (counted in ``num_failed``).
        num_inliers: inlier count, for solvers that have one.
        confidence: a method-specific score (higher is more confident), e.g. a retrieval similarity.
        seconds: wall time spent on this query.
        pose2: the estimated map-frame pose, for map localization methods.
        retrieval: the ranked map samples (retrieval and sequence matching methods), or ``None``.
        extras: further per-query outputs; scalar entries (numbers, strings, booleans) are written
            as columns of the predictions CSV.
    """

    T_cam2world: Pose | None = None
    success: bool = True
    num_inliers: int | None = None
    confidence: float | None = None
    seconds: float = 0.0
    pose2: Pose2 | None = None
    retrieval: Retrieval | None = None
    extras: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def failed(cls, seconds: float = 0.0, **extras: Any) -> PoseEstimate:
        return cls(T_cam2world=None, success=False, seconds=seconds, extras=extras)

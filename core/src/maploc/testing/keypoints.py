"""A tiny keypoint localizer: the core's conformance reference for feature-based methods.

:class:`KeypointPnPMethod` (method ``keypoint-pnp`` where a test registers it; it is not a core entry
point) learns nothing. It is the textbook structure-based pipeline with the map's depth in place of
an SfM model (e.g. Sattler et al., "Are Large-Scale 3D Models Really Necessary for Accurate Visual
Localization?", CVPR 2017, Sec. 3):

1. ``build_map``: SIFT keypoints and descriptors (Lowe, "Distinctive Image Features from
   Scale-Invariant Keypoints", IJCV 2004) of every map image; each keypoint with valid depth is lifted
   to a world point with the image's ``K``, depth and ``T_cam2world`` (:func:`lift_keypoints`).
2. ``localize``: the query's SIFT descriptors are matched to each map image by brute force with Lowe's
   ratio test (IJCV 2004, Sec. 7.1); the matches of the ``top_k`` map images with the most matches are
   pooled; ``cv2.solvePnPRansac`` (EPnP minimal solver, Lepetit et al., IJCV 2009, in RANSAC, Fischler &
   Bolles, CACM 1981) and ``cv2.solvePnPRefineLM`` on the inliers give ``T_cam2world``. Fewer than
   ``min_inliers`` inliers, or inliers behind the camera, give a failed estimate.

It exercises what a keypoint method needs from a dataset (texture, ``Camera.K``, depth in metres with
0 invalid, ``T_cam2world``): ``core/tests/test_feature_conformance.py`` runs it through
:func:`maploc.testing.conformance.check_method` on ``synthetic-room`` and requires 5 cm / 5 deg.
A plugin's feature-based method can be compared with it the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

import attrs
import numpy as np
import torch

from maploc.api import Dataset, Method, RunContext
from maploc.config import DataConfig, at_least, greater_than, in_range
from maploc.types import Pose, PoseEstimate, Sample

__all__ = ["KeypointPnPConfig", "KeypointPnPMethod", "grey_u8", "lift_keypoints"]


@attrs.frozen(kw_only=True)
class KeypointPnPConfig:
    """Config of :class:`KeypointPnPMethod`.

    Attributes:
        max_keypoints: SIFT keypoints kept per image (the strongest).
        ratio: Lowe's ratio-test threshold (nearest / second-nearest descriptor distance).
        top_k: map images whose matches are pooled for PnP (those with the most matches).
        reprojection_error_px: RANSAC inlier threshold in pixels.
        ransac_iterations: RANSAC iterations.
        min_inliers: fewer inliers than this is a failed estimate.
        data: dataset options (``data.image_height`` sets the resolution).
    """

    max_keypoints: int = attrs.field(default=1000, validator=at_least(8))
    ratio: float = attrs.field(default=0.8, validator=in_range(0.0, 1.0))
    top_k: int = attrs.field(default=5, validator=at_least(1))
    reprojection_error_px: float = attrs.field(default=2.0, validator=greater_than(0))
    ransac_iterations: int = attrs.field(default=1000, validator=at_least(1))
    min_inliers: int = attrs.field(default=12, validator=at_least(6))
    data: DataConfig = DataConfig()


def grey_u8(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float RGB in [0, 1] -> ``(H, W)`` uint8 grey (ITU-R BT.601 luma), as OpenCV detectors want."""
    rgb = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return np.round(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) * 255).astype(np.uint8)


def lift_keypoints(
    uv: np.ndarray, depth: torch.Tensor, K: torch.Tensor, T_cam2world: Pose, max_depth_ratio: float = 1.05
) -> tuple[np.ndarray, np.ndarray]:
    """World points of sub-pixel keypoints from a depth map.

    The inverse depth of the 4 pixels around each keypoint is interpolated bilinearly (exact on a plane,
    where inverse depth is affine in the pixel coordinates); a keypoint whose 4 depths are not all valid
    or differ by more than ``max_depth_ratio`` (a depth edge) gets no point.

    Args:
        uv: ``(N, 2)`` pixel coordinates (OpenCV: the top-left pixel's centre is ``(0, 0)``).
        depth: ``(H, W)`` z-depth in metres, ``0`` (or non-finite) = invalid.
        K: ``(3, 3)`` intrinsics in pixels.
        T_cam2world: the image's camera-to-world pose, metres.
        max_depth_ratio: largest ratio of the 4 neighbouring depths.

    Returns:
        ``points3d`` ``(N, 3)`` float64 world points in metres (NaN where invalid) and ``valid`` ``(N,)`` bool.
    """
    from maploc.geometry import unproject

    d = depth.detach().cpu().double().numpy()
    H, W = d.shape
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    u0 = np.clip(np.floor(uv[:, 0]).astype(int), 0, W - 2)
    v0 = np.clip(np.floor(uv[:, 1]).astype(int), 0, H - 2)
    fu, fv = uv[:, 0] - u0, uv[:, 1] - v0
    corners = np.stack([d[v0, u0], d[v0, u0 + 1], d[v0 + 1, u0], d[v0 + 1, u0 + 1]], axis=1)  # (N, 4)
    valid = np.isfinite(corners).all(1) & (corners > 0).all(1) & (fu >= 0) & (fu <= 1) & (fv >= 0) & (fv <= 1)
    safe = np.where(valid[:, None], corners, 1.0)
    valid &= safe.max(1) <= max_depth_ratio * safe.min(1)
    inv = 1.0 / safe
    weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1)
    z = 1.0 / (inv * weights).sum(1)
    points_cam = unproject(torch.from_numpy(uv), torch.from_numpy(z), K.double())
    points = T_cam2world.to(torch.float64).transform(points_cam).numpy()
    points[~valid] = np.nan
    return points, valid


class KeypointPnPMethod(Method[KeypointPnPConfig]):
    """SIFT matches to the depth-lifted map images, PnP + RANSAC (see the module docstring).

    A method that does not learn: no ``configure_model``, ``training_step`` or ``loss``; the config has
    no ``train`` section, so the engine never trains it.
    """

    name: ClassVar[str] = "keypoint-pnp"
    Config = KeypointPnPConfig
    default_dataset: ClassVar[str] = "synthetic-room"
    #: 160 x 120 px on synthetic-room: every query within 5 cm / 5 deg, in seconds
    conformance_overrides: ClassVar[tuple[str, ...]] = ("data.image_height=120",)

    def __init__(self, config: KeypointPnPConfig) -> None:
        super().__init__(config)
        #: per map image: ``(descriptors (M, 128) float32, points3d (M, 3) float64)``
        self.map_features: list[tuple[np.ndarray, np.ndarray]] = []

    def _features(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(keypoints (M, 2) float64 pixels, descriptors (M, 128) float32)`` of one image."""
        import cv2

        keypoints, descriptors = cv2.SIFT_create(nfeatures=self.config.max_keypoints).detectAndCompute(
            grey_u8(image), None)
        if descriptors is None or not keypoints:
            return np.zeros((0, 2)), np.zeros((0, 128), np.float32)
        return np.array([k.pt for k in keypoints], dtype=np.float64), descriptors.astype(np.float32)

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Extracts and lifts the keypoints of every map image that has depth and a pose.

        Raises:
            maploc.errors.DataError: if no map image has depth, a pose and keypoints.
        """
        from maploc.errors import DataError

        self.map_features = []
        for i in range(len(map_data)):
            sample = map_data[i]
            if sample.depth is None or sample.T_cam2world is None:
                continue
            uv, descriptors = self._features(sample.image)
            points, valid = lift_keypoints(uv, sample.depth, sample.camera.K, sample.T_cam2world)
            if valid.sum() >= 2:
                self.map_features.append((descriptors[valid], points[valid]))
        if not self.map_features:
            raise DataError(f"{map_data!r}: no map image has depth, a pose and keypoints; {self.name} needs all three")
        context.logger.info("%s: %d map images, %d lifted keypoints", self.name, len(self.map_features),
                            sum(len(p) for _, p in self.map_features))

    def _matches(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Pooled ratio-test matches of the ``top_k`` best map images: ``(points2d (N, 2), points3d (N, 3))``."""
        import cv2

        uv, descriptors = self._features(sample.image)
        per_image: list[tuple[np.ndarray, np.ndarray]] = []
        if len(uv) >= 2:
            matcher = cv2.BFMatcher(cv2.NORM_L2)
            for map_descriptors, map_points in self.map_features:
                pairs = [p[0] for p in matcher.knnMatch(descriptors, map_descriptors, k=2)
                         if len(p) == 2 and p[0].distance < self.config.ratio * p[1].distance]
                if pairs:
                    per_image.append((uv[[p.queryIdx for p in pairs]], map_points[[p.trainIdx for p in pairs]]))
        per_image.sort(key=lambda m: -len(m[0]))
        best = per_image[: self.config.top_k]
        if not best:
            return np.zeros((0, 2)), np.zeros((0, 3))
        return np.concatenate([m[0] for m in best]), np.concatenate([m[1] for m in best])

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """One ``T_cam2world`` per query, or a failed estimate (with ``extras["reason"]``); never raises."""
        return [self._localize_one(q) for q in queries]

    def _localize_one(self, sample: Sample) -> PoseEstimate:
        import cv2

        cfg = self.config
        start = time.perf_counter()
        points2d, points3d = self._matches(sample)

        def failed(reason: str, inliers: int = 0) -> PoseEstimate:
            return PoseEstimate.failed(seconds=time.perf_counter() - start, reason=reason,
                                       num_matches=len(points2d), num_inliers=inliers)

        if len(points2d) < cfg.min_inliers:
            return failed("too few matches")
        K = sample.camera.K.double().numpy()
        try:
            ok, rvec, tvec, inliers = cv2.solvePnPRansac(
                points3d, points2d, K, None, iterationsCount=cfg.ransac_iterations,
                reprojectionError=cfg.reprojection_error_px, confidence=0.9999, flags=cv2.SOLVEPNP_EPNP)
        except cv2.error:  # degenerate point sets
            ok, inliers = False, None
        if not ok or inliers is None or len(inliers) < cfg.min_inliers:
            return failed("too few inliers", 0 if inliers is None else len(inliers))
        idx = inliers.reshape(-1)
        rvec, tvec = cv2.solvePnPRefineLM(points3d[idx], points2d[idx], K, None, rvec, tvec)
        R_world2cam, _ = cv2.Rodrigues(rvec)
        z = (points3d[idx] @ R_world2cam.T + tvec.reshape(1, 3))[:, 2]
        if not (z > 0).all():
            return failed("inliers behind the camera", len(idx))
        R_cam2world = R_world2cam.T
        pose = Pose(R=torch.from_numpy(R_cam2world).float(),
                    t=torch.from_numpy(-R_cam2world @ tvec.reshape(3)).float())
        return PoseEstimate(T_cam2world=pose, num_inliers=len(idx), seconds=time.perf_counter() - start,
                            extras={"num_matches": len(points2d)})


"""The ``template-features`` method: a method that does not learn (ORB keypoints + PnP).

The copyable example of a non-learning method: no model, no ``training_step``, no ``train`` section in
its config (so ``maploc run`` never trains it and writes no checkpoint); only ``build_map`` and
``localize``. The algorithm is the textbook structure-based pipeline with the map's depth in place of an
SfM model (e.g. Sattler et al., "Are Large-Scale 3D Models Really Necessary for Accurate Visual
Localization?", CVPR 2017, Sec. 3):

1. ``build_map``: ORB keypoints and binary descriptors (Rublee et al., "ORB: an efficient alternative
   to SIFT or SURF", ICCV 2011) of every map image; each keypoint with valid depth (``Sample.depth > 0``)
   is lifted to a world point with the image's ``Camera.K``, its depth and ``T_cam2world``.
2. ``localize``: the query's descriptors are matched to each map image (Hamming distance, Lowe's ratio
   test, IJCV 2004, Sec. 7.1); the matches of the ``top_k`` map images with the most matches are pooled;
   ``cv2.solvePnPRansac`` (EPnP, Lepetit et al., IJCV 2009, in RANSAC, Fischler & Bolles, CACM 1981) and
   ``cv2.solvePnPRefineLM`` on the inliers give ``T_cam2world``. A hard query gives
   ``PoseEstimate.failed(reason=...)``, never an exception.

The core's own conformance reference, ``maploc.testing.keypoints`` (SIFT, depth interpolated at sub-pixel
keypoints), is the same pipeline; this one is shorter and uses ORB.
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
from maploc.errors import DataError
from maploc.geometry import unproject
from maploc.types import Pose, PoseEstimate, Sample


@attrs.frozen(kw_only=True)
class FeaturesConfig:
    """Config of ``template-features``. Every field is range-checked: a bad ``-o key=value`` is a
    one-line ``ConfigError`` before any work starts.

    Attributes:
        max_keypoints: ORB keypoints kept per image.
        ratio: Lowe's ratio-test threshold (best / second-best Hamming distance).
        top_k: map images whose matches are pooled for PnP (those with the most matches).
        reprojection_error_px: RANSAC inlier threshold, pixels.
        min_inliers: fewer RANSAC inliers than this is a failed estimate.
        data: dataset options; images are read 240 px high (320x240 on ``synthetic-room``).
    """

    max_keypoints: int = attrs.field(default=1000, validator=at_least(8))
    ratio: float = attrs.field(default=0.8, validator=in_range(0.0, 1.0))
    top_k: int = attrs.field(default=5, validator=at_least(1))
    reprojection_error_px: float = attrs.field(default=2.0, validator=greater_than(0))
    min_inliers: int = attrs.field(default=12, validator=at_least(6))
    data: DataConfig = DataConfig(image_height=240)


def _orb(image: torch.Tensor, max_keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """ORB of a ``(3, H, W)`` float image in [0, 1]: ``(keypoints (M, 2) float64 pixels, descriptors (M, 32) uint8)``."""
    import cv2

    grey = np.round(image.clamp(0, 1).permute(1, 2, 0).numpy() @ np.array([0.299, 0.587, 0.114]) * 255)
    keypoints, descriptors = cv2.ORB_create(nfeatures=max_keypoints).detectAndCompute(grey.astype(np.uint8), None)
    if descriptors is None:
        return np.zeros((0, 2)), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in keypoints], dtype=np.float64), descriptors


class FeaturesMethod(Method[FeaturesConfig]):
    """ORB matches to the depth-lifted map images, then PnP + RANSAC (see the module docstring)."""

    name: ClassVar[str] = "template-features"
    Config = FeaturesConfig
    default_dataset: ClassVar[str] = "synthetic-room"
    # What the conformance suite runs: the default dataset; no overrides needed at 240 px (a method
    # that must run elsewhere names a dataset and overrides, e.g. conformance_overrides =
    # ("data.image_height=120", "max_keypoints=500")).
    conformance_dataset: ClassVar[str] = "synthetic-room"
    conformance_overrides: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: FeaturesConfig) -> None:
        super().__init__(config)
        self.map_descriptors: list[np.ndarray] = []  # per map image: (M, 32) uint8
        self.map_points: list[np.ndarray] = []  # per map image: (M, 3) float64 world points, metres

    # No configure_model / training_step / loss: Method's defaults make a method that does not learn.

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Lifts the ORB keypoints of every map image that has depth and a pose.

        Raises:
            DataError: if no map image has depth, a pose and keypoints (e.g. a dataset without depth).
        """
        self.map_descriptors, self.map_points = [], []
        for i in range(len(map_data)):
            sample = map_data[i]  # image (3, H, W) in [0, 1], camera (K in pixels), T_cam2world, depth (H, W) m
            if sample.depth is None or sample.T_cam2world is None:
                continue
            uv, descriptors = _orb(sample.image, self.config.max_keypoints)
            H, W = sample.depth.shape
            pixel = np.clip(np.round(uv).astype(int), 0, [W - 1, H - 1])  # the keypoint's pixel: its depth, its ray
            depth = sample.depth.cpu().numpy()[pixel[:, 1], pixel[:, 0]].astype(np.float64)
            valid = np.isfinite(depth) & (depth > 0)  # 0 = no depth
            if valid.sum() < 2:
                continue
            points_cam = unproject(torch.from_numpy(pixel[valid].astype(np.float64)), torch.from_numpy(depth[valid]),
                                   sample.camera.K.double())
            self.map_points.append(sample.T_cam2world.to(torch.float64).transform(points_cam).numpy())
            self.map_descriptors.append(descriptors[valid])
        if not self.map_points:
            raise DataError(f"{map_data!r}: no map image has depth, a pose and keypoints; {self.name} needs all three")
        context.logger.info("%s: %d map images indexed", self.name, len(self.map_points))

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        """One ``T_cam2world`` per query; a failed estimate (``extras["reason"]``) when there are too few
        matches or inliers. The core writes them to ``RUN/predictions/template-features.txt`` and scores them."""
        return [self._localize_one(q) for q in queries]

    def _localize_one(self, query: Sample) -> PoseEstimate:
        import cv2

        cfg, start = self.config, time.perf_counter()
        uv, descriptors = _orb(query.image, cfg.max_keypoints)
        matched: list[tuple[np.ndarray, np.ndarray]] = []  # per map image: (query pixels, world points)
        if len(uv) >= 2:
            matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
            for map_descriptors, map_points in zip(self.map_descriptors, self.map_points):
                good = [m[0] for m in matcher.knnMatch(descriptors, map_descriptors, k=2)
                        if len(m) == 2 and m[0].distance < cfg.ratio * m[1].distance]
                if good:
                    matched.append((uv[[m.queryIdx for m in good]], map_points[[m.trainIdx for m in good]]))
        matched = sorted(matched, key=lambda m: -len(m[0]))[: cfg.top_k]
        points2d = np.concatenate([m[0] for m in matched]) if matched else np.zeros((0, 2))
        points3d = np.concatenate([m[1] for m in matched]) if matched else np.zeros((0, 3))
        if len(points2d) < cfg.min_inliers:
            return PoseEstimate.failed(time.perf_counter() - start, reason="too few matches", num_matches=len(points2d))
        K = query.camera.K.double().numpy()
        try:
            ok, rvec, tvec, inliers = cv2.solvePnPRansac(
                points3d, points2d, K, None, iterationsCount=1000, reprojectionError=cfg.reprojection_error_px,
                flags=cv2.SOLVEPNP_EPNP)
        except cv2.error:  # degenerate point sets (all collinear, ...)
            ok, inliers = False, None
        if not ok or inliers is None or len(inliers) < cfg.min_inliers:
            return PoseEstimate.failed(time.perf_counter() - start, reason="too few inliers", num_matches=len(points2d))
        inliers = inliers.reshape(-1)
        rvec, tvec = cv2.solvePnPRefineLM(points3d[inliers], points2d[inliers], K, None, rvec, tvec)
        R_world2cam = cv2.Rodrigues(rvec)[0]
        if not ((points3d[inliers] @ R_world2cam.T + tvec.reshape(1, 3))[:, 2] > 0).all():
            return PoseEstimate.failed(time.perf_counter() - start, reason="inliers behind the camera",
                                       num_matches=len(points2d))
        R_cam2world = R_world2cam.T
        T_cam2world = Pose(R=torch.from_numpy(R_cam2world).float(),
                           t=torch.from_numpy(-R_cam2world @ tvec.reshape(3)).float())
        return PoseEstimate(T_cam2world=T_cam2world, num_inliers=len(inliers), seconds=time.perf_counter() - start,
                            extras={"num_matches": len(points2d)})

"""A classical structure-based baseline: SIFT matches to the mapping frames, 3-D points from their
depth, ``cv2.solvePnPRansac``.

It runs in the same ``maploc run --method dsac`` as DSAC* (on the same map and query frames, re-read
at ``ClassicalConfig.image_height``) so DSAC*'s numbers have context: its estimates are the baseline
variant ``sift_pnp`` of :meth:`maploc_dsac.method.DSACMethod.variants`, scored by the core. The pipeline is the textbook one (e.g.
Sattler et al., "Are Large-Scale 3D Models Really Necessary for Accurate Visual Localization?",
CVPR 2017, minus the SfM model: the mapping frames' registered depth and ground-truth poses give
each keypoint its 3-D point):

1. ``build``: SIFT keypoints and descriptors (``cv2.SIFT_create``, Lowe, IJCV 2004) of every
   mapping frame; the keypoints with valid depth are lifted to world points with the frame's
   ``K`` and ``T_cam2world``.
2. ``localize``: SIFT of the query, matched to every mapping frame by brute force (L2) with Lowe's
   ratio test; all 2D-3D matches pooled; ``cv2.solvePnPRansac`` (EPnP minimal solver; threshold,
   given at 480 px image height and scaled to the image, and iterations from
   :class:`~maploc_dsac.config.ClassicalConfig`); the pose refined on the inliers with
   ``cv2.solvePnPRefineLM``. Fewer than ``min_inliers`` inliers, or an implausible pose (more than
   10 % of its inliers behind the camera, or their median depth beyond three times the largest
   depth the mapping frames saw; degenerate EPnP solutions from clustered wrong matches) = failed.

Images are converted to 8-bit grey. Nothing here needs a GPU or learning. The method re-reads the
frames at ``ClassicalConfig.image_height`` (480 px by default) when the network works at another
height.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import attrs
import numpy as np
import torch

from maploc.types import Pose, PoseEstimate, Sample
from maploc_dsac.config import REFERENCE_HEIGHT, ClassicalConfig
from maploc_dsac.pose_solvers import failed_estimate

__all__ = ["ClassicalReference", "MapFrame"]

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True, eq=False)
class MapFrame:
    """SIFT features of one mapping frame with their world points.

    Attributes:
        name: the sample name.
        descriptors: ``(M, 128)`` float32 SIFT descriptors of the keypoints with valid depth.
        points3d: ``(M, 3)`` float64 world points, metres.
    """

    name: str
    descriptors: np.ndarray
    points3d: np.ndarray


def _grey_u8(image: torch.Tensor) -> np.ndarray:
    rgb = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.round(grey * 255).astype(np.uint8)


class ClassicalReference:
    """SIFT + ``cv2.solvePnPRansac`` localization against depth-lifted mapping frames.

    Args:
        config: thresholds and counts.
    """

    def __init__(self, config: ClassicalConfig | None = None) -> None:
        import cv2

        self.config = config or ClassicalConfig()
        self._cv2 = cv2
        self.sift = cv2.SIFT_create(nfeatures=self.config.max_features)
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)
        self.frames: list[MapFrame] = []
        self.build_seconds = 0.0
        #: metres; a pose whose inliers' median depth exceeds this is failed (3x the mapping frames'
        #: 99th-percentile keypoint depth, set by :meth:`build`)
        self.max_depth = float("inf")

    def _features(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(keypoints (M, 2) float64 pixels, descriptors (M, 128) float32)``."""
        kps, desc = self.sift.detectAndCompute(_grey_u8(image), None)
        if desc is None or not kps:
            return np.zeros((0, 2)), np.zeros((0, 128), np.float32)
        return np.array([k.pt for k in kps], dtype=np.float64), desc.astype(np.float32)

    def build(self, samples: Iterable[Sample]) -> int:
        """Extracts and lifts the features of the mapping frames (those with depth and pose).

        Returns:
            The number of mapping frames used (frames without depth or pose are skipped).
        """
        t0 = time.perf_counter()
        self.frames = []
        depths: list[np.ndarray] = []
        for s in samples:
            if s.depth is None or s.T_cam2world is None:
                continue
            uv, desc = self._features(s.image)
            if len(uv) == 0:
                continue
            depth = s.depth.detach().cpu().numpy()
            H, W = depth.shape
            ui = np.clip(np.round(uv[:, 0]).astype(int), 0, W - 1)
            vi = np.clip(np.round(uv[:, 1]).astype(int), 0, H - 1)
            d = depth[vi, ui].astype(np.float64)
            ok = np.isfinite(d) & (d > 0)
            if not ok.any():
                continue
            K = s.camera.K.double().numpy()
            yn = (uv[ok, 1] - K[1, 2]) / K[1, 1]
            xn = (uv[ok, 0] - K[0, 2] - K[0, 1] * yn) / K[0, 0]
            pc = np.stack([xn * d[ok], yn * d[ok], d[ok]], 1)
            depths.append(d[ok])
            R = s.T_cam2world.R.double().numpy()
            t = s.T_cam2world.t.double().numpy()
            self.frames.append(MapFrame(name=s.name, descriptors=desc[ok], points3d=pc @ R.T + t))
        if depths:
            self.max_depth = 3.0 * float(np.percentile(np.concatenate(depths), 99))
        self.build_seconds = time.perf_counter() - t0
        return len(self.frames)

    def matches(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Pooled ratio-test matches of ``sample`` to all mapping frames: ``(points2d (N, 2), points3d (N, 3))``."""
        uv, desc = self._features(sample.image)
        p2, p3 = [], []
        if len(uv) < 2:
            return np.zeros((0, 2)), np.zeros((0, 3))
        for frame in self.frames:
            if len(frame.descriptors) < 2:
                continue
            for pair in self.matcher.knnMatch(desc, frame.descriptors, k=2):
                if len(pair) == 2 and pair[0].distance < self.config.ratio * pair[1].distance:
                    p2.append(uv[pair[0].queryIdx])
                    p3.append(frame.points3d[pair[0].trainIdx])
        if not p2:
            return np.zeros((0, 2)), np.zeros((0, 3))
        return np.asarray(p2, dtype=np.float64), np.asarray(p3, dtype=np.float64)

    def localize(self, sample: Sample) -> PoseEstimate:
        """Localizes one query. Never raises on hard input: returns a failed estimate instead."""
        cv2 = self._cv2
        cfg = self.config
        t0 = time.perf_counter()
        p2, p3 = self.matches(sample)
        if len(p2) < max(6, cfg.min_inliers):
            return failed_estimate(seconds=time.perf_counter() - t0, num_inliers=0, num_matches=len(p2),
                                   reason="too few matches")
        K = sample.camera.K.double().numpy()
        threshold = cfg.reprojection_error_px * sample.camera.height / REFERENCE_HEIGHT
        try:
            ok, rvec, tvec, inliers = cv2.solvePnPRansac(
                p3, p2, K, None, iterationsCount=cfg.iterations, reprojectionError=threshold,
                confidence=cfg.confidence, flags=cv2.SOLVEPNP_EPNP,
            )
        except cv2.error as e:  # degenerate configurations
            log.debug("solvePnPRansac failed on %s: %s", sample.name, e)
            ok, inliers = False, None
        n_in = 0 if inliers is None else len(inliers)
        if not ok or n_in < cfg.min_inliers:
            return failed_estimate(seconds=time.perf_counter() - t0, num_matches=len(p2), num_inliers=n_in,
                                   reason="too few inliers")
        idx = inliers.reshape(-1)
        rvec, tvec = cv2.solvePnPRefineLM(p3[idx], p2[idx], K, None, rvec, tvec)
        R_w2c, _ = cv2.Rodrigues(rvec)
        z = (p3[idx] @ R_w2c.T + tvec.reshape(1, 3))[:, 2]
        if not np.isfinite(z).all() or float((z > 0).mean()) < 0.9:  # cheirality: inliers must be in front
            return failed_estimate(
                seconds=time.perf_counter() - t0, num_matches=len(p2), num_inliers=n_in, reason="cheirality"
            )
        if float(np.median(z)) > self.max_depth:  # the inliers seen from implausibly far away
            return failed_estimate(
                seconds=time.perf_counter() - t0, num_matches=len(p2), num_inliers=n_in, reason="implausible depth"
            )
        R_c2w = R_w2c.T
        t_c2w = -R_c2w @ tvec.reshape(3)
        pose = Pose(R=torch.from_numpy(R_c2w).float(), t=torch.from_numpy(t_c2w).float())
        return PoseEstimate(
            T_cam2world=pose, success=True, num_inliers=n_in, seconds=time.perf_counter() - t0,
            extras={"num_matches": len(p2)},
        )

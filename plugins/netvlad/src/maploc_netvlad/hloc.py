"""``hloc``: hierarchical localization, retrieval -> local matching -> PnP (Sarlin, Cadena, Siegwart & Dymczyk,
"From Coarse to Fine: Robust Hierarchical Localization at Large Scale", CVPR 2019, Sec. 3; and Sarlin et al.,
CoRL 2018, Sec. III).

1. Retrieval: the ``top_k`` map images most similar to the query by global descriptor: a ``netvlad`` /
   ``mobilenetvlad`` checkpoint (``retrieval_checkpoint``) or, without one, the core's ``nn-retrieval`` thumbnail
   descriptors (so that ``hloc`` runs without training).
2. Local matching: OpenCV SIFT (Lowe, IJCV 2004) keypoints and descriptors, Lowe's ratio test and a mutual
   nearest-neighbour check, query x each retrieved map image.
3. 2D-3D: each matched map keypoint is lifted with the map image's depth (nearest pixel) and ``T_cam2world``.
4. Pose: PoseLib's LO-RANSAC P3P with non-linear refinement on the inliers (``poselib.estimate_absolute_pose``).

A query with too few correspondences or inliers is returned as failed (``num_failed``), never raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from maploc.api import Dataset, Method, SampleMeta
from maploc.config import DataConfig, at_least, greater_than, in_range
from maploc.errors import CheckpointError, DataError
from maploc.types import Pose, PoseEstimate, Sample

__all__ = ["HlocConfig", "HlocMethod", "sift_features", "mutual_ratio_matches", "lift_keypoints"]

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class HlocConfig:
    """Config of ``hloc``.

    Attributes:
        top_k: map images retrieved per query and matched.
        retrieval_checkpoint: a ``netvlad`` or ``mobilenetvlad`` checkpoint for retrieval; ``None``: thumbnails.
        thumbnail_width: thumbnail width (pixels) of the fallback retrieval.
        num_features: SIFT keypoints kept per image (strongest first).
        sift_contrast_threshold: OpenCV SIFT ``contrastThreshold`` (its default is 0.04; lower finds more
            keypoints on low-contrast, JPEG-compressed images such as 7-Scenes).
        ratio: Lowe's ratio test threshold.
        ransac_max_error_px: LO-RANSAC inlier threshold (pixels, at the image's resolution).
        ransac_max_iterations: RANSAC iteration cap.
        min_inliers: fewer inliers = a failed query.
        data: dataset options (``image_height`` ``None`` = native resolution).
    """

    top_k: int = attrs.field(default=5, validator=at_least(1))
    retrieval_checkpoint: str | None = None
    thumbnail_width: int = attrs.field(default=32, validator=at_least(4))
    num_features: int = attrs.field(default=2000, validator=at_least(8))
    sift_contrast_threshold: float = attrs.field(default=0.02, validator=greater_than(0))
    ratio: float = attrs.field(default=0.8, validator=in_range(0.0, 1.0))
    ransac_max_error_px: float = attrs.field(default=8.0, validator=greater_than(0))
    ransac_max_iterations: int = attrs.field(default=10000, validator=at_least(10))
    min_inliers: int = attrs.field(default=12, validator=at_least(4))
    data: DataConfig = DataConfig()


def sift_features(image: torch.Tensor, num_features: int, contrast_threshold: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV SIFT on one image.

    Args:
        image: ``(3, H, W)`` float RGB in [0, 1].
        num_features: keypoints kept.
        contrast_threshold: OpenCV's ``contrastThreshold`` (lower keeps weaker keypoints).

    Returns:
        ``keypoints`` ``(N, 2)`` float64 pixel coordinates (x, y; pixel centres at integers) and ``descriptors``
        ``(N, 128)`` float32 (RootSIFT-free, as OpenCV returns them).
    """
    import cv2

    gray = (image.float().clamp(0, 1) * 255).round().byte()
    gray = (0.299 * gray[0].float() + 0.587 * gray[1].float() + 0.114 * gray[2].float()).round().byte().numpy()
    sift = cv2.SIFT_create(nfeatures=num_features, contrastThreshold=contrast_threshold)
    kps, desc = sift.detectAndCompute(gray, None)
    if desc is None or not kps:
        return np.zeros((0, 2)), np.zeros((0, 128), dtype=np.float32)
    return np.array([k.pt for k in kps], dtype=np.float64), desc.astype(np.float32)


def mutual_ratio_matches(d0: np.ndarray, d1: np.ndarray, ratio: float) -> np.ndarray:
    """Matches that pass Lowe's ratio test (IJCV 2004, Sec. 7.1) in both directions and are mutual nearest neighbours.

    Args:
        d0: ``(N0, 128)`` float32 descriptors. d1: ``(N1, 128)``. ratio: in (0, 1).

    Returns:
        ``(M, 2)`` int64 index pairs ``(i0, i1)``.
    """
    if len(d0) < 2 or len(d1) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    a = torch.from_numpy(d0)
    b = torch.from_numpy(d1)
    dist = torch.cdist(a, b)
    v01, i01 = dist.topk(2, dim=1, largest=False)
    v10, i10 = dist.topk(2, dim=0, largest=False)
    ok0 = v01[:, 0] < ratio * v01[:, 1]
    ok1 = v10[0] < ratio * v10[1]
    idx0 = torch.arange(len(a))
    j = i01[:, 0]
    mutual = i10[0, j] == idx0
    keep = ok0 & ok1[j] & mutual
    return torch.stack([idx0[keep], j[keep]], dim=1).numpy().astype(np.int64)


def lift_keypoints(keypoints: np.ndarray, depth: torch.Tensor, K: torch.Tensor, T_cam2world: Pose) -> np.ndarray:
    """World points of keypoints from a depth map.

    Args:
        keypoints: ``(N, 2)`` pixel coordinates (x, y). depth: ``(H, W)`` z-depth in metres, 0 = invalid.
        K: ``(3, 3)`` intrinsics (pixels). T_cam2world: camera-to-world pose (metres).

    Returns:
        ``(N, 3)`` float64 world points, NaN where the depth is invalid or the keypoint is outside the image.
    """
    out = np.full((len(keypoints), 3), np.nan)
    if len(keypoints) == 0:
        return out
    d = depth.detach().cpu().double().numpy()
    h, w = d.shape
    u = np.round(keypoints[:, 0]).astype(int)
    v = np.round(keypoints[:, 1]).astype(int)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    z = np.zeros(len(keypoints))
    z[inside] = d[v[inside], u[inside]]
    valid = inside & np.isfinite(z) & (z > 0)
    Kinv = np.linalg.inv(K.detach().cpu().double().numpy())
    rays = np.c_[keypoints, np.ones(len(keypoints))] @ Kinv.T
    X_cam = rays * z[:, None]
    R = T_cam2world.R.detach().cpu().double().numpy()
    t = T_cam2world.t.detach().cpu().double().numpy().reshape(3)
    out[valid] = X_cam[valid] @ R.T + t
    return out


@attrs.define
class _MapImage:
    name: str
    keypoints: np.ndarray
    descriptors: np.ndarray
    points3d: np.ndarray


class HlocMethod(Method[HlocConfig]):
    """Hierarchical localization: retrieval, SIFT matching, depth-lifted 2D-3D, PoseLib LO-RANSAC PnP."""

    name: ClassVar[str] = "hloc"
    Config = HlocConfig
    presets_package: ClassVar[str | None] = None
    default_dataset: ClassVar[str] = "sim-city"
    metric_family: ClassVar[str] = "pose6dof"
    localize_batch_size: ClassVar[int] = 1
    conformance_dataset: ClassVar[str] = "synthetic-room"

    def __init__(self, config: HlocConfig) -> None:
        super().__init__(config)
        self.map_images: list[_MapImage] = []
        self.map_global: torch.Tensor | None = None
        self.retriever: Any = None
        self.stats = {"retrieval_s": 0.0, "matching_s": 0.0, "pnp_s": 0.0, "matches": 0, "correspondences": 0,
                      "queries": 0, "failed_few_matches": 0, "failed_pnp": 0}

    def _retrieval_model(self) -> Any:
        if self.config.retrieval_checkpoint is None:
            return None
        from maploc.config import structure
        from maploc.engine.checkpoint import load_checkpoint

        from .config import MobileNetVLADConfig, NetVLADConfig
        from .method import build_teacher
        from .model import GlobalDescriptorNet

        path = self.config.retrieval_checkpoint
        state = load_checkpoint(path)
        kind = state.get("method")
        if kind == "netvlad":
            model = build_teacher(structure(NetVLADConfig, state["config"]))
        elif kind == "mobilenetvlad":
            m = structure(MobileNetVLADConfig, state["config"]).model
            model = GlobalDescriptorNet(m.backbone, m.layer, m.num_clusters, projection_dim=m.descriptor_dim)
        else:
            raise CheckpointError(f"retrieval_checkpoint {path} holds method {kind!r}, not netvlad or mobilenetvlad")
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"retrieval_checkpoint {path} does not fit its model: {str(e).splitlines()[0]}") from None
        return model.eval()

    @torch.no_grad()
    def _global(self, images: torch.Tensor) -> torch.Tensor:
        from maploc.methods.nn_retrieval import thumbnail_descriptors

        if self.retriever is None:
            return thumbnail_descriptors(images, self.config.thumbnail_width)
        return self.retriever.vlad(images) if not self.retriever.whitening.fitted else self.retriever(images)

    def build_map(self, map_data: Dataset) -> None:
        """SIFT features, depth-lifted world points and a global descriptor of every map image.

        Raises:
            DataError: empty map, or a map image without depth or pose (names it).
            CheckpointError: an unusable ``retrieval_checkpoint``.
        """
        if len(map_data) == 0:
            raise DataError(f"the map split of {map_data!r} is empty")
        self.retriever = self._retrieval_model()
        globals_, self.map_images, self.map_meta = [], [], []
        for i in range(len(map_data)):
            s = map_data[i]
            if s.depth is None:
                raise DataError(f"{map_data!r}: map image {s.name!r} has no depth; hloc lifts matches with map depth")
            if s.T_cam2world is None:
                raise DataError(f"{map_data!r}: map image {s.name!r} has no pose (T_cam2world)")
            kp, desc = sift_features(s.image, self.config.num_features, self.config.sift_contrast_threshold)
            self.map_images.append(_MapImage(s.name, kp, desc, lift_keypoints(kp, s.depth, s.camera.K, s.T_cam2world)))
            globals_.append(self._global(s.image.float()[None]))
            self.map_meta.append(SampleMeta.of(s))
        self.map_global = torch.cat(globals_)

    def localize(self, queries: Sequence[Sample]) -> list[PoseEstimate]:
        return [self._localize_one(q) for q in queries]

    def _localize_one(self, q: Sample) -> PoseEstimate:
        import poselib

        cfg = self.config
        assert self.map_global is not None, "build_map was not called"
        t0 = time.perf_counter()
        sim = (self._global(q.image.float()[None]) @ self.map_global.T)[0]
        top = sim.topk(min(cfg.top_k, len(sim))).indices.tolist()
        t1 = time.perf_counter()
        kp, desc = sift_features(q.image, cfg.num_features, cfg.sift_contrast_threshold)
        p2d, p3d, matches = [], [], 0
        for r in top:
            m = self.map_images[r]
            pairs = mutual_ratio_matches(desc, m.descriptors, cfg.ratio)
            matches += len(pairs)
            if len(pairs):
                X = m.points3d[pairs[:, 1]]
                ok = np.isfinite(X).all(axis=1)
                p2d.append(kp[pairs[ok, 0]])
                p3d.append(X[ok])
        t2 = time.perf_counter()
        self.stats["retrieval_s"] += t1 - t0
        self.stats["matching_s"] += t2 - t1
        self.stats["queries"] += 1
        self.stats["matches"] += matches
        retrieved = [self.map_images[r].name for r in top]
        n = sum(len(x) for x in p2d)
        self.stats["correspondences"] += n
        if n < max(4, cfg.min_inliers):
            self.stats["failed_few_matches"] += 1
            return PoseEstimate.failed(seconds=t2 - t0, reason="too few 2D-3D correspondences", correspondences=n,
                                       retrieved=retrieved)
        K = q.camera.K.double()
        camera = {"model": "PINHOLE", "width": int(q.camera.width), "height": int(q.camera.height),
                  "params": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]}
        try:
            pose, info = poselib.estimate_absolute_pose(
                np.concatenate(p2d), np.concatenate(p3d), camera,
                {"max_reproj_error": cfg.ransac_max_error_px, "max_iterations": cfg.ransac_max_iterations}, {},
            )
        except (RuntimeError, ValueError) as e:  # PoseLib on degenerate input
            self.stats["failed_pnp"] += 1
            return PoseEstimate.failed(seconds=time.perf_counter() - t0, reason=f"PnP failed: {e}", retrieved=retrieved)
        t3 = time.perf_counter()
        self.stats["pnp_s"] += t3 - t2
        inliers = int(info.get("num_inliers", 0))
        R_world2cam = np.asarray(pose.R)
        t_world2cam = np.asarray(pose.t).reshape(3)
        if inliers < cfg.min_inliers or not np.isfinite(R_world2cam).all() or not np.isfinite(t_world2cam).all():
            self.stats["failed_pnp"] += 1
            return PoseEstimate.failed(seconds=t3 - t0, reason="too few PnP inliers", num_inliers=inliers,
                                       retrieved=retrieved)
        R = torch.from_numpy(R_world2cam.T.copy()).float()
        T = Pose(R=R, t=torch.from_numpy(-R_world2cam.T @ t_world2cam).float())
        return PoseEstimate(T_cam2world=T, success=True, num_inliers=inliers, confidence=inliers / n,
                            seconds=t3 - t0, extras={"retrieved": retrieved, "correspondences": n})

    def extra_metrics(self, map_data: Dataset, queries: Sequence[SampleMeta], estimates: Sequence[PoseEstimate],
                      metrics: Mapping[str, float]) -> Mapping[str, float]:
        """Stage timings (ms per query), mean matches / correspondences, and failure causes."""
        s = self.stats
        q = max(1, s["queries"])
        return {
            "retrieval_ms_per_query": 1000 * s["retrieval_s"] / q,
            "matching_ms_per_query": 1000 * s["matching_s"] / q,
            "pnp_ms_per_query": 1000 * s["pnp_s"] / q,
            "mean_matches_per_query": s["matches"] / q,
            "mean_correspondences_per_query": s["correspondences"] / q,
            "num_failed_few_matches": s["failed_few_matches"],
            "num_failed_pnp": s["failed_pnp"],
        }

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        what = (f"checkpoint {self.config.retrieval_checkpoint}" if self.config.retrieval_checkpoint
                else f"nn-retrieval thumbnails ({self.config.thumbnail_width} px)")
        return [("hloc pipeline", "\n".join([
            f"retrieval: top-{self.config.top_k} by {what}",
            f"local features: OpenCV SIFT ({self.config.num_features} max), ratio {self.config.ratio} + mutual check",
            f"pose: PoseLib LO-RANSAC P3P + refinement, {self.config.ransac_max_error_px} px, "
            f">= {self.config.min_inliers} inliers",
            f"failed: {int(self.stats['failed_few_matches'])} with too few matches, "
            f"{int(self.stats['failed_pnp'])} in PnP, of {int(self.stats['queries'])} queries",
        ]))]

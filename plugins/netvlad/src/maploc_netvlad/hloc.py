"""``hloc``: hierarchical localization, retrieval -> local matching -> PnP (Sarlin, Cadena, Siegwart & Dymczyk,
"From Coarse to Fine: Robust Hierarchical Localization at Large Scale", CVPR 2019, Sec. 3; and Sarlin et al.,
CoRL 2018, Sec. III).

1. Retrieval (``retrieval``): the ``top_k`` map images most similar to the query by global descriptor: a
   ``netvlad`` / ``mobilenetvlad`` checkpoint (``retrieval_checkpoint``) or, without one, the core's
   ``nn-retrieval`` thumbnail descriptors (``thumbnails``, so that ``hloc`` runs without training).
2. Local matching: OpenCV SIFT (Lowe, IJCV 2004) keypoints and descriptors, Lowe's ratio test and a mutual
   nearest-neighbour check, query x each retrieved map image.
3. 2D-3D: each matched map keypoint is lifted with the map image's depth (nearest pixel) and ``T_cam2world``.
4. Pose: an absolute-pose solver composed by name (``solver``, the ``maploc.solvers`` entry points, e.g.
   ``ransac-pnp`` of maploc-dsac). The default ``poselib-pnp`` is PoseLib's LO-RANSAC P3P with non-linear
   refinement on the inliers (``poselib.estimate_absolute_pose``); while no installed plugin registers that name,
   hloc's own :class:`PoseLibPnPSolver` (the same call) stands in for it.

A query with too few correspondences or inliers is returned as failed (``num_failed``), never raised. The failure
cause and the correspondence count of every query are columns of ``RUN/predictions/hloc.csv``.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from maploc.api import Dataset, Method, PoseSolver, RunContext, SampleMeta
from maploc.config import DataConfig, at_least, greater_than, in_range
from maploc.errors import CheckpointError, ConfigError, DataError
from maploc.types import Correspondences, Pose, PoseEstimate, Retrieval, Sample

__all__ = ["HlocConfig", "HlocMethod", "PoseLibPnPSolver", "make_solver", "sift_features", "mutual_ratio_matches",
           "lift_keypoints", "RETRIEVALS", "DEFAULT_SOLVER"]

#: global retrieval of hloc: the core's thumbnails or a trained checkpoint of one of this plugin's methods
RETRIEVALS = ("thumbnails", "netvlad", "mobilenetvlad")
#: the default solver: PoseLib's LO-RANSAC P3P (hloc's own :class:`PoseLibPnPSolver` while no plugin registers it)
DEFAULT_SOLVER = "poselib-pnp"

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class HlocConfig:
    """Config of ``hloc``.

    Attributes:
        top_k: map images retrieved per query and matched.
        retrieval: the global descriptor: ``thumbnails`` (the core's ``nn-retrieval`` descriptors), ``netvlad`` or
            ``mobilenetvlad`` (both need ``retrieval_checkpoint`` of that method); ``None`` (default): the
            checkpoint's method when ``retrieval_checkpoint`` is set, else ``thumbnails``.
        retrieval_checkpoint: a ``netvlad`` or ``mobilenetvlad`` checkpoint for retrieval.
        thumbnail_width: thumbnail width (pixels) of the fallback retrieval.
        num_features: SIFT keypoints kept per image (strongest first).
        sift_contrast_threshold: OpenCV SIFT ``contrastThreshold`` (its default is 0.04; lower finds more
            keypoints on low-contrast, JPEG-compressed images such as 7-Scenes).
        ratio: Lowe's ratio test threshold.
        solver: the absolute-pose solver, an entry point of ``maploc.solvers`` (``maploc list --kind solvers``):
            ``poselib-pnp`` (default; PoseLib LO-RANSAC P3P), ``ransac-pnp`` (DSAC*'s RANSAC, maploc-dsac), ...
            It is built with those of its keyword arguments it names among ``inlier_threshold_px`` /
            ``max_reproj_error`` / ``inlier_threshold`` (= ``ransac_max_error_px``), ``max_iterations``
            (= ``ransac_max_iterations``; ``ransac-pnp`` reads it as its number of hypotheses: set it to e.g. 64),
            ``min_inliers`` and ``seed`` (the run's seed); its other arguments keep their defaults.
        ransac_max_error_px: RANSAC inlier threshold (pixels, at the image's resolution).
        ransac_max_iterations: RANSAC iteration cap.
        min_inliers: fewer inliers = a failed query.
        data: dataset options (``image_height`` ``None`` = native resolution).
    """

    top_k: int = attrs.field(default=5, validator=at_least(1))
    retrieval: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.in_(RETRIEVALS)))
    retrieval_checkpoint: str | None = None
    thumbnail_width: int = attrs.field(default=32, validator=at_least(4))
    num_features: int = attrs.field(default=2000, validator=at_least(8))
    sift_contrast_threshold: float = attrs.field(default=0.02, validator=greater_than(0))
    ratio: float = attrs.field(default=0.8, validator=in_range(0.0, 1.0))
    solver: str = DEFAULT_SOLVER
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


class PoseLibPnPSolver(PoseSolver):
    """PoseLib's LO-RANSAC P3P with non-linear refinement on the inliers (``poselib.estimate_absolute_pose``,
    pinhole camera): hloc's pose solver until an installed plugin registers ``poselib-pnp`` in ``maploc.solvers``.

    Args (the keywords of maploc-dsac's PnP solvers):
        inlier_threshold_px: inlier threshold in pixels (PoseLib's ``max_reproj_error``).
        max_iterations: RANSAC iteration cap.
        min_inliers: fewer inliers (or a non-finite pose) = a failed estimate.
        seed: PoseLib's RANSAC seed (the same input gives the same pose).
    """

    def __init__(self, *, inlier_threshold_px: float = 8.0, max_iterations: int = 10000, min_inliers: int = 4,
                 seed: int = 0) -> None:
        self.options = {"max_reproj_error": float(inlier_threshold_px), "max_iterations": int(max_iterations),
                        "seed": int(seed)}
        self.min_inliers = int(min_inliers)

    def __repr__(self) -> str:
        return f"PoseLibPnPSolver({self.options}, min_inliers={self.min_inliers})"

    def solve(self, correspondences: Sequence[Correspondences]) -> list[PoseEstimate]:
        """One estimate (``T_cam2world``, ``num_inliers``) per query; never raises (PoseLib errors on degenerate
        input, fewer than 4 matches and too few inliers give :meth:`PoseEstimate.failed`)."""
        return [self._solve_one(c) for c in correspondences]

    def _solve_one(self, c: Correspondences) -> PoseEstimate:
        import poselib

        t0 = time.perf_counter()
        if len(c) < 4:
            return PoseEstimate.failed(seconds=time.perf_counter() - t0, num_inliers=0)
        K = c.camera.K.detach().cpu().double()
        camera = {"model": "PINHOLE", "width": int(c.camera.width), "height": int(c.camera.height),
                  "params": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]}
        p2d = c.points2d.detach().cpu().double().numpy()
        p3d = c.points3d.detach().cpu().double().numpy()
        try:
            pose, info = poselib.estimate_absolute_pose(p2d, p3d, camera, dict(self.options), {})
        except (RuntimeError, ValueError):  # PoseLib on degenerate input
            return PoseEstimate.failed(seconds=time.perf_counter() - t0, num_inliers=0)
        seconds = time.perf_counter() - t0
        inliers = int(info.get("num_inliers", 0))
        R_world2cam = np.asarray(pose.R)
        t_world2cam = np.asarray(pose.t).reshape(3)
        if inliers < self.min_inliers or not np.isfinite(R_world2cam).all() or not np.isfinite(t_world2cam).all():
            return PoseEstimate.failed(seconds=seconds, num_inliers=inliers)
        R = torch.from_numpy(R_world2cam.T.copy()).float()
        T = Pose(R=R, t=torch.from_numpy(-R_world2cam.T @ t_world2cam).float())
        return PoseEstimate(T_cam2world=T, success=True, num_inliers=inliers, confidence=inliers / len(c),
                            seconds=seconds)


#: hloc's settings -> the keyword names a solver may take for them (the first one its constructor names is used)
_SOLVER_ARGUMENTS = {
    "max_error_px": ("inlier_threshold_px", "max_reproj_error", "inlier_threshold"),
    "max_iterations": ("max_iterations",),
    "min_inliers": ("min_inliers",),
    "seed": ("seed",),
}


def make_solver(name: str, *, max_error_px: float, max_iterations: int, min_inliers: int, seed: int = 0) -> PoseSolver:
    """The pose solver registered as ``name`` in ``maploc.solvers`` (``poselib-pnp``: :class:`PoseLibPnPSolver`
    while no installed plugin registers it), built with the settings its constructor names (see
    :attr:`HlocConfig.solver`).

    Raises:
        PluginError: no solver of that name is installed (one line listing the installed ones), or it fails to
            import.
        ConfigError: the registered object is not a :class:`maploc.api.PoseSolver` class.
    """
    from maploc.plugins import list_entry_points, load_component

    registered = {e.name for e in list_entry_points("solvers")["solvers"]}
    if name == DEFAULT_SOLVER and name not in registered:
        cls: Any = PoseLibPnPSolver
    else:
        cls = load_component("solvers", name)
    if not (isinstance(cls, type) and issubclass(cls, PoseSolver)):
        raise ConfigError(f"solver {name!r} is {cls!r}, not a maploc.api.PoseSolver class")
    values = {"max_error_px": max_error_px, "max_iterations": max_iterations, "min_inliers": min_inliers,
              "seed": seed}
    accepted = _keyword_names(cls)
    kwargs = {}
    for setting, names in _SOLVER_ARGUMENTS.items():
        for n in names:
            if n in accepted:
                kwargs[n] = values[setting]
                break
    return cls(**kwargs)


def _keyword_names(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` names: those of its ``__init__`` and, while an ``__init__`` takes
    ``**kwargs``, those of the next ``__init__`` up its MRO (which the ``**kwargs`` are handed to)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.name != "self" and p.kind in (
            inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return names


@attrs.define
class _MapImage:
    name: str
    keypoints: np.ndarray
    descriptors: np.ndarray
    points3d: np.ndarray


class HlocMethod(Method[HlocConfig]):
    """Hierarchical localization: retrieval, SIFT matching, depth-lifted 2D-3D, a pose solver by name."""

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
        self.map_meta: list[SampleMeta] = []
        self.map_global: torch.Tensor | None = None
        self.retriever: Any = None
        self.retrieval_name = "thumbnails"
        self.solver: PoseSolver | None = None
        self.stats = {"retrieval_s": 0.0, "matching_s": 0.0, "pnp_s": 0.0, "matches": 0, "correspondences": 0,
                      "queries": 0, "failed_few_matches": 0, "failed_pnp": 0}

    def _retrieval_model(self) -> tuple[str, Any]:
        """``(retrieval name, model or None)`` from ``retrieval`` and ``retrieval_checkpoint``.

        Raises:
            ConfigError: ``retrieval`` netvlad/mobilenetvlad without a checkpoint, ``thumbnails`` with one, or a
                checkpoint of another method than ``retrieval`` names.
            CheckpointError: an unreadable checkpoint, of another method, or that does not fit its model.
        """
        wanted, path = self.config.retrieval, self.config.retrieval_checkpoint
        if path is None:
            if wanted not in (None, "thumbnails"):
                raise ConfigError(f"retrieval={wanted} needs retrieval_checkpoint=RUN/checkpoints/last.ckpt of a "
                                  f"{wanted} run")
            return "thumbnails", None
        if wanted == "thumbnails":
            raise ConfigError("retrieval=thumbnails uses no checkpoint; drop retrieval_checkpoint or set "
                              "retrieval=netvlad|mobilenetvlad")
        from maploc.config import structure
        from maploc.engine.checkpoint import load_checkpoint

        from .config import MobileNetVLADConfig, NetVLADConfig
        from .method import build_teacher
        from .model import GlobalDescriptorNet

        state = load_checkpoint(path)
        kind = state.get("method")
        if wanted is not None and kind != wanted:
            raise ConfigError(f"retrieval={wanted} but retrieval_checkpoint {path} holds method {kind!r}")
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
        return str(kind), model.eval()

    @torch.no_grad()
    def _global(self, images: torch.Tensor) -> torch.Tensor:
        from maploc.methods.nn_retrieval import thumbnail_descriptors

        if self.retriever is None:
            return thumbnail_descriptors(images, self.config.thumbnail_width)
        return self.retriever.vlad(images) if not self.retriever.whitening.fitted else self.retriever(images)

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Builds the pose solver, then SIFT features, depth-lifted world points and a global descriptor of every
        map image.

        Raises:
            DataError: empty map, or a map image without depth or pose (names it).
            CheckpointError: an unusable ``retrieval_checkpoint``.
            ConfigError: ``retrieval`` and ``retrieval_checkpoint`` disagree.
            PluginError: no solver named ``solver`` is installed.
        """
        if len(map_data) == 0:
            raise DataError(f"the map split of {map_data!r} is empty")
        cfg = self.config
        self.solver = make_solver(cfg.solver, max_error_px=cfg.ransac_max_error_px,
                                  max_iterations=cfg.ransac_max_iterations, min_inliers=cfg.min_inliers,
                                  seed=context.seed)
        self.retrieval_name, self.retriever = self._retrieval_model()
        globals_, self.map_images, self.map_meta = [], [], []
        for i in range(len(map_data)):
            s = map_data[i]
            if s.depth is None:
                raise DataError(f"{map_data!r}: map image {s.name!r} has no depth; hloc lifts matches with map depth")
            if s.T_cam2world is None:
                raise DataError(f"{map_data!r}: map image {s.name!r} has no pose (T_cam2world)")
            kp, desc = sift_features(s.image, cfg.num_features, cfg.sift_contrast_threshold)
            self.map_images.append(_MapImage(s.name, kp, desc, lift_keypoints(kp, s.depth, s.camera.K, s.T_cam2world)))
            globals_.append(self._global(s.image.float()[None]))
            self.map_meta.append(SampleMeta.of(s))
        self.map_global = torch.cat(globals_)

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        return [self._localize_one(q) for q in queries]

    def _localize_one(self, q: Sample) -> PoseEstimate:
        cfg = self.config
        assert self.map_global is not None and self.solver is not None, "build_map was not called"
        t0 = time.perf_counter()
        sim = (self._global(q.image.float()[None]) @ self.map_global.T)[0]
        scores, order = sim.topk(min(cfg.top_k, len(sim)))
        top = order.tolist()
        retrieval = Retrieval(indices=top, scores=scores)
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
        n = sum(len(x) for x in p2d)
        self.stats["correspondences"] += n
        if n < max(4, cfg.min_inliers):
            self.stats["failed_few_matches"] += 1
            return PoseEstimate(success=False, seconds=t2 - t0, retrieval=retrieval,
                                extras={"reason": "too few 2D-3D correspondences", "correspondences": n})
        c = Correspondences(points2d=torch.from_numpy(np.concatenate(p2d)), points3d=torch.from_numpy(np.concatenate(p3d)),
                            camera=q.camera)
        est = self.solver.solve([c])[0]
        t3 = time.perf_counter()
        self.stats["pnp_s"] += t3 - t2
        inliers = int(est.num_inliers or 0)
        if not est.success or est.T_cam2world is None or inliers < cfg.min_inliers:
            self.stats["failed_pnp"] += 1
            return PoseEstimate(success=False, seconds=t3 - t0, num_inliers=inliers, retrieval=retrieval,
                                extras={"reason": "too few PnP inliers", "correspondences": n})
        return PoseEstimate(T_cam2world=est.T_cam2world, success=True, num_inliers=inliers, confidence=inliers / n,
                            seconds=t3 - t0, retrieval=retrieval, extras={"reason": "", "correspondences": n})

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        """The pipeline's settings, stage timings (ms per query), mean matches / correspondences and failure
        causes."""
        cfg, s = self.config, self.stats
        q = max(1, s["queries"])
        what = (f"{self.retrieval_name} checkpoint {cfg.retrieval_checkpoint}" if cfg.retrieval_checkpoint
                else f"nn-retrieval thumbnails ({cfg.thumbnail_width} px)")
        return [("hloc pipeline", "\n".join([
            f"retrieval: top-{cfg.top_k} by {what}",
            f"local features: OpenCV SIFT ({cfg.num_features} max), ratio {cfg.ratio} + mutual check",
            f"pose: solver {cfg.solver} ({self.solver!r}), {cfg.ransac_max_error_px} px, >= {cfg.min_inliers} inliers",
            f"failed: {int(s['failed_few_matches'])} with too few matches, {int(s['failed_pnp'])} in PnP, of "
            f"{int(s['queries'])} queries",
            f"per query: retrieval {1000 * s['retrieval_s'] / q:.1f} ms, matching {1000 * s['matching_s'] / q:.1f} ms, "
            f"pose {1000 * s['pnp_s'] / q:.1f} ms; {s['matches'] / q:.1f} matches, "
            f"{s['correspondences'] / q:.1f} 2D-3D correspondences",
        ]))]

"""Three classical PnP solvers as maploc pose solvers: ``opencv-pnp``, ``poselib-pnp``, ``pycolmap-pnp``.

Shared parts that any method composes by name (``hloc`` after feature matching;
``benchmarks/bench_ransac.py`` measures DSAC*'s own RANSAC ``ransac-pnp`` of maploc-dsac against them through
:meth:`PnPAnchorSolver.solve_arrays`); they need neither DSAC* nor a GPU::

    from maploc.plugins import load_component
    solver = load_component("solvers", "poselib-pnp")(inlier_threshold_px=4.0, max_iterations=1000, seed=0)
    estimates = solver.solve([Correspondences(points2d=..., points3d=..., camera=...)])

Every solver takes the same constructor keywords (``inlier_threshold_px``, ``max_iterations``,
``seed``, ``min_inliers``), the same input (a sequence of :class:`maploc.types.Correspondences`,
pixels in OpenCV's convention, world points in metres) and gives the same output (one
:class:`~maploc.types.PoseEstimate` per entry: ``T_cam2world`` in float64, ``num_inliers``). A
query with fewer than 4 usable correspondences (non-finite rows and rows of weight 0 are dropped),
no RANSAC model, fewer than ``min_inliers`` inliers or a non-finite pose gets a failed estimate
(``success=False``, ``extras["reason"]``): no solver raises on degenerate input. Queries are solved
one after another on the CPU.

* ``opencv-pnp``: ``cv2.solvePnPRansac`` with ``SOLVEPNP_P3P`` minimal sets (Gao et al., TPAMI 2003),
  then ``cv2.solvePnPRefineLM`` on its inliers.
* ``poselib-pnp``: PoseLib's LO-RANSAC with P3P and bundle adjustment on the inliers
  (``poselib.estimate_absolute_pose``; Larsson and contributors, https://github.com/PoseLib/PoseLib).
* ``pycolmap-pnp``: COLMAP's LO-RANSAC with P3P, then non-linear refinement
  (``pycolmap.estimate_and_refine_absolute_pose``; Schoenberger and Frahm, CVPR 2016).

OpenCV, PoseLib and pycolmap are dependencies of maploc-features; where one cannot be imported the
constructor raises :class:`maploc.errors.PluginError` naming the library and the install command.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from maploc.api import PoseSolver
from maploc.errors import ConfigError, PluginError
from maploc.types import Correspondences, Pose, PoseEstimate

__all__ = ["PnPAnchorSolver", "OpenCVPnPSolver", "PoseLibPnPSolver", "PycolmapPnPSolver", "MIN_CORRESPONDENCES",
           "INSTALL", "failed_estimate"]

#: A P3P minimal set and one point to choose among its solutions.
MIN_CORRESPONDENCES = 4
#: What to install when a solver's library is missing (all three are dependencies of maploc-features).
INSTALL = "pip install './plugins/features'"

#: ``solve_arrays``' result: ``(R_cam2world (3, 3), t_cam2world (3,), num_inliers)`` or ``None``.
ArrayPose = tuple[np.ndarray, np.ndarray, int]


def failed_estimate(seconds: float = 0.0, num_inliers: int | None = None, **extras: Any) -> PoseEstimate:
    """``PoseEstimate.failed`` with its inlier count in ``num_inliers`` (the predictions file's column;
    as an ``extras`` entry of that name it would be dropped)."""
    return attrs.evolve(PoseEstimate.failed(seconds=seconds, **extras), num_inliers=num_inliers)


def _usable(c: Correspondences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(points2d (N, 2), points3d (N, 3), K (3, 3))`` float64 of ``c``'s finite rows with non-zero
    weight; a skewed ``K`` is removed by moving the points to the skew-free camera with the same
    focal lengths and principal point (the reprojection error changes by the skew term only)."""
    p2 = c.points2d.detach().cpu().double().numpy()
    p3 = c.points3d.detach().cpu().double().numpy()
    keep = np.isfinite(p2).all(1) & np.isfinite(p3).all(1)
    if c.weights is not None:
        keep &= c.weights.detach().cpu().numpy() > 0
    p2, p3 = np.ascontiguousarray(p2[keep]), np.ascontiguousarray(p3[keep])
    K = c.camera.K.detach().cpu().double().numpy().copy()
    if K[0, 1] != 0.0:
        yn = (p2[:, 1] - K[1, 2]) / K[1, 1]
        p2 = np.stack([p2[:, 0] - K[0, 1] * yn, p2[:, 1]], 1)
        K[0, 1] = 0.0
    return p2, p3, K


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and np.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


class PnPAnchorSolver(PoseSolver, abc.ABC):
    """What the three solvers share: the keywords, the input checks and the failure rules.

    Args:
        inlier_threshold_px: a correspondence is an inlier when its reprojection error is below
            this, pixels (default 10, DSAC*'s ``tau`` at 480 px).
        max_iterations: RANSAC iterations at most (default: the library's own default, below).
        min_iterations: iterations at least before an adaptive stop (PoseLib, pycolmap; default: the
            library's; clamped to ``max_iterations``).
        seed: the sampling seed (the same input gives the same pose).
        min_inliers: fewer inliers = failed estimate (default 4).

    Raises:
        ConfigError: a non-positive threshold or iteration count.
        PluginError: the library is not installed (names the ``pip install`` command).
    """

    #: the entry-point name (for messages)
    name: ClassVar[str] = ""
    default_max_iterations: ClassVar[int] = 10_000
    default_min_iterations: ClassVar[int] = 0
    #: what the library raises on a degenerate input (turned into a failed estimate)
    library_errors: tuple[type[Exception], ...] = (RuntimeError, ValueError, np.linalg.LinAlgError)

    def __init__(
        self, *, inlier_threshold_px: float = 10.0, max_iterations: int | None = None,
        min_iterations: int | None = None, seed: int = 0, min_inliers: int = MIN_CORRESPONDENCES,
    ) -> None:
        self.inlier_threshold_px = float(inlier_threshold_px)
        _check_positive("inlier_threshold_px", self.inlier_threshold_px)
        self.max_iterations = int(self.default_max_iterations if max_iterations is None else max_iterations)
        _check_positive("max_iterations", self.max_iterations)
        self.min_iterations = min(self.max_iterations,
                                  int(self.default_min_iterations if min_iterations is None else min_iterations))
        self.seed = int(seed)
        self.min_inliers = max(MIN_CORRESPONDENCES, int(min_inliers))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(inlier_threshold_px={self.inlier_threshold_px}, max_iterations="
                f"{self.max_iterations}, min_iterations={self.min_iterations}, seed={self.seed}, "
                f"min_inliers={self.min_inliers})")

    @staticmethod
    def _import(module: str, what: str) -> Any:
        try:
            return __import__(module)
        except ImportError:
            raise PluginError(f"{what} needs the package {module!r}: {INSTALL}") from None

    @abc.abstractmethod
    def solve_arrays(self, points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray, width: int,
                     height: int) -> ArrayPose | None:
        """One query: ``points2d (N, 2)`` pixels, ``points3d (N, 3)`` metres (float64, finite, N >= 4),
        ``K (3, 3)`` without skew, the image size. Returns ``(R_cam2world, t_cam2world, num_inliers)``
        or ``None`` when no model was found. May raise on inputs the library rejects (``solve``
        turns that into a failed estimate)."""

    def solve(self, correspondences: Sequence[Correspondences]) -> list[PoseEstimate]:
        """One estimate per query, in order; never raises on degenerate input (see the module docstring)."""
        out = []
        for c in correspondences:
            t0 = time.perf_counter()
            p2, p3, K = _usable(c)
            if len(p2) < MIN_CORRESPONDENCES:
                out.append(failed_estimate(seconds=time.perf_counter() - t0, num_inliers=0,
                                               reason=f"fewer than {MIN_CORRESPONDENCES} correspondences"))
                continue
            try:
                result = self.solve_arrays(p2, p3, K, int(c.camera.width), int(c.camera.height))
            except self.library_errors as e:  # the library rejected a degenerate configuration
                result, reason = None, f"{self.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            else:
                reason = "no model"
            seconds = time.perf_counter() - t0
            if result is None:
                out.append(failed_estimate(seconds=seconds, num_inliers=0, reason=reason))
                continue
            R, t, n = result
            if n < self.min_inliers or not (np.isfinite(R).all() and np.isfinite(t).all()):
                out.append(failed_estimate(seconds=seconds, num_inliers=int(n), reason="too few inliers"))
                continue
            pose = Pose(R=torch.from_numpy(np.ascontiguousarray(R, dtype=np.float64)),
                        t=torch.from_numpy(np.ascontiguousarray(t, dtype=np.float64).reshape(3)))
            out.append(PoseEstimate(T_cam2world=pose, success=True, num_inliers=int(n), seconds=seconds))
        return out


def _from_world2cam(R_w2c: np.ndarray, t_w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    R_w2c = np.asarray(R_w2c, dtype=np.float64)
    return R_w2c.T, -R_w2c.T @ np.asarray(t_w2c, dtype=np.float64).reshape(3)


class OpenCVPnPSolver(PnPAnchorSolver):
    """``opencv-pnp``: ``cv2.solvePnPRansac`` (``SOLVEPNP_P3P``: 4-point minimal sets), then
    ``cv2.solvePnPRefineLM`` on its inliers.

    Args: as :class:`PnPAnchorSolver`; ``max_iterations`` defaults to 10,000 and OpenCV stops early
    at ``confidence`` (default 0.9999; ``benchmarks/bench_ransac.py`` uses ``1 - 1e-12`` so that the
    bound stays at ``max_iterations`` while outliers remain). ``min_iterations`` is ignored.
    OpenCV's RANSAC draws from a fixed internal generator, so ``seed`` permutes the correspondences
    instead (``seed=0``: their given order, the plain OpenCV call).
    """

    name: ClassVar[str] = "opencv-pnp"
    default_max_iterations: ClassVar[int] = 10_000

    def __init__(self, *, confidence: float = 0.9999, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cv2 = self._import("cv2", "opencv-pnp")
        if not 0.0 < confidence < 1.0:
            raise ConfigError(f"opencv-pnp: confidence must lie in (0, 1), got {confidence}")
        self.confidence = float(confidence)
        self._cv2 = cv2
        self.library_errors = (*PnPAnchorSolver.library_errors, cv2.error)

    def solve_arrays(self, points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray, width: int,
                     height: int) -> ArrayPose | None:
        cv2 = self._cv2
        n = len(points2d)
        order = np.arange(n) if self.seed == 0 else np.random.default_rng(self.seed).permutation(n)
        X, uv = np.ascontiguousarray(points3d[order]), np.ascontiguousarray(points2d[order])
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            X, uv, K, None, iterationsCount=self.max_iterations, reprojectionError=self.inlier_threshold_px,
            confidence=self.confidence, flags=cv2.SOLVEPNP_P3P,
        )
        if not ok or inliers is None or len(inliers) < MIN_CORRESPONDENCES:
            return None
        i = inliers.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(X[i], uv[i], K, None, rvec, tvec)
        R, t = _from_world2cam(cv2.Rodrigues(rvec)[0], tvec)
        return R, t, len(i)


class PoseLibPnPSolver(PnPAnchorSolver):
    """``poselib-pnp``: ``poselib.estimate_absolute_pose`` (LO-RANSAC with P3P, adaptive stop, bundle
    adjustment on the inliers) on a ``PINHOLE`` camera.

    Args: as :class:`PnPAnchorSolver`; defaults are PoseLib's (``max_iterations`` 100,000,
    ``min_iterations`` 1,000, success probability 0.9999).

    Raises:
        PluginError: PoseLib is not installed.
    """

    name: ClassVar[str] = "poselib-pnp"
    default_max_iterations: ClassVar[int] = 100_000
    default_min_iterations: ClassVar[int] = 1_000

    def __init__(self, **kwargs: Any) -> None:
        self._poselib = self._import("poselib", "poselib-pnp")
        super().__init__(**kwargs)
        self.ransac_options = {"max_reproj_error": self.inlier_threshold_px, "max_iterations": self.max_iterations,
                               "min_iterations": self.min_iterations, "seed": self.seed}

    def solve_arrays(self, points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray, width: int,
                     height: int) -> ArrayPose | None:
        camera = {"model": "PINHOLE", "width": width, "height": height,
                  "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}
        pose, info = self._poselib.estimate_absolute_pose(points2d, points3d, camera, self.ransac_options, {})
        n = int(info.get("num_inliers", 0))
        if n < MIN_CORRESPONDENCES:
            return None
        R, t = _from_world2cam(pose.R, pose.t)
        return R, t, n


class PycolmapPnPSolver(PnPAnchorSolver):
    """``pycolmap-pnp``: ``pycolmap.estimate_and_refine_absolute_pose`` (COLMAP's LO-RANSAC with P3P,
    then non-linear refinement) on a ``PINHOLE`` camera, one thread.

    Args: as :class:`PnPAnchorSolver`; defaults are COLMAP's (``max_iterations`` 10,000,
    ``min_iterations`` 100, confidence 0.99999).

    Raises:
        PluginError: pycolmap is not installed.
    """

    name: ClassVar[str] = "pycolmap-pnp"
    default_max_iterations: ClassVar[int] = 10_000
    default_min_iterations: ClassVar[int] = 100

    def __init__(self, **kwargs: Any) -> None:
        self._pycolmap = self._import("pycolmap", "pycolmap-pnp")
        super().__init__(**kwargs)
        options = self._pycolmap.AbsolutePoseEstimationOptions()
        options.ransac.max_error = self.inlier_threshold_px
        options.ransac.min_num_trials = self.min_iterations
        options.ransac.max_num_trials = self.max_iterations
        options.ransac.random_seed = self.seed
        options.ransac.num_threads = 1
        self.options = options

    def solve_arrays(self, points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray, width: int,
                     height: int) -> ArrayPose | None:
        camera = self._pycolmap.Camera(model="PINHOLE", width=width, height=height,
                                       params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        out = self._pycolmap.estimate_and_refine_absolute_pose(points2d, points3d, camera, self.options)
        if out is None:
            return None
        T = out["cam_from_world"]
        R, t = _from_world2cam(T.rotation.matrix(), np.asarray(T.translation))
        return R, t, int(out.get("num_inliers", 0))

"""DSAC*'s RANSAC as reusable maploc pose solvers (entry points ``ransac-pnp`` and ``ransac-kabsch``;
the classical PnP solvers it is compared with are in :mod:`maploc_features.solvers` of maploc-features).

Both wrap :class:`maploc_dsac.solvers.DSACRansac` (test-time estimator: hypotheses from minimal
sets, soft inlier scoring, argmax selection, iterative refinement; DSAC*, Brachmann & Rother, TPAMI
2021, Sec. 3) behind :class:`maploc.api.PoseSolver`, so any method can solve a batch of queries with
them::

    from maploc.plugins import load_component
    solver = load_component("solvers", "ransac-pnp")(inlier_threshold=4.0)
    estimates = solver.solve([Correspondences(points2d=..., points3d=..., camera=...)])

A batch of queries with different numbers of matches is padded to the largest and masked, so every
query of a batch is solved in one tensor program (on the device of the points).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor

from maploc.api import PoseSolver
from maploc.types import Correspondences, Pose, PoseEstimate

__all__ = ["RansacPnPSolver", "RansacKabschSolver", "DepthCorrespondences", "estimates_from_result", "failed_estimate"]


@attrs.frozen(kw_only=True, eq=False)
class DepthCorrespondences(Correspondences):
    """2D-3D matches whose 2-D points also have a measured depth (RGB-D), for ``ransac-kabsch``.

    Attributes:
        depth: ``(N,)`` z-depth of each ``points2d`` in the query camera, metres; ``0`` or non-finite
            = unknown (the match is not used).
    """

    depth: Tensor

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.depth.shape != (self.points2d.shape[0],):
            raise ValueError(f"depth must be (N,) = ({self.points2d.shape[0]},), got {tuple(self.depth.shape)}")

    def points_cam(self) -> Tensor:
        """``(N, 3)`` camera-frame points (metres) of the 2-D points lifted with their depth."""
        K = self.camera.K.to(self.points2d.dtype).to(self.points2d.device)
        d = self.depth.to(self.points2d.dtype)
        yn = (self.points2d[:, 1] - K[1, 2]) / K[1, 1]
        xn = (self.points2d[:, 0] - K[0, 2] - K[0, 1] * yn) / K[0, 0]
        return torch.stack([xn * d, yn * d, d], -1)


def failed_estimate(seconds: float = 0.0, num_inliers: int | None = None, **extras: Any) -> PoseEstimate:
    """``PoseEstimate.failed`` with its inlier count in ``num_inliers`` (the predictions file's column;
    as an ``extras`` entry of that name it would be dropped)."""
    return attrs.evolve(PoseEstimate.failed(seconds=seconds, **extras), num_inliers=num_inliers)


def estimates_from_result(result: Any, min_inliers: int, seconds: float, **extras: Any) -> list[PoseEstimate]:
    """Turns a :class:`~maploc_dsac.solvers.RansacResult` of ``B`` images into ``B`` estimates.

    An image whose result is not ``success`` or has fewer than ``min_inliers`` inliers (or a
    non-finite pose) becomes a failed estimate, its ``extras["reason"]`` saying which.
    """
    out: list[PoseEstimate] = []
    R = result.R_cam2world.detach().cpu()
    t = result.t_cam2world.detach().cpu()
    for b in range(R.shape[0]):
        n_in = int(result.num_inliers[b])
        ok = bool(result.success[b]) and n_in >= min_inliers and bool(torch.isfinite(R[b]).all() and torch.isfinite(t[b]).all())
        if not ok:
            why = "no hypothesis" if not bool(result.success[b]) else (
                "too few inliers" if n_in < min_inliers else "non-finite pose")
            out.append(failed_estimate(seconds=seconds, num_inliers=n_in, **{"reason": why, **extras}))
            continue
        out.append(
            PoseEstimate(
                T_cam2world=Pose(R=R[b].clone(), t=t[b].clone()),
                success=True,
                num_inliers=n_in,
                confidence=float(result.soft_inlier_count[b]),
                seconds=seconds,
                extras=dict(extras),
            )
        )
    return out


def _alias(name: str, value: Any, alias: str, alias_value: Any, default: Any) -> Any:
    """``value`` or its common-keyword ``alias`` (the same quantity under the name every pose solver
    of this plugin takes), else ``default``.

    Raises:
        ConfigError: both are given, with different values.
    """
    from maploc.errors import ConfigError

    if value is not None and alias_value is not None and value != alias_value:
        raise ConfigError(f"give {name}={value!r} or {alias}={alias_value!r}, not both (they are the same setting)")
    if value is not None:
        return value
    return default if alias_value is None else alias_value


class _DSACSolverBase(PoseSolver):
    mode: ClassVar[str] = "rgb"

    def __init__(
        self,
        *,
        num_hypotheses: int | None = None,
        inlier_threshold: float | None = None,
        inlier_alpha: float = 100.0,
        max_error: float | None = None,
        max_refinement_steps: int = 100,
        min_inliers: int | None = None,
        seed: int = 0,
        max_iterations: int | None = None,
    ) -> None:
        from maploc_dsac.solvers import DSACRansac

        num_hypotheses = _alias("num_hypotheses", num_hypotheses, "max_iterations", max_iterations, 64)
        self.ransac = DSACRansac(
            self.mode,  # type: ignore[arg-type]
            num_hypotheses=num_hypotheses,
            inlier_threshold=inlier_threshold,
            inlier_alpha=inlier_alpha,
            max_error=max_error,
            max_refinement_steps=max_refinement_steps,
        )
        self.min_inliers = self.ransac.set_size if min_inliers is None else int(min_inliers)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ransac!r}, min_inliers={self.min_inliers})"

    @staticmethod
    def _pad(items: Sequence[Tensor], width: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        n_max = max(1, max(int(x.shape[0]) for x in items))
        out = torch.zeros(len(items), n_max, width, dtype=dtype, device=device)
        mask = torch.zeros(len(items), n_max, dtype=torch.bool, device=device)
        for b, x in enumerate(items):
            out[b, : x.shape[0]] = x.to(device=device, dtype=dtype)
            mask[b, : x.shape[0]] = True
        return out, mask


class RansacPnPSolver(_DSACSolverBase):
    """RGB: 2D-3D correspondences -> camera pose by DSAC*'s RANSAC with P3P hypotheses (entry point
    ``ransac-pnp``). Defaults as DSAC*: 64 hypotheses, ``tau`` = 10 px, ``alpha`` = 100, errors
    clamped at 100 px.

    Args:
        num_hypotheses, inlier_threshold (pixels), inlier_alpha, max_error (pixels),
            max_refinement_steps: see :class:`~maploc_dsac.solvers.DSACRansac`.
        min_inliers: fewer final inliers = failed estimate (default: a minimal set, 4).
        seed: seed of the hypothesis sampling (the same queries give the same poses).
        inlier_threshold_px, max_iterations: the keywords every PnP solver takes
            (:mod:`maploc_features.solvers`): the same as ``inlier_threshold`` and ``num_hypotheses``.

    Raises:
        ConfigError: a setting given under both of its names, with different values.
    """

    mode: ClassVar[str] = "rgb"

    def __init__(self, *, inlier_threshold: float | None = None, inlier_threshold_px: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(inlier_threshold=_alias("inlier_threshold", inlier_threshold, "inlier_threshold_px",
                                                 inlier_threshold_px, None), **kwargs)

    def solve(self, correspondences: Sequence[Correspondences]) -> list[PoseEstimate]:
        """Solves every query of the batch at once.

        ``Correspondences.weights``, when given, masks matches with weight 0 (DSAC* does not
        weight). Never raises on degenerate data (fewer than 4 matches, NaN): those queries fail.
        """
        if not correspondences:
            return []
        t0 = time.perf_counter()
        device = correspondences[0].points3d.device
        dtype = torch.float32
        X, mask = self._pad([c.points3d for c in correspondences], 3, dtype, device)
        uv, _ = self._pad([c.points2d for c in correspondences], 2, dtype, device)
        for b, c in enumerate(correspondences):
            if c.weights is not None:
                mask[b, : len(c)] &= c.weights.to(device) > 0
        K = torch.stack([c.camera.K.to(device=device, dtype=dtype) for c in correspondences])
        result = self.ransac(X, uv, K, mask=mask, seed=self.seed)
        seconds = (time.perf_counter() - t0) / len(correspondences)
        return estimates_from_result(result, self.min_inliers, seconds)


class RansacKabschSolver(_DSACSolverBase):
    """RGB-D: 3D-3D correspondences -> camera pose by DSAC*'s RANSAC with Kabsch hypotheses (entry
    point ``ransac-kabsch``). Defaults as DSAC*: 64 hypotheses, ``tau`` = 0.1 m, ``alpha`` = 100,
    errors clamped at 1 m.

    Expects :class:`DepthCorrespondences` (the 2-D points' measured depth gives the camera-frame
    points).

    Args: as :class:`RansacPnPSolver`, thresholds in metres (so no ``inlier_threshold_px``);
    ``min_inliers`` defaults to 3.
    """

    mode: ClassVar[str] = "rgbd"

    def solve(self, correspondences: Sequence[Correspondences]) -> list[PoseEstimate]:
        """Solves every query of the batch at once.

        Raises:
            TypeError: if an entry is not a :class:`DepthCorrespondences` (no depth to align with).
        """
        if not correspondences:
            return []
        for c in correspondences:
            if not isinstance(c, DepthCorrespondences):
                raise TypeError(
                    "ransac-kabsch needs maploc_dsac.pose_solvers.DepthCorrespondences (matches with depth), "
                    f"got {type(c).__name__}"
                )
        t0 = time.perf_counter()
        device = correspondences[0].points3d.device
        dtype = torch.float32
        X, mask = self._pad([c.points3d for c in correspondences], 3, dtype, device)
        P, _ = self._pad([c.points_cam() for c in correspondences], 3, dtype, device)  # type: ignore[attr-defined]
        for b, c in enumerate(correspondences):
            mask[b, : len(c)] &= torch.isfinite(c.depth.to(device)) & (c.depth.to(device) > 0)  # type: ignore[attr-defined]
            if c.weights is not None:
                mask[b, : len(c)] &= c.weights.to(device) > 0
        result = self.ransac(X, points_cam=P, mask=mask, seed=self.seed)
        seconds = (time.perf_counter() - t0) / len(correspondences)
        return estimates_from_result(result, self.min_inliers, seconds)

"""The two geometric models of the DSAC* RANSAC, one class per mode (DSAC* Sec. 3.1 and 3.2).

Source: E. Brachmann and C. Rother, "Visual Camera Re-Localization from RGB and RGB-D Images Using
DSAC", TPAMI 2021 (DSAC*), and its public code (``dsacstar_util.h``).

* :class:`PnPModel` (``rgb``): 2D-3D correspondences; four per minimal set (P3P on three, the fourth
  picks among the up to four solutions, as OpenCV ``SOLVEPNP_P3P`` on four points); reprojection
  errors in pixels; Levenberg-Marquardt refinement.
* :class:`KabschModel` (``rgbd``): 3D-3D correspondences with the query's depth; three per minimal set
  (Kabsch); 3-D distances in metres; weighted Kabsch refinement.

The RANSAC driver (:class:`~maploc_dsac.solvers.ransac.DSACRansac`) calls only the methods below,
so it has no branch on the mode. Poses are ``x_cam = R_world2cam x_world + t_world2cam`` throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs
import torch
from torch import Tensor

from maploc_dsac.solvers.kabsch import kabsch
from maploc_dsac.solvers.ops import Z_MIN, compute_dtype, gather_points, invert, matmul3, matvec3, rows
from maploc_dsac.solvers.p3p import p3p_lambda_twist
from maploc_dsac.solvers.p3p_fast import p3p_solve_components
from maploc_dsac.solvers.refinement import refine_pnp_lm, refine_pnp_lm_inliers
from maploc_dsac.solvers.scoring import alignment_errors, reprojection_error_components, reprojection_errors

__all__ = ["MODELS", "KabschModel", "Observations", "PnPModel"]

Fit = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


@attrs.frozen(eq=False)
class Observations:
    """What scene coordinates are matched with, per image.

    Attributes:
        target: ``(B, N, 2)`` pixels ``(u, v)`` (PnP) or ``(B, N, 3)`` camera-frame points, metres
            (Kabsch).
        K: ``(B, 3, 3)`` pinhole intrinsics, pixels (PnP); ``None`` for Kabsch.
    """

    target: Tensor
    K: Tensor | None = None

    def rows(self, index: Tensor | None) -> Observations:
        """The observations of the images ``index`` (all for ``None``)."""
        return self if index is None else Observations(rows(self.target, index), rows(self.K, index))

    def to(self, dtype: torch.dtype) -> Observations:
        return Observations(self.target.to(dtype), None if self.K is None else self.K.to(dtype))

    def detach(self) -> Observations:
        return Observations(self.target.detach(), None if self.K is None else self.K.detach())

    def expand(self, extra: int) -> Observations:
        """With ``extra`` singleton dims after the batch dim (to broadcast against hypotheses)."""

        def e(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], *([1] * extra), *x.shape[1:])

        return Observations(e(self.target), None if self.K is None else e(self.K))


def _expand(x: Tensor, extra: int) -> Tensor:
    return x.reshape(x.shape[0], *([1] * extra), *x.shape[1:])


class PnPModel:
    """RGB mode: P3P hypotheses, reprojection errors (pixels), LM refinement (DSAC* Sec. 3.1)."""

    mode: ClassVar[str] = "rgb"
    set_size: ClassVar[int] = 4
    default_threshold: ClassVar[float] = 10.0  # pixels
    default_max_error: ClassVar[float] = 100.0  # pixels
    projective: ClassVar[bool] = True

    def observations(self, pixels: Tensor | None, K: Tensor | None, points_cam: Tensor | None) -> Observations:
        """The raw inputs as :class:`Observations` (no checks).

        Raises:
            ValueError: if ``pixels`` or ``K`` is missing.
        """
        if pixels is None or K is None:
            raise ValueError("RGB mode needs pixels (B, N, 2) and K (B, 3, 3)")
        return Observations(pixels, K)

    def prepare(self, obs: Observations, B: int, N: int, dtype: torch.dtype, valid: Tensor) -> tuple[Observations, Tensor]:
        """Checks shapes, casts to ``dtype``, masks non-finite rows; returns ``(obs, valid)``.

        Raises:
            ValueError: for inputs of the wrong shape.
        """
        pixels, K = obs.target, obs.K
        assert K is not None
        if pixels.shape != (B, N, 2):
            raise ValueError(f"pixels must be (B, N, 2) = {(B, N, 2)}, got {tuple(pixels.shape)}")
        K = K.to(dtype=dtype, device=pixels.device)
        if K.shape[-2:] != (3, 3):
            raise ValueError(f"K must be (B, 3, 3) or (3, 3), got {tuple(K.shape)}")
        K = K.expand(B, 3, 3)
        pixels = pixels.to(dtype)
        valid = valid & torch.isfinite(pixels).all(-1)
        pixels = torch.where(valid[..., None], pixels, torch.zeros_like(pixels))
        return Observations(pixels, K), valid

    def candidates(
        self, sc: Tensor, obs: Observations, sets: Tensor, threshold: float, max_error: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Solves minimal sets ``(B, C, 4)``: ``(R (B, C, 3, 3), t (B, C, 3), has_solution (B, C),
        consistent (B, C))`` in the compute dtype; consistent = all four reproject within
        ``threshold``. With autograd the reference P3P, without it the component kernel."""
        pixels, K = obs.target, obs.K
        assert K is not None
        cd = compute_dtype(sc)
        Kc = K.to(cd)
        Kinv = torch.linalg.inv(Kc)
        if torch.is_grad_enabled():
            X = gather_points(sc, sets).to(cd)  # (B, C, 4, 3)
            uv = gather_points(pixels, sets).to(cd)  # (B, C, 4, 2)
            rays = matvec3(Kinv[:, None, None], torch.cat([uv, torch.ones_like(uv[..., :1])], -1))
            R, t, ok = p3p_lambda_twist(rays[..., :3, :], X[..., :3, :])  # (B, C, 4, 3, 3), (B, C, 4, 3), (B, C, 4)
            err = reprojection_errors(R, t, X[:, :, None], uv[:, :, None], Kc[:, None, None], max_error)
            fourth = torch.where(ok, err[..., 3], torch.full_like(err[..., 3], float("inf")))
            best = fourth.argmin(-1)  # (B, C)
            R = torch.gather(R, 2, best[..., None, None, None].expand(*best.shape, 1, 3, 3)).squeeze(2)
            t = torch.gather(t, 2, best[..., None, None].expand(*best.shape, 1, 3)).squeeze(2)
            has = ok.any(-1)
            err_best = torch.gather(err, 2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(2)
            return R, t, has, has & (err_best < threshold).all(-1)
        B, C, k = sets.shape
        N = sc.shape[1]
        flat = (sets + N * torch.arange(B, device=sets.device)[:, None, None]).reshape(-1)
        # Component-major (coordinate, point, B, C): every coordinate of every point is contiguous.
        Xp = sc.reshape(B * N, 3).index_select(0, flat).reshape(B, C, k, 3).permute(3, 2, 0, 1).to(cd).contiguous()
        up = pixels.reshape(B * N, 2).index_select(0, flat).reshape(B, C, k, 2).permute(3, 2, 0, 1).to(cd).contiguous()
        kinv = [[Kinv[:, r, c, None] for c in range(3)] for r in range(3)]  # (B, 1)
        ray = tuple(
            tuple(kinv[r][0] * up[0, i] + kinv[r][1] * up[1, i] + kinv[r][2] for r in range(3)) for i in range(3)
        )
        points = tuple((Xp[0, i], Xp[1, i], Xp[2, i]) for i in range(3))
        poses, ok, slot = p3p_solve_components(ray, points)  # sparse: (12, S), (S,), (S,) into (B, C, 4)
        # The fourth point picks the solution (on the solved slots only); then the chosen one must
        # reproject all four within tau.
        problem = torch.div(slot, 4, rounding_mode="floor")  # into (B * C)
        image = torch.div(problem, C, rounding_mode="floor")
        Ks = Kc[:, :2].reshape(B, 6).index_select(0, image).T  # (6, S): rows u, v of K
        kk = [[Ks[3 * i + j] for j in range(3)] for i in range(2)]
        X4 = [Xp[c, 3].reshape(-1).index_select(0, problem) for c in range(3)]
        u4, v4 = (up[c, 3].reshape(-1).index_select(0, problem) for c in range(2))
        rot = [[poses[3 * r + c] for c in range(3)] for r in range(3)]
        err4 = reprojection_error_components(rot, poses[9:], X4, u4, v4, kk, max_error)
        err4 = torch.where(ok, err4, float("inf"))
        fourth = torch.full((B * C * 4,), float("inf"), dtype=cd, device=sc.device).index_copy_(0, slot, err4)
        fourth = fourth.reshape(B, C, 4)
        best = fourth.argmin(-1)  # (B, C)
        has = torch.isfinite(fourth).any(-1)
        # Position of each problem's chosen slot among the solved slots (valid where `has`; unsolved
        # slots point past the end, at an identity pose with an infinite error).
        S = slot.numel()
        identity = torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], dtype=cd, device=sc.device)[:, None]
        poses = torch.cat([poses, identity], 1)
        err4 = torch.cat([err4, err4.new_full((1,), float("inf"))])
        position = torch.full((B * C * 4,), S, dtype=torch.int64, device=sc.device)
        position.index_copy_(0, slot, torch.arange(S, device=sc.device))
        flat_best = (best + 4 * torch.arange(B * C, device=sc.device).reshape(B, C)).reshape(-1)
        chosen_pos = position.index_select(0, flat_best)
        chosen = torch.where(has.reshape(1, -1), poses.index_select(1, chosen_pos), identity)  # (12, B * C)
        err_best4 = err4.index_select(0, chosen_pos)
        chosen = chosen.reshape(12, B, C)
        R = chosen[:9].movedim(0, -1).reshape(B, C, 3, 3)
        t = chosen[9:].movedim(0, -1).contiguous()
        rot_b = [[chosen[3 * r + c] for c in range(3)] for r in range(3)]
        trans_b = [chosen[9 + r] for r in range(3)]
        kk = [[Kc[:, i, j, None] for j in range(3)] for i in range(2)]  # (B, 1)
        consistent = has & (err_best4.reshape(B, C) < threshold)
        for i in range(3):
            Xi = [Xp[c, i] for c in range(3)]
            err = reprojection_error_components(rot_b, trans_b, Xi, up[0, i], up[1, i], kk, max_error)
            consistent = consistent & (err < threshold)
        return R, t, has, consistent

    def errors(self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations, max_error: float) -> Tensor:
        """Differentiable errors ``(B, *, N)`` of poses ``(B, *, 3, 3)`` (``*``: none or one hypothesis dim)."""
        extra = R.dim() - 3
        assert obs.K is not None
        return reprojection_errors(R, t, _expand(sc, extra), _expand(obs.target, extra), _expand(obs.K, extra), max_error)

    def score_matrices(self, R: Tensor, t: Tensor, obs: Observations) -> tuple[Tensor, Tensor]:
        """For :func:`~maploc_dsac.solvers.scoring.soft_inlier_counts_fast`: ``K [R | t] (B, H, 3, 4)``
        and the negated pixels ``(B, 2, N)``."""
        K = obs.K
        assert K is not None
        P = torch.cat([matmul3(K[:, None], R), matvec3(K[:, None], t)[..., None]], -1)
        return P, obs.target.transpose(1, 2).neg()

    def pose_errors(self, R: Tensor, t: Tensor, Xh: Tensor, target: Tensor, K: Tensor | None, max_error: float) -> Tensor:
        """Test-time errors ``(B, N)`` of one pose per image from homogeneous points ``Xh (B, 4, N)``
        and pixels ``target (B, 2, N)``: one GEMM for ``K [R | t] X``."""
        assert K is not None
        p = torch.bmm(matmul3(K, R).contiguous(), Xh[:, :3]) + matvec3(K, t)[..., None]
        z = p[:, 2]
        in_front = z > Z_MIN
        inv_z = 1.0 / torch.where(in_front, z, torch.ones_like(z))
        du = p[:, 0] * inv_z - target[:, 0]
        dv = p[:, 1] * inv_z - target[:, 1]
        err = (du * du + dv * dv).clamp_min(1e-20).sqrt().clamp(max=max_error)
        return torch.where(in_front, err, torch.full_like(err, max_error))

    def refit(
        self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations, Xh: Tensor, target: Tensor, inliers: Tensor,
        lm_iterations: int, max_error: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Test-time re-fit of one pose per image to its inlier set ``(B, N)`` bool: LM
        (:func:`~maploc_dsac.solvers.refinement.refine_pnp_lm_inliers`). Returns ``(R, t, ok)``."""
        assert obs.K is not None
        R_new, t_new = refine_pnp_lm_inliers(R, t, Xh, target, obs.K, inliers, lm_iterations, max_error=max_error)
        return R_new, t_new, inliers.sum(-1) >= 4

    def fit_fn(self, sc: Tensor, obs: Observations, extra: int, iterations: int, max_error: float) -> Fit:
        """``fit(R, t, inliers) -> (R, t, ok)`` on poses with ``extra`` hypothesis dims (no autograd
        needed; :func:`~maploc_dsac.solvers.refinement.refine_on_inliers`)."""
        X, o = _expand(sc, extra), obs.expand(extra)

        def fit(R: Tensor, t: Tensor, inliers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            R_new, t_new = refine_pnp_lm(R, t, X, o.target, o.K, inliers.to(R.dtype), iterations, max_error=max_error)
            return R_new, t_new, inliers.sum(-1) >= 4

        return fit

    def refine_differentiable(
        self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations, inliers: Tensor, steps: int, max_error: float
    ) -> tuple[Tensor, Tensor]:
        """Training: ``steps`` differentiable LM iterations of every hypothesis ``(B, H, ...)`` on its
        inlier set ``(B, H, N)``, from the (differentiable) hypothesis."""
        assert obs.K is not None
        return refine_pnp_lm(
            R, t, sc[:, None], obs.target[:, None], obs.K[:, None], inliers.to(sc.dtype), steps, max_error=max_error
        )


class KabschModel:
    """RGB-D mode: Kabsch hypotheses, 3-D distances (metres), weighted Kabsch refinement (DSAC* Sec. 3.2)."""

    mode: ClassVar[str] = "rgbd"
    set_size: ClassVar[int] = 3
    default_threshold: ClassVar[float] = 0.1  # metres (the reference's 10 cm)
    default_max_error: ClassVar[float] = 1.0  # metres
    projective: ClassVar[bool] = False

    def observations(self, pixels: Tensor | None, K: Tensor | None, points_cam: Tensor | None) -> Observations:
        """The raw inputs as :class:`Observations` (no checks).

        Raises:
            ValueError: if ``points_cam`` is missing.
        """
        if points_cam is None:
            raise ValueError("RGB-D mode needs points_cam (B, N, 3)")
        return Observations(points_cam)

    def prepare(self, obs: Observations, B: int, N: int, dtype: torch.dtype, valid: Tensor) -> tuple[Observations, Tensor]:
        """As :meth:`PnPModel.prepare`; also masks points with a non-positive depth."""
        points_cam = obs.target
        if points_cam.shape != (B, N, 3):
            raise ValueError(f"points_cam must be (B, N, 3) = {(B, N, 3)}, got {tuple(points_cam.shape)}")
        points_cam = points_cam.to(dtype)
        valid = valid & torch.isfinite(points_cam).all(-1) & (points_cam[..., 2] > 0)
        points_cam = torch.where(valid[..., None], points_cam, torch.zeros_like(points_cam))
        return Observations(points_cam), valid

    def candidates(
        self, sc: Tensor, obs: Observations, sets: Tensor, threshold: float, max_error: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """As :meth:`PnPModel.candidates` for sets of three: Kabsch, consistent = all three within
        ``threshold`` metres."""
        cd = compute_dtype(sc)
        X = gather_points(sc, sets).to(cd)
        P = gather_points(obs.target, sets).to(cd)
        R_c2w, t_c2w, ok = kabsch(P, X)
        R, t = invert(R_c2w, t_c2w)
        err = alignment_errors(R, t, X, P, max_error)
        return R, t, ok, ok & (err < threshold).all(-1)

    def errors(self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations, max_error: float) -> Tensor:
        extra = R.dim() - 3
        return alignment_errors(R, t, _expand(sc, extra), _expand(obs.target, extra), max_error)

    def score_matrices(self, R: Tensor, t: Tensor, obs: Observations) -> tuple[Tensor, Tensor]:
        """``[R | t] (B, H, 3, 4)`` and the negated camera points ``(B, 3, N)``."""
        return torch.cat([R, t[..., None]], -1), obs.target.transpose(1, 2).neg()

    def pose_errors(self, R: Tensor, t: Tensor, Xh: Tensor, target: Tensor, K: Tensor | None, max_error: float) -> Tensor:
        d = torch.bmm(torch.cat([R, t[..., None]], -1), Xh) - target
        return (d * d).sum(1).clamp_min(1e-20).sqrt().clamp(max=max_error)

    def refit(
        self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations, Xh: Tensor, target: Tensor, inliers: Tensor,
        lm_iterations: int, max_error: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        R_c2w, t_c2w, ok = kabsch(obs.target, sc, inliers.to(R.dtype))
        R_new, t_new = invert(R_c2w, t_c2w)
        return R_new, t_new, ok

    def fit_fn(self, sc: Tensor, obs: Observations, extra: int, iterations: int, max_error: float) -> Fit:
        X, P = _expand(sc, extra), _expand(obs.target, extra)

        def fit(R: Tensor, t: Tensor, inliers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            R_c2w, t_c2w, ok = kabsch(P, X, inliers.to(R.dtype))
            R_new, t_new = invert(R_c2w, t_c2w)
            return R_new, t_new, ok

        return fit

    def refine_differentiable(
        self, R: Tensor, t: Tensor, sc: Tensor, obs: Observations, inliers: Tensor, steps: int, max_error: float
    ) -> tuple[Tensor, Tensor]:
        """Training: one weighted Kabsch per hypothesis on its inlier set (differentiable)."""
        R_c2w, t_c2w, ok = kabsch(obs.target[:, None], sc[:, None], inliers.to(sc.dtype))
        R_k, t_k = invert(R_c2w, t_c2w)
        return torch.where(ok[..., None, None], R_k, R), torch.where(ok[..., None], t_k, t)


#: mode name -> model class
MODELS: dict[str, type[PnPModel] | type[KabschModel]] = {"rgb": PnPModel, "rgbd": KabschModel}

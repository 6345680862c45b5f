"""What the DSAC* RANSAC returns: the test-time estimate and the training-time expectation."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

__all__ = ["DSACExpectation", "RansacResult"]


def _tensor_field() -> Tensor:
    return attrs.field(eq=False)


@attrs.frozen(kw_only=True, eq=False)
class RansacResult:
    """Test-time DSAC* result for a batch of ``B`` images.

    Attributes:
        R_cam2world: ``(B, 3, 3)`` estimated rotation camera to world; identity where no hypothesis
            was valid.
        t_cam2world: ``(B, 3)`` camera centre in the world frame, metres.
        success: ``(B,)`` bool; ``False`` when the image had too few valid correspondences (< 4 RGB,
            < 3 RGB-D), no valid hypothesis, or fewer final inliers than a minimal set.
        num_inliers: ``(B,)`` int64, correspondences within the inlier threshold of the final pose.
        inliers: ``(B, N)`` bool, those correspondences.
        soft_inlier_count: ``(B,)`` the selected hypothesis' soft inlier count (before refinement).
        hypothesis_index: ``(B,)`` int64, which of the ``H`` hypotheses was selected.
        num_minimal_sets: ``(B,)`` int64, minimal sets drawn and solved for the image (the redraws
            included; what a fair baseline's iteration budget is matched to).
    """

    R_cam2world: Tensor = _tensor_field()
    t_cam2world: Tensor = _tensor_field()
    success: Tensor = _tensor_field()
    num_inliers: Tensor = _tensor_field()
    inliers: Tensor = _tensor_field()
    soft_inlier_count: Tensor = _tensor_field()
    hypothesis_index: Tensor = _tensor_field()
    num_minimal_sets: Tensor = _tensor_field()

    @property
    def R_world2cam(self) -> Tensor:
        """``(B, 3, 3)`` rotation world to camera."""
        return self.R_cam2world.transpose(-1, -2)

    @property
    def t_world2cam(self) -> Tensor:
        """``(B, 3)`` translation world to camera, metres."""
        return -(self.R_world2cam @ self.t_cam2world[..., None])[..., 0]

    @property
    def T_cam2world(self) -> Tensor:
        """``(B, 4, 4)`` homogeneous camera-to-world transforms."""
        T = torch.zeros(
            *self.R_cam2world.shape[:-2], 4, 4, dtype=self.R_cam2world.dtype, device=self.R_cam2world.device
        )
        T[..., :3, :3] = self.R_cam2world
        T[..., :3, 3] = self.t_cam2world
        T[..., 3, 3] = 1.0
        return T


@attrs.frozen(kw_only=True, eq=False)
class DSACExpectation:
    """Training-time DSAC* output: every refined hypothesis and its selection probability.

    The DSAC objective is the expected loss ``E_h[loss] = sum_h p_h loss(R_h, t_h)``; use
    :meth:`expected_loss` (or :meth:`expectation` on per-hypothesis values). Gradients reach the
    scene coordinates through the probabilities (soft inlier counts, minimal solvers) and through
    the refined poses.

    Attributes:
        R_cam2world: ``(B, H, 3, 3)`` refined hypotheses, camera to world.
        t_cam2world: ``(B, H, 3)`` camera centres in the world frame, metres.
        probabilities: ``(B, H)`` selection probabilities ``softmax(alpha * s / N)``; zero for invalid
            hypotheses; rows sum to one where ``success``, are all zero otherwise.
        soft_inlier_count: ``(B, H)`` soft inlier counts ``s`` of the unrefined hypotheses.
        valid: ``(B, H)`` bool, hypotheses that exist.
        success: ``(B,)`` bool, images with at least one valid hypothesis.
        minimal_sets: ``(B, H, k)`` int64, the correspondences each hypothesis came from.
        inliers: ``(B, H, N)`` bool, the inlier set each hypothesis was refined on.
    """

    R_cam2world: Tensor = _tensor_field()
    t_cam2world: Tensor = _tensor_field()
    probabilities: Tensor = _tensor_field()
    soft_inlier_count: Tensor = _tensor_field()
    valid: Tensor = _tensor_field()
    success: Tensor = _tensor_field()
    minimal_sets: Tensor = _tensor_field()
    inliers: Tensor = _tensor_field()

    def expectation(self, values: Tensor) -> Tensor:
        """``sum_h p_h values[:, h]`` for ``values (B, H, ...)``; returns ``(B, ...)``."""
        p = self.probabilities.reshape(*self.probabilities.shape, *([1] * (values.dim() - 2)))
        return (p * torch.where(p > 0, values, torch.zeros_like(values))).sum(1)

    def expected_loss(self, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """DSAC expected loss ``(B,)``: ``loss_fn(R_cam2world (B, H, 3, 3), t_cam2world (B, H, 3))``
        must return per-hypothesis losses ``(B, H)``."""
        return self.expectation(loss_fn(self.R_cam2world, self.t_cam2world))

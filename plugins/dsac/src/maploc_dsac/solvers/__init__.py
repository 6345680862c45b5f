"""Pose solvers of the DSAC* plugin: pure PyTorch, batched over hypotheses and images, any device.

* :func:`p3p_lambda_twist`: minimal absolute pose from three 2D-3D correspondences (Lambda Twist).
* :func:`kabsch`: weighted rigid alignment of two point sets (Kabsch / Umeyama, no scale).
* :class:`DSACRansac`: DSAC* hypothesis sampling, soft inlier scoring, selection and refinement, for
  RGB (PnP) and RGB-D (Kabsch) input; test time (:class:`RansacResult`) and training time
  (:class:`DSACExpectation`, differentiable).
"""

from maploc_dsac.solvers.kabsch import kabsch
from maploc_dsac.solvers.p3p import p3p_lambda_twist
from maploc_dsac.solvers.ransac import (
    DSACExpectation,
    DSACRansac,
    RansacResult,
    alignment_errors,
    refine_pnp_lm,
    reprojection_errors,
    sample_minimal_sets,
    soft_inlier_count,
)

__all__ = [
    "DSACExpectation",
    "DSACRansac",
    "RansacResult",
    "alignment_errors",
    "kabsch",
    "p3p_lambda_twist",
    "refine_pnp_lm",
    "reprojection_errors",
    "sample_minimal_sets",
    "soft_inlier_count",
]

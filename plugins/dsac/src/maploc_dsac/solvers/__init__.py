"""Pose solvers of the DSAC* plugin: pure PyTorch, batched over hypotheses and images, any device.

Split by concern: :mod:`~maploc_dsac.solvers.sampling` (minimal sets), :mod:`~maploc_dsac.solvers.p3p`
(Lambda Twist, reference) and :mod:`~maploc_dsac.solvers.p3p_fast` (its fast kernel),
:mod:`~maploc_dsac.solvers.kabsch`, :mod:`~maploc_dsac.solvers.scoring` (errors, soft inlier counts),
:mod:`~maploc_dsac.solvers.refinement` (LM, inlier re-collection), :mod:`~maploc_dsac.solvers.models`
(one class per mode: :class:`PnPModel`, :class:`KabschModel`), :mod:`~maploc_dsac.solvers.adaptive`
(test-time adaptive stop) and the driver :class:`DSACRansac` (:mod:`~maploc_dsac.solvers.ransac`):
test time (:class:`RansacResult`) and training time (:class:`DSACExpectation`, differentiable).
"""

from maploc_dsac.solvers.kabsch import kabsch
from maploc_dsac.solvers.models import KabschModel, PnPModel
from maploc_dsac.solvers.p3p import p3p_lambda_twist
from maploc_dsac.solvers.ransac import DSACRansac
from maploc_dsac.solvers.refinement import refine_pnp_lm
from maploc_dsac.solvers.results import DSACExpectation, RansacResult
from maploc_dsac.solvers.sampling import sample_minimal_sets
from maploc_dsac.solvers.scoring import alignment_errors, reprojection_errors, soft_inlier_count

__all__ = [
    "DSACExpectation",
    "DSACRansac",
    "KabschModel",
    "PnPModel",
    "RansacResult",
    "alignment_errors",
    "kabsch",
    "p3p_lambda_twist",
    "refine_pnp_lm",
    "reprojection_errors",
    "sample_minimal_sets",
    "soft_inlier_count",
]

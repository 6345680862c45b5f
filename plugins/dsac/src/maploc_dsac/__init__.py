"""maploc-dsac: DSAC* scene coordinate regression with batched differentiable RANSAC, for maploc.

Entry points (see ``pyproject.toml``): method ``dsac`` (:class:`maploc_dsac.method.DSACMethod`),
solvers ``ransac-pnp`` and ``ransac-kabsch`` (:mod:`maploc_dsac.pose_solvers`), and the hook module
:mod:`maploc_dsac.hooks` (report sections, per-stage training info).

Importing this package imports nothing else (no torch): the hook module is loaded by every
``maploc`` command and must stay light.
"""

__version__ = "0.1.0"

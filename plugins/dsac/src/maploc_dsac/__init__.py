"""maploc-dsac: DSAC* scene coordinate regression with batched differentiable RANSAC, for maploc.

Entry points (see ``pyproject.toml``): method ``dsac`` (:class:`maploc_dsac.method.DSACMethod`,
which also owns its report sections) and solvers ``ransac-pnp`` and ``ransac-kabsch``
(:mod:`maploc_dsac.pose_solvers`).

Importing this package imports nothing else (no torch).
"""

__version__ = "0.1.0"

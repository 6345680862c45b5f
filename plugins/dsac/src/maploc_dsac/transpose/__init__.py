"""TransPose (sim-to-real DSAC* with per-pixel uncertainty): synthetic views of a real scene rendered
from a model fused from its mapping RGB-D frames, and the ``transpose`` method that trains on real +
synthetic frames.

Modules: :mod:`.fusion` (TSDF fusion and rendering), :mod:`.views` (novel-view sampler),
:mod:`.synthesize` (rendered views written in the DSAC* layout, cached), and the method's own
modules. This package imports nothing at import time.
"""

"""Named presets of ``loc2vec`` (``<name>.yaml``, read with importlib.resources): ``fast``."""

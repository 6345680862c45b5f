"""Named presets of the ``transpose`` method (``<name>.yaml``, read with importlib.resources)."""

"""Named presets of the ``dsac`` method (``<name>.yaml``, read with importlib.resources)."""

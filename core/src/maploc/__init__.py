"""maploc: one plugin-based framework for visual localization.

The import package of the ``maploc-core`` distribution. Importing it has no side effects: no
plugins are loaded, no logging handlers are installed and torch is not imported here (so that
``maploc list`` stays fast).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Exceptions raised by maploc. The CLI prints them as one line (``--debug`` shows the traceback)."""

from __future__ import annotations


class MaplocError(Exception):
    """Base class of every error maploc raises on purpose (bad input, bad configuration...)."""


class ConfigError(MaplocError):
    """A configuration key is unknown, has the wrong type, or a preset cannot be found."""


class PluginError(MaplocError):
    """A plugin name is unknown, registered twice, or its entry point fails to import."""


class DataError(MaplocError):
    """A data file is missing, malformed or corrupt; the message names the file (and line)."""


class CheckpointError(MaplocError):
    """A checkpoint is corrupt, truncated, or was not written by maploc."""

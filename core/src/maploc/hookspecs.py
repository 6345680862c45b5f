"""Hook specifications: the contract between maploc and its ``maploc.hooks`` plugins.

A hook plugin is a module (or object) registered in the ``maploc.hooks`` entry-point group whose
functions are decorated with :data:`hookimpl` and named like the specs below. All hooks are called
with keyword arguments; an implementation may accept any subset of them (pluggy semantics). The
core's own defaults (:mod:`maploc.builtin_hooks`) are registered the same way.

Example::

    # my_plugin/hooks.py, registered as [project.entry-points."maploc.hooks"] my-plugin = "my_plugin.hooks"
    from maploc.hookspecs import hookimpl

    @hookimpl
    def maploc_report_sections(run_dir, metrics, method_name):
        return [("Energy", f"{estimate_kwh(run_dir):.2f} kWh")]

Scoring is not a hook: the core scores every run from its predictions files
(:mod:`maploc.evaluation.scoring`), the same way for every method.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy

PROJECT = "maploc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookspec", "hookimpl"]


@hookspec
def maploc_addoption(parser: argparse.ArgumentParser, command: str) -> None:
    """Adds command-line options to a ``maploc`` sub-command.

    Args:
        parser: the argparse parser of the sub-command (add an argument group of your own).
        command: the sub-command's name: ``run``, ``train`` or ``eval``.

    Returns:
        Nothing. Every implementation is called.
    """


@hookspec
def maploc_engine_callbacks(run_dir: Path, method: Any, context: Any) -> list[Any] | None:
    """Contributes engine callbacks for one run.

    A callback is any object with some of these methods (all keyword arguments), called on every
    process unless noted: ``on_train_start(engine, method)``, ``on_train_batch_end(engine, step,
    epoch, loss, scalars)`` (``scalars``: the extra scalars ``training_step`` returned), ``on_validation_end(engine, step, metrics)``, ``on_checkpoint(engine, path)``
    (rank 0 only), ``on_train_end(engine, step)``, ``close()``. The callback should use
    ``engine.is_global_zero`` before writing files.

    Args:
        run_dir: the run directory (files go below it).
        method: the method being trained.
        context: the run's :class:`maploc.api.RunContext` (device, seed, source run); plugins never
            see the command line.

    Returns:
        A list of callbacks (or ``None``). Every implementation is called; the lists are joined.
    """


@hookspec
def maploc_report_sections(run_dir: Path, metrics: Mapping[str, float], method_name: str) -> list[tuple[str, str]] | None:
    """Contributes sections to the text report printed (and saved as ``report.txt``) after a run.

    Returns:
        A list of ``(title, body)`` pairs, or ``None``. Every implementation is called.
    """


@hookspec
def maploc_commands() -> list[Any] | None:
    """Contributes CLI subcommands (e.g. ``maploc data show`` from maploc-osm).

    Called whenever the ``maploc`` parser is built for a command other than ``list``; hook modules
    must therefore be cheap to import (no torch at module level).

    Returns:
        A list of :class:`maploc.commands.Command`, or ``None``. Every implementation is called; a
        path that two plugins (or a plugin and the core) both claim is an error naming both.
    """

"""CLI subcommands contributed by plugins (hook :func:`maploc.hookspecs.maploc_commands`).

A plugin that brings its own command (``maploc data show`` from maploc-osm, ``maploc data render``
from maploc-simcity) returns :class:`Command` objects from that hook. The ``maploc`` parser adds
them under their group, so ``maploc --help`` and ``maploc data --help`` list exactly what is
installed. Keep the hook module cheap to import: put heavy imports inside ``run``.

Example::

    from maploc.commands import Command
    from maploc.hookspecs import hookimpl

    def _args(parser):
        parser.add_argument("map", help="sample name or .osm/.osm.pbf/.osm.bz2 path")

    def _run(args):
        from my_plugin.draw import draw   # heavy imports here
        draw(args.map)
        return 0

    @hookimpl
    def maploc_commands():
        return [Command(path=("data", "draw"), help="draw a map", add_arguments=_args, run=_run)]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import attrs

__all__ = ["Command", "COMMAND_GROUPS"]

#: Groups that plugin commands may join, besides the top level (a one-element ``path``).
COMMAND_GROUPS = ("data",)


def _check_path(instance: Command, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if len(value) not in (1, 2) or not all(isinstance(p, str) and p and not p.startswith("-") for p in value):
        raise ValueError(f"Command.path must be ('name',) or ('group', 'name'), got {value!r}")
    if len(value) == 2 and value[0] not in COMMAND_GROUPS:
        raise ValueError(f"Command.path group must be one of {COMMAND_GROUPS}, got {value[0]!r}")


@attrs.frozen(kw_only=True)
class Command:
    """One subcommand.

    Attributes:
        path: ``("name",)`` for ``maploc name`` or ``("data", "name")`` for ``maploc data name``.
        help: one line for the parent's ``--help``.
        add_arguments: adds the command's arguments to its ``argparse`` parser.
        run: runs the command with the parsed arguments; returns the exit status (``None`` = 0).
            Raise :class:`maploc.errors.MaplocError` (or a subclass) for bad input: the CLI prints
            it as one line and exits with status 2.
        description: the command's own ``--help`` text (default: ``help``).
        distribution: filled in by the CLI with the contributing plugin's name (for messages).
    """

    path: tuple[str, ...] = attrs.field(converter=tuple, validator=_check_path)
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str = ""

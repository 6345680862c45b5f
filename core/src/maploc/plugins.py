"""Plugin discovery: named components through entry points, hooks through pluggy.

Named components (one name -> one class) are registered by any installed distribution in these
entry-point groups and loaded one at a time, lazily, with stevedore's ``DriverManager``:

=============  ======================
kind           entry-point group
=============  ======================
``methods``    ``maploc.methods``
``datasets``   ``maploc.datasets``
``encoders``   ``maploc.encoders``
``matchers``   ``maploc.matchers``
``solvers``    ``maploc.solvers``
``samples``    ``maploc.samples``
=============  ======================

(``samples`` entries are :class:`maploc.data.samples.SampleSpec` objects: real sample data that
``maploc data fetch NAME`` downloads.)

A component whose module imports a heavy or native dependency lazily (TransPose imports Open3D, whose
Linux wheel links the system library ``libusb-1.0``, only when it fuses a scene) may declare that
dependency with a ``check_runtime()`` classmethod (or static method): it imports what the component
needs at run time and raises (``ImportError``, ``OSError`` or a :class:`~maploc.errors.MaplocError`
naming the fix) where it cannot. ``maploc list --check`` (:func:`check_entry_points`) calls it after
importing the entry point, so a component that imports but cannot run is reported as not loadable.

Listing (:func:`list_entry_points`) reads distribution metadata only: no plugin code and no torch
is imported. A name registered by two distributions is an error that names both; an unknown name
is an error that lists the installed names.

Hooks that many plugins answer (CLI options, engine callbacks, extra metrics, report sections) are
pluggy hooks specified in :mod:`maploc.hookspecs`; modules registered in the ``maploc.hooks``
group implement them. The core's own defaults are registered the same way, through the core's own
entry point (``maploc-builtins``).

Environment variables:

* ``MAPLOC_DISABLE_PLUGIN_AUTOLOAD=1``: load only the core's own hook modules, not third-party ones
  (named components are still found, since they are only loaded on request).
* ``MAPLOC_BLOCKED_PLUGINS=a,b``: ignore the entry points whose name, or whose distribution's name,
  is in the list, in every group.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from collections.abc import Iterable
from typing import Any

import attrs

from maploc.errors import PluginError

__all__ = [
    "GROUPS",
    "HOOKS_GROUP",
    "CORE_DISTRIBUTION",
    "EntryPointInfo",
    "list_entry_points",
    "find_entry_point",
    "load_component",
    "check_entry_points",
    "check_runtime",
    "get_plugin_manager",
    "blocked_plugins",
]

GROUPS: dict[str, str] = {
    "methods": "maploc.methods",
    "datasets": "maploc.datasets",
    "encoders": "maploc.encoders",
    "matchers": "maploc.matchers",
    "solvers": "maploc.solvers",
    "samples": "maploc.samples",
}
HOOKS_GROUP = "maploc.hooks"
CORE_DISTRIBUTION = "maploc-core"


@attrs.frozen
class EntryPointInfo:
    """One registered entry point, read from metadata (nothing imported).

    Attributes:
        group: the entry-point group, e.g. ``maploc.methods``.
        name: the registered name, e.g. ``dsac``.
        value: ``module:attribute``.
        distribution: the distribution that registers it, e.g. ``maploc-dsac``.
        version: that distribution's version.
    """

    group: str
    name: str
    value: str
    distribution: str
    version: str
    entry_point: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def module(self) -> str:
        return self.value.partition(":")[0].strip()

    def load(self) -> Any:
        """Imports and returns the object (via stevedore's DriverManager)."""
        failure: list[BaseException] = []

        def on_failure(manager: Any, entrypoint: Any, exc: BaseException) -> None:
            failure.append(exc)

        try:
            manager = _driver_manager_class()(
                self.entry_point,
                namespace=self.group,
                name=self.name,
                invoke_on_load=False,
                on_load_failure_callback=on_failure,
            )
        except Exception as e:  # stevedore's NoMatches / MultipleMatches, or the plugin's error
            exc = failure[0] if failure else e
            raise PluginError(
                f"cannot import {self.group} entry point '{self.name}' = {self.value} "
                f"from {self.distribution} {self.version}: {type(exc).__name__}: {exc}"
            ) from exc
        if failure:
            exc = failure[0]
            raise PluginError(
                f"cannot import {self.group} entry point '{self.name}' = {self.value} "
                f"from {self.distribution} {self.version}: {type(exc).__name__}: {exc}"
            ) from exc
        return manager.driver


def _driver_manager_class() -> Any:
    from stevedore import DriverManager

    class _ExactDriverManager(DriverManager):
        """stevedore's DriverManager over the one entry point we already resolved from metadata.

        stevedore's own entry-point cache hashes file mtimes as float32 (about 2 minutes of
        resolution), so an entry point edited and reinstalled within that window is not seen; the
        metadata read just before is authoritative.
        """

        def __init__(self, entry_point: Any, **kwargs: Any) -> None:
            self._entry_point = entry_point
            super().__init__(**kwargs)

        def list_entry_points(self) -> list[Any]:
            return [self._entry_point]

    return _ExactDriverManager


def blocked_plugins() -> set[str]:
    """Names from ``MAPLOC_BLOCKED_PLUGINS`` (comma-separated; entry-point or distribution names)."""
    raw = os.environ.get("MAPLOC_BLOCKED_PLUGINS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _autoload_disabled() -> bool:
    return os.environ.get("MAPLOC_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() not in ("", "0", "false", "no")


def _normalise(dist_name: str) -> str:
    return dist_name.lower().replace("_", "-").replace(".", "-")


def _scan_entry_points(groups: Iterable[str]) -> dict[str, list[EntryPointInfo]]:
    """One pass over the installed distributions' ``entry_points.txt`` files.

    Only the distributions that register a wanted entry point have their METADATA parsed (parsing
    every distribution's METADATA is what makes naive listing slow).
    """
    wanted = set(groups)
    blocked = blocked_plugins()
    blocked_norm = {_normalise(b) for b in blocked}
    found: dict[str, list[EntryPointInfo]] = {g: [] for g in wanted}
    seen: set[tuple[str, str, str, str]] = set()
    meta_cache: dict[int, tuple[str, str]] = {}
    for ep in (ep for group in sorted(wanted) for ep in md.entry_points(group=group)):
        dist = ep.dist
        if id(dist) not in meta_cache:
            meta = dist.metadata if dist is not None else None
            meta_cache[id(dist)] = ((meta["Name"] if meta else None) or "?", (meta["Version"] if meta else None) or "?")
        dist_name, version = meta_cache[id(dist)]
        if ep.name in blocked or _normalise(dist_name) in blocked_norm:
            continue
        key = (ep.group, dist_name, ep.name, ep.value)
        if key in seen:  # the same distribution visible twice on sys.path (editable + site)
            continue
        seen.add(key)
        found[ep.group].append(
            EntryPointInfo(
                group=ep.group, name=ep.name, value=ep.value, distribution=dist_name, version=version, entry_point=ep
            )
        )
    return found


def list_entry_points(kind: str | None = None) -> dict[str, list[EntryPointInfo]]:
    """The registered entry points per kind (all kinds and hooks when ``kind`` is None).

    Reads metadata only; imports nothing. Returns ``{kind: [EntryPointInfo, ...]}`` sorted by name;
    the hooks group appears under the kind ``hooks``.

    Raises:
        PluginError: for an unknown kind.
    """
    kinds = dict(GROUPS, hooks=HOOKS_GROUP)
    if kind is not None and kind not in kinds:
        raise PluginError(f"unknown plugin kind {kind!r}; expected one of {', '.join(kinds)}")
    selected = {kind: kinds[kind]} if kind else kinds
    scanned = _scan_entry_points(selected.values())
    return {k: sorted(scanned[g], key=lambda e: (e.name, e.distribution)) for k, g in selected.items()}


def find_entry_point(kind: str, name: str) -> EntryPointInfo:
    """The single entry point registered as ``name`` in ``kind``.

    Raises:
        PluginError: unknown name (lists the installed names), or a name registered by two
            distributions (names both).
    """
    if kind not in GROUPS:
        raise PluginError(f"unknown plugin kind {kind!r}; expected one of {', '.join(GROUPS)}")
    entries = list_entry_points(kind)[kind]
    matches = [e for e in entries if e.name == name]
    if not matches:
        installed = ", ".join(sorted({e.name for e in entries})) or "(none installed)"
        singular = kind[:-1]
        raise PluginError(f"unknown {singular} {name!r}; installed {kind}: {installed}")
    if len({(m.distribution, m.value) for m in matches}) > 1:
        who = " and ".join(f"{m.distribution} {m.version} ({m.value})" for m in matches)
        raise PluginError(
            f"{kind[:-1]} name {name!r} is registered by two distributions: {who}; uninstall one of them"
        )
    return matches[0]


def load_component(kind: str, name: str) -> Any:
    """Imports and returns the class registered as ``name`` in ``kind`` (only that plugin is imported).

    Raises:
        PluginError: unknown or duplicate name, or the plugin fails to import.
    """
    return find_entry_point(kind, name).load()


def check_runtime(entry: EntryPointInfo, obj: Any) -> None:
    """Calls the loaded component's ``check_runtime()`` where it declares one (see the module docstring).

    Raises:
        PluginError: the check failed; names the entry point, its distribution and the failure.
    """
    check = getattr(obj, "check_runtime", None)
    if check is None or not callable(check):
        return
    try:
        check()
    except Exception as exc:  # ImportError/OSError of a native library, or the plugin's own MaplocError
        raise PluginError(
            f"{entry.group} entry point '{entry.name}' of {entry.distribution} {entry.version} imports but cannot "
            f"run: {type(exc).__name__}: {exc}"
        ) from exc


def check_entry_points(kind: str | None = None) -> list[tuple[EntryPointInfo, str | None]]:
    """Imports every entry point (of ``kind``, default all kinds and hooks) and runs each component's
    ``check_runtime()`` where it has one; returns ``(entry, error message or None)``.

    Raises:
        PluginError: for an unknown kind.
    """
    results: list[tuple[EntryPointInfo, str | None]] = []
    for entries in list_entry_points(kind).values():
        for entry in entries:
            try:
                check_runtime(entry, entry.load())
            except PluginError as e:
                results.append((entry, str(e)))
            else:
                results.append((entry, None))
    return results


def get_plugin_manager(*, extra_plugins: Iterable[Any] = ()) -> Any:
    """A pluggy ``PluginManager`` with :mod:`maploc.hookspecs` and the ``maploc.hooks`` modules.

    The core's own hook module comes through the core's entry point like any other; with
    ``MAPLOC_DISABLE_PLUGIN_AUTOLOAD`` set only the core's are loaded. ``extra_plugins`` are
    registered too (useful in tests).

    Raises:
        PluginError: a hook module fails to import, or implements a hook that does not exist.
    """
    import pluggy

    from maploc import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    core_only = _autoload_disabled()
    for entry in list_entry_points("hooks")["hooks"]:
        if core_only and _normalise(entry.distribution) != CORE_DISTRIBUTION:
            continue
        module = entry.load()
        if pm.get_plugin(entry.name) is None and not pm.is_registered(module):
            pm.register(module, name=entry.name)
    for plugin in extra_plugins:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise PluginError(f"a maploc.hooks plugin implements an unknown hook: {e}") from e
    return pm

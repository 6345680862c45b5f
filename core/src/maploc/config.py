"""Typed configuration: frozen attrs classes, YAML presets and ``-o key=value`` overrides.

Every method has a frozen ``attrs`` config class whose defaults are its ``default`` preset. Named
presets are YAML files ``<name>.yaml`` inside the method's ``presets_package`` (read with
:mod:`importlib.resources`, so they work from wheels and zips). Overrides from the command line are
dotted keys (``-o train.lr=0.001``); values are parsed as YAML scalars (``1e-3``, ``true``,
``[1, 2]``). Every key is checked: an unknown key or a value of the wrong type raises
:class:`~maploc.errors.ConfigError` naming the key and listing the valid ones.

Sections shared by methods (:class:`TrainConfig`, :class:`DataConfig`) live here so that the
engine can read them from any method's config.
"""

from __future__ import annotations

import enum
import importlib.resources
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import attrs
import yaml

from maploc.errors import ConfigError

__all__ = [
    "at_least",
    "greater_than",
    "in_range",
    "probability",
    "data_option_keys",
    "structure_dataset_options",
    "with_dataset_defaults",
    "TrainConfig",
    "DataConfig",
    "structure",
    "unstructure",
    "apply_overrides",
    "parse_overrides",
    "load_preset",
    "list_presets",
    "resolve_config",
    "dump_yaml",
]

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# range validators: the message names the key and the range (see ``structure``)
# --------------------------------------------------------------------------------------------


class _RangeError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"'{name}' {message}")
        self.name = name
        self.message = message


def _optional(check: Any) -> Any:
    def validator(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            check(attribute.name, value)

    return validator


def at_least(minimum: float) -> Any:
    """attrs validator: ``value >= minimum`` (``None`` passes; counts use ``at_least(1)``)."""

    def check(name: str, value: Any) -> None:
        if not value >= minimum:
            raise _RangeError(name, f"must be >= {minimum}, got {value!r}")

    return _optional(check)


def greater_than(minimum: float) -> Any:
    """attrs validator: ``value > minimum`` (thresholds, learning rates: ``greater_than(0)``)."""

    def check(name: str, value: Any) -> None:
        if not value > minimum:
            raise _RangeError(name, f"must be > {minimum}, got {value!r}")

    return _optional(check)


def in_range(low: float, high: float) -> Any:
    """attrs validator: ``low <= value <= high``."""

    def check(name: str, value: Any) -> None:
        if not low <= value <= high:
            raise _RangeError(name, f"must be in [{low}, {high}], got {value!r}")

    return _optional(check)


def probability() -> Any:
    """attrs validator: a probability or fraction in ``[0, 1]``."""
    return in_range(0.0, 1.0)


@attrs.frozen(kw_only=True)
class TrainConfig:
    """The generic training loop's settings (read by :class:`maploc.engine.Engine`).

    Attributes:
        epochs: passes over the training split (0 = no training unless ``max_steps`` > 0).
        max_steps: stop after this many optimizer steps (0 = no limit beyond ``epochs``).
        batch_size: the GLOBAL batch size; with N processes each gets ``batch_size // N``.
        lr: learning rate of the default optimizer (Adam).
        checkpoint_every: save a checkpoint every this many steps (0 = only at the end).
        val_every: run validation every this many steps (0 = at the end of each epoch).
        log_every: write training scalars every this many steps.
        num_workers: DataLoader worker processes (0 = load in the main process).
    """

    epochs: int = attrs.field(default=1, validator=at_least(0))
    max_steps: int = attrs.field(default=0, validator=at_least(0))
    batch_size: int = attrs.field(default=4, validator=at_least(1))
    lr: float = attrs.field(default=1e-3, validator=greater_than(0))
    checkpoint_every: int = attrs.field(default=0, validator=at_least(0))
    val_every: int = attrs.field(default=0, validator=at_least(0))
    log_every: int = attrs.field(default=10, validator=at_least(0))
    num_workers: int = attrs.field(default=0, validator=at_least(0))


def _frozen_options(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


@attrs.frozen(kw_only=True)
class DataConfig:
    """Options passed to the dataset adapter.

    ``-o data.<key>=value`` sets one of the fields below or, for any other key, one of the
    dataset's own options (its ``Options`` class, see :class:`maploc.api.Dataset`), which are
    kept in ``options`` and checked against the dataset when the run starts.

    Attributes:
        image_height: resize images (and intrinsics, depth) to this height in pixels; ``None``
            keeps the native size.
        max_queries: evaluate at most this many query images (``None`` = all), for quick runs.
        options: the dataset's own options (plain values; validated by
            :func:`structure_dataset_options`).
    """

    image_height: int | None = attrs.field(default=None, validator=at_least(8))
    max_queries: int | None = attrs.field(default=None, validator=at_least(1))
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_options, eq=False, hash=False)


def data_option_keys(dataset_cls: type) -> list[str]:
    """Every ``data.<key>`` a run with ``dataset_cls`` accepts: :class:`DataConfig`'s and the dataset's."""
    own = [a.name for a in attrs.fields(DataConfig) if a.name != "options"]
    options_cls = getattr(dataset_cls, "Options", None)
    extra = [a.name for a in attrs.fields(options_cls)] if options_cls is not None and attrs.has(options_cls) else []
    return own + extra


def structure_dataset_options(dataset_cls: type, options: Mapping[str, Any]) -> Any:
    """The dataset's ``Options`` instance built from ``data.<key>`` values, every key checked.

    Raises:
        ConfigError: a key the dataset does not have (the message lists every valid ``data.`` key)
            or a value of the wrong type or range.
    """
    options_cls = getattr(dataset_cls, "Options", None)
    name = getattr(dataset_cls, "name", "") or dataset_cls.__name__
    if options_cls is None or not attrs.has(options_cls):
        if options:
            raise ConfigError(f"dataset {name!r} takes no options; got data.{next(iter(options))}")
        return None
    fields = _resolved_fields(options_cls)
    unknown = [k for k in options if k not in fields]
    if unknown:
        valid = ", ".join("data." + k for k in data_option_keys(dataset_cls))
        raise ConfigError(f"unknown config key 'data.{unknown[0]}' for dataset {name!r}; valid data keys: {valid}")
    return structure(options_cls, options, prefix="data.")


def with_dataset_defaults(config: T, defaults: Mapping[str, Mapping[str, Any]], dataset_name: str) -> T:
    """``config`` with ``defaults[dataset_name]`` (a method's :attr:`maploc.api.Method.dataset_defaults`)
    added to ``config.data.options``; a key already there (a preset, ``-o data.<key>=...``, a saved
    run's config) wins. Returns ``config`` itself when there is nothing to add."""
    data = getattr(config, "data", None)
    extra = dict(defaults.get(dataset_name, {}))
    if data is None or not extra:
        return config
    merged = {**extra, **dict(data.options)}
    return attrs.evolve(config, data=attrs.evolve(data, options=merged))  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# structure / unstructure
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _resolved_fields(cls: type) -> dict[str, attrs.Attribute]:
    attrs.resolve_types(cls)
    return {a.name: a for a in attrs.fields(cls)}


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Checks/converts ``value`` to the annotated type ``tp``; raises ConfigError on mismatch."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if attrs.has(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' is a section ({tp.__name__}); expected a mapping, got {value!r}")
        return structure(tp, value, prefix=key + ".")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"config key '{key}' must be one of {', '.join(map(repr, args))}; got {value!r}")
    if origin in (tuple, list, Sequence, typing.Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' expects a list ({_type_name(tp)}), got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"config key '{key}' expects {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        return tuple(_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp in (dict,):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' expects a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(
                f"config key '{key}' must be one of {', '.join(repr(m.value) for m in tp)}; got {value!r}"
            ) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' expects a bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{key}' expects an int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # '1e-4' in a YAML preset is a string in YAML 1.1
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}' expects a float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}' expects a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"config key '{key}' expects a path, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {value!r}")
    return value


def structure(cls: type[T], data: Mapping[str, Any] | None, *, prefix: str = "") -> T:
    """Builds the attrs config ``cls`` from a (nested) mapping, checking every key and type.

    Args:
        cls: a (frozen) attrs class; nested attrs-typed fields are sections.
        data: the mapping (e.g. parsed YAML); missing keys keep their defaults.
        prefix: key prefix used in error messages.

    Raises:
        ConfigError: an unknown key (the message lists the valid keys) or a wrongly typed value.
    """
    data = dict(data or {})
    fields = _resolved_fields(cls)
    if cls is DataConfig:  # dataset options: checked against the dataset when the run starts
        options = dict(data.pop("options", None) or {})
        options.update({k: data.pop(k) for k in list(data) if k not in fields})
        if options:
            data["options"] = options
    unknown = [k for k in data if k not in fields]
    if unknown:
        valid = ", ".join(prefix + k for k in fields)
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; valid keys at this level: {valid}")
    kwargs = {name: _convert(value, fields[name].type, prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except _RangeError as e:
        raise ConfigError(f"config key '{prefix}{e.name}' {e.message}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid config {prefix or cls.__name__}: {e}") from None


def unstructure(config: Any) -> Any:
    """The plain (YAML-safe) form of a config: nested dicts, lists and scalars."""
    if attrs.has(type(config)):
        return {a.name: unstructure(getattr(config, a.name)) for a in attrs.fields(type(config))}
    if isinstance(config, (list, tuple)):
        return [unstructure(v) for v in config]
    if isinstance(config, Mapping):
        return {str(k): unstructure(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    if isinstance(config, enum.Enum):
        return config.value
    return config


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Parses ``["train.lr=1e-3", "mode=rgbd"]`` into a nested dict (values as YAML scalars).

    Raises:
        ConfigError: an override without ``=`` or with an empty key.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads '1e-4' as a string
            try:
                value = float(value)
            except ValueError:
                pass
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of '{part}'")
        node[parts[-1]] = value
    return nested


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(config: T, overrides: Mapping[str, Any] | Sequence[str]) -> T:
    """A copy of ``config`` with overrides applied (a nested mapping or ``key=value`` strings)."""
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    return structure(type(config), _deep_merge(unstructure(config), overrides))


def list_presets(package: str | None) -> list[str]:
    """Names of the ``*.yaml`` presets inside ``package`` (always includes ``default``)."""
    names = {"default"}
    if package:
        try:
            root = importlib.resources.files(package)
            names.update(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
        except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
            pass
    return sorted(names)


def load_preset(cls: type[T], package: str | None, name: str = "default") -> T:
    """The config of preset ``name``: the class defaults deep-merged with ``<package>/<name>.yaml``
    (a section in the preset changes only the keys it names).

    ``default`` without a YAML file is the class defaults.

    Raises:
        ConfigError: unknown preset (lists the available ones) or an invalid preset file.
    """
    text = None
    if package:
        try:
            resource = importlib.resources.files(package) / f"{name}.yaml"
            if resource.is_file():
                text = resource.read_text(encoding="utf-8")
        except ModuleNotFoundError:
            text = None
    if text is None:
        if name == "default":
            return cls()
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(list_presets(package))}")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"preset {name!r} of {package} is not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"preset {name!r} of {package} must be a mapping")
    # deep-merge over the class defaults: a preset's `data: {max_queries: 5}` keeps the method's
    # default `data.image_height` instead of resetting the whole section to DataConfig()
    return structure(cls, _deep_merge(unstructure(cls()), data))


def resolve_config(
    cls: type[T], package: str | None, preset: str = "default", overrides: Sequence[str] | Mapping[str, Any] = ()
) -> T:
    """Preset + overrides -> the resolved config (the exact thing saved in ``config.yaml``)."""
    config = load_preset(cls, package, preset)
    return apply_overrides(config, overrides) if overrides else config


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(unstructure(data), sort_keys=False, default_flow_style=None)

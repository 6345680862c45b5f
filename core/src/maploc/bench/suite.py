"""Bench suites: reading a suite file, finding shipped suites, and checking every job before any run.

A suite is a YAML mapping (every key optional but ``datasets``/``methods`` or ``conformance``)::

    name: six-dof                       # shown in the report (default: the file's stem)
    description: one line
    seeds: [0]                          # default seeds of every method
    datasets:
      - label: strecha-loo              # the name used in tables (default: the dataset's name)
        dataset: strecha                # a dataset entry point (see `maploc list --kind datasets`)
        data_root: ${MAPLOC_STRECHA:-../shared/data/strecha}/fountain-P11  # optional: ~, $VAR, ${VAR:-default};
                                        # relative to the working dir
        split: loo                      # optional: shorthand for -o data.split=loo
        options: [data.query_images=...]    # -o data.KEY=VALUE applied to every method on this dataset
        shared_split: true              # optional (default true): when runs on this dataset saved a spatial
                                        # split (RUN/split.json), every run is scored on the test blocks of
                                        # that one split (they must agree), so all rows count the same queries
        distance_thresholds_m: [25, 10] # optional: retrieval/sequence match radii every run is scored at
                                        # (the first is the primary one); default: each run's own
    methods:
      - label: hloc-sift                # the name used in tables (default: the method's name)
        method: hloc                    # a method entry point
        preset: default
        overrides: [features=sift, matcher=mnn]
        datasets: [strecha-loo]         # optional: which dataset labels (default: all)
        seeds: [0, 1, 2]                # optional: this method's seeds
    conformance:                        # optional: jobs from the methods' own tiny settings
      methods: all                      # or a list of method names
      train_steps: 2                    # train.max_steps for a method that trains
      max_queries: 4                    # data.max_queries for a method whose config has `data`

``conformance`` runs each method on its ``conformance_dataset`` with its ``conformance_overrides``
(:class:`maploc.api.Method`), the settings the conformance tests use. ``methods: all`` takes every
installed method whose plugin imports and passes its runtime check; the others are listed as skipped.

Shipped suites: ``maploc/bench/suites/*.yaml`` in the core; a plugin adds its own by registering a
package in the entry-point group ``maploc.bench_suites`` (``my-suites = "my_plugin.bench_suites"``):
every ``*.yaml`` file in that package is a suite named by its stem. A core suite name wins a clash.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import yaml

from maploc.errors import ConfigError, MaplocError

__all__ = ["Job", "Suite", "DatasetScoring", "SUITES_GROUP", "list_suites", "find_suite", "load_suite", "plan_jobs",
           "dataset_scoring"]

#: Entry-point group through which plugins ship suites (a package holding ``*.yaml`` suite files).
SUITES_GROUP = "maploc.bench_suites"

_SUITE_KEYS = ("name", "description", "seeds", "datasets", "methods", "conformance")
_DATASET_KEYS = ("label", "dataset", "data_root", "split", "options", "shared_split", "distance_thresholds_m")
_METHOD_KEYS = ("label", "method", "preset", "overrides", "datasets", "seeds")
_CONFORMANCE_KEYS = ("methods", "train_steps", "max_queries")


@attrs.frozen(kw_only=True)
class Job:
    """One run of a suite: a method with its config on one dataset with one seed.

    Attributes:
        dataset_label, method_label: the names used in tables and run folders.
        method, dataset: entry-point names.
        preset: the method's preset.
        overrides: ``key=value`` overrides (the dataset's ``data.*`` options, then the method's).
        data_root: the dataset folder (``None``: the dataset's default sample or a generated dataset).
        seed: the engine's global seed.
    """

    dataset_label: str
    method_label: str
    method: str
    dataset: str
    preset: str
    overrides: tuple[str, ...]
    data_root: Path | None
    seed: int

    @property
    def key(self) -> str:
        """``dataset/method/seed-N``: the job's run folder under ``BENCH/runs``."""
        return f"{self.dataset_label}/{self.method_label}/seed-{self.seed}"


@attrs.frozen(kw_only=True)
class Suite:
    """A parsed suite file. ``raw``: the YAML mapping as read; ``source``: the file."""

    name: str
    description: str
    source: Path
    raw: Mapping[str, Any] = attrs.field(eq=False)


@attrs.frozen(kw_only=True)
class DatasetScoring:
    """How the runs on one dataset of a suite are scored.

    Attributes:
        shared_split: score every run on the one spatial split the dataset's runs saved (``split.json``).
        distance_thresholds_m: retrieval / sequence match radii in metres (first = primary), or ``None``
            for each run's own.
    """

    shared_split: bool = True
    distance_thresholds_m: tuple[float, ...] | None = None


def dataset_scoring(suite: Suite) -> dict[str, DatasetScoring]:
    """``dataset label -> DatasetScoring`` of the suite's datasets (conformance jobs get the defaults)."""
    out = {}
    for d in _list(suite.raw.get("datasets"), "datasets"):
        radii = d.get("distance_thresholds_m")
        out[str(d.get("label") or d["dataset"])] = DatasetScoring(
            shared_split=bool(d.get("shared_split", True)),
            distance_thresholds_m=tuple(float(r) for r in radii) if radii else None)
    return out


def _shipped() -> dict[str, tuple[str, Callable[[], str]]]:
    """``name -> (origin, reader)`` of the core's and the plugins' suites."""
    found: dict[str, tuple[str, Callable[[], str]]] = {}
    groups = [("maploc-core", "maploc.bench.suites")]
    for ep in sorted(entry_points(group=SUITES_GROUP), key=lambda e: e.name):
        groups.append((ep.dist.name if ep.dist is not None else ep.name, ep.value))
    for origin, package in groups:
        try:
            files = resources.files(package)
        except (ModuleNotFoundError, TypeError) as e:
            raise ConfigError(f"entry point {SUITES_GROUP} of {origin} names {package!r}, which is not a "
                              f"package ({e})") from None
        for entry in sorted(files.iterdir(), key=lambda f: f.name):
            if entry.name.endswith(".yaml"):
                name = entry.name[: -len(".yaml")]
                found.setdefault(name, (origin, entry.read_text))
    return found


def list_suites() -> list[tuple[str, str, str]]:
    """``(name, origin, description)`` of every shipped suite, sorted by name.

    Raises:
        ConfigError: a plugin's ``maploc.bench_suites`` entry point is not a package.
    """
    out = []
    for name, (origin, read) in sorted(_shipped().items()):
        try:
            description = str((yaml.safe_load(read()) or {}).get("description", ""))
        except yaml.YAMLError:
            description = "(not valid YAML)"
        out.append((name, origin, description.strip().split(". ")[0].split(": ")[0]))
    return out


def find_suite(name_or_path: str) -> Suite:
    """A shipped suite by name, or a suite file by path.

    Raises:
        ConfigError: neither a shipped suite nor a file (naming the shipped ones); malformed YAML.
    """
    path = Path(name_or_path).expanduser()
    shipped = _shipped()
    if name_or_path in shipped and not path.is_file():
        text, source = shipped[name_or_path][1](), Path(f"<{shipped[name_or_path][0]}>/{name_or_path}.yaml")
    elif path.is_file():
        text, source = path.read_text(encoding="utf-8"), path
    else:
        raise ConfigError(f"no suite {name_or_path!r}: not a file, and the shipped suites are "
                          f"{', '.join(sorted(shipped)) or '(none)'} (maploc bench --list)")
    return load_suite(text, source)


def load_suite(text: str, source: Path) -> Suite:
    """Parses a suite's YAML text and checks its keys (not yet the methods and datasets).

    Raises:
        ConfigError: not YAML, not a mapping, or an unknown key (naming the valid ones).
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"suite {source} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"suite {source} must be a YAML mapping with keys {', '.join(_SUITE_KEYS)}")
    _check_keys(raw, _SUITE_KEYS, f"suite {source}")
    if not raw.get("datasets") and not raw.get("methods") and not raw.get("conformance"):
        raise ConfigError(f"suite {source} names no datasets and methods and no conformance section")
    for i, d in enumerate(_list(raw.get("datasets"), f"suite {source}: datasets")):
        if not isinstance(d, dict) or "dataset" not in d:
            raise ConfigError(f"suite {source}: datasets[{i}] must be a mapping with a 'dataset' key")
        _check_keys(d, _DATASET_KEYS, f"suite {source}: datasets[{i}]")
        if not isinstance(d.get("shared_split", True), bool):
            raise ConfigError(f"suite {source}: datasets[{i}].shared_split must be true or false, "
                              f"got {d['shared_split']!r}")
        if d.get("distance_thresholds_m") is not None:
            radii = d["distance_thresholds_m"]
            if not isinstance(radii, list) or not radii or not all(
                    isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) and r > 0
                    for r in radii):
                raise ConfigError(f"suite {source}: datasets[{i}].distance_thresholds_m must be a non-empty list "
                                  f"of positive metres, got {radii!r}")
    for i, m in enumerate(_list(raw.get("methods"), f"suite {source}: methods")):
        if not isinstance(m, dict) or "method" not in m:
            raise ConfigError(f"suite {source}: methods[{i}] must be a mapping with a 'method' key")
        _check_keys(m, _METHOD_KEYS, f"suite {source}: methods[{i}]")
    if raw.get("conformance") is not None:
        if not isinstance(raw["conformance"], dict):
            raise ConfigError(f"suite {source}: conformance must be a mapping with keys {', '.join(_CONFORMANCE_KEYS)}")
        _check_keys(raw["conformance"], _CONFORMANCE_KEYS, f"suite {source}: conformance")
    name = str(raw.get("name") or source.stem)
    return Suite(name=name, description=str(raw.get("description") or ""), source=source, raw=raw)


def _check_keys(mapping: Mapping[str, Any], valid: Sequence[str], where: str) -> None:
    for key in mapping:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a YAML list, got {type(value).__name__}")
    return value


def _seeds(value: Any, where: str) -> list[int]:
    seeds = _list(value, where)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{where} must be a non-empty list of integers, got {value!r}")
    return seeds


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = _list(value, where)
    if not all(isinstance(s, str) for s in items):
        raise ConfigError(f"{where} must be a list of strings (KEY=VALUE), got {value!r}")
    return tuple(items)


def _data_root(value: Any) -> Path | None:
    """``~``, ``$VAR`` and ``${VAR:-default}`` expanded; relative paths stay relative to the working dir."""
    if value in (None, ""):
        return None
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), str(value))
    return Path(os.path.expandvars(text)).expanduser()


def _expand(suite: Suite, seeds_override: Sequence[int] | None) -> tuple[list[Job], list[str]]:
    """The jobs the suite names (unchecked), and the skipped methods of ``conformance: {methods: all}``."""
    raw, src = suite.raw, suite.source
    default_seeds = list(seeds_override) if seeds_override else _seeds(raw.get("seeds", [0]), f"suite {src}: seeds")
    datasets: dict[str, Mapping[str, Any]] = {}
    for d in _list(raw.get("datasets"), "datasets"):
        label = str(d.get("label") or d["dataset"])
        if label in datasets:
            raise ConfigError(f"suite {src}: two datasets labelled {label!r}; give them distinct 'label's")
        datasets[label] = d
    jobs: list[Job] = []
    for i, m in enumerate(_list(raw.get("methods"), "methods")):
        where = f"suite {src}: methods[{i}]"
        targets = [str(t) for t in _list(m.get("datasets"), f"{where}.datasets")] or list(datasets)
        for t in targets:
            if t not in datasets:
                raise ConfigError(f"{where}: unknown dataset label {t!r}; the suite's datasets: "
                                  f"{', '.join(datasets) or '(none)'}")
        seeds = list(seeds_override) if seeds_override else (
            _seeds(m["seeds"], f"{where}.seeds") if "seeds" in m else default_seeds)
        for t in targets:
            d = datasets[t]
            data_opts = list(_strings(d.get("options"), f"suite {src}: dataset {t}: options"))
            for o in data_opts:
                if not o.startswith("data."):
                    raise ConfigError(f"suite {src}: dataset {t}: option {o!r} must be data.KEY=VALUE")
            if d.get("split") is not None:
                data_opts.insert(0, f"data.split={d['split']}")
            for s in seeds:
                jobs.append(Job(
                    dataset_label=t, method_label=str(m.get("label") or m["method"]), method=str(m["method"]),
                    dataset=str(d["dataset"]), preset=str(m.get("preset") or "default"),
                    overrides=(*data_opts, *_strings(m.get("overrides"), f"{where}.overrides")),
                    data_root=_data_root(d.get("data_root")), seed=int(s)))
    skipped: list[str] = []
    conf = raw.get("conformance")
    if conf:
        from maploc.plugins import list_entry_points

        installed = [e.name for e in list_entry_points("methods")["methods"]]
        wanted = conf.get("methods", "all")
        names = installed if wanted == "all" else [str(n) for n in _list(wanted, f"suite {src}: conformance.methods")]
        for name in names:
            try:
                jobs += _conformance_jobs(name, conf, default_seeds)
            except MaplocError as e:
                if wanted != "all":
                    raise
                skipped.append(f"{name} ({e})")
    return jobs, skipped


def _conformance_jobs(name: str, conf: Mapping[str, Any], seeds: Sequence[int]) -> list[Job]:
    from maploc.plugins import check_runtime, find_entry_point

    entry = find_entry_point("methods", name)
    cls = entry.load()
    check_runtime(entry, cls)
    fields = {f.name for f in attrs.fields(cls.Config)} if attrs.has(cls.Config) else set()
    overrides = list(cls.conformance_overrides)
    if "train" in fields and conf.get("train_steps") is not None:
        overrides.append(f"train.max_steps={int(conf['train_steps'])}")
    if "data" in fields and conf.get("max_queries") is not None:
        overrides.append(f"data.max_queries={int(conf['max_queries'])}")
    return [Job(dataset_label=str(cls.conformance_dataset), method_label=name, method=name,
                dataset=str(cls.conformance_dataset), preset="default", overrides=tuple(overrides), data_root=None,
                seed=int(s)) for s in seeds]


def plan_jobs(suite: Suite, *, seeds: Sequence[int] | None = None, skip_missing: bool = False,
              resolve: Callable[[Job], Any]) -> tuple[list[tuple[Job, Any]], list[str]]:
    """Every job of ``suite``, each checked by ``resolve`` (which raises a :class:`MaplocError` for an
    uninstalled method, an unknown dataset or option, a typo'd override, a missing data root) before
    any run.

    Returns:
        ``([(job, resolve(job)), ...], skipped)``: ``skipped`` names each job left out and why (only
        with ``skip_missing``, or methods of ``conformance: {methods: all}`` that cannot run here).

    Raises:
        ConfigError, PluginError, DataError: the first bad job, unless ``skip_missing``.
    """
    jobs, skipped = _expand(suite, seeds)
    planned: list[tuple[Job, Any]] = []
    failed: dict[tuple[str, str], str] = {}
    for job in jobs:
        pair = (job.dataset_label, job.method_label)
        if pair in failed:
            continue
        try:
            planned.append((job, resolve(job)))
        except MaplocError as e:
            if not skip_missing:
                raise type(e)(f"{job.method_label} on {job.dataset_label}: {e}") from None
            failed[pair] = str(e)
            skipped.append(f"{job.method_label} on {job.dataset_label} ({e})")
    keys = [j.key for j, _ in planned]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"suite {suite.source}: two jobs run as {dup}; give the methods distinct 'label's")
    return planned, skipped

"""The conformance suite every registered method passes (timm-style: one check per entry point).

Use it in a plugin's tests::

    from maploc.testing.conformance import check_method

    def test_conformance(tmp_path):
        check_method("my-method", tmp_path)

or run it over everything installed (``tests/test_conformance.py`` of the maploc repository does).
Each check raises ``AssertionError`` with a message saying what the method got wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

__all__ = ["check_method_contract", "check_method", "check_dataset"]


def check_method_contract(name: str) -> Any:
    """Static checks: the entry point loads, is a Method with a frozen attrs Config whose presets resolve
    and round-trip through YAML, and whose class ``name`` matches the entry-point name."""
    import yaml

    from maploc.api import Method
    from maploc.config import dump_yaml, list_presets, load_preset, structure, unstructure
    from maploc.plugins import load_component

    cls = load_component("methods", name)
    assert isinstance(cls, type) and issubclass(cls, Method), f"{name}: entry point is {cls!r}, not a Method subclass"
    assert cls.name == name, f"{name}: class attribute name={cls.name!r} differs from the entry-point name"
    assert attrs.has(cls.Config), f"{name}: Config must be an attrs class"
    assert cls.Config.__setattr__ is not object.__setattr__, f"{name}: Config must be frozen"
    assert cls.metric_family in ("pose6dof", "se2", "retrieval", "sequence"), f"{name}: bad metric_family"
    for preset in list_presets(cls.presets_package):
        config = load_preset(cls.Config, cls.presets_package, preset)
        again = structure(cls.Config, yaml.safe_load(dump_yaml(config)))
        assert unstructure(again) == unstructure(config), f"{name}: preset {preset!r} does not round-trip"
    return cls


def check_dataset(name: str, root: Path | None = None) -> None:
    """A dataset's splits load and yield valid Samples (shapes, camera, pose)."""
    from maploc.api import SPLITS
    from maploc.plugins import load_component
    from maploc.types import Sample

    cls = load_component("datasets", name)
    for split in SPLITS:
        data = cls(root, split)
        assert len(data) > 0, f"{name}/{split} is empty"
        sample = data[0]
        assert isinstance(sample, Sample)
        assert sample.image.dtype.is_floating_point and 0 <= float(sample.image.min()) <= float(sample.image.max()) <= 1


def _assert_same_metrics(name: str, first: dict[str, float], again: dict[str, float]) -> None:
    """Every metric of ``again`` equals ``first`` (times excluded): wrongly reloaded weights change them."""
    import math

    keys = sorted(k for k in set(first) | set(again) if not k.endswith("time_per_query_ms"))
    for k in keys:
        a, b = first.get(k), again.get(k)
        same = a == b or (isinstance(a, float) and isinstance(b, float) and (
            (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)))
        assert same, f"{name}: evaluating the checkpoint gave {k} = {b}, the run that wrote it {a}"


def check_method(
    name: str, tmp_path: Path, *, train_steps: int = 2, max_queries: int | None = 4,
) -> dict[str, float]:
    """Runs the method end to end on its ``conformance_dataset`` with its ``conformance_overrides``:
    a short training (if it trains), checkpoint written and loadable with weights_only, build_map,
    localize (one estimate per query), evaluation and the run directory; then, for a method that
    trained, the same evaluation from the checkpoint alone (what ``maploc eval --checkpoint`` does),
    which must give the same metrics (all but times); and ``maploc evaluate RUN``, which must
    reproduce ``metrics.json`` exactly from the predictions files. Returns the metrics of the first run.

    ``max_queries``: the queries evaluated (``data.max_queries``, for a method whose config has a
    ``data`` section); ``None`` evaluates all of them, e.g. to assert the method's accuracy on the
    returned metrics (``metrics["recall_5cm_5deg"]``, percent)."""
    import math

    from maploc.engine import EngineConfig, load_checkpoint
    from maploc.engine.runner import RunSpec, execute, resolve_spec

    cls = check_method_contract(name)
    overrides = list(cls.conformance_overrides)
    config_fields = {f.name for f in attrs.fields(cls.Config)}
    if "train" in config_fields:
        overrides += [f"train.max_steps={train_steps}", "train.checkpoint_every=1"]
    if "data" in config_fields and max_queries is not None:
        overrides += [f"data.max_queries={max_queries}"]
    out = Path(tmp_path) / f"conformance-{name}"
    result = execute(
        RunSpec(method=name, dataset=cls.conformance_dataset, overrides=tuple(overrides), out=out,
                engine=EngineConfig(progress=False)),
        say=lambda s: None,
    )
    for fname in ("config.yaml", "metrics.json", "results.csv", "report.txt", "predictions/manifest.json",
                  f"predictions/{name}.txt", f"predictions/{name}.csv"):
        assert (out / fname).is_file(), f"{name}: run directory lacks {fname}"
    metrics = result.metrics
    assert metrics["num_queries"] >= 1, f"{name}: no queries were evaluated"
    assert all(isinstance(v, (int, float)) for v in metrics.values()), f"{name}: non-numeric metric"
    assert not any(isinstance(v, float) and math.isnan(v) for k, v in metrics.items() if k.startswith("num_")), name
    if result.fit is not None:
        assert result.fit.steps == train_steps, f"{name}: trained {result.fit.steps} steps, asked {train_steps}"
        assert math.isfinite(result.fit.last_loss), f"{name}: non-finite training loss"
        ckpt = load_checkpoint(out / "checkpoints" / "last.ckpt")
        assert ckpt["method"] == name and ckpt["step"] == train_steps
        # ``maploc eval --checkpoint RUN/checkpoints/last.ckpt``: the method is rebuilt from the checkpoint
        # and its run's config.yaml alone (no flags) and evaluates the same queries
        again = execute(
            resolve_spec(checkpoint=out / "checkpoints" / "last.ckpt", out=Path(tmp_path) / f"conformance-{name}-eval",
                         engine=EngineConfig(progress=False), stages=("map", "localize")),
            say=lambda s: None,
        )
        assert again.fit is None, f"{name}: evaluating a checkpoint trained again"
        _assert_same_metrics(name, metrics, again.metrics)
    # the core scores the predictions files: `maploc evaluate RUN` reproduces metrics.json exactly
    from maploc.engine.runner import evaluate_predictions

    rescored = evaluate_predictions(run_dir=out, out=Path(tmp_path) / f"conformance-{name}-rescored", say=lambda s: None)
    assert rescored.metrics == metrics, f"{name}: re-scoring the predictions files changed the metrics"
    return metrics

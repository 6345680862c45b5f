"""``maploc evaluate``: score saved predictions again, from the files alone (no method plugin needed).

Split from :mod:`maploc.engine.runner` (which re-exports :func:`evaluate_predictions`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maploc.config import structure_dataset_options
from maploc.engine.reporting import report_text
from maploc.errors import ConfigError
from maploc.files import atomic_write_text
from maploc.plugins import load_component

if TYPE_CHECKING:
    from maploc.engine.runner import RunResult

__all__ = ["evaluate_predictions"]


def evaluate_predictions(
    *, run_dir: Path | None = None, predictions: Path | None = None, dataset: str | None = None,
    data_root: Path | None = None, overrides: Sequence[str] = (), family: str | None = None,
    distance_thresholds_m: Sequence[float] | None = None, out: Path | None = None,
    split: Path | None = None, region: str = "test", say: Callable[[str], None] = print,
) -> RunResult:
    """``maploc evaluate``: scores saved predictions again, from the files alone (the method's plugin
    need not be installed; the dataset's must be).

    Either ``run_dir`` (a run folder: its ``config.yaml`` names the dataset, data root and options,
    ``predictions/manifest.json`` the family and variants) or ``predictions`` (one ``.txt`` file of
    any tool) with ``dataset`` (and optionally ``data_root``, ``-o data.<key>=value`` overrides,
    ``family`` when the file's format is ambiguous, and the distance thresholds).

    Writes ``metrics.json``, ``results.csv``, the family's plot and ``report.txt`` into ``out``
    (default: ``run_dir``, or the predictions file's folder; with ``region="val"`` its ``val_region/``). ``split``: score only the queries in the
    test blocks of this saved split (another run's ``split.json``) instead of the run's own; with
    ``run_dir``, ``distance_thresholds_m`` replaces the manifest's thresholds. ``region="val"``: score the
    queries in the split's validation blocks instead of its test blocks (for choosing defaults; see
    :func:`maploc.evaluation.scoring.score_run`).

    Raises:
        ConfigError: neither or both inputs, a missing dataset name, bad overrides, an unwritable ``out``, a
            ``region`` other than ``test`` / ``val``.
        PredictionsError: a file that cannot be scored (one line naming the file and line).
        DataError, PluginError: the dataset cannot be opened.
    """
    from maploc.config import parse_overrides
    from maploc.engine.runner import RunResult, _resolve_data_root, check_run_dir, load_run_config
    from maploc.evaluation import write_report
    from maploc.evaluation.predictions import infer_family
    from maploc.evaluation.scoring import SCORED_REGIONS, load_manifest, score_file, score_run

    if region not in SCORED_REGIONS:
        raise ConfigError(f"--region must be one of {', '.join(SCORED_REGIONS)}, got {region!r}")
    if (run_dir is None) == (predictions is None):
        raise ConfigError("give a run folder (maploc evaluate RUN) or --predictions FILE --dataset NAME, not both")
    options: dict[str, Any] = {}
    image_height = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        saved = load_run_config(run_dir)
        manifest = load_manifest(run_dir / "predictions")
        dataset = dataset or saved.get("dataset") or manifest.dataset
        root = data_root if data_root is not None else (Path(saved["data_root"]) if saved.get("data_root") else None)
        data_section = (saved.get("config") or {}).get("data") or {}
        options = dict(data_section.get("options") or {})
        image_height = data_section.get("image_height")
    else:
        if not dataset:
            raise ConfigError("--predictions needs --dataset NAME (see `maploc list --kind datasets`)")
        predictions = Path(predictions)  # type: ignore[arg-type]
        if not predictions.is_file():
            raise ConfigError(f"predictions file {predictions} does not exist")
        root = data_root
    parsed = parse_overrides(list(overrides))
    unknown = [k for k in parsed if k != "data"]
    if unknown:
        raise ConfigError(f"maploc evaluate takes only -o data.<key>=value overrides, got {unknown[0]!r}")
    data_over = dict(parsed.get("data", {}))
    image_height = data_over.pop("image_height", image_height)
    data_over.pop("max_queries", None)
    options.update(data_over)
    dataset_cls = load_component("datasets", str(dataset))
    dataset_options = structure_dataset_options(dataset_cls, options)
    split_obj = None
    if split is not None:
        from maploc.evaluation.scoring import load_split_file

        split_obj = load_split_file(split)
    target = Path(out) if out is not None else (run_dir if run_dir is not None else Path(predictions).parent)  # type: ignore[arg-type]
    if out is None and region != "test":
        target = target / f"{region}_region"  # never overwrite a run's test figures with another region's
    check_run_dir(target)
    root_path = _resolve_data_root(dataset_cls, root, say)
    make = lambda split: dataset_cls(root_path, split, image_height=image_height, options=dataset_options)  # noqa: E731
    query_data, map_data = make("query"), make("map")
    query_meta = [query_data.metadata(i) for i in range(len(query_data))]
    map_meta = [map_data.metadata(i) for i in range(len(map_data))]
    if run_dir is not None:
        scored = score_run(run_dir / "predictions", query_meta, map_meta, run_dir=run_dir, split=split_obj,
                           distance_thresholds_m=distance_thresholds_m, region=region)
        family_name = manifest.family
        title = f"{manifest.method} on {dataset} (re-scored)"
        name = manifest.method
    else:
        family_name = family or infer_family(predictions)  # type: ignore[arg-type]
        thresholds = tuple(distance_thresholds_m or (25.0,))
        scored = score_file(predictions, family_name, query_meta, map_meta, distance_thresholds_m=thresholds,  # type: ignore[arg-type]
                            split=split_obj, region=region)
        title = f"{Path(predictions).name} on {dataset}"  # type: ignore[arg-type]
        name = Path(predictions).stem  # type: ignore[arg-type]
    write_report(target, scored.evaluation_result(), family_name, title)
    report = report_text(name, family_name, scored, [], None, target)
    atomic_write_text(target / "report.txt", report + "\n")
    return RunResult(run_dir=target, metrics=scored.metrics, fit=None, report=report)

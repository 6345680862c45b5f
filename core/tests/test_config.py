"""Configs: strict keys and types, presets, overrides, YAML round trip."""

from __future__ import annotations

from typing import Literal

import attrs
import pytest

from maploc.config import (
    DataConfig,
    TrainConfig,
    apply_overrides,
    dump_yaml,
    parse_overrides,
    structure,
    unstructure,
)
from maploc.errors import ConfigError


@attrs.frozen(kw_only=True)
class Solver:
    hypotheses: int = 64
    inlier_threshold_px: float = 10.0
    mode: Literal["rgb", "rgbd"] = "rgb"


@attrs.frozen(kw_only=True)
class Cfg:
    name: str = "x"
    scales: tuple[float, ...] = (1.0, 2.0)
    height: int | None = None
    solver: Solver = Solver()
    train: TrainConfig = TrainConfig()


def test_overrides_parse_yaml_scalars():
    assert parse_overrides(["solver.hypotheses=128", "train.lr=1e-4", "name=abc", "scales=[1, 3]"]) == {
        "solver": {"hypotheses": 128},
        "train": {"lr": 1e-4},
        "name": "abc",
        "scales": [1, 3],
    }


def test_apply_overrides_converts_types():
    cfg = apply_overrides(Cfg(), ["solver.inlier_threshold_px=5", "scales=[1, 3]", "height=240", "solver.mode=rgbd"])
    assert cfg.solver.inlier_threshold_px == 5.0 and isinstance(cfg.solver.inlier_threshold_px, float)
    assert cfg.scales == (1.0, 3.0)
    assert cfg.height == 240
    assert cfg.solver.mode == "rgbd"
    assert cfg.solver.hypotheses == 64  # untouched keys keep their value


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), ["solver.hypothesis=3"])
    msg = str(e.value)
    assert "solver.hypothesis" in msg
    assert "solver.hypotheses" in msg and "solver.inlier_threshold_px" in msg


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'nme'.*name, scales, height, solver, train"):
        structure(Cfg, {"nme": 1})


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("solver.hypotheses=many", "'solver.hypotheses' expects an int"),
        ("solver.hypotheses=1.5", "'solver.hypotheses' expects an int"),
        ("train.lr=fast", "'train.lr' expects a float"),
        ("solver.mode=rgb-d", "'solver.mode' must be one of 'rgb', 'rgbd'"),
        ("solver=3", "'solver' is a section"),
        ("scales=2", "'scales' expects a list"),
        ("height=tall", "'height' expects"),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(Cfg(), [override])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["train.lr"])


def test_yaml_round_trip():
    cfg = apply_overrides(Cfg(), ["scales=[0.5]", "train.epochs=7"])
    import yaml

    again = structure(Cfg, yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg
    assert unstructure(again)["train"]["epochs"] == 7


def test_range_validators_name_the_key():
    from maploc.config import TrainConfig

    with pytest.raises(ConfigError, match=r"config key 'train.batch_size' must be >= 1, got 0"):
        structure(TrainConfig, {"batch_size": 0}, prefix="train.")
    with pytest.raises(ConfigError, match=r"config key 'train.lr' must be > 0, got -0.1"):
        structure(TrainConfig, {"lr": -0.1}, prefix="train.")


def test_dataset_options_are_routed_and_checked():
    import attrs

    from maploc.config import structure_dataset_options

    cfg = structure(DataConfig, {"image_height": 64, "frames": 10})
    assert cfg.image_height == 64 and dict(cfg.options) == {"frames": 10}

    @attrs.frozen(kw_only=True)
    class Opts:
        frames: int = 5

    class Fake:
        name = "fake"
        Options = Opts

    assert structure_dataset_options(Fake, {"frames": 10}) == Opts(frames=10)
    with pytest.raises(ConfigError, match=r"unknown config key 'data.frmes' for dataset 'fake'; valid data keys: "
                                          r"data.image_height, data.max_queries, data.frames"):
        structure_dataset_options(Fake, {"frmes": 10})
    with pytest.raises(ConfigError, match=r"'data.frames' expects an int"):
        structure_dataset_options(Fake, {"frames": "many"})


def test_dataset_defaults_apply_to_their_dataset_only_and_never_override():
    from maploc.config import with_dataset_defaults

    @attrs.frozen(kw_only=True)
    class WithData:
        data: DataConfig = DataConfig()

    defaults = {"sim-city": {"train_routes": 12, "frames": 100}}
    cfg = with_dataset_defaults(WithData(), defaults, "sim-city")
    assert dict(cfg.data.options) == {"train_routes": 12, "frames": 100}
    # what the user (or a preset, or a saved run) set wins
    user = apply_overrides(WithData(), ["data.train_routes=0"])
    assert dict(with_dataset_defaults(user, defaults, "sim-city").data.options) == {"train_routes": 0, "frames": 100}
    # another dataset gets nothing (so the key never reaches a dataset that does not have it)
    other = WithData()
    assert with_dataset_defaults(other, defaults, "mgl") is other
    assert with_dataset_defaults(Cfg(), defaults, "sim-city") == Cfg()  # a config without a data section


def test_preset_sections_merge_with_the_class_defaults(tmp_path, monkeypatch):
    import attrs

    from maploc.config import TrainConfig

    @attrs.frozen(kw_only=True)
    class Cfg:
        train: TrainConfig = TrainConfig(batch_size=2, lr=0.5)
        data: DataConfig = DataConfig(image_height=120)

    pkg = tmp_path / "mypresets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "quick.yaml").write_text("train:\n  max_steps: 3\ndata:\n  max_queries: 5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from maploc.config import load_preset

    cfg = load_preset(Cfg, "mypresets", "quick")
    assert cfg.train.max_steps == 3 and cfg.train.batch_size == 2 and cfg.train.lr == 0.5
    assert cfg.data.max_queries == 5 and cfg.data.image_height == 120

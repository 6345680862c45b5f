"""The template's presets ship as package data and resolve through the core's config machinery."""

from __future__ import annotations

import pytest

from maploc.config import DataConfig, list_presets, load_preset, resolve_config
from maploc.errors import ConfigError
from maploc_template.method import TemplateConfig


def test_presets_from_package():
    assert list_presets("maploc_template.presets") == ["default", "fast"]
    fast = load_preset(TemplateConfig, "maploc_template.presets", "fast")
    assert fast.train.max_steps == 20 and fast.data == DataConfig(image_height=48)
    assert load_preset(TemplateConfig, "maploc_template.presets", "default") == TemplateConfig()
    with pytest.raises(ConfigError, match="unknown preset 'fastest'; available presets: default, fast"):
        load_preset(TemplateConfig, "maploc_template.presets", "fastest")
    cfg = resolve_config(TemplateConfig, "maploc_template.presets", "fast", ["train.max_steps=3"])
    assert cfg.train.max_steps == 3 and cfg.data.image_height == 48

"""The README's quick start explains every condition table the quick-start run prints (sim-city's default
render: each rendered condition is a table of its own, besides all scored queries)."""

from __future__ import annotations

from pathlib import Path

from maploc_simcity import SimCity

README = Path(__file__).resolve().parents[3] / "README.md"


def test_quick_start_explains_each_condition_table():
    section = README.read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    options = SimCity.Options()
    assert "`all scored queries`" in section
    for condition in options.conditions:
        assert f"`condition {condition}`" in section, condition
    assert f"{options.frames} frames per sequence" in section
    assert f"{2 * options.lateral_offset_m:g} m" in section  # the traversals' spacing

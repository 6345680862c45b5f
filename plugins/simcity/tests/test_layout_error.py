"""sim-city's --data-root error names the layout it expects and the README section describing it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maploc.errors import DataError
from maploc_simcity.dataset import SimCity

README = Path(__file__).resolve().parents[3] / "README.md"


def test_a_folder_that_is_not_a_render_names_the_layout(tmp_path):
    assert re.search(r"^### sim-city layout$", README.read_text(encoding="utf-8"), re.M)
    with pytest.raises(DataError) as e:
        SimCity(tmp_path, "map")
    message = str(e.value)
    assert "is not a rendered sim-city folder (no render.json)" in message
    assert "maploc data render --out DIR" in message and "traversals/<sequence>" in message
    assert message.endswith("(see README.md#sim-city-layout)") and "\n" not in message
    (tmp_path / "render.json").write_text("{}")  # present but not a render summary
    with pytest.raises(DataError, match=r"render\.json: not a maploc render.*README\.md#sim-city-layout"):
        SimCity(tmp_path, "map")

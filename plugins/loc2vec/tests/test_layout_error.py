"""osm-tiles' missing-file errors name what --data-root must be and the README section describing it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maploc.errors import DataError
from maploc_loc2vec.data import OsmTileDataset

README = Path(__file__).resolve().parents[3] / "README.md"


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None], ids=["empty-folder", "missing"])
def test_no_osm_file_names_the_layout(tmp_path, make):
    assert re.search(r"^### osm-tiles layout$", README.read_text(encoding="utf-8"), re.M)
    root = tmp_path / "root"
    make(root)
    with pytest.raises(DataError) as e:
        OsmTileDataset(root, "train")
    message = str(e.value)
    assert str(root) in message and "an OpenStreetMap file (.osm.pbf, .osm or .osm.bz2) or a folder holding one" in message
    assert message.endswith("(see README.md#osm-tiles-layout)") and "\n" not in message

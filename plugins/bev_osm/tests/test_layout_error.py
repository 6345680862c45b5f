"""mgl's missing-file errors name the layout it expects and the README section describing it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from maploc.errors import DataError
from maploc_bev_osm.mgl import MGLDataset

README = Path(__file__).resolve().parents[3] / "README.md"


def test_missing_dump_names_the_layout(tmp_path):
    assert re.search(r"^### mgl layout$", README.read_text(encoding="utf-8"), re.M)
    with pytest.raises(DataError) as e:
        MGLDataset(tmp_path, "train")
    message = str(e.value)
    assert "no dump.json" in message and "images/<view id>.jpg" in message and "osm/" in message
    assert message.endswith("(see README.md#mgl-layout)") and "\n" not in message


def test_missing_osm_file_names_the_layout(tmp_path):
    location = tmp_path / "loc"
    location.mkdir()
    view = {"camera_id": "c", "latlong": [60.17, 24.94], "t_c2w": [0, 0, 1.5],
            "R_c2w": [[1, 0, 0], [0, 0, 1], [0, -1, 0]]}
    camera = {"model": "PINHOLE", "width": 64, "height": 48, "params": [50, 50, 32, 24]}
    dump = {f"s{k}": {"views": {f"{k}_v": view}, "cameras": {"c": camera}} for k in range(8)}
    (location / "dump.json").write_text(json.dumps(dump))
    data = MGLDataset(location, "train")
    with pytest.raises(DataError) as e:
        data.osm_path  # noqa: B018
    assert "no OSM file" in str(e.value) and str(e.value).endswith("(see README.md#mgl-layout)")

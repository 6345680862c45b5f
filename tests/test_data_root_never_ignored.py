"""A --data-root is read or refused, never silently ignored (issue 24): every dataset that generates its
samples refuses a folder in one line, sim-city refuses a folder that is not a render, before any work."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("dataset, message", [
    ("synthetic-room", "generates its samples and reads no files"),
    ("bev-osm-synthetic", "generates its samples and reads no files"),
    ("osm-tiles-synthetic", "generates its samples and reads no files"),
    ("sim-city", "is not a rendered sim-city folder (no render.json)"),
])
def test_a_folder_of_random_images_is_refused(maploc_main, tmp_path, dataset, message):
    jpgs = tmp_path / "jpgs"
    jpgs.mkdir()
    (jpgs / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "run"
    status, _, err = maploc_main("run", "--method", "nn-retrieval", "--dataset", dataset, "--data-root", str(jpgs),
                                 "--out", str(out), "--no-progress")
    assert status == 2 and message in err and str(jpgs) in err
    assert err.strip().count("\n") == 0
    assert not out.exists()  # the folder this run created is removed again: nothing was done

"""The netvlad report says one true thing about the map: a reused index means the map images were read (for the
thumbnails baseline) but not encoded; an encoded map reports its encode time."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from maploc_netvlad.report import sections


def _method(reused):
    return SimpleNamespace(
        config=SimpleNamespace(index=SimpleNamespace(kind="flat")), split=None, validation=[], model=None,
        timing={"map_images": 0 if reused else 100, "map_encode_s": 0.0 if reused else 2.0, "queries": 0},
        fit_summary={}, reused_index=reused, map_meta=[object()] * 100, index_dir=lambda: Path("/runs/e/index"),
    )


def test_reused_index_says_the_map_was_read_not_encoded():
    body = sections(_method(Path("/runs/t/index")))[0][1]
    line = next(x for x in body.splitlines() if x.startswith("map index"))
    assert line == ("map index reused from /runs/t/index: the descriptors of its run; the 100 map images were read "
                    "for the thumbnails baseline only, not encoded by the network")
    assert "encode time per map image" not in body


def test_encoded_map_reports_its_encode_time():
    body = sections(_method(None))[0][1]
    assert "encode time per map image: 20.00 ms" in body and "reused" not in body


def test_recall_plot_title_says_which_queries_it_shows():
    from maploc_netvlad.plots import recall_title

    title = recall_title("netvlad", 93, test_blocks=True)
    assert "93 scored queries" in title and "test blocks" in title and "recall_at_1" in title
    assert "every query" in recall_title("netvlad", 300, test_blocks=False)

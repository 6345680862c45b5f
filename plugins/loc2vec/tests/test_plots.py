"""The split plot draws the guard band of each held-out split with its own width."""

from __future__ import annotations

import pytest

from maploc_loc2vec import plots
from maploc_loc2vec.data import SyntheticTileDataset


def test_split_plot_draws_val_guard_around_val_blocks_and_test_guard_around_test_blocks(tmp_path, monkeypatch):
    import matplotlib.patches as mpatches

    data = SyntheticTileDataset(None, "map")
    blocks = data.blocks
    assert blocks.val_guard_m < blocks.guard_m
    assert plots.guard_bands(blocks) == {"val": blocks.val_guard_m, "test": blocks.guard_m}
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.plot_split(tmp_path / "split.png", data, data.positions()[:3])
    (ax,) = figures[0].axes
    bands = [p for p in ax.patches if isinstance(p, mpatches.FancyBboxPatch)]
    drawn = sorted((round(p.get_x()), round(p.get_y()), p.get_boxstyle().pad) for p in bands)
    expected = sorted((round(x0), round(y0), pytest.approx(g)) for split, g in plots.guard_bands(blocks).items()
                      for x0, y0, _, _ in blocks.rects(split))
    assert len(drawn) == blocks.counts()["val"] + blocks.counts()["test"] == len(expected)
    assert drawn == expected
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"val guard {blocks.val_guard_m:.0f} m (train)" in labels
    assert f"test guard {blocks.guard_m:.0f} m (train, val)" in labels

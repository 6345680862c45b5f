"""Which folder layout a file-based dataset expects, said in its errors.

A dataset that reads a folder wraps the scan of its constructor in :func:`expected_layout`: a
:class:`~maploc.errors.DataError` raised there (a missing file or folder, an empty or malformed
index file) gets the layout the dataset expects and the README section that describes it appended,
so ``--dataset dsac --data-root X`` answers

    X/train: DSAC* split folder not found (...); the dsac dataset expects <root>/{train,test}/...
    (see README.md#dsac-layout)

instead of naming only the first file it looked for. Plugins' datasets use it the same way, with
their own layout line and README anchor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from maploc.errors import DataError

__all__ = ["README", "expected_layout", "layout_hint", "readme_anchor"]

#: The README that holds the section "Dataset layouts" (relative to the repository root).
README = "README.md"


def readme_anchor(dataset: str) -> str:
    """The README anchor of ``dataset``'s layout section: ``README.md#<dataset>-layout``.

    The heading is ``### <dataset> layout``; GitHub's anchor of it is the lower-cased heading with
    spaces turned into hyphens.
    """
    return f"{README}#{dataset.lower()}-layout"


def layout_hint(dataset: str, layout: str, anchor: str | None = None) -> str:
    """``the <dataset> dataset expects <layout> (see <anchor>)``; ``anchor`` defaults to :func:`readme_anchor`."""
    return f"the {dataset} dataset expects {layout} (see {anchor or readme_anchor(dataset)})"


@contextmanager
def expected_layout(dataset: str, layout: str, anchor: str | None = None) -> Iterator[None]:
    """Appends :func:`layout_hint` to a :class:`~maploc.errors.DataError` raised inside the block.

    Args:
        dataset: the dataset's registered name, e.g. ``dsac``.
        layout: one line saying what the root folder holds, e.g. ``<root>/{train,test}/{rgb,poses}/``.
        anchor: the README section (default ``README.md#<dataset>-layout``).

    Raises:
        DataError: the error raised in the block, with the hint appended (once: an error that
            already names a README section is passed on unchanged).
    """
    try:
        yield
    except DataError as exc:
        if f"{README}#" in str(exc):
            raise
        raise DataError(f"{exc}; {layout_hint(dataset, layout, anchor)}") from exc

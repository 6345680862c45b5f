"""Gardens Point Walking (Glover, QUT 2014; used by Sünderhauf et al., "On the performance of
ConvNet features for place recognition", IROS 2015): two day traversals and one night traversal
of the QUT Gardens Point campus, aligned frame by frame.

Layout (as distributed)::

    root/day_left/Image000.jpg ... Image199.jpg
    root/day_right/Image000.jpg ...
    root/night_right/Image000.jpg ...

Frame ``i`` of every folder shows the same place, so the ground truth of query ``i`` is the
reference frames ``i - k .. i + k`` (``k`` = ``frame_tolerance``). See
:class:`maploc.data.two_pass.PlaceRecognitionDataset` for splits and samples.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import attrs

from maploc.config import at_least
from maploc.data import io
from maploc.data.layouts import expected_layout
from maploc.data.two_pass import PlaceRecognitionDataset, aligned_truth
from maploc.errors import DataError

__all__ = ["GardensPoint", "GardensPointOptions", "TRAVERSALS"]

#: The traversal folders of the dataset.
TRAVERSALS: tuple[str, ...] = ("day_left", "day_right", "night_right")
#: The layout a Gardens Point root holds (said in its errors; README section "gardens-point layout").
LAYOUT = ("<root>/day_left/, <root>/day_right/ and <root>/night_right/, each with Image000.jpg, Image001.jpg, ... "
          "numbered from 0, frame i of every folder at the same place (as distributed)")

_FRAME_RE = re.compile(r"^Image(\d+)\.jpe?g$", re.IGNORECASE)


def _in_traversals(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in TRAVERSALS:
        from maploc.errors import ConfigError

        raise ConfigError(f"data.{attribute.name}: {value!r} is not a Gardens Point traversal; "
                          f"expected one of {', '.join(TRAVERSALS)}")


@attrs.frozen(kw_only=True)
class GardensPointOptions:
    """Options of the ``gardens-point`` dataset.

    Attributes:
        ref_traversal: the reference (map) folder.
        query_traversal: the query folder.
        frame_tolerance: frames of index difference counted as the same place (``k``).
    """

    ref_traversal: str = attrs.field(default="day_left", validator=_in_traversals)
    query_traversal: str = attrs.field(default="night_right", validator=_in_traversals)
    frame_tolerance: int = attrs.field(default=2, validator=at_least(0))


def read_traversal(folder: Path) -> list[Path]:
    """The ``ImageNNN.jpg`` files of one traversal, ordered by their number.

    Raises:
        DataError: if the folder is missing, has no ``ImageNNN.jpg`` or its numbers are not
            ``0..n-1`` (naming the folder and the first missing number).
    """
    files = io.list_files(folder, (".jpg", ".jpeg"))
    numbered = sorted((int(m.group(1)), p) for p in files if (m := _FRAME_RE.match(p.name)))
    if not numbered:
        raise DataError(f"{folder}: no ImageNNN.jpg frames found")
    for expected, (number, _) in enumerate(numbered):
        if number != expected:
            raise DataError(f"{folder}: frame Image{expected:03d}.jpg is missing (frames must be numbered 0..n-1)")
    return [p for _, p in numbered]


class GardensPoint(PlaceRecognitionDataset):
    """Gardens Point Walking; see the module docstring for the layout.

    Raises:
        DataError: if a traversal folder is missing, the two traversals have different numbers of
            frames (naming both folders), or (when read) an image cannot be decoded (naming it).
        ConfigError: for an unknown traversal name.
    """

    name: ClassVar[str] = "gardens-point"
    Options: ClassVar[type] = GardensPointOptions

    def __init__(self, root: Path, split: str, *, image_height: int | None = None,
                 options: GardensPointOptions | None = None) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        o = self.options
        with expected_layout(self.name, LAYOUT):
            ref = read_traversal(self.root / o.ref_traversal)
            query = read_traversal(self.root / o.query_traversal)
            if len(ref) != len(query):
                raise DataError(
                    f"{self.root / o.query_traversal}: {len(query)} frames, but {self.root / o.ref_traversal} has "
                    f"{len(ref)}; Gardens Point traversals are aligned by index and must have the same length"
                )
            self._setup(ref, query, aligned_truth(len(query), len(ref), o.frame_tolerance),
                        o.ref_traversal, o.query_traversal)

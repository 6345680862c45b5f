"""Nordland (Sünderhauf, Neubert & Protzel, "Are we there yet? Challenging SeqSLAM on a 3000 km
journey across all four seasons", ICRA 2013 workshop): the same train journey recorded in four
seasons, frames aligned across seasons by file name.

Layout (the common down-sampled distribution)::

    root/summer/images-00001.png ...
    root/winter/images-00001.png ...
    root/spring/...  root/fall/...

Frame ``images-NNNNN.png`` of every season shows the same place. The reader keeps the frames whose
names exist in both the reference and the query season (a name missing from one season is an error
unless ``allow_missing``), and query ``i`` matches reference frames ``i - k .. i + k`` of the common
list. See :class:`maploc.data.two_pass.PlaceRecognitionDataset` for splits and samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import attrs

from maploc.config import at_least
from maploc.data import io
from maploc.data.layouts import expected_layout
from maploc.data.two_pass import PlaceRecognitionDataset, aligned_truth
from maploc.errors import DataError

__all__ = ["Nordland", "NordlandOptions", "SEASONS"]

#: The season folders of the dataset.
SEASONS: tuple[str, ...] = ("spring", "summer", "fall", "winter")
#: The layout a Nordland root holds (said in its errors; README section "nordland layout").
LAYOUT = ("one folder of frames per season, <root>/summer/, <root>/winter/ (and spring/, fall/), with the same file "
          "names (e.g. images-00001.png) in every season (the down-sampled distribution)")


@attrs.frozen(kw_only=True)
class NordlandOptions:
    """Options of the ``nordland`` dataset.

    Attributes:
        ref_season: the reference (map) season folder.
        query_season: the query season folder.
        frame_tolerance: frames of index difference counted as the same place (``k``).
        allow_missing: keep only the names both seasons have instead of failing on a missing frame.
    """

    ref_season: str = "summer"
    query_season: str = "winter"
    frame_tolerance: int = attrs.field(default=2, validator=at_least(0))
    allow_missing: bool = False


class Nordland(PlaceRecognitionDataset):
    """Nordland in season folders; see the module docstring.

    Raises:
        DataError: if a season folder is missing or empty, or a frame name of one season is absent
            from the other (naming the missing file) unless ``allow_missing``; (when read) an image
            that cannot be decoded (naming it).
    """

    name: ClassVar[str] = "nordland"
    Options: ClassVar[type] = NordlandOptions

    def __init__(self, root: Path, split: str, *, image_height: int | None = None,
                 options: NordlandOptions | None = None) -> None:
        super().__init__(root, split, image_height=image_height, options=options)
        o = self.options
        with expected_layout(self.name, LAYOUT):
            ref_dir, query_dir = self.root / o.ref_season, self.root / o.query_season
            ref = {p.name: p for p in io.list_files(ref_dir, io.IMAGE_EXTENSIONS)}
            query = {p.name: p for p in io.list_files(query_dir, io.IMAGE_EXTENSIONS)}
            if not o.allow_missing:
                for name in sorted(ref):
                    if name not in query:
                        raise DataError(f"{query_dir / name}: missing (frame of {ref_dir.name}/ not in "
                                        f"{query_dir.name}/; seasons are aligned by file name)")
                for name in sorted(query):
                    if name not in ref:
                        raise DataError(f"{ref_dir / name}: missing (frame of {query_dir.name}/ not in "
                                        f"{ref_dir.name}/; seasons are aligned by file name)")
            common = sorted(set(ref) & set(query))
            if not common:
                raise DataError(f"{ref_dir} and {query_dir} share no frame names")
            ref_files = [ref[n] for n in common]
            query_files = [query[n] for n in common]
            self._setup(ref_files, query_files, aligned_truth(len(common), len(common), o.frame_tolerance),
                        o.ref_season, o.query_season)

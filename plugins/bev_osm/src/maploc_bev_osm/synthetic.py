"""``bev-osm-synthetic``: a tiny file-free dataset for the conformance suite and tests (random OSM-like raster,
noise images, upright cameras along a line). It exercises the pipeline; it says nothing about accuracy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.config import at_least
from maploc.types import Camera, Pose, Pose2, Sample

__all__ = ["SyntheticBEVOSM", "camera_pose", "synthetic_raster"]


def camera_pose(x: float, y: float, yaw: float, height_m: float = 1.6) -> Pose:
    """``T_cam2world`` of an upright OpenCV camera at map ``(x, y)`` metres, heading ``yaw`` radians (from east,
    counter-clockwise), ``height_m`` above the ground (world z up)."""
    forward = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
    down = torch.tensor([0.0, 0.0, -1.0])
    right = torch.linalg.cross(down, forward)
    R = torch.stack([right, down, forward], dim=1)
    return Pose(R=R, t=torch.tensor([x, y, height_m]))


def synthetic_raster(cell_m: float, size_m: float = 200.0, seed: int = 0) -> Any:
    """A :class:`maploc_osm.MapRaster` of random blocks ("buildings") and a cross of "road" centred at the
    origin, ``size_m`` square."""
    from maploc_osm import CLASS_NAMES, GeoReference, MapRaster

    n = max(8, round(size_m / cell_m))
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, n, len(CLASS_NAMES)), np.uint8)
    for _ in range(max(4, n * n // 400)):
        i, j = rng.integers(0, n - 4, size=2)
        h, w = rng.integers(2, max(3, n // 8), size=2)
        labels[i:i + h, j:j + w, int(rng.integers(0, 6))] = 1
    labels[n // 2 - 1:n // 2 + 1, :, len(CLASS_NAMES) // 2] = 1
    packed = np.packbits(labels, axis=-1, bitorder="little")
    georef = GeoReference.from_origin(60.17, 24.94).with_raster(resolution_m=cell_m, x_min=-n * cell_m / 2,
                                                                 y_max=n * cell_m / 2, height=n, width=n)  # fmt: skip
    return MapRaster(georef=georef, packed=packed, source=None)


def _names(value: Any) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else tuple(value)


@attrs.frozen(kw_only=True)
class SyntheticOptions:
    """Options of ``bev-osm-synthetic`` (the same keys as ``sim-city``'s that ``bev_osm`` sets).

    Attributes:
        frames: views per sequence.
        traversals: traversals (the query split is traversal 1 when there are two or more, else traversal 0).
        conditions: condition names; the query split has one sequence per condition (images differ by seed).
        query_conditions: conditions of the query split (empty: all of ``conditions``).
    """

    frames: int = attrs.field(default=8, validator=at_least(1))
    traversals: int = attrs.field(default=2, validator=at_least(1))
    conditions: tuple[str, ...] = attrs.field(default=("day",), converter=_names)
    query_conditions: tuple[str, ...] = attrs.field(default=(), converter=_names)


class SyntheticBEVOSM(Dataset):
    """Views along a line through a random raster: ``train``/``map`` = ``t0_day``, ``query`` = ``t1_<condition>``
    for each condition (``frames`` views each; frame ``i`` at ``x = -40 + 4 (i mod 20)`` metres). Every sample's
    ``condition`` is the condition of its sequence."""

    name: ClassVar[str] = "bev-osm-synthetic"
    needs_root: ClassVar[bool] = False
    Options: ClassVar[type] = SyntheticOptions

    def __init__(self, root: Path | None = None, split: str = "train", *, image_height: int | None = None,
                 options: Any = None) -> None:  # fmt: skip
        from maploc.data.io import refuse_root

        refuse_root(self.name, root)
        super().__init__(None, split, image_height=image_height,
                         options=options)  # fmt: skip
        if split not in ("train", "map", "query"):
            raise ValueError(f"unknown split {split!r}")
        opts: SyntheticOptions = self.options
        traversal = 1 if split == "query" and opts.traversals > 1 else 0
        chosen = tuple(c for c in opts.conditions if not opts.query_conditions or c in opts.query_conditions)
        conditions = (chosen or opts.conditions) if split == "query" else ("day",)
        self.items = [(f"t{traversal}_{c}", i) for c in conditions for i in range(opts.frames)]
        self.h = image_height or 48
        self.w = round(self.h * 4 / 3)
        f = self.w / 2 / math.tan(math.radians(35))
        self.camera = Camera(K=torch.tensor([[f, 0, (self.w - 1) / 2], [0, f, (self.h - 1) / 2], [0, 0, 1.0]]),
                             width=self.w, height=self.h)  # fmt: skip

    def map_raster(self, cell_m: float) -> Any:
        return synthetic_raster(cell_m)

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _pose2(sequence: str, i: int) -> Pose2:
        return Pose2(x=-40.0 + 4.0 * (i % 20), y=1.0 + 0.5 * sequence.startswith("t1"), yaw=0.1 * i)

    def metadata(self, index: int) -> SampleMeta:
        sequence, i = self.items[index]
        p = self._pose2(sequence, i)
        return SampleMeta(name=f"{sequence}/{i:06d}", T_cam2world=camera_pose(p.x, p.y, p.yaw), pose2=p,
                          sequence=sequence, timestamp=float(i), condition=_condition(sequence))  # fmt: skip

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        sequence, i = self.items[index]
        p = self._pose2(sequence, i)
        g = torch.Generator().manual_seed(index)
        return Sample(image=torch.rand(3, self.h, self.w, generator=g), camera=self.camera,
                      T_cam2world=camera_pose(p.x, p.y, p.yaw), pose2=p, name=f"{sequence}/{i:06d}",
                      sequence=sequence, timestamp=float(i), condition=_condition(sequence))


def _condition(sequence: str) -> str:
    """``t<traversal>_<condition>`` (the sequences this dataset names) -> ``condition``."""
    return sequence.split("_", 1)[1]

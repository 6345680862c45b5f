"""hloc's map: local features of every map image and the 3D point of each keypoint, either lifted from the map
images' depth or triangulated from the matched, posed map images (maploc-features' :mod:`maploc_features.sfm`);
for a leave-one-out run, the triangulated map of each query leaves the query's own image out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.errors import ConfigError, DataError

from .hloc_parts import FeatureStore, lift_keypoints

__all__ = ["HlocMap", "MapImage", "MAP_POINTS"]

#: how the map's 3D points are made: ``auto`` (depth where every map image has it, else triangulated)
MAP_POINTS = ("auto", "depth", "triangulate")

log = logging.getLogger(__name__)


@attrs.define(kw_only=True, eq=False)
class MapImage:
    """One map image: its name, local features, posed camera and (depth mode) the lifted point of each keypoint."""

    name: str
    features: Any
    view: Any
    lifted: np.ndarray | None = None


@attrs.define(kw_only=True, eq=False)
class HlocMap:
    """The map hloc localizes against.

    Attributes:
        images: the map images, in map-split order.
        meta: their :class:`SampleMeta`.
        global_descriptors: ``(M, D)`` retrieval descriptors.
        mode: ``depth`` (points lifted from each image's depth) or ``triangulated``.
        pair_matches: (triangulated) ``(i, j) -> (M, 2)`` map-pair matches, computed once.
        full: (triangulated) the map of every image.
        sfm_options: (triangulated) the triangulation filters.
        build_seconds: seconds spent on features, pair matching and triangulation of :attr:`full`.
    """

    images: list[MapImage]
    meta: list[SampleMeta]
    global_descriptors: torch.Tensor
    mode: str
    pair_matches: dict[tuple[int, int], np.ndarray] | None = None
    full: Any = None
    sfm_options: Any = None
    build_seconds: dict[str, float] = attrs.field(factory=dict)
    _held_out: dict[int, Any] = attrs.field(factory=dict)
    held_out_seconds: float = 0.0

    def index_of(self, name: str) -> int | None:
        """The map index of the image called ``name`` (``None`` if there is none)."""
        return next((i for i, m in enumerate(self.images) if m.name == name), None)

    def without(self, excluded: int | None) -> Any:
        """The triangulated map without image ``excluded`` (its pairs, hence its observations, left out); the
        full map for ``None``. Each is triangulated once, on first use."""
        from maploc_features.sfm import triangulate

        if excluded is None:
            return self.full
        if excluded not in self._held_out:
            t0 = time.perf_counter()
            self._held_out[excluded] = triangulate([m.view for m in self.images],
                                                   [m.features.keypoints for m in self.images], self.pair_matches,
                                                   self.sfm_options, exclude={excluded})
            self.held_out_seconds += time.perf_counter() - t0
        return self._held_out[excluded]

    def held_out_maps(self) -> list[Any]:
        return list(self._held_out.values())

    def points(self, image: int, excluded: int | None = None) -> np.ndarray:
        """``(N, 3)`` world point of each keypoint of map image ``image`` (NaN: none), in the map that leaves image
        ``excluded`` out.

        Raises:
            ValueError: ``image == excluded`` (the query's own image is never matched).
        """
        if excluded is not None and image == excluded:
            raise ValueError(f"map image {image} is the excluded query image")
        if self.mode == "depth":
            return self.images[image].lifted
        return self.without(excluded).keypoint_xyz(image)

    @classmethod
    def build(cls, map_data: Dataset, store: FeatureStore, matcher: Any, global_fn: Callable[[torch.Tensor], torch.Tensor],
              *, mode: str, sfm_options: Any, pairs_nearest: int, model_dir: Path | None,
              logger: logging.Logger = log) -> HlocMap:
        """Features, retrieval descriptors and 3D points of every map image.

        Args:
            map_data: the map split (every sample needs ``T_cam2world``; ``depth`` in depth mode).
            store: the feature cache. matcher: for the map pairs (triangulated mode).
            global_fn: ``(1, 3, H, W)`` image -> ``(1, D)`` retrieval descriptor.
            mode: one of :data:`MAP_POINTS`. sfm_options: :class:`maploc_features.sfm.SfMOptions`.
            pairs_nearest: map pairs: ``0`` every pair whose optical axes differ by < 90°, else each image's
                nearest ones (:func:`maploc_features.sfm.view_pairs`).
            model_dir: where the triangulated map's COLMAP model is written (``None``: not written).

        Raises:
            DataError: an empty map, a map image without pose, ``mode=depth`` with a map image without depth.
            ConfigError: an unknown ``mode``.
        """
        from maploc_features.sfm import PosedView, match_pairs, triangulate, view_pairs, write_colmap_model

        if mode not in MAP_POINTS:
            raise ConfigError(f"map_points must be one of {', '.join(MAP_POINTS)}, got {mode!r}")
        if len(map_data) == 0:
            raise DataError(f"the map split of {map_data!r} is empty")
        t0 = time.perf_counter()
        images, meta, globals_, have_depth = [], [], [], []
        for i in range(len(map_data)):
            s = map_data[i]
            if s.T_cam2world is None:
                raise DataError(f"{map_data!r}: map image {s.name!r} has no pose (T_cam2world)")
            if mode == "depth" and s.depth is None:
                raise DataError(f"{map_data!r}: map image {s.name!r} has no depth; map_points=depth lifts matches "
                                f"with map depth (map_points=triangulate triangulates instead)")
            feats = store.get(s.name, s.image)
            lifted = None if s.depth is None else lift_keypoints(
                feats.keypoints.astype(np.float64), s.depth, s.camera.K, s.T_cam2world)
            have_depth.append(s.depth is not None)
            image_file = str(s.extras.get("image_name") or Path(str(s.extras.get("image_path") or s.name)).name)
            images.append(MapImage(name=s.name, features=feats, lifted=lifted,
                                   view=PosedView.of(s.name, s.camera, s.T_cam2world, image_file=image_file)))
            globals_.append(global_fn(s.image.float()[None]))
            meta.append(SampleMeta.of(s))
        resolved = mode if mode != "auto" else ("depth" if all(have_depth) else "triangulated")
        resolved = "triangulated" if resolved == "triangulate" else resolved
        t1 = time.perf_counter()
        out = cls(images=images, meta=meta, global_descriptors=torch.cat(globals_), mode=resolved,
                  sfm_options=sfm_options)
        out.build_seconds["features"] = t1 - t0
        if resolved == "depth":
            return out
        views = [m.view for m in images]
        pairs = view_pairs(views, nearest=pairs_nearest or None)
        logger.info("hloc map: matching %d pairs of %d map images", len(pairs), len(images))
        out.pair_matches = match_pairs([m.features for m in images], pairs, matcher)
        t2 = time.perf_counter()
        out.full = triangulate(views, [m.features.keypoints for m in images], out.pair_matches, sfm_options)
        t3 = time.perf_counter()
        out.build_seconds.update({"pair_matching": t2 - t1, "triangulation": t3 - t2})
        logger.info("hloc map: %s", out.full.describe())
        if model_dir is not None:
            write_colmap_model(views, [m.features.keypoints for m in images], out.full, model_dir)
        return out

    def describe(self) -> list[str]:
        """Report lines: how the points were made and, triangulated, the full and held-out maps' statistics."""
        if self.mode == "depth":
            n = [int(np.isfinite(m.lifted).all(axis=1).sum()) for m in self.images]
            return [f"map points: lifted from depth ({len(self.images)} map images, mean {np.mean(n):.0f} keypoints "
                    f"with valid depth per image)"]
        lines = [f"map points: triangulated from {len(self.pair_matches or {})} matched map pairs with the known "
                 f"poses (pycolmap; reprojection <= {self.sfm_options.max_reproj_error_px} px, angle >= "
                 f"{self.sfm_options.min_tri_angle_deg} deg)",
                 f"full map: {self.full.describe()}"]
        held = self.held_out_maps()
        if held:
            s = [m.stats() for m in held]
            lines.append(f"leave-one-out maps ({len(held)}, each without its query's image): mean "
                         f"{np.mean([x['registered_images'] for x in s]):.1f} registered images, "
                         f"{np.mean([x['points'] for x in s]):.0f} 3D points (min {min(x['points'] for x in s):.0f}), "
                         f"mean track length {np.mean([x['mean_track_length'] for x in s]):.2f}, mean reprojection "
                         f"error {np.nanmean([x['mean_reproj_error_px'] for x in s]):.2f} px; "
                         f"{self.held_out_seconds:.1f} s to triangulate them")
        return lines

    def summary(self) -> dict[str, Any]:
        """Machine-readable statistics (``RUN/map_stats.json``)."""
        out: dict[str, Any] = {"mode": self.mode, "map_images": len(self.images), "build_seconds": self.build_seconds}
        if self.mode == "triangulated":
            out["pairs"] = len(self.pair_matches or {})
            out["full"] = self.full.stats()
            out["full"]["dropped"] = self.full.dropped
            out["leave_one_out"] = {self.images[k].name: v.stats() for k, v in sorted(self._held_out.items())}
        return out


def query_map_index(hmap: HlocMap, name: str, leave_one_out: bool) -> int | None:
    """The map image a leave-one-out query must not use (its own, by name), ``None`` otherwise."""
    return hmap.index_of(name) if leave_one_out else None

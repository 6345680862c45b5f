"""SfM maps from posed images: known intrinsics and poses, matched local features, triangulated 3D points.

The map of a set of images whose cameras (``K``) and poses (``T_cam2world``) are known is built the way COLMAP's
``point_triangulator`` builds one (Schönberger & Frahm, "Structure-from-Motion Revisited", CVPR 2016, Sec. 4.4-4.5),
without ever moving a camera (no bundle adjustment of poses or intrinsics):

1. pairs of images that may see the same scene (:func:`view_pairs`: every pair, or each image's ``k`` nearest by
   the angle between optical axes);
2. two-view matches of the pairs by a :class:`~maploc_features.types.FeatureMatcher` (:func:`match_pairs`),
   computed once;
3. tracks: the match graph over ``(image, keypoint)`` nodes joined into sets, refusing a match that would put two
   keypoints of one image into one track (:func:`build_tracks`);
4. one 3D point per track by pycolmap's LO-RANSAC multi-view triangulation (``pycolmap.estimate_triangulation``,
   reprojection residual), keeping its inlier observations, then filtered: at least two observations, reprojection
   error below ``max_reproj_error_px`` in every kept view, positive depth, and a triangulation angle of at least
   ``min_tri_angle_deg`` between two of its rays (:func:`triangulate`);
5. a COLMAP model folder (``cameras``, ``images``, ``points3D``; ``pycolmap.Reconstruction.write``) that COLMAP and
   pycolmap read (:func:`write_colmap_model`).

For leave-one-out localization the pair matches are computed once and each query's map is triangulated from the
pairs that do not involve it (``triangulate(..., exclude={i})``), so that no point has an observation in the query's
own image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from maploc.errors import ConfigError, DataError

from .types import FeatureMatcher, LocalFeatures

__all__ = ["PosedView", "SfMOptions", "TriangulatedMap", "view_pairs", "match_pairs", "build_tracks", "triangulate",
           "write_colmap_model", "all_pairs", "PairMatches",
           "COLMAP_PIXEL_OFFSET"]

#: ``(i, j) -> (M, 2)`` int64 keypoint index pairs (index in image i, index in image j), ``i < j``
PairMatches = Mapping[tuple[int, int], np.ndarray]


@attrs.frozen(kw_only=True, eq=False)
class PosedView:
    """One image of a posed set.

    Attributes:
        name: unique image name.
        K: ``(3, 3)`` float64 pinhole intrinsics, pixels (OpenCV pixel centres), no skew.
        width, height: image size, pixels (the size the keypoints are in).
        R_cam2world: ``(3, 3)`` float64. t_cam2world: ``(3,)`` float64 camera centre, metres.
        image_file: the image's path relative to its image folder, the COLMAP image name (``""``: ``name``).
    """

    name: str
    K: np.ndarray = attrs.field(converter=lambda a: np.asarray(a, dtype=np.float64).reshape(3, 3))
    width: int
    height: int
    R_cam2world: np.ndarray = attrs.field(converter=lambda a: np.asarray(a, dtype=np.float64).reshape(3, 3))
    t_cam2world: np.ndarray = attrs.field(converter=lambda a: np.asarray(a, dtype=np.float64).reshape(3))
    image_file: str = ""

    @classmethod
    def of(cls, name: str, camera: Any, T_cam2world: Any, image_file: str = "") -> PosedView:
        """From a :class:`maploc.types.Camera` and a :class:`maploc.types.Pose`."""
        return cls(name=name, K=camera.K.detach().cpu().double().numpy(), width=int(camera.width),
                   height=int(camera.height), R_cam2world=T_cam2world.R.detach().cpu().double().numpy(),
                   t_cam2world=T_cam2world.t.detach().cpu().double().numpy(), image_file=image_file)

    @property
    def R_world2cam(self) -> np.ndarray:
        return self.R_cam2world.T

    @property
    def t_world2cam(self) -> np.ndarray:
        return -self.R_cam2world.T @ self.t_cam2world

    @property
    def optical_axis(self) -> np.ndarray:
        """``(3,)`` unit viewing direction in the world frame."""
        return self.R_cam2world[:, 2] / np.linalg.norm(self.R_cam2world[:, 2])

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``(N, 2)`` and depths ``(N,)`` of world points ``X (N, 3)``."""
        Xc = (X - self.t_cam2world) @ self.R_cam2world
        z = Xc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (Xc @ self.K.T)[:, :2] / z[:, None]
        return uv, z


@attrs.frozen(kw_only=True)
class SfMOptions:
    """Triangulation settings (COLMAP's defaults where it has one).

    Attributes:
        max_reproj_error_px: the RANSAC inlier threshold and the largest reprojection error a kept observation may
            have, pixels at the keypoints' resolution (COLMAP: 4).
        min_tri_angle_deg: a point is kept when two of its rays meet at least at this angle, degrees (COLMAP: 1.5).
        min_track_length: observations a kept point has at least (>= 2).
        seed: the RANSAC seed (the same input gives the same map).
    """

    max_reproj_error_px: float = 4.0
    min_tri_angle_deg: float = 1.5
    min_track_length: int = 2
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if not self.max_reproj_error_px > 0 or not 0 <= self.min_tri_angle_deg < 90 or self.min_track_length < 2:
            raise ConfigError(f"SfMOptions: max_reproj_error_px > 0, 0 <= min_tri_angle_deg < 90 and "
                              f"min_track_length >= 2 required, got {self}")


@attrs.define(kw_only=True, eq=False)
class TriangulatedMap:
    """3D points of a set of posed images, and which keypoints observe them.

    Attributes:
        points3d: ``(P, 3)`` float64 world points, metres.
        tracks: ``P`` arrays ``(L, 2)`` int64 ``(image index, keypoint index)``, ``L >= 2``, one keypoint per image.
        errors: ``(P,)`` float64 mean reprojection error of each point over its track, pixels.
        keypoint_point: per image, ``(N_i,)`` int64 point index of each keypoint, ``-1`` = none.
        excluded: the image indices whose matches and observations were left out.
        dropped: ``refused_matches`` (contradictory matches, :func:`build_tracks`) and counts of discarded tracks
            by cause (``ransac``: no model, ``short``: too few good observations, ``angle``: too small an angle).
    """

    points3d: np.ndarray
    tracks: list[np.ndarray]
    errors: np.ndarray
    keypoint_point: list[np.ndarray]
    excluded: frozenset[int] = frozenset()
    dropped: dict[str, int] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return int(self.points3d.shape[0])

    def keypoint_xyz(self, image: int) -> np.ndarray:
        """``(N_i, 3)`` world point of each keypoint of ``image``, NaN where it observes none."""
        idx = self.keypoint_point[image]
        out = np.full((len(idx), 3), np.nan)
        ok = idx >= 0
        out[ok] = self.points3d[idx[ok]]
        return out

    def registered_images(self) -> list[int]:
        """Images with at least one observation of a point."""
        return [i for i, kp in enumerate(self.keypoint_point) if (kp >= 0).any()]

    def stats(self) -> dict[str, float]:
        """``registered_images``, ``points``, ``mean_track_length``, ``mean_reproj_error_px`` (over points)."""
        n = len(self)
        return {
            "registered_images": float(len(self.registered_images())),
            "points": float(n),
            "mean_track_length": float(np.mean([len(t) for t in self.tracks])) if n else 0.0,
            "mean_reproj_error_px": float(self.errors.mean()) if n else math.nan,
        }

    def describe(self) -> str:
        s = self.stats()
        return (f"{int(s['registered_images'])} registered images, {int(s['points'])} 3D points, mean track length "
                f"{s['mean_track_length']:.2f}, mean reprojection error {s['mean_reproj_error_px']:.2f} px")


def view_pairs(views: Sequence[PosedView], nearest: int | None = None, max_angle_deg: float = 90.0) -> list[tuple[int, int]]:
    """Image pairs to match, ``(i, j)`` with ``i < j``.

    Args:
        views: the posed images.
        nearest: ``None``: every pair whose optical axes differ by less than ``max_angle_deg``; else each image
            with its ``nearest`` images of smallest angle between optical axes (ties: nearer camera centre), the
            union of both directions.
        max_angle_deg: pairs whose optical axes differ by this much or more are not matched (they cannot see
            the same surface from its front side).

    Returns:
        sorted unique pairs.
    """
    n = len(views)
    if n < 2:
        return []
    axes = np.stack([v.optical_axis for v in views])
    centres = np.stack([v.t_cam2world for v in views])
    angle = np.degrees(np.arccos(np.clip(axes @ axes.T, -1.0, 1.0)))
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        order = sorted((j for j in range(n) if j != i and angle[i, j] < max_angle_deg),
                       key=lambda j: (angle[i, j], dist[i, j]))
        if nearest is not None:
            order = order[:nearest]
        pairs.update((min(i, j), max(i, j)) for j in order)
    return sorted(pairs)


def match_pairs(features: Sequence[LocalFeatures], pairs: Iterable[tuple[int, int]], matcher: FeatureMatcher,
                progress: Callable[[int, int], None] | None = None) -> dict[tuple[int, int], np.ndarray]:
    """Matches every pair once.

    Args:
        features: per image. pairs: ``(i, j)`` with ``i < j``. matcher: a matcher of these features.
        progress: called with ``(done, total)`` after each pair.

    Returns:
        ``(i, j) -> (M, 2)`` int64 keypoint index pairs.
    """
    pairs = list(pairs)
    out = {}
    for k, (i, j) in enumerate(pairs):
        if not i < j:
            raise ValueError(f"match_pairs: pairs must be (i, j) with i < j, got {(i, j)}")
        out[(i, j)] = np.asarray(matcher.match(features[i], features[j]).pairs, dtype=np.int64).reshape(-1, 2)
        if progress is not None:
            progress(k + 1, len(pairs))
    return out


def build_tracks(num_keypoints: Sequence[int], matches: PairMatches,
                 exclude: Iterable[int] = ()) -> tuple[list[np.ndarray], int]:
    """Tracks from the match graph (nodes ``(image, keypoint)``), without the pairs that involve an ``exclude``d
    image.

    The matches are joined pair by pair (pairs in sorted order, each pair's matches in order) into sets of
    ``(image, keypoint)``; a match that would put two keypoints of one image into one set is refused (it
    contradicts the set built so far), so every track has at most one keypoint per image.

    Returns:
        ``(tracks, refused)``: tracks as ``(L, 2)`` int64 ``(image, keypoint)`` arrays sorted by image, ``L >= 2``;
        ``refused`` counts the matches refused as contradictory.
    """
    exclude = set(exclude)
    offsets = np.concatenate([[0], np.cumsum(num_keypoints)]).astype(np.int64)
    total = int(offsets[-1])
    parent = list(range(total))
    images: dict[int, int] = {}  # root -> bit mask of the images in its set

    def find(a: int) -> int:
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    used, refused = [], 0
    for (i, j) in sorted(matches):
        m = matches[(i, j)]
        if i in exclude or j in exclude or len(m) == 0:
            continue
        a = offsets[i] + m[:, 0]
        b = offsets[j] + m[:, 1]
        used.append(a)
        used.append(b)
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = find(x), find(y)
            if rx == ry:
                continue
            mx = images.get(rx, 1 << i)
            my = images.get(ry, 1 << j)
            if mx & my:
                refused += 1
                continue
            root, other = min(rx, ry), max(rx, ry)
            parent[other] = root
            images[root] = mx | my
            images.pop(other, None)
    if not used:
        return [], refused
    nodes = np.unique(np.concatenate(used))
    roots = np.array([find(int(x)) for x in nodes])
    order = np.argsort(roots, kind="stable")
    nodes, roots = nodes[order], roots[order]
    image_of = np.searchsorted(offsets, nodes, side="right") - 1
    keypoint_of = nodes - offsets[image_of]
    starts = np.flatnonzero(np.r_[True, roots[1:] != roots[:-1]])
    ends = np.r_[starts[1:], len(nodes)]
    tracks = []
    for s, e in zip(starts, ends):
        if e - s < 2:
            continue
        o = np.argsort(image_of[s:e])
        tracks.append(np.stack([image_of[s:e][o], keypoint_of[s:e][o]], axis=1).astype(np.int64))
    return tracks, refused


def _pycolmap() -> Any:
    try:
        import pycolmap
    except ImportError:
        from maploc.errors import PluginError

        raise PluginError("SfM maps need pycolmap: pip install 'maploc-features' (it depends on pycolmap)") from None
    return pycolmap


#: COLMAP puts pixel centres at half-integers (the top-left pixel's centre is (0.5, 0.5)); maploc, as OpenCV, at
#: integers: COLMAP pixel = maploc pixel + 0.5
COLMAP_PIXEL_OFFSET = 0.5


def _colmap_camera(pycolmap: Any, v: PosedView, camera_id: int, offset: float = 0.0) -> Any:
    K = v.K
    return pycolmap.Camera(model="PINHOLE", width=v.width, height=v.height,
                           params=[K[0, 0], K[1, 1], K[0, 2] + offset, K[1, 2] + offset], camera_id=camera_id)


def _cam_from_world(pycolmap: Any, v: PosedView) -> Any:
    return pycolmap.Rigid3d(np.c_[v.R_world2cam, v.t_world2cam])


def triangulate(views: Sequence[PosedView], keypoints: Sequence[np.ndarray], matches: PairMatches,
                options: SfMOptions = SfMOptions(), exclude: Iterable[int] = ()) -> TriangulatedMap:
    """Triangulates the tracks of ``matches`` with the known cameras (see the module docstring).

    Args:
        views: the posed images. keypoints: per image ``(N_i, 2)`` pixel coordinates (OpenCV centres).
        matches: pair matches (:func:`match_pairs`). options: the filters.
        exclude: image indices left out: their pairs are not used, so no point has an observation in them.

    Returns:
        the map; images in ``exclude`` observe no point.

    Raises:
        DataError: ``views`` and ``keypoints`` differ in length, or a view has a non-finite pose or ``K``.
    """
    pycolmap = _pycolmap()
    if len(views) != len(keypoints):
        raise DataError(f"triangulate: {len(views)} views but {len(keypoints)} keypoint sets")
    for v in views:
        if not (np.isfinite(v.K).all() and np.isfinite(v.R_cam2world).all() and np.isfinite(v.t_cam2world).all()):
            raise DataError(f"triangulate: view {v.name!r} has a non-finite K or pose")
    exclude = frozenset(int(i) for i in exclude)
    keypoints = [np.asarray(k, dtype=np.float64).reshape(-1, 2) for k in keypoints]
    tracks, refused = build_tracks([len(k) for k in keypoints], matches, exclude)
    cameras = [_colmap_camera(pycolmap, v, i + 1) for i, v in enumerate(views)]
    poses = [_cam_from_world(pycolmap, v) for v in views]
    opts = pycolmap.EstimateTriangulationOptions()
    opts.residual_type = pycolmap.TriangulationResidualType.REPROJECTION_ERROR
    opts.ransac.max_error = float(options.max_reproj_error_px)
    opts.ransac.random_seed = int(options.seed)
    opts.min_tri_angle = math.radians(options.min_tri_angle_deg)
    min_angle = math.radians(options.min_tri_angle_deg)
    centres = np.stack([v.t_cam2world for v in views]) if views else np.zeros((0, 3))
    R_c2w = np.stack([v.R_cam2world for v in views]) if views else np.zeros((0, 3, 3))
    Ks = np.stack([v.K for v in views]) if views else np.zeros((0, 3, 3))
    points, kept, errors = [], [], []
    dropped = {"refused_matches": refused, "ransac": 0, "short": 0, "angle": 0}
    for track in tracks:
        imgs, kps = track[:, 0], track[:, 1]
        uv = np.stack([keypoints[i][k] for i, k in zip(imgs, kps)])
        result = pycolmap.estimate_triangulation(uv, [poses[i] for i in imgs], [cameras[i] for i in imgs], opts)
        if result is None:
            dropped["ransac"] += 1
            continue
        X = np.asarray(result["xyz"], dtype=np.float64).reshape(3)
        inl = np.asarray(result["inliers"], dtype=bool)
        # the filters, on the inlier observations: positive depth, reprojection error below the threshold
        Xc = np.einsum("nji,nj->ni", R_c2w[imgs], X - centres[imgs])  # R^T (X - C) per view
        with np.errstate(divide="ignore", invalid="ignore"):
            proj = np.einsum("nij,nj->ni", Ks[imgs], Xc)
            err = np.linalg.norm(proj[:, :2] / proj[:, 2:3] - uv, axis=1)
        ok = inl & (Xc[:, 2] > 0) & (err <= options.max_reproj_error_px)
        if ok.sum() < options.min_track_length:
            dropped["short"] += 1
            continue
        rays = centres[imgs[ok]] - X
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        if np.arccos(np.clip(rays @ rays.T, -1.0, 1.0)).max() < min_angle:
            dropped["angle"] += 1
            continue
        points.append(X)
        kept.append(track[ok])
        errors.append(float(err[ok].mean()))
    keypoint_point = [np.full(len(k), -1, dtype=np.int64) for k in keypoints]
    for p, track in enumerate(kept):
        for i, k in track:
            keypoint_point[i][k] = p
    return TriangulatedMap(points3d=np.asarray(points, dtype=np.float64).reshape(-1, 3), tracks=kept,
                           errors=np.asarray(errors, dtype=np.float64), keypoint_point=keypoint_point,
                           excluded=exclude, dropped=dropped)


def write_colmap_model(views: Sequence[PosedView], keypoints: Sequence[np.ndarray], tmap: TriangulatedMap,
                       folder: Path, colors: Sequence[np.ndarray] | None = None) -> Any:
    """Writes ``tmap`` as a COLMAP model folder (binary ``cameras``, ``images``, ``points3D``, and pycolmap 4's
    ``rigs``/``frames``): one PINHOLE camera per image, the known poses, every keypoint as a 2D point, and the 3D
    points with their tracks. Images in ``tmap.excluded`` are written unregistered (no pose).

    Args:
        colors: optional per image ``(N_i, 3)`` uint8 RGB of each keypoint (a point takes its first observation's).

    Returns:
        the ``pycolmap.Reconstruction`` written.
    """
    pycolmap = _pycolmap()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rec = pycolmap.Reconstruction()
    for i, v in enumerate(views):
        if i in tmap.excluded:
            continue
        rec.add_camera_with_trivial_rig(_colmap_camera(pycolmap, v, i + 1, COLMAP_PIXEL_OFFSET))
        kp = np.asarray(keypoints[i], dtype=np.float64).reshape(-1, 2) + COLMAP_PIXEL_OFFSET
        image = pycolmap.Image(name=v.image_file or v.name, keypoints=kp, camera_id=i + 1, image_id=i + 1)
        rec.add_image_with_trivial_frame(image, _cam_from_world(pycolmap, v))
    for p, track in enumerate(tmap.tracks):
        t = pycolmap.Track()
        for i, k in track:
            t.add_element(int(i) + 1, int(k))
        color = np.zeros(3, dtype=np.uint8)
        if colors is not None:
            i, k = track[0]
            color = np.asarray(colors[i][k], dtype=np.uint8)
        rec.add_point3D(tmap.points3d[p], t, color)
    rec.update_point_3d_errors()
    rec.write(str(folder))
    return rec


def all_pairs(n: int) -> list[tuple[int, int]]:
    """Every ``(i, j)``, ``i < j < n``."""
    return list(itertools.combinations(range(n), 2))

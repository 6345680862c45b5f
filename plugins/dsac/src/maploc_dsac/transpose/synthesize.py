"""Synthetic views of a real scene, written in the DSAC* layout and cached (TransPose's renders).

:func:`build_synthetic_views` fuses the mapping split's RGB-D frames into a coloured mesh
(:func:`~maploc_dsac.transpose.fusion.fuse_rgbd`), samples novel cameras around and between the
mapping frames (:func:`~maploc_dsac.transpose.views.sample_novel_poses`), renders each one (exact
pose, depth and scene coordinates of the mesh) and writes them as a DSAC* scene that
:class:`maploc.data.dsac_layout.DSACLayout` (``DSACLayout(root, "train")``) reads back::

    <root>/train/rgb/synth-00000.png          rendered colour, 8-bit RGB PNG (black in holes)
    <root>/train/calibration/synth-00000.txt  3x3 intrinsic matrix, pixels (the mapping camera)
    <root>/train/poses/synth-00000.txt        4x4 camera-to-world, metres
    <root>/train/depth/synth-00000.png        uint16 z-depth, millimetres, 0 = hole (no surface)
    <root>/train/init/synth-00000.dat         torch.save of a (3, h, w) float32 tensor: world scene
                                              coordinates (metres) at DSAC*'s output cells of the
                                              480-px image (h = 60, pixel (8j + 4, 8i + 4)),
                                              zeros = hole
    <root>/scene.ply                          the fused mesh (binary PLY, vertex colours)
    <root>/manifest.json                      cache key, options, per-view statistics; written last

Holes (pixels whose ray meets no surface seen by a mapping frame) are 0 in depth and ``init``, the
values DSAC* and :func:`maploc_dsac.losses.scene_coordinates_from_depth` treat as invalid, so a loss
masks them; nothing is filled. There is no ``test/`` split: the real query frames stay in their
own dataset.

Cache: ``<cache_dir>/views-<key>``, where the key hashes the options, a format version and the
mapping frames' names and poses (from :meth:`Dataset.metadata`, so a cache hit reads no pixels;
changing a frame's pixels under the same name and pose is not detected). The folder is built in a
temporary sibling and moved into place with ``os.replace``; a folder whose manifest is missing,
unreadable, of another key, or whose files are missing or of another size than recorded is
removed and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np
import torch

from maploc.api import Dataset
from maploc.config import at_least, in_range, probability
from maploc.errors import DataError
from maploc.types import Pose

from .fusion import FusionOptions, fuse_rgbd
from .views import nearest_rotation, rotation_angle_deg, sample_novel_poses

__all__ = ["SynthOptions", "build_synthetic_views", "FORMAT_VERSION", "VIEW_FOLDERS"]

log = logging.getLogger(__name__)

#: Bumped whenever what is written changes, so old caches are not reused.
FORMAT_VERSION = 1
#: The per-view folders under ``train/`` and the suffix of their files.
VIEW_FOLDERS = {"rgb": ".png", "calibration": ".txt", "poses": ".txt", "depth": ".png", "init": ".dat"}
#: DSAC*'s image height and output stride (the ``init`` files are at this resolution).
DSAC_IMAGE_HEIGHT = 480
DSAC_OUTPUT_STRIDE = 8


@attrs.frozen(kw_only=True)
class SynthOptions:
    """What :func:`build_synthetic_views` renders.

    Attributes:
        num_views: number of synthetic views to keep.
        max_angle_deg: bound on each view's rotation away from the nearest mapping frame, degrees.
        max_translation_m: bound on each camera centre's distance from the segment between the two
            mapping frames it was sampled between, metres.
        seed: seed of the view sampler.
        fusion: TSDF fusion options.
        min_valid_fraction: a render with a smaller fraction of valid (surface) pixels is dropped
            and another pose is drawn; drops are counted in the manifest.
        attempts_per_view: poses drawn per requested view at most (``num_views * attempts_per_view``
            renders in all) before giving up with fewer views.
        orbit: rotate novel cameras about the point at the mapping frames' median depth in front of
            them (they keep looking at the scene) instead of about their own centre.
    """

    num_views: int = attrs.field(default=200, validator=at_least(1))
    max_angle_deg: float = attrs.field(default=60.0, validator=in_range(0.0, 180.0))
    max_translation_m: float = attrs.field(default=0.5, validator=at_least(0.0))
    seed: int = 0
    fusion: FusionOptions = attrs.field(factory=FusionOptions)
    min_valid_fraction: float = attrs.field(default=0.3, validator=probability())
    attempts_per_view: int = attrs.field(default=4, validator=at_least(1))
    orbit: bool = True


def _pose_matrix(T: Pose) -> np.ndarray:
    return T.matrix().detach().cpu().double().numpy()


def cache_key(map_data: Dataset, options: SynthOptions) -> str:
    """sha256 (hex) of the format version, the options and the mapping frames' names and poses."""
    frames = []
    for i in range(len(map_data)):
        meta = map_data.metadata(i)
        if meta.T_cam2world is None:
            raise DataError(f"{meta.name}: synthetic views need posed mapping frames, this one has no pose")
        frames.append([meta.name, np.round(_pose_matrix(meta.T_cam2world)[:3], 7).tolist()])
    payload = {"format": FORMAT_VERSION, "options": attrs.asdict(options), "frames": frames}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _complete(root: Path, key: str) -> bool:
    """Whether ``root`` holds a finished build for ``key`` (manifest, every file at its recorded size)."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        if manifest.get("key") != key or manifest.get("format") != FORMAT_VERSION:
            return False
        sizes: dict[str, int] = manifest["file_sizes"]
        if not sizes or not (root / "scene.ply").is_file():
            return False
        for rel, size in sizes.items():
            if (root / rel).stat().st_size != size:
                return False
        names = [v["name"] for v in manifest["views"]]
        for folder, suffix in VIEW_FOLDERS.items():
            present = sorted(p.name for p in (root / "train" / folder).iterdir())
            if present != sorted(n + suffix for n in names):
                return False
        return bool(names)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _init_cells(coords: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scene coordinates at DSAC*'s output cells of the 480-px image: ``(3, h, w)`` float32, zeros = hole."""
    H, W = valid.shape
    scale = DSAC_IMAGE_HEIGHT / H
    h = math.ceil(DSAC_IMAGE_HEIGHT / DSAC_OUTPUT_STRIDE)
    w = math.ceil(round(W * scale) / DSAC_OUTPUT_STRIDE)
    centre = DSAC_OUTPUT_STRIDE // 2
    rows = np.clip(np.rint((np.arange(h) * DSAC_OUTPUT_STRIDE + centre + 0.5) / scale - 0.5), 0, H - 1).astype(int)
    cols = np.clip(np.rint((np.arange(w) * DSAC_OUTPUT_STRIDE + centre + 0.5) / scale - 0.5), 0, W - 1).astype(int)
    cells = np.where(valid[rows[:, None], cols[None, :], None], coords[rows[:, None], cols[None, :]], 0.0)
    return np.ascontiguousarray(cells.transpose(2, 0, 1), dtype=np.float32)


def _write_view(base: Path, name: str, K: np.ndarray, T_cam2world: Pose, view: Any) -> None:
    if not cv2.imwrite(str(base / "rgb" / f"{name}.png"), cv2.cvtColor(view.rgb, cv2.COLOR_RGB2BGR)):
        raise DataError(f"{base / 'rgb' / name}.png: cannot write")
    depth_mm = np.rint(view.depth_m.astype(np.float64) * 1000.0)
    depth_mm = np.where(view.valid & (depth_mm > 0) & (depth_mm < 65535), depth_mm, 0).astype(np.uint16)
    if not cv2.imwrite(str(base / "depth" / f"{name}.png"), depth_mm):
        raise DataError(f"{base / 'depth' / name}.png: cannot write")
    np.savetxt(base / "calibration" / f"{name}.txt", K, fmt="%.10g")
    np.savetxt(base / "poses" / f"{name}.txt", _pose_matrix(T_cam2world), fmt="%.10g")
    torch.save(torch.from_numpy(_init_cells(view.scene_coords, view.valid & (depth_mm > 0))),
               base / "init" / f"{name}.dat")


def _median_depth(frames: list[Any]) -> float:
    values = [f.depth[f.depth > 0].float() for f in frames if f.depth is not None]
    values = [v for v in values if v.numel()]
    return float(torch.cat(values).median()) if values else 0.0


def _build(tmp: Path, map_data: Dataset, options: SynthOptions, key: str, progress: bool) -> None:
    t0 = time.perf_counter()
    frames = [map_data[i] for i in range(len(map_data))]
    model = fuse_rgbd(frames, options.fusion, progress=progress)
    fusion_seconds = time.perf_counter() - t0
    model.save(tmp / "scene.ply")
    camera = frames[0].camera
    K = camera.K.double().numpy()
    width, height = camera.width, camera.height
    T_map = [f.T_cam2world for f in frames if f.T_cam2world is not None]
    pivot = _median_depth(frames) if options.orbit else 0.0
    candidates = sample_novel_poses(
        T_map, options.num_views * options.attempts_per_view, max_angle_deg=options.max_angle_deg,
        max_translation_m=options.max_translation_m, seed=options.seed, pivot_distance_m=pivot,
    )
    R_map = np.stack([nearest_rotation(T.R.double().numpy()) for T in T_map])
    c_map = np.stack([T.t.double().numpy() for T in T_map])
    base = tmp / "train"
    for folder in VIEW_FOLDERS:
        (base / folder).mkdir(parents=True)
    views: list[dict[str, Any]] = []
    dropped = rendered = 0
    t1 = time.perf_counter()
    for T in candidates:
        if len(views) == options.num_views:
            break
        view = model.render(K, T, width, height)
        rendered += 1
        if view.valid_fraction < options.min_valid_fraction:
            dropped += 1
            continue
        name = f"synth-{len(views):05d}"
        _write_view(base, name, K, T, view)
        views.append({
            "name": name,
            "valid_fraction": round(view.valid_fraction, 5),
            "angle_to_nearest_map_deg": round(float(rotation_angle_deg(T.R.double().numpy()[None], R_map).min()), 4),
            "distance_to_nearest_map_m": round(float(np.linalg.norm(c_map - T.t.double().numpy(), axis=1).min()), 5),
        })
        if progress and len(views) % 20 == 0:
            log.info("rendered %d/%d synthetic views (%d dropped)", len(views), options.num_views, dropped)
    render_seconds = time.perf_counter() - t1
    if not views:
        raise DataError(
            f"no synthetic view reached min_valid_fraction = {options.min_valid_fraction} in {rendered} renders "
            f"(the fused model is too sparse; lower min_valid_fraction or max_angle_deg)"
        )
    if len(views) < options.num_views:
        log.warning("only %d of %d synthetic views reached min_valid_fraction = %g after %d renders",
                    len(views), options.num_views, options.min_valid_fraction, rendered)
    sizes = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "format": FORMAT_VERSION, "key": key, "options": attrs.asdict(options),
        "source_frames": [f.name for f in frames], "image_size": [width, height],
        "pivot_distance_m": pivot, "num_views": len(views), "rendered": rendered,
        "dropped_low_valid_fraction": dropped, "triangles": model.num_triangles,
        "fusion_seconds": round(fusion_seconds, 3), "render_seconds": round(render_seconds, 3),
        "views": views, "file_sizes": sizes,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log.info("synthetic views: %d kept, %d dropped (valid fraction < %g), fusion %.1f s, rendering %.1f s",
             len(views), dropped, options.min_valid_fraction, fusion_seconds, render_seconds)


def build_synthetic_views(map_data: Dataset, options: SynthOptions, cache_dir: Path, progress: bool = False) -> Path:
    """Renders synthetic views of the mapping frames' scene in the DSAC* layout (cached).

    See the module docstring for the layout, the hole convention and the cache.

    Args:
        map_data: the mapping split, with depth registered to the images and ``T_cam2world``
            (e.g. ``SevenScenes(root, "map")``, whose depth is registered to the colour camera);
            read at the resolution to render (the first frame's camera is used for every view).
        options: what to render.
        cache_dir: the folder holding cached builds (created if missing).
        progress: log progress lines.

    Returns:
        the scene folder (``DSACLayout(path, "train")`` reads it).

    Raises:
        DataError: if the mapping split is empty, a frame lacks depth or a pose, fusion yields an
            empty mesh, or no view reaches ``min_valid_fraction``.
    """
    if len(map_data) == 0:
        raise DataError("synthetic views: the mapping split is empty")
    key = cache_key(map_data, options)
    cache_dir = Path(cache_dir)
    root = cache_dir / f"views-{key[:20]}"
    if _complete(root, key):
        log.info("synthetic views: cache hit %s", root)
        return root
    if root.exists():
        log.warning("synthetic views: %s is incomplete or corrupt; rebuilding it", root)
        shutil.rmtree(root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=cache_dir))
    try:
        _build(tmp, map_data, options, key, progress)
        try:
            os.replace(tmp, root)
        except OSError:
            if not _complete(root, key):  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root

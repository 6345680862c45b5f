"""A coloured triangle mesh of a real scene fused from its posed RGB-D frames, and its renderer.

Fusion is truncated-signed-distance (TSDF) integration (Curless & Levoy, "A Volumetric Method for
Building Complex Models from Range Images", SIGGRAPH 1996; the KinectFusion form of Newcombe et al.,
ISMAR 2011) with Open3D's tensor ``VoxelBlockGrid`` (voxel hashing; Dong et al., "ASH: A Modern Framework
for Parallel Spatial Hashing in 3D Perception", TPAMI 2022), followed by marching cubes
(Lorensen & Cline, SIGGRAPH 1987) into a mesh with per-vertex colours. Rendering casts one ray per
pixel centre against the mesh (Open3D's Embree ``RaycastingScene``) and interpolates the vertex
colours barycentrically, so depth and scene coordinates are exact for the mesh.

Holes: a pixel whose ray hits nothing, hits the back side of a surface (the side no frame saw:
TSDF meshes are oriented towards observed free space), or hits farther than the fusion's
``depth_max_m`` is invalid: depth 0, scene coordinates 0, colour black, ``valid`` false. Holes are
never filled.

Open3D is imported lazily (it takes ~1 s to import); on Linux it needs the system libraries
``libusb-1.0`` and ``libEGL`` (Debian/Ubuntu packages ``libusb-1.0-0`` and ``libegl1``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from maploc.config import greater_than
from maploc.errors import DataError
from maploc.types import Pose, Sample

__all__ = ["FusionOptions", "RenderedView", "SceneModel", "fuse_rgbd", "pixel_rays"]

log = logging.getLogger(__name__)


def _open3d() -> Any:
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise DataError(
            f"TransPose fusion needs Open3D: pip install './plugins/dsac[transpose]' (or 'maploc-dsac[transpose]'); "
            f"on Linux also the system libraries libusb-1.0 and libEGL (apt-get install libusb-1.0-0 libegl1): {exc}"
        ) from exc
    return o3d


@attrs.frozen(kw_only=True)
class FusionOptions:
    """Options of the TSDF fusion (``-o`` keys under the method's ``synth.fusion`` section).

    Attributes:
        voxel_m: voxel edge length, metres (the mesh's resolution; colours are stored per vertex,
            so this is also the colour resolution).
        truncation_m: TSDF truncation distance, metres (a few voxels; larger closes holes and
            smooths, smaller keeps thin structures).
        depth_max_m: depth readings beyond this are ignored during fusion, metres; rendering marks
            hits beyond it invalid.
    """

    voxel_m: float = attrs.field(default=0.01, validator=greater_than(0.0))
    truncation_m: float = attrs.field(default=0.04, validator=greater_than(0.0))
    depth_max_m: float = attrs.field(default=4.0, validator=greater_than(0.0))


@attrs.frozen(kw_only=True, eq=False)
class RenderedView:
    """One view rendered from a :class:`SceneModel`.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB; black where invalid.
        depth_m: ``(H, W)`` float32 z-depth along the optical axis, metres; ``0`` = hole.
        scene_coords: ``(H, W, 3)`` float32 world coordinates of each pixel's surface point, metres;
            ``0`` where invalid.
        valid: ``(H, W)`` bool, a front-facing surface within ``depth_max_m`` was hit.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    scene_coords: np.ndarray
    valid: np.ndarray

    @property
    def valid_fraction(self) -> float:
        """Fraction of pixels with a surface."""
        return float(self.valid.mean())


def pixel_rays(K: np.ndarray, T_cam2world: Pose, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """World-frame rays through the pixel centres of a pinhole camera.

    Pixel ``(u, v)`` (OpenCV convention: the top-left pixel's centre is ``(0, 0)``) has the camera-frame
    direction ``K^-1 (u, v, 1)``, whose z component is 1, so the ray parameter of a hit *is* its
    z-depth.

    Args:
        K: ``(3, 3)`` intrinsics, pixels.
        T_cam2world: camera-to-world pose, metres (OpenCV camera frame: x right, y down, z forward).
        width, height: image size, pixels.

    Returns:
        ``(origin (3,) float64 world metres, directions (H, W, 3) float64 world frame)``.
    """
    K = np.asarray(K, dtype=np.float64)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    d_cam = np.stack([x, y, np.ones_like(x)], axis=-1)
    R = T_cam2world.R.detach().cpu().double().numpy()
    t = T_cam2world.t.detach().cpu().double().numpy()
    return t, d_cam @ R.T


class SceneModel:
    """A coloured triangle mesh in the world frame (metres), rendered by ray casting.

    Args:
        vertices: ``(N, 3)`` float world coordinates, metres.
        triangles: ``(M, 3)`` int vertex indices, counter-clockwise seen from the observed (front)
            side, i.e. the normal ``(v1 - v0) x (v2 - v0)`` points towards the cameras that saw it.
        vertex_colors: ``(N, 3)`` uint8 RGB (or float in ``[0, 1]``).
        depth_max_m: hits farther than this from the camera (z-depth) are invalid.

    Raises:
        DataError: if the arrays have the wrong shapes, an index is out of range, or the mesh is empty.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, vertex_colors: np.ndarray,
                 depth_max_m: float = np.inf) -> None:
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        triangles = np.ascontiguousarray(triangles, dtype=np.int64)
        colors = np.asarray(vertex_colors)
        if colors.dtype != np.uint8:
            colors = np.clip(np.rint(colors.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or triangles.ndim != 2 or triangles.shape[1] != 3:
            raise DataError(f"mesh: expected (N, 3) vertices and (M, 3) triangles, got {vertices.shape}, {triangles.shape}")
        if colors.shape != vertices.shape:
            raise DataError(f"mesh: expected (N, 3) vertex colours for {len(vertices)} vertices, got {colors.shape}")
        if len(triangles) == 0:
            raise DataError("mesh: no triangles (did the frames have valid depth within depth_max_m?)")
        if triangles.min() < 0 or triangles.max() >= len(vertices):
            raise DataError("mesh: triangle vertex index out of range")
        self.vertices = vertices
        self.triangles = triangles.astype(np.uint32)
        self.vertex_colors = np.ascontiguousarray(colors)
        self.depth_max_m = float(depth_max_m)
        self._scene: Any = None

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)

    def _raycasting_scene(self) -> Any:
        if self._scene is None:
            o3d = _open3d()
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(self.vertices), o3d.core.Tensor(self.triangles))
            self._scene = scene
        return self._scene

    def render(self, K: np.ndarray, T_cam2world: Pose, width: int, height: int) -> RenderedView:
        """Renders colour, depth and scene coordinates of the mesh seen by a pinhole camera.

        One ray per pixel centre; colour is the barycentric interpolation of the hit triangle's
        vertex colours; depth is the hit's exact z-depth. See the module docstring for holes.

        Args:
            K: ``(3, 3)`` float64 intrinsics, pixels.
            T_cam2world: camera-to-world pose, metres, OpenCV camera frame.
            width, height: image size, pixels.

        Returns:
            a :class:`RenderedView` of ``height x width`` pixels.
        """
        o3d = _open3d()
        origin, dirs = pixel_rays(K, T_cam2world, width, height)
        rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=-1).astype(np.float32)
        hits = self._raycasting_scene().cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)))
        t_hit = hits["t_hit"].numpy()
        prim = hits["primitive_ids"].numpy().astype(np.int64)
        uv = hits["primitive_uvs"].numpy()
        normals = hits["primitive_normals"].numpy()
        front = np.einsum("hwc,hwc->hw", normals.astype(np.float64), dirs) < 0.0
        valid = np.isfinite(t_hit) & (t_hit > 0) & (t_hit <= self.depth_max_m) & front
        depth = np.where(valid, t_hit, 0.0).astype(np.float32)
        coords = origin + dirs * depth[..., None].astype(np.float64)
        coords = np.where(valid[..., None], coords, 0.0).astype(np.float32)
        rgb = np.zeros((height, width, 3), dtype=np.uint8)
        if valid.any():
            tri = self.triangles[prim[valid]]
            a, b = uv[valid][:, 0:1].astype(np.float64), uv[valid][:, 1:2].astype(np.float64)
            c = self.vertex_colors.astype(np.float64)
            color = (1.0 - a - b) * c[tri[:, 0]] + a * c[tri[:, 1]] + b * c[tri[:, 2]]
            rgb[valid] = np.clip(np.rint(color), 0, 255).astype(np.uint8)
        return RenderedView(rgb=rgb, depth_m=depth, scene_coords=coords, valid=valid)

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the mesh as a binary ``.ply`` (vertex colours as uchar), atomically (temp file in
        the same folder, then rename). ``depth_max_m`` is not stored."""
        o3d = _open3d()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.ply")
        mesh = o3d.geometry.TriangleMesh(
            o3d.utility.Vector3dVector(self.vertices.astype(np.float64)),
            o3d.utility.Vector3iVector(self.triangles.astype(np.int32)),
        )
        mesh.vertex_colors = o3d.utility.Vector3dVector(self.vertex_colors.astype(np.float64) / 255.0)
        try:
            if not o3d.io.write_triangle_mesh(str(tmp), mesh, write_ascii=False, compressed=False,
                                              write_vertex_normals=False, write_vertex_colors=True):
                raise DataError(f"{path}: Open3D could not write the mesh")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str], depth_max_m: float = np.inf) -> SceneModel:
        """Reads a ``.ply`` mesh written by :meth:`save` (or any coloured triangle mesh Open3D reads).

        Raises:
            DataError: if the file is missing, unreadable, has no triangles or no vertex colours.
        """
        o3d = _open3d()
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: mesh file not found")
        mesh = o3d.io.read_triangle_mesh(str(path))
        if not mesh.has_triangles():
            raise DataError(f"{path}: no triangles (corrupt or empty mesh file)")
        if not mesh.has_vertex_colors():
            raise DataError(f"{path}: the mesh has no vertex colours")
        return cls(np.asarray(mesh.vertices), np.asarray(mesh.triangles), np.asarray(mesh.vertex_colors),
                   depth_max_m=depth_max_m)


def _check_frame(frame: Sample) -> None:
    if frame.depth is None:
        raise DataError(f"{frame.name}: TSDF fusion needs depth, the frame has none")
    if frame.T_cam2world is None:
        raise DataError(f"{frame.name}: TSDF fusion needs a pose, the frame has none")
    if abs(float(frame.camera.K[0, 1])) > 1e-9:
        raise DataError(f"{frame.name}: TSDF fusion supports cameras without skew (K[0, 1] = {float(frame.camera.K[0, 1])})")


def fuse_rgbd(frames: Sequence[Sample], options: FusionOptions, progress: bool = False) -> SceneModel:
    """Fuses posed RGB-D frames into a coloured mesh (TSDF integration + marching cubes, Open3D).

    Each frame's depth (z-depth, metres, registered to its image, ``0`` = invalid) is integrated into
    a sparse TSDF volume with its image colours (weighted running average per voxel), using the
    frame's ``T_cam2world``; the zero level set is then extracted as a triangle mesh with per-vertex
    colours. Surfaces seen by no frame stay empty (holes), nothing is hallucinated.

    Args:
        frames: samples with ``depth`` and ``T_cam2world`` (e.g. the 7-Scenes mapping split, whose
            loader registers depth to the colour camera).
        options: voxel size, truncation, maximum depth.
        progress: log one line per frame.

    Returns:
        the fused :class:`SceneModel` (``depth_max_m`` = ``options.depth_max_m``).

    Raises:
        DataError: if there are no frames, a frame lacks depth or pose or has a skewed camera, or the
            fused mesh is empty.
    """
    if not frames:
        raise DataError("TSDF fusion: no frames")
    o3d = _open3d()
    o3c = o3d.core
    # Sparse voxel blocks of 8^3 voxels in a hash map that grows as blocks are touched.
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)), voxel_size=options.voxel_m, block_resolution=8, block_count=4096,
        device=o3c.Device("CPU:0"),
    )
    multiplier = options.truncation_m / options.voxel_m
    start = time.perf_counter()
    integrated = 0
    for i, frame in enumerate(frames):
        _check_frame(frame)
        assert frame.depth is not None and frame.T_cam2world is not None
        K = o3c.Tensor(frame.camera.K.double().numpy())
        rgb = np.ascontiguousarray(frame.image.clamp(0, 1).permute(1, 2, 0).float().numpy())
        depth = frame.depth.float().numpy()
        depth = np.ascontiguousarray(np.where(np.isfinite(depth), depth, 0.0), dtype=np.float32)
        if not ((depth > 0) & (depth <= options.depth_max_m)).any():
            log.warning("TSDF fusion: %s has no valid depth within %g m; skipped", frame.name, options.depth_max_m)
            continue
        integrated += 1
        depth_image = o3d.t.geometry.Image(o3c.Tensor(depth))
        color_image = o3d.t.geometry.Image(o3c.Tensor(rgb))
        T_world2cam = o3c.Tensor(frame.T_cam2world.inverse().matrix().double().numpy())
        blocks = grid.compute_unique_block_coordinates(
            depth_image, K, T_world2cam, 1.0, options.depth_max_m, trunc_voxel_multiplier=multiplier
        )
        grid.integrate(blocks, depth_image, color_image, K, K, T_world2cam, 1.0, options.depth_max_m,
                       trunc_voxel_multiplier=multiplier)
        if progress:
            log.info("fused frame %d/%d (%s)", i + 1, len(frames), frame.name)
    if integrated == 0:
        raise DataError(f"TSDF fusion: none of the {len(frames)} frames has valid depth within depth_max_m = "
                        f"{options.depth_max_m} m (empty mesh)")
    # weight_threshold < 1: keep surfaces seen by a single frame (each integration adds weight 1).
    mesh = grid.extract_triangle_mesh(weight_threshold=0.5).to_legacy()
    log.info("TSDF fusion of %d frames: %d vertices, %d triangles, %.1f s", len(frames),
             len(mesh.vertices), len(mesh.triangles), time.perf_counter() - start)
    if not mesh.has_triangles():
        raise DataError(f"TSDF fusion of {len(frames)} frames gave an empty mesh (no valid depth within "
                        f"depth_max_m = {options.depth_max_m} m?)")
    return SceneModel(np.asarray(mesh.vertices), np.asarray(mesh.triangles), np.asarray(mesh.vertex_colors),
                      depth_max_m=options.depth_max_m)

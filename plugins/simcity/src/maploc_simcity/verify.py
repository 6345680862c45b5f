"""Geometric checks of rendered frames: back-projection, multi-view consistency, agreement with the map.

These are the verification measures of the renderer (used by its tests and usable on any rendered data set):

* :func:`multiview_consistency`: back-project the depth of frame A with its pose, project into frame B, compare with
  B's depth (relative disagreement) and B's colour, on pixels B sees unoccluded.
* :func:`ground_label_agreement`: back-project the ground pixels and compare their labels with a map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import cv2
import numpy as np

from .labels import GROUND_LABEL, GROUND_PRIORITY, label_id
from .renderer import RenderedFrame

__all__ = ["backproject", "ground_label_agreement", "multiview_consistency", "project"]

#: Label values of the ground surface (the classes of GROUND_PRIORITY and unmapped ground).
GROUND_VALUES: tuple[int, ...] = (*(label_id(n) for n in GROUND_PRIORITY), GROUND_LABEL)


def backproject(depth: np.ndarray, K: np.ndarray, T_cam2world: np.ndarray) -> np.ndarray:
    """World points of every pixel.

    Args:
        depth: ``(H, W)`` z-depth, metres (0 = none).
        K: ``(3, 3)`` intrinsics, pixels (OpenCV pixel centres).
        T_cam2world: ``(4, 4)`` camera-to-world, metres.

    Returns:
        ``(H, W, 3)`` float64 world points, metres; NaN where the depth is 0.
    """
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    K = np.asarray(K, dtype=np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    cam = rays * depth[..., None]
    T = np.asarray(T_cam2world, dtype=np.float64)
    world = cam @ T[:3, :3].T + T[:3, 3]
    world[depth <= 0] = np.nan
    return world


def project(points: np.ndarray, K: np.ndarray, T_cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates and z-depth of world points in a camera.

    Args:
        points: ``(..., 3)`` world points, metres.
        K: ``(3, 3)`` intrinsics.
        T_cam2world: ``(4, 4)`` camera-to-world.

    Returns:
        ``(..., 2)`` pixel ``(u, v)`` (OpenCV pixel centres) and ``(...)`` z-depth in metres (<= 0: behind).
    """
    T = np.asarray(T_cam2world, dtype=np.float64)
    cam = (np.asarray(points, dtype=np.float64) - T[:3, 3]) @ T[:3, :3]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[..., 0] / z + K[0, 2]
        v = K[1, 1] * cam[..., 1] / z + K[1, 2]
    return np.stack([u, v], axis=-1), z


def multiview_consistency(
    a: RenderedFrame, b: RenderedFrame, *, labels: Iterable[int] | None = None, occlusion_tolerance: float = 0.05,
    T_b: np.ndarray | None = None,
) -> dict[str, float]:  # fmt: skip
    """How well frame B agrees with frame A's depth and colour.

    Every pixel of A with depth (and, if given, a label in ``labels``) is back-projected with A's pose and
    projected into B (with ``T_b``, default B's pose). Where it lands inside B, its predicted depth is compared
    with B's depth bilinearly interpolated there; a pixel counts as *seen* when they agree within
    ``occlusion_tolerance`` (relative), and colours are compared on seen pixels.

    Returns:
        ``median_depth_rel``: median of ``|d_B - d_pred| / d_pred`` over the pixels that land in B with depth
        (occluded ones included); ``seen_fraction``: the fraction of those that are seen; ``median_color_abs`` and
        ``mean_color_abs``: median and mean over seen pixels and channels of ``|rgb_A - rgb_B|`` (0-255);
        ``pixels``: the number that land.
    """
    K = a.camera.K.double().numpy()
    world = backproject(a.depth, K, a.T_cam2world)
    mask = a.depth > 0
    if labels is not None:
        mask &= np.isin(a.labels, list(labels))
    uv, z = project(world[mask], b.camera.K.double().numpy(), b.T_cam2world if T_b is None else T_b)
    H, W = b.depth.shape
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)
    uv, z = uv[inside].astype(np.float32), z[inside]
    if len(z) == 0:
        nan = float("nan")
        return {
            "median_depth_rel": nan,
            "seen_fraction": 0.0,
            "median_color_abs": nan,
            "mean_color_abs": nan,
            "pixels": 0,
        }
    map_x, map_y = uv[:, 0].reshape(-1, 1), uv[:, 1].reshape(-1, 1)
    depth_b = cv2.remap(b.depth, map_x, map_y, cv2.INTER_LINEAR).ravel()
    nearest_b = cv2.remap(b.depth, map_x, map_y, cv2.INTER_NEAREST).ravel()
    depth_b = np.where(nearest_b > 0, depth_b, 0.0)
    valid = depth_b > 0
    rel = np.abs(depth_b[valid] - z[valid]) / z[valid]
    seen = rel < occlusion_tolerance
    rgb_b = cv2.remap(b.rgb, map_x, map_y, cv2.INTER_LINEAR).reshape(-1, 3)[valid][seen].astype(np.float64)
    rgb_a = a.rgb[mask][inside][valid][seen].astype(np.float64)
    color = float(np.median(np.abs(rgb_a - rgb_b))) if len(rgb_a) else float("nan")
    color_mean = float(np.mean(np.abs(rgb_a - rgb_b))) if len(rgb_a) else float("nan")
    return {
        "median_depth_rel": float(np.median(rel)) if len(rel) else float("nan"),
        "seen_fraction": float(seen.mean()) if len(rel) else 0.0,
        "median_color_abs": color,
        "mean_color_abs": color_mean,
        "pixels": int(len(z)),
    }


def ground_label_agreement(frames: Iterable[RenderedFrame], expected: Callable[[np.ndarray], np.ndarray]) -> float:
    """Fraction of ground pixels whose rendered label equals ``expected`` at their back-projected map point.

    Args:
        frames: rendered frames.
        expected: ``(N, 2)`` map-frame points (metres) -> ``(N,)`` label values (e.g. an OSM raster's ground class).

    Returns:
        The agreement in ``[0, 1]`` over all ground pixels (labels of :data:`GROUND_VALUES`) of all frames (NaN
        without any).
    """
    agree = total = 0
    for frame in frames:
        mask = (frame.depth > 0) & np.isin(frame.labels, GROUND_VALUES)
        if not mask.any():
            continue
        world = backproject(frame.depth, frame.camera.K.double().numpy(), frame.T_cam2world)[mask]
        agree += int((expected(world[:, :2]) == frame.labels[mask]).sum())
        total += int(mask.sum())
    return agree / total if total else float("nan")


def raster_ground_lookup(raster: object) -> Callable[[np.ndarray], np.ndarray]:
    """``expected`` for :func:`ground_label_agreement` from an OSM raster: the ground class (by
    :data:`.labels.GROUND_PRIORITY`) of the raster pixel containing each point, ground outside the raster."""
    from .labels import ground_labels

    grid = ground_labels(raster)
    georef = raster.georef  # type: ignore[attr-defined]

    def lookup(xy: np.ndarray) -> np.ndarray:
        ij = np.floor(georef.xy_to_pixel(xy) + 0.5).astype(np.int64)
        inside = (ij[:, 0] >= 0) & (ij[:, 1] >= 0) & (ij[:, 0] < grid.shape[0]) & (ij[:, 1] < grid.shape[1])
        out = np.full(len(xy), GROUND_LABEL, np.uint8)
        out[inside] = grid[ij[inside, 0], ij[inside, 1]]
        return out

    return lookup

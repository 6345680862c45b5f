"""``synthetic-room``: a procedurally textured box room seen by pinhole cameras, with exact poses and depth.

It needs no files and no network, so every method (and every test) can run end to end anywhere.
Images are rendered by exact ray casting against the six faces of the room (numpy, one thread): pixel
colours are a seeded procedural texture of the hit point, depth is the exact z-depth. The camera stands
1.2-1.8 m above the floor, looks roughly horizontally (pitch within +-10 deg) in a random direction.

The texture (:func:`render_room`) is a smooth colour gradient per face plus a sharp-edged grey pattern:
random mosaics of 0.55, 0.19 and 0.07 m cells at random angles and dark or light discs of 1-9 cm radius.
Keypoint detectors find many repeatable keypoints on it (measured on the 12 query frames at 320x240:
SIFT 284-1036 per image, ORB 776-898, three quarters of them found again from 21 cm and 8 deg away; at
64x48 SIFT still finds 28-57 per map image), so feature-based methods can be checked here: a keypoint
localizer (:mod:`maploc.testing.keypoints`) gets every query within 1 cm / 1 deg at 160x120.

World frame: x, y horizontal (metres), z up, the room spans ``[0, 6] x [0, 4] x [0, 3]`` m.
Camera frame: OpenCV (x right, y down, z forward).

Splits: ``train`` and ``map`` are the same 48 frames (seed 1), ``query`` are 12 other frames (seed 2),
``val`` 8 others (seed 3). Images are 64x48 px by default with a 60 deg horizontal field of view;
``image_height`` (``-o data.image_height=240`` on the command line) renders them at that height and 4:3
(320x240), with ``K`` scaled to match (focal ``width / 2 / tan(30 deg)``, principal point at the centre)
and the same poses.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from maploc.api import Dataset, SampleMeta
from maploc.types import Camera, Pose, Sample

__all__ = ["SyntheticRoom", "render_room", "look_pose"]

ROOM = (6.0, 4.0, 3.0)
_FRAMES = {"train": (1, 48), "map": (1, 48), "query": (2, 12), "val": (3, 8)}


def look_pose(position: np.ndarray, yaw: float, pitch: float) -> Pose:
    """``T_cam2world`` of a camera at ``position`` (metres) heading ``yaw`` (radians, CCW from +x in
    the horizontal plane) tilted up by ``pitch`` (radians)."""
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    R = np.stack([right, down, forward], axis=1)
    return Pose(R=torch.tensor(R, dtype=torch.float32), t=torch.tensor(position, dtype=torch.float32))


#: The sharp-edged pattern of every face: (cell size in metres, weight) of its random mosaics, and (cell
#: size, smallest and largest radius in metres) of its disc grids (at most one disc per cell), from coarse
#: to fine so that a camera 1 m or 5 m from a wall sees structure at its scale. Mosaic edges of
#: different sizes and angles cross at T- and X-junctions (corners for FAST/Harris); discs are blobs (DoG).
_MOSAICS = ((0.55, 0.4), (0.19, 0.35), (0.07, 0.25))
_DISCS = ((0.3, 0.03, 0.09), (0.11, 0.012, 0.03))
_TABLE = 256  # lattice values per axis and layer: 256 cells of 0.07 m = 18 m, more than the room's 6 m
#: Sub-pixel samples per axis averaged into one pixel (anti-aliasing of the texture edges).
SUPERSAMPLE = 2


def _lattice(table: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``table[i mod n, j mod n]`` for integer-valued float arrays ``i``, ``j``."""
    n = table.shape[0]
    return table[i.astype(np.int64) % n, j.astype(np.int64) % n]


@functools.lru_cache(maxsize=64)
def _face_tables(face: int, seed: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The seeded random parameters of a face's texture, drawn once: ``(gradients, mosaics, discs)``.

    ``gradients``: sinusoid frequencies ``(3, 4, 2)``, phases ``(3, 4)`` and base colour ``(3,)`` (torch's
    generator, as the room had them before issue 24); ``mosaics``: per layer of :data:`_MOSAICS` its
    ``(angle, offset (2,), table (T, T))``; ``discs``: per grid of :data:`_DISCS` its
    ``(present (T, T) bool, radius (T, T), centre (2, T, T) in [0, 1), value (T, T))``. The same on every
    machine (torch's CPU generator and numpy's PCG64 are specified bit for bit).
    """
    g = torch.Generator().manual_seed(1000 * seed + face)
    freqs = (torch.rand(3, 4, 2, generator=g) * 6.0 + 0.5).double().numpy()
    phases = (torch.rand(3, 4, generator=g) * 2 * math.pi).double().numpy()
    base = (torch.rand(3, generator=g) * 0.5 + 0.25).double().numpy()
    rng = np.random.default_rng([seed, face])
    n = (_TABLE, _TABLE)
    mosaics = tuple((rng.uniform(0, math.pi / 2), rng.uniform(0, cell, size=2), rng.uniform(size=n))
                    for cell, _ in _MOSAICS)
    discs = tuple((rng.uniform(size=n) < 0.6, rng.uniform(r_min, r_max, size=n), rng.uniform(size=(2, *n)),
                   np.where(rng.uniform(size=n) < 0.5, 0.05, 0.95)) for _, r_min, r_max in _DISCS)
    return (freqs, phases, base), mosaics, discs


def _gradients(face: int, u: np.ndarray, v: np.ndarray, seed: int = 0) -> np.ndarray:
    """The low-frequency colour of face ``face`` at ``(u, v)`` metres -> ``(..., 3)`` float64 in [0, 1]: per
    channel a face colour plus four seeded sinusoids, and a 0.67 m colour checker (the room's whole look
    before issue 24, kept so that thumbnail methods still see distinct, smoothly varying colours)."""
    freqs, phases, base = _face_tables(face, seed)[0]
    checker = ((np.floor(u * 1.5) + np.floor(v * 1.5)) % 2) * 0.15
    channels = []
    for c in range(3):
        value = base[c] + sum(0.12 * np.sin(freqs[c, k, 0] * u + freqs[c, k, 1] * v + phases[c, k]) for k in range(4))
        channels.append(value + checker * (1 if c == face % 3 else -0.5))
    return np.clip(np.stack(channels, axis=-1), 0, 1)


def _pattern(face: int, u: np.ndarray, v: np.ndarray, seed: int = 0) -> np.ndarray:
    """The sharp-edged grey pattern of face ``face`` at ``(u, v)`` metres -> ``(...)`` float64 in [0.05, 0.95]:
    the random mosaics of :data:`_MOSAICS` (each rotated by its own random angle), weighted and summed, with
    the dark or light discs of :data:`_DISCS` on top."""
    _, mosaics, discs = _face_tables(face, seed)
    grey = np.zeros_like(u)
    for (cell, weight), (angle, offset, table) in zip(_MOSAICS, mosaics):
        c, s = math.cos(angle), math.sin(angle)
        a = np.floor((c * u - s * v + offset[0]) / cell)
        b = np.floor((s * u + c * v + offset[1]) / cell)
        grey += weight * _lattice(table, a, b)
    grey = 0.1 + 0.8 * grey
    for (cell, _, _), (present, radius, centre, value) in zip(_DISCS, discs):
        i, j = np.floor(u / cell), np.floor(v / cell)
        r = _lattice(radius, i, j)
        cu = i * cell + r + _lattice(centre[0], i, j) * (cell - 2 * r)  # the disc lies inside its cell
        cv = j * cell + r + _lattice(centre[1], i, j) * (cell - 2 * r)
        inside = _lattice(present, i, j) & ((u - cu) ** 2 + (v - cv) ** 2 <= r**2)
        grey = np.where(inside, _lattice(value, i, j), grey)
    return grey


def _cast(origin: np.ndarray, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersects world-frame rays ``(..., 3)`` from ``origin`` ``(3,)`` with the room's faces.

    Returns:
        the ray parameter ``(...)`` float64 of the first hit; the index ``(...)`` of the hit face
        (``2 * axis + side``, ``side`` 0 for the face at 0, 1 for the face at ``ROOM[axis]``); the hit
        point's coordinates ``(..., 2)`` on its face in metres (the two world axes other than ``axis``).
    """
    best_t = np.full(rays.shape[:-1], np.inf)
    best_face = np.zeros(rays.shape[:-1], dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            d = rays[..., axis]
            for side, bound in enumerate((0.0, ROOM[axis])):
                t = (bound - origin[axis]) / d
                t = np.where((np.abs(d) > 1e-12) & (t > 1e-9), t, np.inf)
                better = t < best_t
                best_t = np.where(better, t, best_t)
                best_face = np.where(better, 2 * axis + side, best_face)
    points = origin + rays * best_t[..., None]
    uv = np.stack([np.where(best_face // 2 == 0, points[..., 1], points[..., 0]),
                   np.where(best_face // 2 == 2, points[..., 1], points[..., 2])], axis=-1)
    return best_t, best_face, uv


def _per_face(fn: Callable[..., np.ndarray], face: np.ndarray, uv: np.ndarray, channels: tuple[int, ...]) -> np.ndarray:
    """``fn(f, u, v)`` evaluated on the hits of each face ``f``, gathered into an array ``face.shape + channels``."""
    out = np.zeros(face.shape + channels)
    for f in range(6):
        mask = face == f
        out[mask] = fn(f, uv[..., 0][mask], uv[..., 1][mask])
    return out


def render_room(T_cam2world: Pose, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray casts the room (numpy, one thread).

    A pixel's colour is ``0.4`` times the faces' smooth colour (:func:`_gradients`, at the ray through the
    pixel's centre) plus ``0.6`` times their sharp-edged grey pattern (:func:`_pattern`) averaged over
    ``SUPERSAMPLE x SUPERSAMPLE`` rays spread evenly over the pixel (anti-aliasing). The pattern's edges
    cross at many angles and scales with the same contrast everywhere, so corner and blob detectors (ORB,
    SIFT) find many distinctive keypoints; the gradients keep the faces' colours apart. The depth is that
    of the ray through the pixel's centre, exactly.

    Returns:
        ``image`` ``(3, H, W)`` float32 in [0, 1] and ``depth`` ``(H, W)`` float32 z-depth in metres.
    """
    H, W = camera.height, camera.width
    K = camera.K.double().numpy()
    R = T_cam2world.R.double().numpy()
    origin = T_cam2world.t.double().numpy()

    def rays_through(u: np.ndarray, v: np.ndarray) -> np.ndarray:  # world directions with z_cam = 1
        yn = (v - K[1, 2]) / K[1, 1]
        xn = (u - K[0, 2] - K[0, 1] * yn) / K[0, 0]
        return np.stack([xn, yn, np.ones_like(u)], axis=-1) @ R.T

    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    depth, face, uv = _cast(origin, rays_through(u, v))  # z_cam = 1 along each ray: the ray parameter is the z-depth
    colour = _per_face(_gradients, face, uv, (3,))
    n = SUPERSAMPLE
    steps = (np.arange(n) + 0.5) / n - 0.5  # sub-pixel offsets inside [-0.5, 0.5]
    dv, du = (x.reshape(-1) for x in np.meshgrid(steps, steps, indexing="ij"))
    _, sub_face, sub_uv = _cast(origin, rays_through(u[..., None] + du, v[..., None] + dv))  # (H, W, n * n)
    grey = _per_face(_pattern, sub_face, sub_uv, ()).mean(axis=-1)
    image = 0.4 * colour + 0.6 * grey[..., None]
    return (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)),
            torch.from_numpy(depth.astype(np.float32)))


class SyntheticRoom(Dataset):
    """A synthetic, file-free dataset (see the module docstring). ``root`` must be ``None`` (a given folder is
    refused with :class:`~maploc.errors.DataError`, never ignored)."""

    name: ClassVar[str] = "synthetic-room"
    default_sample: ClassVar[str | None] = None
    needs_root: ClassVar[bool] = False
    has_depth: ClassVar[bool] = True
    #: ``val``: 8 further frames, for validation during training (``maploc run`` passes it)
    splits: ClassVar[tuple[str, ...]] = ("train", "map", "query", "val")

    def __init__(
        self, root: Path | None = None, split: str = "train", *, image_height: int | None = None, options: Any = None
    ) -> None:
        from maploc.data.io import refuse_root

        refuse_root(self.name, root)
        super().__init__(None, split, image_height=image_height, options=options)
        height = image_height or 48
        width = round(height * 4 / 3)
        focal = (width / 2) / math.tan(math.radians(60) / 2)
        self.camera = Camera.from_focal(focal, width, height)
        seed, n = _FRAMES[split]
        rng = np.random.default_rng(seed)
        self.poses = []
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for _ in range(n):
            position = np.array([rng.uniform(1.0, ROOM[0] - 1.0), rng.uniform(1.0, ROOM[1] - 1.0), rng.uniform(1.2, 1.8)])
            yaw = rng.uniform(-math.pi, math.pi)
            pitch = math.radians(rng.uniform(-10, 10))
            self.poses.append(look_pose(position, yaw, pitch))

    def __len__(self) -> int:
        return len(self.poses)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        pose = self.poses[index]
        if index not in self._cache:  # rendering is deterministic: render each frame once
            self._cache[index] = render_room(pose, self.camera)
        image, depth = self._cache[index]
        return Sample(
            image=image, camera=self.camera, T_cam2world=pose, depth=depth,
            name=f"{self.split}/{index:04d}", sequence=self.split, timestamp=float(index),
        )

    def metadata(self, index: int) -> SampleMeta:
        """Name, pose, sequence and timestamp of frame ``index`` without rendering it (the evaluation reads
        every map frame's pose)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        return SampleMeta(name=f"{self.split}/{index:04d}", T_cam2world=self.poses[index], sequence=self.split,
                          timestamp=float(index))

    def validate(self, progress: Callable[[int], None] | None = None) -> None:
        """Nothing to check: the frames are generated, their poses finite by construction (rendering every
        frame here would cost more than the run itself at high resolutions)."""
        if progress is not None:
            progress(len(self))

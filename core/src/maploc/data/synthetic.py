"""``synthetic-room``: a procedurally textured box room seen by pinhole cameras, with exact poses and depth.

It needs no files and no network, so every method (and every test) can run end to end anywhere.
Images are rendered by exact ray casting against the six faces of the room: pixel colours are a
seeded procedural texture of the hit point, depth is the exact z-depth. The camera stands 1.2-1.8 m
above the floor, looks roughly horizontally (pitch within +-10 deg) in a random direction.

World frame: x, y horizontal (metres), z up, the room spans ``[0, 6] x [0, 4] x [0, 3]`` m.
Camera frame: OpenCV (x right, y down, z forward).

Splits: ``train`` and ``map`` are the same 48 frames (seed 1), ``query`` are 12 other frames (seed 2),
all 64x48 px by default (``image_height`` scales the resolution) with a 60 deg horizontal field of view.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from maploc.api import Dataset
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


def _texture(face: int, u: torch.Tensor, v: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A distinctive RGB texture on face ``face`` at surface coordinates (u, v) metres -> (..., 3)."""
    g = torch.Generator().manual_seed(1000 * seed + face)
    freqs = torch.rand(3, 4, 2, generator=g) * 6.0 + 0.5
    phases = torch.rand(3, 4, generator=g) * 2 * math.pi
    base = torch.rand(3, generator=g) * 0.5 + 0.25
    channels = []
    for c in range(3):
        value = base[c].expand_as(u).clone()
        for k in range(4):
            value = value + 0.12 * torch.sin(freqs[c, k, 0] * u + freqs[c, k, 1] * v + phases[c, k])
        checker = ((torch.floor(u * 1.5) + torch.floor(v * 1.5)) % 2) * 0.15
        channels.append(value + checker * (1 if c == face % 3 else -0.5))
    return torch.stack(channels, dim=-1).clamp(0, 1)


def render_room(T_cam2world: Pose, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray casts the room.

    Returns:
        ``image`` ``(3, H, W)`` float32 in [0, 1] and ``depth`` ``(H, W)`` float32 z-depth in metres.
    """
    H, W = camera.height, camera.width
    K = camera.K.to(torch.float64)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rays_cam = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], dim=-1)
    R = T_cam2world.R.to(torch.float64)
    origin = T_cam2world.t.to(torch.float64)
    rays = rays_cam @ R.T  # world directions, z_cam = 1
    best_t = torch.full((H, W), math.inf, dtype=torch.float64)
    best_face = torch.zeros((H, W), dtype=torch.long)
    for axis in range(3):
        for side, bound in enumerate((0.0, ROOM[axis])):
            d = rays[..., axis]
            t = (bound - origin[axis]) / d
            t = torch.where(d.abs() > 1e-12, t, torch.full_like(t, math.inf))
            t = torch.where(t > 1e-9, t, torch.full_like(t, math.inf))
            better = t < best_t
            best_t = torch.where(better, t, best_t)
            best_face = torch.where(better, torch.full_like(best_face, 2 * axis + side), best_face)
    points = origin + rays * best_t[..., None]
    image = torch.zeros(H, W, 3, dtype=torch.float64)
    for face in range(6):
        mask = best_face == face
        axis = face // 2
        others = [a for a in range(3) if a != axis]
        image[mask] = _texture(face, points[..., others[0]][mask], points[..., others[1]][mask])
    depth = best_t  # z_cam = 1 along each ray, so the ray parameter is the z-depth
    return image.permute(2, 0, 1).float().contiguous(), depth.float()


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

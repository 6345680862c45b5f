"""DSAC*'s training augmentation with the camera updated to match, on whole batches.

Source: DSAC* (Brachmann & Rother, TPAMI 2021), Sec. 4.2 "Data augmentation" and ``dataset.py`` of
the public code: the image is rescaled by a factor in ``[2/3, 3/2]`` (the focal length is multiplied
by the same factor), rotated in-plane by an angle in ``[-30, 30]`` degrees (the ground-truth pose is
rotated about the optical axis by the same angle), and its brightness and contrast are jittered by
up to 10 %. Depth maps are warped with nearest-neighbour sampling so the ground-truth scene
coordinates computed from them stay exact.

Difference from the reference, for batching: the image keeps its size ``H x W`` (the reference
resizes it to ``480 * scale`` pixels). Scaling and rotating are one similarity warp about the
principal point into the same canvas; where the warped image has no source pixel it is zero and
:attr:`Augmented.valid` is ``False`` (those cells get no loss).

Geometry. With ``K_s = K`` with its focal lengths (and skew) multiplied by ``s``, and
``R_z(theta)`` the rotation by ``theta`` about the camera's z axis, a camera-frame point ``x`` of
the original camera is ``x' = R_z x`` in the augmented camera, which projects to pixel
``p' ~ K_s R_z K^-1 p`` (an affine map, since ``R_z`` keeps ``z``); the depth of every point is
unchanged; the augmented pose is ``R'_cam2world = R_cam2world R_z^T``, ``t'_cam2world =
t_cam2world``.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from maploc_dsac.config import AugmentConfig

__all__ = ["AugmentParams", "Augmented", "sample_params", "augment_batch", "rotation_z"]


@attrs.frozen(kw_only=True, eq=False)
class AugmentParams:
    """Per-image augmentation parameters, each ``(B,)`` float32.

    Attributes:
        angle: in-plane rotation of the camera about its optical axis, radians.
        scale: focal length factor.
        brightness: brightness factor.
        contrast: contrast factor.
    """

    angle: Tensor
    scale: Tensor
    brightness: Tensor
    contrast: Tensor

    @classmethod
    def identity(cls, batch: int, device: torch.device | str | None = None) -> AugmentParams:
        zeros = torch.zeros(batch, device=device)
        return cls(angle=zeros, scale=zeros + 1, brightness=zeros + 1, contrast=zeros + 1)


@attrs.frozen(kw_only=True, eq=False)
class Augmented:
    """An augmented batch.

    Attributes:
        images: ``(B, 3, H, W)`` float in [0, 1].
        K: ``(B, 3, 3)`` intrinsics of the augmented images, pixels.
        R_cam2world: ``(B, 3, 3)`` augmented rotations (``None`` if no pose was given).
        t_cam2world: ``(B, 3)`` camera centres, metres (unchanged).
        depth: ``(B, H, W)`` metres, 0 = invalid (``None`` if no depth was given).
        valid: ``(B, H, W)`` bool, pixels whose source lies inside the original image.
    """

    images: Tensor
    K: Tensor
    R_cam2world: Tensor | None
    t_cam2world: Tensor | None
    depth: Tensor | None
    valid: Tensor


def rotation_z(angle: Tensor) -> Tensor:
    """``(B,)`` radians -> ``(B, 3, 3)`` rotations about the z axis, ``[[c, -s, 0], [s, c, 0], [0, 0, 1]]``."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack(
        [torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1), torch.stack([zero, zero, one], -1)], -2
    )


def sample_params(
    batch: int,
    config: AugmentConfig,
    *,
    geometric: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> AugmentParams:
    """Draws DSAC*'s augmentation parameters uniformly (identity where disabled).

    Args:
        batch: ``B``.
        config: ranges; ``config.enabled = False`` gives the identity.
        geometric: draw rotation and scale (``False``: photometric only, as DSAC*'s e2e stage).
        generator: the torch generator (default: the global one, seeded by the engine).
        device: device of the returned tensors.

    Returns:
        :class:`AugmentParams` with ``(B,)`` float32 tensors on ``device``.
    """
    if not config.enabled:
        return AugmentParams.identity(batch, device)
    u = torch.rand(4, batch, generator=generator)
    if geometric:
        angle = torch.deg2rad((2 * u[0] - 1) * config.rotation_deg)
        scale = config.scale_min + u[1] * (config.scale_max - config.scale_min)
    else:
        angle, scale = torch.zeros(batch), torch.ones(batch)
    brightness = 1 + (2 * u[2] - 1) * config.brightness
    contrast = 1 + (2 * u[3] - 1) * config.contrast
    return AugmentParams(
        angle=angle.to(device), scale=scale.to(device), brightness=brightness.to(device), contrast=contrast.to(device)
    )


def scaled_intrinsics(K: Tensor, scale: Tensor) -> Tensor:
    """``K`` with focal lengths and skew multiplied by ``scale`` ``(B,)``; principal point kept."""
    K2 = K.clone()
    K2[:, 0, 0] = K[:, 0, 0] * scale
    K2[:, 0, 1] = K[:, 0, 1] * scale
    K2[:, 1, 1] = K[:, 1, 1] * scale
    return K2


def warp_matrix(K: Tensor, params: AugmentParams) -> tuple[Tensor, Tensor]:
    """The pixel maps of the augmentation.

    Returns:
        ``(A, K_aug)``: ``A`` ``(B, 3, 3)`` maps original homogeneous pixels to augmented ones,
        ``A = K_aug R_z(angle) K^-1``; ``K_aug`` ``(B, 3, 3)`` the augmented intrinsics.
    """
    K = K.to(torch.float64)
    K_aug = scaled_intrinsics(K, params.scale.to(K))
    A = K_aug @ rotation_z(params.angle.to(K)) @ torch.linalg.inv(K)
    return A, K_aug


def augment_batch(
    images: Tensor,
    K: Tensor,
    params: AugmentParams,
    *,
    R_cam2world: Tensor | None = None,
    t_cam2world: Tensor | None = None,
    depth: Tensor | None = None,
) -> Augmented:
    """Applies the augmentation ``params`` to a batch (photometric first, then the warp).

    Args:
        images: ``(B, 3, H, W)`` float RGB in [0, 1].
        K: ``(B, 3, 3)`` intrinsics, pixels (OpenCV pixel centres).
        params: from :func:`sample_params`.
        R_cam2world: optional ``(B, 3, 3)`` rotations camera to world.
        t_cam2world: optional ``(B, 3)`` camera centres, metres.
        depth: optional ``(B, H, W)`` z-depth, metres, 0 = invalid.

    Returns:
        :class:`Augmented` (same dtypes and device as the inputs).

    Raises:
        ValueError: on inconsistent shapes.
    """
    B, C, H, W = images.shape
    if K.shape != (B, 3, 3):
        raise ValueError(f"K must be ({B}, 3, 3), got {tuple(K.shape)}")
    if depth is not None and depth.shape != (B, H, W):
        raise ValueError(f"depth must be ({B}, {H}, {W}), got {tuple(depth.shape)}")
    device = images.device
    # photometric (torchvision ColorJitter order: brightness, then contrast around the mean grey)
    out = images
    if not bool((params.brightness == 1).all() and (params.contrast == 1).all()):
        b = params.brightness.to(images).view(B, 1, 1, 1)
        c = params.contrast.to(images).view(B, 1, 1, 1)
        out = (images * b).clamp(0, 1)
        grey = (out * out.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        mean = grey.mean(dim=(2, 3), keepdim=True)
        out = ((out - mean) * c + mean).clamp(0, 1)

    identity_geometry = bool((params.angle == 0).all() and (params.scale == 1).all())
    if identity_geometry:
        valid = torch.ones(B, H, W, dtype=torch.bool, device=device)
        return Augmented(images=out, K=K, R_cam2world=R_cam2world, t_cam2world=t_cam2world, depth=depth, valid=valid)

    A, K_aug = warp_matrix(K, params)
    A_inv = torch.linalg.inv(A)  # augmented pixel -> original pixel
    v, u = torch.meshgrid(
        torch.arange(H, dtype=torch.float64, device=device), torch.arange(W, dtype=torch.float64, device=device),
        indexing="ij",
    )
    p = torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, H * W, 3)
    src = (p @ A_inv.transpose(-1, -2))[..., :2]  # (B, HW, 2), z stays 1 (affine)
    grid = torch.stack([2 * src[..., 0] / max(W - 1, 1) - 1, 2 * src[..., 1] / max(H - 1, 1) - 1], -1)
    grid = grid.reshape(B, H, W, 2).to(images.dtype)
    warped = F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    inside = (src[..., 0] >= -0.5) & (src[..., 0] <= W - 0.5) & (src[..., 1] >= -0.5) & (src[..., 1] <= H - 0.5)
    valid = inside.reshape(B, H, W)
    depth_aug = None
    if depth is not None:
        depth_aug = F.grid_sample(depth[:, None], grid.to(depth.dtype), mode="nearest", padding_mode="zeros",
                                  align_corners=True)[:, 0]
        depth_aug = torch.where(valid, depth_aug, torch.zeros_like(depth_aug))
    R_aug = None
    if R_cam2world is not None:
        R_aug = (R_cam2world.to(torch.float64) @ rotation_z(params.angle.to(torch.float64)).transpose(-1, -2))
        R_aug = R_aug.to(R_cam2world.dtype)
    return Augmented(
        images=warped, K=K_aug.to(K.dtype), R_cam2world=R_aug, t_cam2world=t_cam2world, depth=depth_aug, valid=valid
    )


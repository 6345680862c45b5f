"""Minimal-set sampling of the DSAC* RANSAC: uniform, distinct, reproducible per image.

Source: E. Brachmann and C. Rother, "Visual Camera Re-Localization from RGB and RGB-D Images Using
DSAC", TPAMI 2021 (DSAC*), Sec. 3 (hypothesis sampling). Random numbers come from a counter-based hash
of a per-image seed, so an image gets the same minimal sets alone or in a batch, on any device, and
set ``c`` depends only on ``c`` (the candidate search draws sets by ranges).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["image_seeds", "minimal_set_sampler", "sample_minimal_sets"]

_MASK32 = 0xFFFFFFFF


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer mixing function on int64 tensors holding values in ``[0, 2^32)``."""
    x = x & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def _seed_key(seed: Tensor) -> Tensor:
    return _hash32(_hash32(seed & _MASK32) ^ ((seed >> 32) & _MASK32))


def sample_minimal_sets(mask: Tensor, num_sets: int, set_size: int, seed: Tensor | int) -> tuple[Tensor, Tensor]:
    """Draws minimal sets of distinct valid correspondences, uniformly, for every image at once.

    Args:
        mask: ``(B, N)`` bool, the correspondences that may be drawn.
        num_sets: sets per image, ``C``.
        set_size: correspondences per set, ``k`` (at most ``N``).
        seed: an int (the same for every image) or ``(B,)`` int64, one seed per image. The sets of an
            image depend only on its seed and its mask, on every device.

    Returns:
        ``(indices, ok)``: ``(B, C, k)`` int64 indices into ``N`` (distinct within a set) and ``(B, C)``
        bool, ``False`` where the image has fewer than ``k`` valid correspondences (those indices are
        arbitrary, and in range when ``N > 0``).
    """
    B, N = mask.shape
    device = mask.device
    if N == 0:
        return (
            torch.zeros(B, num_sets, set_size, dtype=torch.int64, device=device),
            torch.zeros(B, num_sets, dtype=torch.bool, device=device),
        )
    return minimal_set_sampler(mask, set_size, seed)(0, num_sets, None)


def minimal_set_sampler(
    mask: Tensor, set_size: int, seed: Tensor | int
) -> Callable[[int, int, Tensor | None], tuple[Tensor, Tensor]]:
    """Sets of :func:`sample_minimal_sets` by ranges: ``draw(start, end, images)`` returns sets
    ``start .. end - 1`` of the images ``images`` (an index tensor, or ``None`` for all), the same as
    the corresponding slice of ``sample_minimal_sets(mask, n, set_size, seed)`` for any ``n >= end``
    (set ``c`` depends only on ``c``, the image's seed and its mask). ``mask`` has ``N > 0`` columns."""
    B, N = mask.shape
    device = mask.device
    seed_t = torch.as_tensor(seed, dtype=torch.int64, device=device).expand(B)
    key_all = _seed_key(seed_t)[:, None]  # (B, 1)
    n_valid_all = mask.sum(-1)  # (B,)
    order_all = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)  # valid indices first

    def draw(start: int, end: int, images: Tensor | None) -> tuple[Tensor, Tensor]:
        key, n_valid, order = (
            (key_all, n_valid_all, order_all)
            if images is None
            else (key_all[images], n_valid_all[images], order_all[images])
        )
        counter = torch.arange(start, end, device=device, dtype=torch.int64)[None, :] * set_size
        chosen: list[Tensor] = []
        for j in range(set_size):
            bits = _hash32(key ^ _hash32(counter + j + 0x9E3779B1))  # (B, C) uniform in [0, 2^32)
            m = (n_valid - j).clamp_min(1)[:, None]
            r = (bits * m) >> 32  # uniform in [0, m)
            if chosen:
                prev = torch.sort(torch.stack(chosen, -1), dim=-1).values
                for i in range(j):
                    r = r + (r >= prev[..., i]).to(r.dtype)
            chosen.append(r)
        ranks = torch.stack(chosen, -1).clamp_max(max(N - 1, 0))  # (B, C, k)
        indices = torch.gather(order, 1, ranks.reshape(order.shape[0], -1)).reshape(ranks.shape)
        ok = (n_valid >= set_size)[:, None].expand(ranks.shape[:2])
        return indices, ok

    return draw


def image_seeds(seed: Tensor | int | None, B: int, device: torch.device) -> Tensor:
    """Per-image seeds ``(B,)`` int64 from an int (decorrelated across the batch, deterministically),
    a ``(B,)`` tensor (used as is) or ``None`` (drawn from torch's global RNG).

    Raises:
        ValueError: if a tensor seed is not ``(B,)``.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(seed, int):
        # Decorrelate the images of a batch, deterministically.
        idx = torch.arange(B, dtype=torch.int64, device=device)
        return (
            (_hash32(torch.full_like(idx, seed & _MASK32) ^ _hash32(idx + 0x632BE5AB)) << 31) ^ (seed >> 32) ^ idx
        )
    seed_t = torch.as_tensor(seed, dtype=torch.int64, device=device)
    if seed_t.shape != (B,):
        raise ValueError(f"seed must be an int or a (B,) = ({B},) tensor, got shape {tuple(seed_t.shape)}")
    return seed_t

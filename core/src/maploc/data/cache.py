"""An in-memory cache of decoded samples, for training loops that read a small dataset many times.

Reading a 7-Scenes frame decodes a JPEG and a 16-bit PNG, registers the depth into the colour
camera and resizes both: about 30 ms on one CPU core. A training schedule that revisits six frames
thousands of times spends most of its time there. :class:`CachedDataset` keeps the samples it has
returned, least recently used out first, up to a byte budget.

Use it only where every read of an index returns the same sample (no per-read randomness in the
dataset; augmentation applied later, on the batch, as ``maploc_dsac`` does). Cached samples are
shared between reads: consumers must not modify them in place (``maploc.data.collate`` copies).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset as TorchDataset

from maploc.types import Sample

__all__ = ["CachedDataset", "sample_nbytes"]


def sample_nbytes(sample: Any) -> int:
    """Bytes held by the tensors of a :class:`~maploc.types.Sample` (image, depth and tensor extras;
    the small pose and camera tensors are ignored). Other objects count as 0."""
    if not isinstance(sample, Sample):
        return 0
    total = sample.image.nbytes
    if sample.depth is not None:
        total += sample.depth.nbytes
    for value in sample.extras.values():
        if isinstance(value, Tensor):
            total += value.nbytes
    return total


class CachedDataset(TorchDataset):
    """Wraps a dataset, keeping decoded samples in memory (LRU, at most ``max_bytes``).

    Attributes other than those below are looked up on the wrapped dataset (``split``, ``name``,
    ``has_depth`` ...), so the wrapper stands in for it.

    Args:
        dataset: any map-style dataset whose ``__getitem__`` is deterministic.
        max_bytes: the budget, bytes (:func:`sample_nbytes` per sample). A sample larger than the
            whole budget is returned without being cached; ``0`` disables caching.

    Attributes:
        hits, misses: reads served from the cache / from the wrapped dataset.

    Raises:
        ValueError: for a negative ``max_bytes``.
    """

    def __init__(self, dataset: Any, max_bytes: int = 1 << 30) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.dataset = dataset
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[int, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        index = int(index)
        if index < 0:
            index += len(self)
        entry = self._items.get(index)
        if entry is not None:
            self._items.move_to_end(index)
            self.hits += 1
            return entry[0]
        self.misses += 1
        sample = self.dataset[index]
        size = sample_nbytes(sample)
        if size <= self.max_bytes and self.max_bytes > 0:
            while self._items and self.nbytes + size > self.max_bytes:
                _, (_, freed) = self._items.popitem(last=False)
                self.nbytes -= freed
            self._items[index] = (sample, size)
            self.nbytes += size
        return sample

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found normally. Guard the wrapper's own fields, which are
        # missing while unpickling (DataLoader workers) and would otherwise recurse.
        if name in ("dataset", "max_bytes", "nbytes", "hits", "misses", "_items") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return (
            f"CachedDataset({self.dataset!r}, {len(self._items)} cached, {self.nbytes / 2**20:.1f} of "
            f"{self.max_bytes / 2**20:.0f} MiB)"
        )

"""maploc.data.cache.CachedDataset: LRU by bytes, transparent attributes, picklable for workers."""

from __future__ import annotations

import pickle

import pytest
import torch

from maploc.data.cache import CachedDataset, sample_nbytes
from maploc.data.collate import collate
from maploc.data.synthetic import SyntheticRoom
from maploc.types import Camera, Sample


class Counting(torch.utils.data.Dataset):
    """Samples of 4x4 images (192 bytes + 64 bytes of depth); counts reads per index."""

    split = "train"

    def __init__(self, n: int = 5) -> None:
        self.n = n
        self.reads = [0] * n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        self.reads[index] += 1
        return Sample(
            image=torch.full((3, 4, 4), float(index)),
            camera=Camera.from_focal(4.0, 4, 4),
            depth=torch.ones(4, 4),
            name=f"f{index}",
        )


def test_sample_nbytes():
    s = Counting()[0]
    assert sample_nbytes(s) == 3 * 16 * 4 + 16 * 4
    assert sample_nbytes("not a sample") == 0


def test_reads_each_index_once_within_budget():
    base = Counting()
    cached = CachedDataset(base, max_bytes=10_000)
    for _ in range(3):
        for i in range(len(cached)):
            assert cached[i].name == f"f{i}"
    assert base.reads == [1] * 5
    assert (cached.hits, cached.misses) == (10, 5)
    assert cached[-1].name == "f4" and base.reads[4] == 1  # negative index: the same entry
    assert len(cached) == 5 and cached.split == "train"  # attributes come from the wrapped dataset


def test_evicts_least_recently_used_under_the_budget():
    base = Counting()
    size = sample_nbytes(base[0])
    base.reads = [0] * 5
    cached = CachedDataset(base, max_bytes=2 * size)
    cached[0], cached[1], cached[0], cached[2]  # 1 is the least recently used when 2 arrives
    assert cached.nbytes == 2 * size
    cached[0]
    assert base.reads[0] == 1
    cached[1]
    assert base.reads[1] == 2  # evicted, read again
    assert cached.nbytes <= 2 * size


def test_zero_budget_and_oversized_samples_are_not_cached():
    base = Counting()
    for budget in (0, 10):  # 10 bytes: smaller than one sample
        base.reads = [0] * 5
        cached = CachedDataset(base, max_bytes=budget)
        cached[1], cached[1]
        assert base.reads[1] == 2 and cached.nbytes == 0
    with pytest.raises(ValueError, match="must not be negative"):
        CachedDataset(base, max_bytes=-1)


def test_pickles_and_collates_like_the_dataset():
    room = SyntheticRoom(split="train", image_height=24)
    cached = CachedDataset(room)
    first = cached[0]
    again = pickle.loads(pickle.dumps(cached))  # DataLoader workers receive a pickled copy
    assert len(again) == len(room) and again.split == "train"
    torch.testing.assert_close(again[0].image, room[0].image)
    batch = collate([cached[0], cached[1]])
    batch["image"].zero_()  # the batch is a copy: the cached sample is untouched
    assert first.image.abs().sum() > 0
    with pytest.raises(AttributeError):
        getattr(cached, "no_such_attribute")  # noqa: B009

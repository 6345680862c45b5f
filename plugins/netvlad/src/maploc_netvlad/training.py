"""Training data of the global-descriptor methods: preloaded images (those the spatial split allows for training,
see :mod:`maploc_netvlad.split`) and hard-negative mining from a descriptor cache.

Weakly supervised triplet ranking (Arandjelović et al., NetVLAD, CVPR 2016, Sec. 4, Eq. 7): for a query ``q``,
the potential positives are the images within ``positive_radius_m`` (GPS-level supervision: the best one is the
closest in descriptor space), the negatives are beyond ``negative_radius_m``; the loss is
``sum_j max(0, min_i d^2(q, p_i) + m - d^2(q, n_j))`` over the hardest negatives ``n_j``. As in the paper's
training (and pytorch-NetVlad), the descriptors used to choose the positive and the hard negatives come from a
cache of the whole training set, refreshed every ``refresh_every`` steps.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch
from torch import Tensor

from maploc.api import Dataset
from maploc.data.split import SpatialSplit
from maploc.errors import ConfigError, DataError

__all__ = ["TrainingImages", "load_training_images", "positions_of", "mine_triplets",
           "MinedTriplets", "IndexDataset"]


def positions_of(sample) -> np.ndarray:  # noqa: ANN001 - Sample or SampleMeta
    """Position in metres: ``T_cam2world.t`` (3-D) when known, else ``(pose2.x, pose2.y, 0)``; NaN when neither."""
    if getattr(sample, "T_cam2world", None) is not None:
        return sample.T_cam2world.t.detach().cpu().double().numpy().reshape(3)
    if getattr(sample, "pose2", None) is not None:
        return np.array([sample.pose2.x, sample.pose2.y, 0.0])
    return np.full(3, np.nan)


@attrs.frozen(kw_only=True, eq=False)
class TrainingImages:
    """Training images held in memory.

    Attributes:
        images: ``(N, 3, H, W)`` float32 in [0, 1]. xyz: ``(N, 3)`` float64 positions, metres. names: N str.
        sequences: ``(N,)`` int64 id of each image's sequence (traversal x condition).
    """

    images: Tensor
    xyz: np.ndarray
    names: list[str]
    sequences: np.ndarray = attrs.field(factory=lambda: np.zeros(0, dtype=np.int64))


def load_training_images(sources: Dataset | list[Dataset], split: SpatialSplit | None) -> TrainingImages:
    """Decodes the images of ``sources`` that the spatial split allows for training.

    Args:
        sources: the datasets to train on (the training split, then e.g. the query split's other sequences).
        split: the run's split: an image is kept when ``split.allowed(xy, "train")`` at its position (see
            :func:`maploc_netvlad.split.positions`); ``None``: every image is kept.

    Raises:
        DataError: a sample has no position, or image sizes differ (names both samples).
        ConfigError: the split leaves no training image.
    """
    from .split import positions

    sources = sources if isinstance(sources, list) else [sources]
    images, names, xyz_all, seqs, first = [], [], [], [], None
    seq_ids: dict[str, int] = {}
    total = 0
    for data in sources:
        metas = [data.metadata(i) for i in range(len(data))]
        total += len(metas)
        xyz = np.stack([positions_of(m) for m in metas]) if metas else np.zeros((0, 3))
        bad = np.flatnonzero(np.isnan(xyz).any(axis=1))
        if bad.size:
            raise DataError(f"{data!r}: training sample {metas[bad[0]].name!r} has no pose (T_cam2world or pose2)")
        keep = (np.ones(len(metas), dtype=bool) if split is None
                else split.allowed(positions(metas), "train", outside=True))
        for i in np.flatnonzero(keep):
            s = data[int(i)]
            if first is None:
                first = s
            elif s.image.shape != first.image.shape:
                raise DataError(
                    f"{data!r}: image {s.name!r} is {tuple(s.image.shape[1:])} but {first.name!r} is "
                    f"{tuple(first.image.shape[1:])}; set data.image_height to resize them alike"
                )
            images.append(s.image.float())
            names.append(s.name)
            xyz_all.append(xyz[i])
            seqs.append(seq_ids.setdefault(metas[i].sequence, len(seq_ids)))
    if not images:
        raise ConfigError(
            f"the spatial split ({split.describe() if split is not None else 'none'}) leaves none of the {total} "
            "training images in a training block; use smaller blocks (split.block_size_m), a larger map, or "
            "split.block_size_m=0 (no split)"
        )
    return TrainingImages(images=torch.stack(images), xyz=np.stack(xyz_all), names=names,
                          sequences=np.asarray(seqs, dtype=np.int64))


class IndexDataset(torch.utils.data.Dataset):
    """``0 .. n-1``: what the engine iterates over while the images live in :class:`TrainingImages`."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i

    def __repr__(self) -> str:
        return f"IndexDataset(n={self.n})"


@attrs.frozen(kw_only=True, eq=False)
class MinedTriplets:
    """Anchors with their best positive and hardest negatives (rows of :class:`TrainingImages`).

    Attributes:
        anchors: ``(A,)`` int64. positives: ``(A,)`` int64. negatives: ``(A, M)`` int64.
        stats: mining statistics (floats) for the training log.
    """

    anchors: Tensor
    positives: Tensor
    negatives: Tensor
    stats: dict[str, float]


def mine_triplets(
    anchors: Tensor, cache: Tensor, xyz: np.ndarray, positive_radius_m: float, negative_radius_m: float,
    num_negatives: int, negative_pool: int, margin: float, generator: torch.Generator,
    sequences: np.ndarray | None = None,
) -> MinedTriplets:
    """Chooses, for each anchor, the best positive and the hardest negatives from the descriptor ``cache``.

    Args:
        anchors: ``(B,)`` int64 rows. cache: ``(N, D)`` float descriptors of every training image (unit L2).
        xyz: ``(N, 3)`` positions in metres.
        positive_radius_m: potential positives are within this distance (and are not the anchor).
        negative_radius_m: negatives are farther than this.
        num_negatives: hardest negatives kept per anchor (``M``).
        negative_pool: random negatives examined per anchor before keeping the hardest (all when larger than the
            number of negatives).
        margin: the loss margin ``m`` (for the statistics).
        generator: for the random pool.
        sequences: optional ``(N,)`` sequence ids: when given, potential positives come from other sequences than
            the anchor's whenever there are any (the same place at another time, as the paper's Time Machine
            positives); otherwise from any sequence.

    Returns:
        The triplets of the anchors that have a positive and at least ``M`` negatives (others are dropped), and
        ``stats``: ``valid_anchor_fraction``, ``active_negative_fraction`` (hard negatives that violate the margin
        in the cache), ``positive_distance`` and ``hardest_negative_distance`` (mean squared descriptor
        distances).
    """
    if positive_radius_m >= negative_radius_m:
        raise ConfigError(f"mining.positive_radius_m ({positive_radius_m}) must be < mining.negative_radius_m "
                          f"({negative_radius_m})")
    geo = torch.from_numpy(np.linalg.norm(xyz[anchors.cpu().numpy()][:, None] - xyz[None], axis=2))
    desc = cache[anchors.cpu()]
    d2 = (2.0 - 2.0 * desc @ cache.T).clamp_min(0)  # squared distance of unit vectors
    keep_a, keep_p, keep_n = [], [], []
    active, d_pos, d_neg = [], [], []
    for row, a in enumerate(anchors.tolist()):
        near = (geo[row] <= positive_radius_m) & (torch.arange(len(xyz)) != a)
        if sequences is not None:
            other = near & torch.from_numpy(sequences != sequences[a])
            near = other if bool(other.any()) else near
        pos = torch.nonzero(near).flatten()
        neg = torch.nonzero(geo[row] > negative_radius_m).flatten()
        if len(pos) == 0 or len(neg) < num_negatives:
            continue
        p = int(pos[d2[row, pos].argmin()])
        if len(neg) > negative_pool:
            neg = neg[torch.randperm(len(neg), generator=generator)[:negative_pool]]
        hard = neg[d2[row, neg].topk(num_negatives, largest=False).indices]
        keep_a.append(a)
        keep_p.append(p)
        keep_n.append(hard)
        active.append(float((d2[row, hard] < d2[row, p] + margin).float().mean()))
        d_pos.append(float(d2[row, p]))
        d_neg.append(float(d2[row, hard[0]]))
    stats = {
        "valid_anchor_fraction": len(keep_a) / max(1, len(anchors)),
        "active_negative_fraction": float(np.mean(active)) if active else 0.0,
        "positive_distance": float(np.mean(d_pos)) if d_pos else float("nan"),
        "hardest_negative_distance": float(np.mean(d_neg)) if d_neg else float("nan"),
    }
    if not keep_a:
        empty = torch.zeros(0, dtype=torch.long)
        return MinedTriplets(anchors=empty, positives=empty, negatives=empty.view(0, num_negatives), stats=stats)
    return MinedTriplets(anchors=torch.tensor(keep_a), positives=torch.tensor(keep_p),
                         negatives=torch.stack(keep_n), stats=stats)


def triplet_ranking_loss(q: Tensor, p: Tensor, n: Tensor, margin: float) -> Tensor:
    """NetVLAD's weakly supervised ranking loss (Eq. 7) with squared Euclidean distances.

    Args:
        q: ``(A, D)`` anchors. p: ``(A, D)`` best positives. n: ``(A, M, D)`` negatives. margin: ``m``.

    Returns:
        scalar: ``mean_a sum_j max(0, d^2(q, p) + m - d^2(q, n_j))``.
    """
    d_pos = (q - p).square().sum(dim=1, keepdim=True)
    d_neg = (q[:, None] - n).square().sum(dim=2)
    return torch.relu(d_pos + margin - d_neg).sum(dim=1).mean()

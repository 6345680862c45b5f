"""Triplet mining from the descriptor cache and the ranking loss (the spatial split: test_split.py)."""

import numpy as np
import torch
import torch.nn.functional as F

from maploc_netvlad.training import mine_triplets, triplet_ranking_loss


def test_mining_picks_best_positive_and_hardest_negatives():
    # places along a line, 5 m apart; descriptors: image 2 is the most similar to 0 among the positives,
    # images 8 and 9 are the most similar among the negatives (> 25 m)
    xyz = np.c_[np.arange(10) * 5.0, np.zeros(10), np.zeros(10)]
    cache = F.normalize(torch.randn(10, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    cache[2] = F.normalize(cache[0] + 0.05 * cache[2], dim=0)
    cache[8] = F.normalize(cache[0] + 0.2 * cache[8], dim=0)
    cache[9] = F.normalize(cache[0] + 0.3 * cache[9], dim=0)
    mined = mine_triplets(torch.tensor([0]), cache, xyz, 10.0, 25.0, 2, 100, 0.1, torch.Generator().manual_seed(0))
    assert mined.positives.tolist() == [2]
    assert sorted(mined.negatives[0].tolist()) == [8, 9]
    assert mined.stats["valid_anchor_fraction"] == 1.0
    # with sequence ids, positives come from another sequence when one exists: image 1 (same sequence) is now
    # identical to the anchor, image 2 (another sequence) is still chosen
    seq = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    cache[1] = cache[0]
    mined = mine_triplets(torch.tensor([0]), cache, xyz, 10.0, 25.0, 2, 100, 0.1, torch.Generator(), sequences=seq)
    assert mined.positives.tolist() == [2]
    mined = mine_triplets(torch.tensor([0]), cache, xyz, 10.0, 25.0, 2, 100, 0.1, torch.Generator())
    assert mined.positives.tolist() == [1]


def test_anchor_without_positive_is_dropped():
    xyz = np.c_[np.arange(4) * 100.0, np.zeros(4), np.zeros(4)]
    cache = F.normalize(torch.randn(4, 8), dim=1)
    mined = mine_triplets(torch.tensor([0, 1]), cache, xyz, 10.0, 25.0, 1, 10, 0.1, torch.Generator())
    assert len(mined.anchors) == 0 and mined.stats["valid_anchor_fraction"] == 0.0


def test_ranking_loss_values():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0]])
    far = torch.tensor([[[-1.0, 0.0]]])  # d^2 = 4 -> no loss
    near = torch.tensor([[[1.0, 0.0]]])  # d^2 = 0 -> loss = margin
    assert float(triplet_ranking_loss(q, p, far, 0.1)) == 0.0
    assert abs(float(triplet_ranking_loss(q, p, near, 0.1)) - 0.1) < 1e-7

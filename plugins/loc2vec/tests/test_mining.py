"""Online triplet mining on hand-made batches: the hardest valid pairs are picked, ambiguous ones ignored."""

from __future__ import annotations

import math

import pytest
import torch

from maploc_loc2vec.mining import (
    mine_batch_hard,
    mine_semi_hard,
    pairwise_distances,
    triplet_labels,
    triplet_loss,
)


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


# Ground positions (metres): 0 and 1 at the same place, 2 is 6 m away (positives of 0), 3 is 30 m away
# (ambiguous: neither), 4 and 5 are 100 m and 300 m away (negatives).
XY = torch.tensor([[0.0, 0.0], [0.0, 0.0], [6.0, 0.0], [30.0, 0.0], [100.0, 0.0], [300.0, 0.0]], dtype=torch.float64)
# Embeddings on the unit circle: 3 is the closest to 0 in embedding space (but is not a negative), 4 is closer
# than 5, positive 2 is farther than positive 1.
EMB = torch.tensor([unit(0), unit(10), unit(40), unit(5), unit(50), unit(120)])


def chord(a: float, b: float) -> float:
    return 2 * math.sin(math.radians(abs(a - b)) / 2)


def test_labels_from_positions():
    labels = triplet_labels(XY, 10.0, 50.0)
    assert labels.positive[0].tolist() == [False, True, True, False, False, False]
    assert labels.negative[0].tolist() == [False, False, False, False, True, True]
    assert not (labels.positive & labels.negative).any()
    assert not labels.positive.diagonal().any()
    # explicit pairs override the radii
    forced = triplet_labels(XY, 10.0, 50.0, pairs=torch.tensor([[0, 3]]), negatives=torch.tensor([[1, 2]]))
    assert forced.positive[0, 3] and forced.positive[3, 0] and not forced.negative[0, 3]
    assert forced.negative[1, 2] and forced.negative[2, 1] and not forced.positive[1, 2]
    with pytest.raises(ValueError, match="must be <"):
        triplet_labels(XY, 50.0, 10.0)


def test_batch_hard_picks_the_farthest_positive_and_the_closest_valid_negative():
    labels = triplet_labels(XY, 10.0, 50.0)
    d = pairwise_distances(EMB)
    anchors, pos, neg = mine_batch_hard(d, labels)
    # 3 (30 m from 0..2, 70 m from 4) has no positive, nor have 4 and 5: only 0, 1, 2 are anchors
    assert anchors.tolist() == [0, 1, 2]
    assert pos.tolist() == [2, 2, 0]  # the farthest positive in embedding space
    assert neg.tolist() == [4, 4, 4]  # item 3 is closer to 0 than 4 but ambiguous (30 m), so it is ignored
    loss, stats = triplet_loss(EMB, labels, margin=0.5, mining="batch-hard")
    expected = [
        0.5 + chord(0, 40) - chord(0, 50),  # anchor 0 (0 deg): positive 2, negative 4
        0.5 + chord(10, 40) - chord(10, 50),  # anchor 1 (10 deg): positive 2, negative 4
        max(0.0, 0.5 + chord(40, 0) - chord(40, 50)),  # anchor 2 (40 deg): positive 0, negative 4
    ]
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-5)
    assert stats["triplets"] == 3 and stats["active_fraction"] == 1.0


def test_dataset_pairs_make_more_anchors():
    labels = triplet_labels(XY, 10.0, 50.0, pairs=torch.tensor([[4, 5]]))
    anchors, pos, neg = mine_batch_hard(pairwise_distances(EMB), labels)
    assert anchors.tolist() == [0, 1, 2, 4, 5]
    assert pos[3].item() == 5 and pos[4].item() == 4
    assert neg[3].item() == 2  # 0..3 are all >= 50 m from 4; 2 (40 deg) is the closest to 4 (50 deg)


def test_semi_hard_picks_the_closest_negative_beyond_the_positive_and_falls_back():
    labels = triplet_labels(XY, 10.0, 50.0)
    d = pairwise_distances(EMB)
    a, p, n = mine_semi_hard(d, labels)
    triplets = {(int(x), int(y)): int(z) for x, y, z in zip(a, p, n)}
    # (0, 1): d_ap = chord(10 deg); negatives 4 (50 deg) and 5 (120 deg) are both farther: the closer, 4
    assert triplets[(0, 1)] == 4
    # (2, 0): d_ap = chord(40 deg); negative 4 is 10 deg from 2 (closer than the positive), 5 is 80 deg: 5
    assert triplets[(2, 0)] == 5
    # fallback: move the negatives inside the positive distance -> the farthest negative is used
    emb = torch.tensor([unit(0), unit(90), unit(90), unit(5), unit(20), unit(30)])
    a, p, n = mine_semi_hard(pairwise_distances(emb), labels)
    triplets = {(int(x), int(y)): int(z) for x, y, z in zip(a, p, n)}
    assert triplets[(0, 1)] == 5
    loss, _ = triplet_loss(emb, labels, margin=0.2, mining="semi-hard")
    assert loss.item() > 0


def test_no_valid_triplet_gives_zero_loss_with_a_gradient_path():
    xy = torch.tensor([[0.0, 0.0], [20.0, 0.0]], dtype=torch.float64)  # 20 m: neither positive nor negative
    emb = torch.nn.functional.normalize(torch.randn(2, 4), dim=1).requires_grad_(True)
    loss, stats = triplet_loss(emb, triplet_labels(xy, 10.0, 50.0), 0.3)
    assert loss.item() == 0.0 and stats["triplets"] == 0
    loss.backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))


def test_identical_embeddings_have_finite_gradients():
    emb = torch.tensor([unit(0), unit(0), unit(0)], requires_grad=True)
    xy = torch.tensor([[0.0, 0.0], [1.0, 0.0], [100.0, 0.0]], dtype=torch.float64)
    loss, _ = triplet_loss(emb, triplet_labels(xy, 10.0, 50.0), 0.3)
    assert loss.item() == pytest.approx(0.3)
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_unknown_mining():
    with pytest.raises(ValueError, match="unknown mining"):
        triplet_loss(EMB, triplet_labels(XY, 10.0, 50.0), 0.3, mining="hardest")  # type: ignore[arg-type]


def test_a_turned_tile_at_the_same_place_is_neither_positive_nor_negative_with_a_rotation_tolerance():
    xy = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [200.0, 0.0]], dtype=torch.float64)
    yaw = torch.tensor([3.0, -3.0, 1.0, 0.0], dtype=torch.float64)  # 1 is 0.28 rad from 0 across +-pi; 2 is 2 rad
    labels = triplet_labels(xy, 10.0, 50.0, yaw=yaw, max_rotation_rad=math.radians(22.5))
    assert labels.positive[0, 1] and labels.positive[1, 0]
    assert not labels.positive[0, 2] and not labels.negative[0, 2]  # turned too far: ignored
    assert labels.negative[0, 3] and not labels.positive[0, 3]
    everything = triplet_labels(xy, 10.0, 50.0, yaw=yaw)  # default: any rotation is a positive
    assert everything.positive[0, 2]


def test_supcon_loss_matches_its_definition_and_ignores_ambiguous_pairs():
    labels = triplet_labels(XY, 10.0, 50.0)
    loss, stats = triplet_loss(EMB.double(), labels, 0.3, "supcon", temperature=0.5)
    sim = (EMB @ EMB.T).double() / 0.5
    expected = []
    for i in range(6):
        pos = [j for j in range(6) if labels.positive[i, j]]
        neg = [j for j in range(6) if labels.negative[i, j]]
        if not pos or not neg:
            continue
        denom = torch.logsumexp(sim[i, pos + neg], 0)
        expected.append(-sum(sim[i, p] - denom for p in pos) / len(pos))
    assert float(loss) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)
    assert stats["triplets"] == len(expected)
    # the ambiguous tile 3 does not change the loss of anchor 0
    moved = EMB.clone()
    moved[3] = torch.tensor(unit(170))
    assert float(triplet_loss(moved, labels, 0.3, "supcon", temperature=0.5)[0]) == pytest.approx(float(loss), rel=1e-5)


def test_supcon_gradcheck():
    labels = triplet_labels(XY, 10.0, 50.0)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)

    def f(x):
        return triplet_loss(torch.nn.functional.normalize(x, dim=1), labels, 0.3, "supcon")[0].double()

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-4)

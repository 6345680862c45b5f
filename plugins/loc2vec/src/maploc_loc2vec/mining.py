"""Online triplet mining inside a batch, with labels from the tiles' positions.

Every tile of the batch (anchors, positives and negatives of the dataset's triplets alike) is an anchor. For
anchor ``i`` and another tile ``j`` at ground distance ``g_ij`` (metres between the tile centres):

* ``j`` is a **positive** of ``i`` if ``g_ij <= positive_radius_m`` and their headings differ by at most
  ``max_rotation_rad`` (the same place, slightly shifted and turned; ``pi``: any rotation), or if ``j`` is the
  positive the dataset drew for ``i``;
* ``j`` is a **negative** of ``i`` if ``g_ij >= negative_radius_m``, or if ``j`` is the negative the dataset
  drew for ``i``;
* otherwise ``(i, j)`` is ignored (an ambiguous distance, or the same place turned further than
  ``max_rotation_rad``: a reference indexed at several headings holds such a tile, it is neither to match nor
  to push away).

Mining strategies (``d`` = Euclidean distance between L2-normalised embeddings, ``m`` = margin):

* ``batch-hard`` (Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
  arXiv:1703.07737, 2017, Sec. 2, Eq. 5): per anchor, the farthest positive and the closest negative:
  ``loss_i = max(0, m + max_p d(i, p) - min_n d(i, n))``.
* ``semi-hard`` (Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015, Sec. 3.2; the rule of TensorFlow
  Addons' ``triplet_semihard_loss``): per anchor-positive pair, the closest negative *farther* than the
  positive (``d(i, n) > d(i, p)``); when there is none, the farthest negative.
  ``loss_ip = max(0, m + d(i, p) - d(i, n*))``, averaged over all pairs.

* ``supcon`` (not a triplet mining: the supervised contrastive loss of Khosla et al., "Supervised Contrastive
  Learning", NeurIPS 2020, Eq. 2, with the positive / negative masks above): per anchor ``i`` with positives
  ``P(i)`` and candidates ``A(i) = P(i) + N(i)`` (ambiguous pairs left out),
  ``loss_i = -1/|P(i)| sum_p log(exp(s_ip / t) / sum_{a in A(i)} exp(s_ia / t))``, ``s`` = cosine similarity,
  ``t`` = temperature. Every pair of the batch contributes a gradient, so it does not stall at the collapsed
  state (all embeddings equal, loss = margin) that batch-hard mining can fall into from a random start.

Anchors without any positive or without any negative are skipped. The Loc2Vec reference mines the batch in
the same way (its "online triplet loss" with batch-hard / semi-hard selection and a margin).
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
from torch import Tensor

__all__ = ["TripletLabels", "triplet_labels", "pairwise_distances", "mine_batch_hard", "mine_semi_hard",
           "triplet_loss", "MINING"]

MINING = ("batch-hard", "semi-hard", "supcon")


@attrs.frozen(kw_only=True, eq=False)
class TripletLabels:
    """Which pairs of a batch are positives / negatives of each other.

    Attributes:
        positive: ``(N, N)`` bool, ``positive[i, j]``: ``j`` is a positive of anchor ``i`` (never ``i == j``).
        negative: ``(N, N)`` bool, ``negative[i, j]``: ``j`` is a negative of anchor ``i``.
    """

    positive: Tensor
    negative: Tensor


def triplet_labels(
    xy: Tensor, positive_radius_m: float, negative_radius_m: float, pairs: Tensor | None = None,
    negatives: Tensor | None = None, yaw: Tensor | None = None, max_rotation_rad: float = math.pi,
) -> TripletLabels:
    """Positive / negative masks from positions.

    Args:
        xy: ``(N, 2)`` tile centres in metres.
        positive_radius_m: at most this far = positive.
        negative_radius_m: at least this far = negative.
        pairs: optional ``(P, 2)`` int64 index pairs that are positives of each other whatever their distance
            (the dataset's anchor-positive pairs).
        negatives: optional ``(Q, 2)`` int64 index pairs that are negatives of each other (the dataset's
            anchor-negative pairs).
        yaw: optional ``(N,)`` tile headings in radians; with ``max_rotation_rad < pi``, a pair within
            ``positive_radius_m`` is a positive only when its headings differ by at most ``max_rotation_rad``.
        max_rotation_rad: see ``yaw``.

    Returns:
        The masks; a pair is never both (an explicit pair overrides the radii).

    Raises:
        ValueError: ``positive_radius_m >= negative_radius_m`` or ``xy`` is not ``(N, 2)``.
    """
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must be (N, 2), got {tuple(xy.shape)}")
    if not positive_radius_m < negative_radius_m:
        raise ValueError(f"positive_radius_m ({positive_radius_m}) must be < negative_radius_m ({negative_radius_m})")
    g = torch.cdist(xy.double(), xy.double())
    eye = torch.eye(len(xy), dtype=torch.bool, device=xy.device)
    positive = (g <= positive_radius_m) & ~eye
    if yaw is not None and max_rotation_rad < math.pi:
        diff = torch.remainder(yaw.double()[:, None] - yaw.double()[None, :] + math.pi, 2 * math.pi) - math.pi
        positive &= diff.abs() <= max_rotation_rad + 1e-9
    negative = g >= negative_radius_m
    if pairs is not None and len(pairs):
        positive[pairs[:, 0], pairs[:, 1]] = positive[pairs[:, 1], pairs[:, 0]] = True
        negative[pairs[:, 0], pairs[:, 1]] = negative[pairs[:, 1], pairs[:, 0]] = False
    if negatives is not None and len(negatives):
        negative[negatives[:, 0], negatives[:, 1]] = negative[negatives[:, 1], negatives[:, 0]] = True
        positive[negatives[:, 0], negatives[:, 1]] = positive[negatives[:, 1], negatives[:, 0]] = False
    return TripletLabels(positive=positive, negative=negative)


def pairwise_distances(embeddings: Tensor) -> Tensor:
    """``(N, N)`` Euclidean distances between the rows of ``(N, D)`` embeddings (float32, differentiable;
    the gradient at zero distance is zero, not NaN)."""
    e = embeddings.float()
    sq = (e[:, None, :] - e[None, :, :]).pow(2).sum(-1)
    zero = sq <= 1e-12
    return torch.where(zero, torch.zeros_like(sq), sq.clamp_min(1e-12).sqrt())


def mine_batch_hard(d: Tensor, labels: TripletLabels) -> tuple[Tensor, Tensor, Tensor]:
    """Batch-hard mining (Hermans et al. 2017, Eq. 5).

    Args:
        d: ``(N, N)`` embedding distances.
        labels: the masks.

    Returns:
        ``anchors`` ``(A,)`` int64 (those with a positive and a negative), ``hardest_positive`` ``(A,)`` and
        ``hardest_negative`` ``(A,)`` int64 indices into the batch.
    """
    valid = labels.positive.any(1) & labels.negative.any(1)
    anchors = torch.nonzero(valid).flatten()
    neg_inf = torch.finfo(d.dtype).min
    dp = torch.where(labels.positive, d, torch.full_like(d, neg_inf))
    dn = torch.where(labels.negative, d, torch.full_like(d, torch.finfo(d.dtype).max))
    return anchors, dp.argmax(1)[anchors], dn.argmin(1)[anchors]


def mine_semi_hard(d: Tensor, labels: TripletLabels) -> tuple[Tensor, Tensor, Tensor]:
    """Semi-hard mining (FaceNet Sec. 3.2, TensorFlow Addons' rule when no semi-hard negative exists).

    Args:
        d: ``(N, N)`` embedding distances.
        labels: the masks.

    Returns:
        ``anchors``, ``positives``, ``negatives``: ``(T,)`` int64, one triplet per anchor-positive pair of an
        anchor that has a negative.
    """
    has_negative = labels.negative.any(1)
    pair_mask = labels.positive & has_negative[:, None]
    anchors, positives = torch.nonzero(pair_mask, as_tuple=True)
    big = torch.finfo(d.dtype).max
    dn = d[anchors]  # (T, N)
    d_ap = d[anchors, positives][:, None]
    neg = labels.negative[anchors]
    outside = neg & (dn > d_ap)
    semi = torch.where(outside, dn, torch.full_like(dn, big)).argmin(1)
    hardest_far = torch.where(neg, dn, torch.full_like(dn, -big)).argmax(1)
    negatives = torch.where(outside.any(1), semi, hardest_far)
    return anchors, positives, negatives


def triplet_loss(
    embeddings: Tensor, labels: TripletLabels, margin: float,
    mining: Literal["batch-hard", "semi-hard", "supcon"] = "batch-hard", temperature: float = 0.1,
) -> tuple[Tensor, dict[str, float]]:
    """The margin triplet loss over the mined triplets of a batch.

    Args:
        embeddings: ``(N, D)`` L2-normalised embeddings (any float dtype; computed in float32).
        labels: positive / negative masks (:func:`triplet_labels`).
        margin: the margin ``m`` (in embedding distance units; distances of unit vectors lie in ``[0, 2]``).
        mining: ``batch-hard``, ``semi-hard`` or ``supcon`` (then ``margin`` is unused, see :func:`supcon_loss`).
        temperature: the temperature of ``supcon``.

    Returns:
        The mean loss (a scalar; ``0`` with a zero gradient when no triplet exists) and statistics:
        ``triplets`` (count), ``active_fraction`` (share with a positive loss), ``d_ap``/``d_an`` (means).

    Raises:
        ValueError: unknown mining strategy.
    """
    if mining not in MINING:
        raise ValueError(f"unknown mining {mining!r}; expected one of {', '.join(MINING)}")
    if mining == "supcon":
        return supcon_loss(embeddings, labels, temperature)
    d = pairwise_distances(embeddings)
    with torch.no_grad():
        if mining == "batch-hard":
            a, p, n = mine_batch_hard(d.detach(), labels)
        else:
            a, p, n = mine_semi_hard(d.detach(), labels)
    if len(a) == 0:
        return embeddings.float().sum() * 0.0, {"triplets": 0.0, "active_fraction": 0.0, "d_ap": 0.0, "d_an": 0.0}
    d_ap, d_an = d[a, p], d[a, n]
    losses = torch.relu(margin + d_ap - d_an)
    stats = {
        "triplets": float(len(a)),
        "active_fraction": float((losses.detach() > 0).float().mean()),
        "d_ap": float(d_ap.detach().mean()),
        "d_an": float(d_an.detach().mean()),
    }
    return losses.mean(), stats


def supcon_loss(embeddings: Tensor, labels: TripletLabels, temperature: float = 0.1) -> tuple[Tensor, dict[str, float]]:
    """The supervised contrastive loss (Khosla et al., NeurIPS 2020, Eq. 2; see the module docstring).

    Args:
        embeddings: ``(N, D)`` L2-normalised embeddings (computed in float32).
        labels: positive / negative masks.
        temperature: ``t > 0``.

    Returns:
        The mean loss over anchors with a positive and a negative (``0`` with a zero gradient when none), and
        statistics: ``triplets`` (anchors used), ``active_fraction`` (share of anchors whose hardest negative is
        closer than their farthest positive), ``d_ap`` / ``d_an`` (mean distances to positives / negatives).
    """
    e = embeddings if embeddings.dtype == torch.float64 else embeddings.float()
    valid = labels.positive.any(1) & labels.negative.any(1)
    if not bool(valid.any()):
        return e.sum() * 0.0, {"triplets": 0.0, "active_fraction": 0.0, "d_ap": 0.0, "d_an": 0.0}
    sim = e @ e.T / temperature
    candidates = labels.positive | labels.negative
    logits = sim.masked_fill(~candidates, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = labels.positive.float()
    per_anchor = -(log_prob.masked_fill(~labels.positive, 0.0) * pos).sum(1) / pos.sum(1).clamp_min(1.0)
    loss = per_anchor[valid].mean()
    with torch.no_grad():
        d = pairwise_distances(e)
        big = torch.finfo(d.dtype).max
        far_pos = torch.where(labels.positive, d, torch.full_like(d, -big)).max(1).values
        near_neg = torch.where(labels.negative, d, torch.full_like(d, big)).min(1).values
        stats = {
            "triplets": float(valid.sum()),
            "active_fraction": float((near_neg[valid] < far_pos[valid]).float().mean()),
            "d_ap": float((d * pos).sum() / pos.sum().clamp_min(1.0)),
            "d_an": float((d * labels.negative.float()).sum() / labels.negative.float().sum().clamp_min(1.0)),
        }
    return loss, stats

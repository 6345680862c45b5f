"""The NetVLAD aggregation layer and PCA whitening of global descriptors.

NetVLAD: Arandjelović, Gronat, Torii, Pajdla & Sivic, "NetVLAD: CNN architecture for weakly supervised place
recognition", CVPR 2016, Sec. 3.1: local descriptors ``x_i`` (``D`` channels) are softly assigned to ``K``
cluster centres ``c_k`` with ``a_k(x_i) = softmax_k(w_k^T x_i + b_k)`` (a 1x1 convolution, initialised to
``w_k = 2 alpha c_k``, ``b_k = -alpha ||c_k||^2``, Eq. 3), residuals are aggregated
``V(k) = sum_i a_k(x_i) (x_i - c_k)`` (Eq. 4), each ``V(k)`` is L2-normalised (intra-normalisation, Sec. 3.1 and
Arandjelović & Zisserman, "All about VLAD", CVPR 2013) and the flattened ``K * D`` vector is L2-normalised.

PCA whitening: Sec. 5.1 of the NetVLAD paper ("PCA + whitening" to a lower dimension followed by L2
normalisation), learned here on the map's descriptors.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NetVLAD", "PCAWhitening", "kmeans_centroids", "alpha_from_centroids"]


class NetVLAD(nn.Module):
    """NetVLAD pooling (Arandjelović et al., CVPR 2016, Sec. 3.1).

    Args:
        num_clusters: ``K``, the number of NetVLAD clusters.
        dim: ``D``, channels of the local descriptors.
        alpha: the assignment sharpness of Eq. 3 (used by :meth:`init_from_centroids`).
        normalize_input: L2-normalise each local descriptor over channels first (as the paper).

    Shapes:
        ``forward``: ``(B, D, H, W)`` float local descriptors -> ``(B, K * D)`` unit-L2 descriptors, the
        ``K`` blocks of ``D`` each intra-normalised (cluster-major order).
    """

    def __init__(self, num_clusters: int = 64, dim: int = 128, alpha: float = 100.0, normalize_input: bool = True):
        super().__init__()
        if num_clusters < 1 or dim < 1:
            raise ValueError(f"num_clusters and dim must be >= 1, got {num_clusters}, {dim}")
        self.num_clusters = num_clusters
        self.dim = dim
        self.alpha = float(alpha)
        self.normalize_input = normalize_input
        self.assignment = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=True)
        self.centroids = nn.Parameter(torch.randn(num_clusters, dim) * 0.1)
        self.init_from_centroids(self.centroids.data.clone(), self.alpha)

    @property
    def output_dim(self) -> int:
        return self.num_clusters * self.dim

    @torch.no_grad()
    def init_from_centroids(self, centroids: Tensor, alpha: float) -> None:
        """Sets ``c_k`` and the assignment conv to ``w_k = 2 alpha c_k``, ``b_k = -alpha ||c_k||^2`` (Eq. 3).

        Args:
            centroids: ``(K, D)`` float cluster centres (in the space of the normalised local descriptors).
            alpha: positive sharpness.

        Raises:
            ValueError: wrong shape or non-positive alpha.
        """
        if centroids.shape != (self.num_clusters, self.dim):
            raise ValueError(f"centroids must be ({self.num_clusters}, {self.dim}), got {tuple(centroids.shape)}")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        c = centroids.to(self.centroids)
        self.alpha = float(alpha)
        self.centroids.copy_(c)
        self.assignment.weight.copy_((2.0 * alpha * c)[:, :, None, None])
        self.assignment.bias.copy_(-alpha * (c * c).sum(dim=1))

    def local_descriptors(self, features: Tensor) -> Tensor:
        """``(B, D, H, W)`` -> ``(B, D, H, W)`` channel-L2-normalised (when ``normalize_input``)."""
        return F.normalize(features, dim=1) if self.normalize_input else features

    def forward(self, features: Tensor) -> Tensor:
        if features.ndim != 4 or features.shape[1] != self.dim:
            raise ValueError(f"NetVLAD expects (B, {self.dim}, H, W) features, got {tuple(features.shape)}")
        x = self.local_descriptors(features)
        soft = F.softmax(self.assignment(x), dim=1).flatten(2)  # (B, K, N)
        x = x.flatten(2)  # (B, D, N)
        # sum_i a_k(x_i) (x_i - c_k) = (A X^T)_k - (sum_i a_k(x_i)) c_k
        vlad = torch.bmm(soft, x.transpose(1, 2)) - soft.sum(dim=2, keepdim=True) * self.centroids[None]
        vlad = F.normalize(vlad, dim=2)  # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=1)


def kmeans_centroids(local: Tensor, num_clusters: int, seed: int = 0, iterations: int = 20) -> Tensor:
    """K-means cluster centres of local descriptors with faiss (``faiss.Kmeans``), the NetVLAD initialisation.

    Args:
        local: ``(N, D)`` float local descriptors (already normalised as NetVLAD sees them), ``N >= K``.
        num_clusters: ``K``.
        seed: k-means seed.
        iterations: Lloyd iterations.

    Returns:
        ``(K, D)`` float32 centres.

    Raises:
        ValueError: fewer descriptors than clusters.
    """
    import faiss

    x = np.ascontiguousarray(local.detach().cpu().float().numpy())
    if x.shape[0] < num_clusters:
        raise ValueError(f"k-means needs at least {num_clusters} local descriptors, got {x.shape[0]}")
    km = faiss.Kmeans(x.shape[1], num_clusters, niter=iterations, seed=seed, verbose=False,
                      max_points_per_centroid=10_000_000)
    km.train(x)
    return torch.from_numpy(np.asarray(km.centroids).copy())


def alpha_from_centroids(local: Tensor, centroids: Tensor, ratio: float = 0.01) -> float:
    """A sharpness ``alpha`` for which the second-closest centre gets about ``ratio`` of the closest one's weight.

    With ``a_k ∝ exp(-alpha ||x - c_k||^2)`` (Eq. 2 of the paper), the weight ratio of the second to the first
    centre is ``exp(-alpha (d_2 - d_1))``; ``alpha = -ln(ratio) / mean(d_2 - d_1)`` over ``local``.

    Args:
        local: ``(N, D)`` local descriptors. centroids: ``(K, D)``, ``K >= 2``. ratio: in (0, 1).

    Returns:
        positive float.
    """
    d = torch.cdist(local.float(), centroids.float()).square()
    two = d.topk(2, dim=1, largest=False).values
    gap = float((two[:, 1] - two[:, 0]).mean())
    return -math.log(ratio) / max(gap, 1e-6)


class PCAWhitening(nn.Module):
    """PCA projection with whitening and L2 normalisation (NetVLAD paper, Sec. 5.1).

    ``y = normalize(diag(1 / sqrt(lambda + eps)) U^T (x - mu))`` with the top ``out_dim`` principal directions
    ``U`` and their variances ``lambda``. Before :meth:`fit` it is the identity (``fitted`` is ``False``).

    Shapes: ``forward``: ``(B, D_in)`` -> ``(B, out_dim)`` float, unit L2.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("projection", torch.zeros(0, 0))

    @property
    def fitted(self) -> bool:
        return self.projection.numel() > 0

    @property
    def out_dim(self) -> int:
        return int(self.projection.shape[0])

    @torch.no_grad()
    def fit(self, descriptors: Tensor, out_dim: int, eps: float = 1e-6) -> int:
        """Learns the projection from ``(N, D)`` descriptors; keeps ``min(out_dim, N // 4, D)`` dimensions (at least 1).

        The cap at a quarter of ``N``: whitened to ``N - 1`` dimensions, the ``N`` fitted descriptors become the
        vertices of a regular simplex (all pairwise distances equal) and the lowest-variance (noise) directions are
        amplified the most; keeping far fewer dimensions than samples preserves their similarity structure.

        Returns:
            the kept dimension.

        Raises:
            ValueError: fewer than 2 descriptors.
        """
        x = descriptors.detach().double()
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"PCA whitening needs at least 2 descriptors (N, D), got {tuple(x.shape)}")
        mean = x.mean(dim=0)
        _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
        keep = int(max(1, min(out_dim, x.shape[0] // 4, x.shape[1])))
        variance = s[:keep].square() / (x.shape[0] - 1)
        projection = vt[:keep] / torch.sqrt(variance + eps)[:, None]
        self.mean = mean.float().to(descriptors.device)
        self.projection = projection.float().to(descriptors.device)
        return keep

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # the fitted size depends on the data: take the saved buffers' shapes before copying
        for key in ("mean", "projection"):
            if prefix + key in state_dict:
                setattr(self, key, torch.empty_like(state_dict[prefix + key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, descriptors: Tensor) -> Tensor:
        if not self.fitted:
            return descriptors
        return F.normalize((descriptors - self.mean) @ self.projection.T, dim=1)

"""NetVLAD layer and PCA whitening: shapes, normalisation, the residual formula, gradcheck."""

import pytest
import torch
import torch.nn.functional as F

from maploc_netvlad.layer import NetVLAD, PCAWhitening, alpha_from_centroids, kmeans_centroids


def test_shapes_and_normalisation():
    layer = NetVLAD(num_clusters=5, dim=8)
    out = layer(torch.randn(3, 8, 4, 6))
    assert out.shape == (3, 40)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    # intra-normalisation: every cluster block has the same norm before the final L2 (1 / sqrt(K) after it)
    blocks = out.view(3, 5, 8).norm(dim=2)
    assert torch.allclose(blocks, torch.full((3, 5), 5 ** -0.5), atol=1e-5)


def test_wrong_input_shape_raises():
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        NetVLAD(4, 8)(torch.randn(2, 7, 3, 3))


def test_hard_assignment_limit_matches_vlad():
    """With a large alpha the soft assignment is the nearest centre: V(k) = sum over x nearest to c_k of (x - c_k)."""
    torch.manual_seed(0)
    K, D = 4, 6
    centroids = F.normalize(torch.randn(K, D), dim=1)
    layer = NetVLAD(K, D)
    layer.init_from_centroids(centroids, alpha=1e4)
    x = torch.randn(1, D, 3, 5)
    xn = F.normalize(x, dim=1).flatten(2)[0].T  # (N, D)
    nearest = torch.cdist(xn, centroids).argmin(dim=1)
    expected = torch.stack([(xn[nearest == k] - centroids[k]).sum(dim=0) for k in range(K)])
    expected = F.normalize(F.normalize(expected, dim=1).flatten(), dim=0)
    got = layer(x)[0]
    nonempty = torch.stack([(nearest == k).any() for k in range(K)])
    # empty clusters give a zero block in both
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert nonempty.any()


def test_gradcheck_float64():
    torch.manual_seed(0)
    layer = NetVLAD(3, 4).double()
    x = torch.randn(2, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-5)


def test_kmeans_and_alpha():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0]])
    x = (centres[:, None] + 0.1 * torch.randn(3, 50, 2)).reshape(-1, 2)
    c = kmeans_centroids(x, 3, seed=0)
    assert torch.cdist(c, centres).min(dim=1).values.max() < 0.2
    alpha = alpha_from_centroids(x, c, ratio=0.01)
    assert alpha > 0
    with pytest.raises(ValueError, match="at least 3"):
        kmeans_centroids(x[:2], 3)


def test_whitening_decorrelates_and_round_trips():
    torch.manual_seed(0)
    x = torch.randn(200, 10) @ torch.randn(10, 10) + 3.0
    w = PCAWhitening()
    assert not w.fitted and torch.equal(w(x), x)
    kept = w.fit(x, 6)
    assert kept == 6
    z = (x - w.mean) @ w.projection.T
    cov = z.T @ z / (len(x) - 1)
    assert torch.allclose(cov, torch.eye(6), atol=1e-3)
    assert torch.allclose(w(x).norm(dim=1), torch.ones(len(x)), atol=1e-5)
    other = PCAWhitening()
    other.load_state_dict(w.state_dict())  # saved buffers of a data-dependent size
    assert torch.allclose(other(x), w(x))
    assert PCAWhitening().fit(x[:40], 100) == 10  # capped at N / 4

"""Global-descriptor networks: a timm backbone cut at one stage + NetVLAD (+ PCA whitening or a learned projection).

* Teacher (``netvlad``): Arandjelović et al., CVPR 2016: VGG16 cut at conv5_3 (the ``full`` preset), or a smaller
  backbone for CPU (default: ResNet-18 cut after its third stage), NetVLAD, PCA whitening learned on the map.
* Student (``mobilenetvlad``): Sarlin, Debraine, Dymczyk, Siegwart & Cadena, "Leveraging Deep Visual Descriptors
  for Hierarchical Efficient Localization", CoRL 2018, Sec. III-A: MobileNetV2 with depth multiplier 0.35, NetVLAD
  and a fully connected dimensionality reduction, trained to regress the teacher's whitened descriptors.

Backbones come from timm with ``pretrained=False`` (no weights are downloaded).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maploc.api import Encoder
from maploc.data.photometric import IMAGENET_MEAN, IMAGENET_STD, INPUT_NORMS, normalize_images

from .layer import NetVLAD, PCAWhitening

__all__ = ["GlobalDescriptorNet", "NetVLADEncoder", "MobileNetVLADEncoder", "IMAGENET_MEAN", "IMAGENET_STD"]


class GlobalDescriptorNet(Encoder):
    """Images -> global descriptors: ``backbone`` (timm, ``features_only``) -> NetVLAD -> whitening / projection.

    Args:
        backbone: timm model name (e.g. ``resnet18``, ``vgg16``, ``mobilenetv2_035``).
        layer: index into the backbone's feature stages (``feature_info``) whose output NetVLAD pools.
        num_clusters: NetVLAD clusters ``K``.
        projection_dim: ``None``: the output is the NetVLAD vector, whitened by :attr:`whitening` once fitted
            (the teacher); an int: a learned linear projection to this dimension + L2 (the student's FC layer).
        input_norm: input normalisation before the backbone (:func:`maploc.data.photometric.normalize_images`):
            ``imagenet`` (fixed mean / std) or ``per_image`` (each image standardised by its own channel statistics).

    Raises:
        ValueError: a backbone timm cannot build or cut at ``layer``, or an ``input_norm`` not in ``INPUT_NORMS``.

    Shapes:
        ``forward``: ``(B, 3, H, W)`` float RGB in [0, 1] -> ``(B, D)`` float32 unit-L2 descriptors.
        ``local_features``: -> ``(B, C, h, w)`` backbone features (``h = H / stride``).
        ``vlad``: -> ``(B, K * C)`` NetVLAD vectors before whitening / projection.
    """

    output_stride: ClassVar[int] = 1

    def __init__(self, backbone: str = "resnet18", layer: int = 3, num_clusters: int = 64,
                 projection_dim: int | None = None, input_norm: str = "imagenet") -> None:
        super().__init__()
        import timm

        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(map(repr, INPUT_NORMS))}; got {input_norm!r}")
        self.input_norm = input_norm

        try:
            self.backbone = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=(layer,))
        except (RuntimeError, IndexError, ValueError) as e:
            raise ValueError(f"cannot build timm backbone {backbone!r} cut at stage {layer}: {e}") from None
        channels = int(self.backbone.feature_info.channels()[-1])
        self.stride = int(self.backbone.feature_info.reduction()[-1])
        self.netvlad = NetVLAD(num_clusters, channels)
        self.whitening = PCAWhitening()
        self.projection = nn.Linear(self.netvlad.output_dim, projection_dim) if projection_dim else None

    def local_features(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        return self.backbone(normalize_images(images, self.input_norm))[-1]

    def vlad(self, images: Tensor) -> Tensor:
        return self.netvlad(self.local_features(images))

    def forward(self, images: Tensor) -> Tensor:
        v = self.vlad(images)
        if self.projection is not None:
            return F.normalize(self.projection(v), dim=1)
        return self.whitening(v)

    @property
    def descriptor_dim(self) -> int:
        if self.projection is not None:
            return int(self.projection.out_features)
        return self.whitening.out_dim if self.whitening.fitted else self.netvlad.output_dim

    def batch_norm_layers(self) -> list[nn.Module]:
        """The backbone's batch-norm layers."""
        return [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.no_grad()
    def calibrate_batch_norm(self, images: Tensor, batch_size: int = 32) -> int:
        """Sets every batch-norm layer's running mean and variance to the exact average over ``images``
        (``(N, 3, H, W)`` in [0, 1]; cumulative averaging, ``momentum=None``), so that eval mode computes what
        train mode computes on this data.

        A backbone built with ``pretrained=False`` has running statistics 0 / 1: without this step, eval-mode
        features (used for the k-means initialisation, the descriptor cache and closed-form heads) and train-mode
        features (used by the loss) differ completely. Returns the number of layers calibrated.
        """
        layers = self.batch_norm_layers()
        if not layers or len(images) == 0:
            return 0
        was_training = self.training
        momenta = [m.momentum for m in layers]
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
        self.train()
        for start in range(0, len(images), batch_size):
            self.local_features(images[start:start + batch_size])
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        self.train(was_training)
        return len(layers)

    @torch.no_grad()
    def fit_projection(self, images: Tensor, targets: Tensor, ridge: float = 1e-2, batch_size: int = 32) -> float:
        """Initialises the student's linear projection by ridge regression of ``targets`` on this network's
        (eval-mode) NetVLAD vectors of ``images``: the closed-form minimiser of the distillation loss for the
        current features, with an intercept: ``W = T_c^T (X_c X_c^T + lambda I)^{-1} X_c`` (dual form; ``X_c``, ``T_c``
        the centred ``N`` x ``K C`` NetVLAD vectors and targets), bias ``mean(T) - W mean(X)``.

        Args:
            images: ``(N, 3, H, W)`` in [0, 1]. targets: ``(N, projection_dim)`` float.
            ridge: ``lambda`` relative to the mean squared norm of the centred NetVLAD vectors.

        Returns:
            the mean cosine of the projected (L2-normalised) outputs with ``targets`` after the fit.

        Raises:
            ValueError: the network has no projection, or sizes disagree.
        """
        if self.projection is None:
            raise ValueError("fit_projection needs a network built with projection_dim")
        if targets.shape != (len(images), self.projection.out_features):
            raise ValueError(f"targets must be ({len(images)}, {self.projection.out_features}), got {tuple(targets.shape)}")
        was_training = self.training
        self.eval()
        x = torch.cat([self.vlad(images[s:s + batch_size]) for s in range(0, len(images), batch_size)]).double()
        mean = x.mean(dim=0)
        xc = x - mean
        lam = ridge * float(xc.square().sum(dim=1).mean()) + 1e-12
        gram = xc @ xc.T + lam * torch.eye(len(xc), dtype=xc.dtype, device=xc.device)
        t = targets.to(xc)
        t_mean = t.mean(dim=0)
        weight = (t - t_mean).T @ torch.linalg.solve(gram, xc)  # (D, K C)
        bias = t_mean - weight @ mean
        self.projection.weight.copy_(weight.to(self.projection.weight))
        self.projection.bias.copy_(bias.to(self.projection.bias))
        cosine = float((F.normalize(x @ weight.T + bias, dim=1) * F.normalize(t, dim=1)).sum(dim=1).mean())
        self.train(was_training)
        return cosine

    def fingerprint(self) -> str:
        """A short SHA-256 of every parameter and buffer, and of ``input_norm`` unless ``imagenet`` (identifies the
        weights that built a saved map index)."""
        import hashlib

        h = hashlib.sha256()
        if self.input_norm != "imagenet":
            h.update(f"input_norm={self.input_norm}".encode())
        for key, value in sorted(self.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    @torch.no_grad()
    def init_clusters(self, images: Tensor, seed: int = 0, max_descriptors: int = 50_000, batch_size: int = 16) -> None:
        """Initialises the NetVLAD centres by faiss k-means on this backbone's local descriptors of ``images``
        (``(N, 3, H, W)``) and sets ``alpha`` from them (see :func:`~.layer.alpha_from_centroids`)."""
        from .layer import alpha_from_centroids, kmeans_centroids

        was_training = self.training
        self.eval()
        local = []
        for start in range(0, len(images), batch_size):
            f = self.netvlad.local_descriptors(self.local_features(images[start:start + batch_size]))
            local.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).cpu())
        x = torch.cat(local)
        g = torch.Generator().manual_seed(seed)
        if len(x) > max_descriptors:
            x = x[torch.randperm(len(x), generator=g)[:max_descriptors]]
        centroids = kmeans_centroids(x, self.netvlad.num_clusters, seed=seed)
        self.netvlad.init_from_centroids(centroids, alpha_from_centroids(x, centroids))
        self.train(was_training)


class NetVLADEncoder(GlobalDescriptorNet):
    """The ``netvlad`` encoder (entry point ``maploc.encoders``): the CPU-sized teacher, ResNet-18 stage 3 +
    NetVLAD (64 clusters), untrained unless a state dict is loaded. See :class:`GlobalDescriptorNet`."""

    def __init__(self, backbone: str = "resnet18", layer: int = 3, num_clusters: int = 64) -> None:
        super().__init__(backbone, layer, num_clusters)


class MobileNetVLADEncoder(GlobalDescriptorNet):
    """The ``mobilenetvlad`` encoder (entry point ``maploc.encoders``): MobileNetV2 x0.35 (timm
    ``mobilenetv2_035``) + NetVLAD (64 clusters) + a 256-d projection. See :class:`GlobalDescriptorNet`."""

    def __init__(self, backbone: str = "mobilenetv2_035", layer: int = 4, num_clusters: int = 64,
                 projection_dim: int = 256) -> None:
        super().__init__(backbone, layer, num_clusters, projection_dim)

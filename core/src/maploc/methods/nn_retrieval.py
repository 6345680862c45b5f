"""``nn-retrieval``: the built-in baseline, nearest-neighbour pose retrieval on image thumbnails.

Each map image is reduced to a small grayscale thumbnail, normalised to zero mean and unit norm
(the tiny-image descriptor of Torralba et al., "80 million tiny images", TPAMI 2008, as used for
place recognition by e.g. SeqSLAM's patch normalisation); a query takes the ``T_cam2world`` of the
map image with the highest cosine similarity. It needs no training and gives every learned method
a floor to beat: its error is the distance between the query and the nearest *mapped* viewpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F

from maploc.api import Dataset, Encoder, Method, RunContext
from maploc.config import DataConfig, at_least
from maploc.types import PoseEstimate, Retrieval, Sample

__all__ = ["NNRetrievalConfig", "NearestNeighbourRetrieval", "thumbnail_descriptors"]


@attrs.frozen(kw_only=True)
class NNRetrievalConfig:
    """Config of ``nn-retrieval``.

    Attributes:
        thumbnail_width: thumbnail width in pixels (height follows the aspect ratio).
        grayscale: use luminance only (more robust to colour changes) instead of RGB.
        top_k: number of ranked map samples kept per query (``PoseEstimate.retrieval``).
        data: dataset options.
    """

    thumbnail_width: int = attrs.field(default=32, validator=at_least(2))
    grayscale: bool = True
    top_k: int = attrs.field(default=10, validator=at_least(1))
    data: DataConfig = DataConfig()


def thumbnail_descriptors(images: torch.Tensor, width: int, grayscale: bool = True) -> torch.Tensor:
    """Zero-mean, unit-norm thumbnails.

    Args:
        images: ``(B, 3, H, W)`` float in [0, 1].
        width: thumbnail width in pixels; the height keeps the aspect ratio.
        grayscale: reduce to luminance (ITU-R BT.601 weights) first.

    Returns:
        ``(B, D)`` float32 descriptors with unit L2 norm.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    H, W = images.shape[-2:]
    size = (max(1, round(H * width / W)), width)
    x = images.float()
    if grayscale:
        x = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    x = F.interpolate(x, size=size, mode="area").flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return F.normalize(x, dim=1)


class ThumbnailEncoder(Encoder):
    """The global descriptor of ``nn-retrieval`` as a shared part (entry point ``maploc.encoders``:
    ``thumbnail``): tiny zero-mean, unit-norm thumbnails (Torralba et al., "80 million tiny images",
    TPAMI 2008), the raw-descriptor baseline every retrieval method must beat.

    Args:
        width: thumbnail width in pixels (the height keeps the aspect ratio).
        grayscale: reduce to luminance first.
    """

    def __init__(self, width: int = 32, grayscale: bool = True) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.width = int(width)
        self.grayscale = bool(grayscale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1] -> ``(B, D)`` float32 unit-norm descriptors."""
        return thumbnail_descriptors(images, self.width, self.grayscale)


class NearestNeighbourRetrieval(Method[NNRetrievalConfig]):
    """Nearest-neighbour pose retrieval (see the module docstring)."""

    name: ClassVar[str] = "nn-retrieval"
    Config = NNRetrievalConfig
    presets_package: ClassVar[str | None] = None
    default_dataset: ClassVar[str] = "7scenes"
    metric_family: ClassVar[str] = "pose6dof"
    localize_batch_size: ClassVar[int] = 16
    supports_leave_one_out: ClassVar[bool] = True

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Computes the thumbnail descriptor of every map image.

        Raises:
            DataError: the map is empty, or a map image has no pose (nn-retrieval returns the pose of the
                nearest map image, so it needs them; a place-recognition set without poses, e.g. two-pass,
                is scored by the retrieval methods' thumbnails baseline instead).
        """
        from maploc.errors import DataError

        if len(map_data) == 0:
            raise DataError("the map split is empty")
        descriptors, poses, names = [], [], []
        for i in range(len(map_data)):
            sample = map_data[i]
            if sample.T_cam2world is None:
                raise DataError(f"nn-retrieval returns map poses, but map image {sample.name} has none: use it on a "
                                "dataset with posed map images (the retrieval methods' 'thumbnails' baseline is its "
                                "counterpart for place recognition)")
            descriptors.append(self._describe([sample]))
            poses.append(sample.T_cam2world)
            names.append(sample.name)
        self.map_descriptors = torch.cat(descriptors)
        self.map_poses = poses
        self.map_names = names

    def _describe(self, samples: Sequence[Sample]) -> torch.Tensor:
        encoder = ThumbnailEncoder(self.config.thumbnail_width, self.config.grayscale)
        return torch.cat([encoder(s.image[None]) for s in samples])

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        similarity = self._describe(queries) @ self.map_descriptors.T  # (Q, M) cosine similarity
        if context.leave_one_out:  # a query's own image is never its answer
            own = torch.tensor([[q.name == m for m in self.map_names] for q in queries], dtype=torch.bool)
            similarity = similarity.masked_fill(own, float("-inf"))
        k = min(self.config.top_k, similarity.shape[1] - int(context.leave_one_out))
        scores, order = similarity.topk(k, dim=1)
        return [
            PoseEstimate(
                T_cam2world=self.map_poses[int(order[q, 0])],
                success=True,
                confidence=float(scores[q, 0]),
                retrieval=Retrieval(indices=order[q], scores=scores[q]),
            )
            for q in range(len(queries))
        ]

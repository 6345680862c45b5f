"""The two value types and the two interfaces that local-feature pipelines compose by name.

An extractor (``maploc.encoders`` entry point, a :class:`LocalFeatureExtractor`) turns one image into
:class:`LocalFeatures`; a matcher (``maploc.matchers`` entry point, a :class:`FeatureMatcher`) turns two
:class:`LocalFeatures` into :class:`Matches`. Keypoints are always in the pixels of the image as it was given
(pixel centres at integer coordinates, OpenCV convention), whatever resize the extractor used inside.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor

from maploc.api import Encoder, Matcher
from maploc.errors import ConfigError

__all__ = ["LocalFeatures", "Matches", "LocalFeatureExtractor", "FeatureMatcher", "FeatureMismatchError"]


class FeatureMismatchError(ConfigError, ValueError):
    """Features a matcher cannot match (another extractor's, or two different extractors'). A
    :class:`~maploc.errors.ConfigError` (the CLI prints it as one line) and a ``ValueError`` (the contract of
    :meth:`FeatureMatcher.match`)."""


def _as_float32(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


@attrs.frozen(kw_only=True)
class LocalFeatures:
    """Keypoints and descriptors of one image.

    Attributes:
        keypoints: ``(N, 2)`` float32 pixel coordinates ``(x, y)`` in the image as given (not the resized one).
        descriptors: ``(N, D)`` float32 descriptors (``D`` = 128 SIFT, 64 XFeat, 128 ALIKED-n16).
        scores: ``(N,)`` float32 detection scores (larger = stronger).
        image_size: ``(width, height)`` of the image as given, pixels.
        scale: the resize factor the extractor applied before detecting (resized = scale x given); keypoints are
            already divided by it.
        extractor: the name of the extractor that made them (a matcher checks it expects these descriptors).
    """

    keypoints: np.ndarray = attrs.field(converter=_as_float32)
    descriptors: np.ndarray = attrs.field(converter=_as_float32)
    scores: np.ndarray = attrs.field(converter=_as_float32)
    image_size: tuple[int, int] = attrs.field(converter=lambda v: (int(v[0]), int(v[1])))
    scale: float = 1.0
    extractor: str = ""

    def __attrs_post_init__(self) -> None:
        n = self.keypoints.shape[0]
        if self.keypoints.shape != (n, 2) or self.descriptors.ndim != 2 or self.descriptors.shape[0] != n \
                or self.scores.shape != (n,):
            raise ValueError(f"LocalFeatures: expected keypoints (N, 2), descriptors (N, D), scores (N,); got "
                             f"{self.keypoints.shape}, {self.descriptors.shape}, {self.scores.shape}")

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def save(self, path: Path) -> None:
        """Writes an ``.npz`` (no pickle) atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, keypoints=self.keypoints, descriptors=self.descriptors, scores=self.scores,
                 image_size=np.asarray(self.image_size, dtype=np.int64), scale=np.float64(self.scale),
                 extractor=np.asarray(self.extractor))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LocalFeatures:
        """Reads a file written by :meth:`save` (``allow_pickle=False``).

        Raises:
            ValueError / OSError: an unreadable or malformed file.
        """
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(keypoints=z["keypoints"], descriptors=z["descriptors"], scores=z["scores"],
                       image_size=tuple(z["image_size"].tolist()), scale=float(z["scale"]),
                       extractor=str(z["extractor"]))


@attrs.frozen(kw_only=True)
class Matches:
    """Index pairs between two :class:`LocalFeatures`.

    Attributes:
        pairs: ``(M, 2)`` int64 ``(index in features0, index in features1)``, each index used at most once.
        confidence: ``(M,)`` float32 in ``[0, 1]`` (larger = more certain).
    """

    pairs: np.ndarray = attrs.field(converter=lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.int64).reshape(-1, 2)))
    confidence: np.ndarray = attrs.field(converter=_as_float32)

    def __attrs_post_init__(self) -> None:
        if self.confidence.shape != (self.pairs.shape[0],):
            raise ValueError(f"Matches: expected confidence ({self.pairs.shape[0]},), got {self.confidence.shape}")

    def __len__(self) -> int:
        return int(self.pairs.shape[0])


class LocalFeatureExtractor(Encoder):
    """A local feature extractor (``maploc.encoders`` entry point).

    Subclasses implement :meth:`extract`; ``forward`` runs it per image of a batch. Constructor options are
    keyword-only with defaults (e.g. ``max_keypoints``, ``resize_max`` in pixels of the longer side), so that a
    pipeline can build any extractor by name.

    Class attributes:
        name: the entry-point name.
        descriptor_dim: ``D`` of the descriptors.
    """

    name: ClassVar[str] = ""
    descriptor_dim: ClassVar[int] = 0

    @abc.abstractmethod
    def extract(self, image: Tensor) -> LocalFeatures:
        """Features of one ``(3, H, W)`` float RGB image in ``[0, 1]``."""

    def options(self) -> dict[str, Any]:
        """The constructor options that change the features (JSON-serialisable), for cache keys such as
        :class:`maploc_features.cache.FeatureCache`; ``{}`` unless a subclass says more."""
        return {}

    def forward(self, images: Tensor) -> Mapping[str, Tensor]:  # type: ignore[override]
        """Batch form: ``(B, 3, H, W)`` -> padded ``keypoints (B, N, 2)``, ``descriptors (B, N, D)``, ``scores
        (B, N)`` (``-inf`` scores mark padding)."""
        feats = [self.extract(img) for img in images]
        n = max((len(f) for f in feats), default=0)
        b = len(feats)
        kp = torch.zeros(b, n, 2)
        desc = torch.zeros(b, n, self.descriptor_dim)
        scores = torch.full((b, n), float("-inf"))
        for i, f in enumerate(feats):
            kp[i, : len(f)] = torch.from_numpy(f.keypoints)
            desc[i, : len(f)] = torch.from_numpy(f.descriptors)
            scores[i, : len(f)] = torch.from_numpy(f.scores)
        return {"keypoints": kp, "descriptors": desc, "scores": scores}


class FeatureMatcher(Matcher):
    """A matcher of two images' local features (``maploc.matchers`` entry point).

    Class attributes:
        name: the entry-point name.
        extractors: the extractor names whose descriptors it can match (empty = any).
    """

    name: ClassVar[str] = ""
    extractors: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def match(self, query_features: LocalFeatures, map_representation: LocalFeatures) -> Matches:  # type: ignore[override]
        """Matches of ``query_features`` (features0) against one map image's ``map_representation`` (features1).

        Raises:
            ValueError: features of an extractor this matcher cannot match (names both); the matchers of this
                package raise :class:`FeatureMismatchError`, a ``ValueError`` and a ``ConfigError``.
        """

    def check_features(self, f0: LocalFeatures, f1: LocalFeatures) -> None:
        """Raises :class:`FeatureMismatchError` (one line naming the extractors) unless ``f0`` and ``f1`` come
        from the same extractor, one of :attr:`extractors` (any when empty), with descriptors of one size."""
        if self.extractors and f0.extractor not in self.extractors:
            raise FeatureMismatchError(
                f"matcher {self.name!r} cannot match features of extractor {f0.extractor or '(unnamed)'!r}; it matches "
                f"{', '.join(repr(e) for e in self.extractors)}")
        if f0.extractor != f1.extractor:
            raise FeatureMismatchError(
                f"matcher {self.name!r} was given features of two extractors, {f0.extractor or '(unnamed)'!r} and "
                f"{f1.extractor or '(unnamed)'!r}; both images need the same one")
        if f0.descriptors.shape[1] != f1.descriptors.shape[1]:
            raise FeatureMismatchError(
                f"matcher {self.name!r}: descriptors of {f0.descriptors.shape[1]} and {f1.descriptors.shape[1]} "
                f"dimensions (extractor {f0.extractor!r})")

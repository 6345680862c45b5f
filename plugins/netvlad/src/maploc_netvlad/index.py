"""The map index: faiss search over global descriptors, saved to and loaded from a folder.

Exact inner product (``IndexFlatIP``) by default; inverted file with product quantisation (``IndexIVFPQ``,
Jégou, Douze & Schmid, "Product quantization for nearest neighbor search", TPAMI 2011) for large maps. The folder
holds ``index.faiss`` (faiss's own format, no pickle), ``index.json`` (kind, dimension, map names) and, when given,
``whitening.npz`` (the PCA whitening learned on the map).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maploc.errors import ConfigError, DataError
from maploc.files import atomic_write_bytes, atomic_write_text

__all__ = ["MapIndex", "INDEX_KINDS"]

INDEX_KINDS = ("flat", "ivfpq")


class MapIndex:
    """Global descriptors of the map images, searchable by inner product (cosine for unit descriptors).

    Args:
        dim: descriptor dimension ``D``.
        kind: ``flat`` (exact) or ``ivfpq``.
        nlist: IVF cells (``ivfpq``; reduced to ``N / 39`` when fewer training vectors exist).
        m: PQ sub-quantisers (``ivfpq``; must divide ``dim``).
        nbits: bits per sub-quantiser code.
        nprobe: cells visited per search.

    Raises:
        ConfigError: unknown kind, or ``m`` does not divide ``dim``.
    """

    def __init__(self, dim: int, kind: str = "flat", nlist: int = 64, m: int = 16, nbits: int = 8, nprobe: int = 8):
        if kind not in INDEX_KINDS:
            raise ConfigError(f"index.kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
        if kind == "ivfpq" and dim % m:
            raise ConfigError(f"index.pq_subquantizers={m} must divide the descriptor dimension {dim}")
        self.dim, self.kind, self.nlist, self.m, self.nbits, self.nprobe = dim, kind, nlist, m, nbits, nprobe
        self.names: list[str] = []
        self.index = None
        #: free-form facts saved in ``index.json`` (e.g. ``model_fingerprint``, the weights that encoded the map)
        self.info: dict[str, str] = {}

    def build(self, descriptors: np.ndarray, names: Sequence[str]) -> MapIndex:
        """Adds ``(N, D)`` float32 descriptors named ``names`` (training the quantisers for ``ivfpq``).

        Raises:
            DataError: empty map, or the descriptors' dimension is not ``dim``, or names and rows differ.
        """
        import faiss

        x = np.ascontiguousarray(descriptors, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise DataError(f"the map index needs at least one descriptor, got an array of shape {x.shape}")
        if x.shape[1] != self.dim:
            raise DataError(f"map descriptors have dimension {x.shape[1]}, the index expects {self.dim}")
        if len(names) != x.shape[0]:
            raise DataError(f"{len(names)} map names for {x.shape[0]} descriptors")
        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        else:
            nlist = max(1, min(self.nlist, x.shape[0] // 39))
            nbits = self.nbits if x.shape[0] >= 4 * 2**self.nbits else max(1, int(np.log2(max(2, x.shape[0] // 4))))
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(self.dim), self.dim, nlist, self.m, nbits,
                                     faiss.METRIC_INNER_PRODUCT)
            index.train(x)
            index.nprobe = min(self.nprobe, nlist)
        index.add(x)
        self.index = index
        self.names = list(names)
        return self

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` map entries for ``(Q, D)`` float32 queries.

        Returns:
            ``scores`` ``(Q, k')`` float32 inner products (best first) and ``indices`` ``(Q, k')`` int64 map rows,
            ``k' = min(k, len(self))``.

        Raises:
            DataError: the index is empty, or the queries' dimension is not ``dim``.
        """
        if self.index is None or len(self) == 0:
            raise DataError("the map index is empty: build it from a non-empty map split first")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"query descriptors have shape {q.shape}; the map index holds dimension {self.dim}")
        scores, indices = self.index.search(q, min(k, len(self)))
        return scores, indices

    # ---- persistence ---------------------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Writes ``index.faiss`` and ``index.json`` into ``folder`` (atomically); returns the folder."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.index is None:
            raise DataError("cannot save an empty map index")
        atomic_write_bytes(folder / "index.faiss", faiss.serialize_index(self.index).tobytes())
        meta = {"kind": self.kind, "dim": self.dim, "nprobe": self.nprobe, "info": self.info, "names": self.names}
        atomic_write_text(folder / "index.json", json.dumps(meta, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path, expected_dim: int | None = None) -> MapIndex:
        """Reads a folder written by :meth:`save`.

        Args:
            folder: the index folder.
            expected_dim: the dimension of the descriptors that will query it (checked when given).

        Raises:
            DataError: a file is missing or malformed, or the saved dimension differs from ``expected_dim``
                (the message names the file).
        """
        import faiss

        folder = Path(folder)
        meta_path, index_path = folder / "index.json", folder / "index.faiss"
        for p in (meta_path, index_path):
            if not p.is_file():
                raise DataError(f"{p}: map index file not found")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            dim, kind, names = int(meta["dim"]), str(meta["kind"]), [str(n) for n in meta["names"]]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{meta_path}: malformed map index description ({e})") from None
        if expected_dim is not None and dim != expected_dim:
            raise DataError(
                f"{index_path} holds {dim}-d descriptors but this model produces {expected_dim}-d ones; "
                "rebuild the index (omit index.load_from) or use the model that built it"
            )
        try:
            index = faiss.deserialize_index(np.frombuffer(index_path.read_bytes(), dtype=np.uint8))
        except RuntimeError as e:
            raise DataError(f"{index_path}: not a faiss index ({str(e).splitlines()[0]})") from None
        if index.d != dim or index.ntotal != len(names):
            raise DataError(f"{index_path}: {index.ntotal} entries of dimension {index.d} disagree with {meta_path}")
        out = cls(dim, kind, nprobe=int(meta.get("nprobe", 8)))
        out.index, out.names = index, names
        info = meta.get("info", {})
        out.info = {str(k): str(v) for k, v in info.items()} if isinstance(info, dict) else {}
        if kind == "ivfpq":
            index.nprobe = out.nprobe
        return out

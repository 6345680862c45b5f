"""The method-specific report section of ``netvlad`` and ``mobilenetvlad``: the spatial split, timings, training
summary, validation blocks, the map index. The recall tables (method, ``thumbnails`` baseline, ``chance``, per
condition) are the core's."""

from __future__ import annotations

from typing import Any

__all__ = ["sections"]


def sections(method: Any) -> list[tuple[str, str]]:
    """``[(title, body)]``: one "Split, timing and training" section (plain text lines)."""
    cfg = method.config
    lines = []
    if method.split is not None:
        lines.append(f"spatial split (split.json; the core scores the test blocks' queries): {method.split.describe()}")
    else:
        lines.append("no spatial split (split.block_size_m=0 or nothing trained): every query is scored")
    lines.extend(method.validation)
    timing = method.timing
    if timing["map_images"]:
        lines.append(f"encode time per map image: {1000.0 * timing['map_encode_s'] / timing['map_images']:.2f} ms")
    if timing["queries"]:
        q = timing["queries"]
        lines.append(f"encode time per query image: {1000.0 * timing['query_encode_s'] / q:.2f} ms")
        lines.append(f"faiss search time per query ({cfg.index.kind}): {1000.0 * timing['search_s'] / q:.2f} ms")
    if method.model is not None:
        lines.append(f"descriptor dimension: {int(method.model.descriptor_dim)}")
    for k, v in method.fit_summary.items():
        fmt = ".3f" if "cosine" in k else ".1f"
        lines.append(f"training {k}: {v:{fmt}}" if isinstance(v, float) else f"training {k}: {v}")
    folder = method.index_dir()
    if method.reused_index is not None:
        n = len(method.map_meta or ())
        lines.append(f"map index reused from {method.reused_index}: the descriptors of its run; the {n} map images "
                     "were read for the thumbnails baseline only, not encoded by the network")
    elif folder is not None and (folder.parent / "checkpoints").is_dir():
        lines.append(f"map index saved in {folder}; `maploc eval --checkpoint {folder.parent}/checkpoints/last.ckpt` "
                     "reuses it")
    elif folder is not None:
        lines.append(f"map index saved in {folder}")
    return [("Split, timing and training", "\n".join(lines))]

"""NetVLAD teacher vs MobileNetVLAD student, and faiss exact vs IVF-PQ search. Prints tables; not a test.

    python benchmarks/bench_netvlad.py [--height 96] [--teacher-run RUN] [--student-run RUN] [--sizes 10000 100000]

1. Encode time per image at batch 1 and 16 on this machine's CPU (``torch.get_num_threads()`` threads; CUDA too
   when available), parameters and multiply-adds (``torch.utils.flop_counter``: FLOPs / 2) of the default teacher
   (ResNet-18 stage 3 + NetVLAD 64) and student (MobileNetV2 x0.35 + NetVLAD 64 + 256-d projection), at the default
   input size (``--height`` x 4/3). Recall@5 of each is read from the ``metrics.json`` of runs given with
   ``--teacher-run`` / ``--student-run`` (the same queries and map).
2. faiss search time per query and recall@1 (fraction of queries whose exact nearest neighbour is ranked first)
   for ``IndexFlatIP`` vs ``IndexIVFPQ`` on synthetic unit descriptors (256-d, clustered, queries = noisy map
   entries) with 10k and 100k entries.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def _macs(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2.0


def encoders(height: int, repeats: int, runs: dict[str, Path | None]) -> None:
    from maploc_netvlad.model import MobileNetVLADEncoder, NetVLADEncoder

    width = height * 4 // 3
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for label, cls in (("teacher netvlad", NetVLADEncoder), ("student mobilenetvlad", MobileNetVLADEncoder)):
        model = cls().eval()
        params = sum(p.numel() for p in model.parameters())
        macs = _macs(model, torch.rand(1, 3, height, width))
        row = {"model": label, "params_M": params / 1e6, "GMACs/img": macs / 1e9}
        for device in devices:
            m = model.to(device)
            for batch in (1, 16):
                x = torch.rand(batch, 3, height, width, device=device)

                def run(m: torch.nn.Module = m, x: torch.Tensor = x, device: str = device) -> None:
                    with torch.no_grad():
                        m(x)
                    if device == "cuda":
                        torch.cuda.synchronize()

                row[f"{device} b{batch} ms/img"] = 1000 * _time(run, repeats) / batch
        run_dir = runs.get(label.split()[0])
        if run_dir is not None:
            metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
            row["recall@5 (run)"] = metrics.get("recall_at_5", float("nan"))
            row["held-out R@5 25m"] = metrics.get("recall_at_5_25m/held_out", float("nan"))
        rows.append(row)
    _print(rows, f"Encoders at {height}x{width} px, {torch.get_num_threads()} CPU threads")
    if len(rows) == 2:
        t, s = rows
        for key in [k for k in t if k.endswith("ms/img")]:
            print(f"speed-up of the student ({key}): {t[key] / s[key]:.2f}x")
        if "recall@5 (run)" in t and "recall@5 (run)" in s and t["recall@5 (run)"] > 0:
            print(f"student recall@5 / teacher recall@5: {100 * s['recall@5 (run)'] / t['recall@5 (run)']:.1f} %")


def search(sizes: list[int], dim: int, queries: int) -> None:
    import faiss

    from maploc_netvlad.index import MapIndex

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        centres = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
        x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        pick = rng.integers(0, n, queries)
        q = x[pick] + 0.05 * rng.standard_normal((queries, dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        names = [str(i) for i in range(n)]
        exact = None
        for kind in ("flat", "ivfpq"):
            t0 = time.perf_counter()
            index = MapIndex(dim, kind, nlist=int(4 * np.sqrt(n)), m=32, nbits=8, nprobe=16).build(x, names)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = []
            for i in range(queries):  # one query at a time, as localize sees them
                found.append(index.search(q[i : i + 1], 10)[1])
            top = np.concatenate(found)
            per_query = (time.perf_counter() - t0) / queries
            if kind == "flat":
                exact = top[:, 0]
            recall = float((top[:, 0] == exact).mean()) * 100
            memory = faiss.serialize_index(index.index).nbytes / 2**20
            rows.append({"entries": n, "index": kind, "build_s": build, "ms/query": 1000 * per_query,
                         "recall@1 vs exact %": recall, "index MiB": memory})
    _print(rows, f"faiss search, {dim}-d unit descriptors, {queries} queries one at a time, "
                 f"{faiss.omp_get_max_threads()} threads")


def _print(rows: list[dict], title: str) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[k for k in keys]] + [[_fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    print(f"\n{title}")
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def _fmt(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--teacher-run", type=Path)
    p.add_argument("--student-run", type=Path)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--skip-encoders", action="store_true")
    p.add_argument("--skip-search", action="store_true")
    a = p.parse_args()
    if not a.skip_encoders:
        encoders(a.height, a.repeats, {"teacher": a.teacher_run, "student": a.student_run})
    if not a.skip_search:
        search(a.sizes, a.dim, a.queries)


if __name__ == "__main__":
    main()

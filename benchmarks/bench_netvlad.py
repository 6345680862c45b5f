"""NetVLAD teachers vs the MobileNetVLAD student, and faiss exact vs IVF-PQ search. Prints tables; not a test.

    python benchmarks/bench_netvlad.py [--height 96] [--threads 1 2] [--teacher-run RUN] [--student-run RUN]

1. Encoders, all at the same input size (``--height`` x 4/3 px, the default 96 x 128 of the main jobs), the same
   thread counts (``--threads``, set with ``torch.set_num_threads``), batch 1 and 16, in eval mode under
   ``torch.no_grad``, after ``--warmup`` calls, median of ``--repeats`` timed calls: parameters, multiply-adds
   (``torch.utils.flop_counter``: FLOPs / 2, including NetVLAD and the whitening / projection) and ms per image of

   * the default teacher (``netvlad``: ResNet-18 cut after stage 3 + NetVLAD 64 + PCA whitening to 512 dims, the
     configured maximum; a run keeps at most a quarter of its map size);
   * the paper's teacher (``netvlad --preset full``: VGG16 conv5_3 + NetVLAD 64 + whitening to 4096 dims), the
     network the MobileNetVLAD paper's "5x faster" is measured against;
   * the student (``mobilenetvlad``: MobileNetV2 x0.35 + NetVLAD 64 + 256-d projection).

   Whitening matrices have the configured shapes (random values: only their cost matters here). Speed-ups are
   teacher time / student time in the same setting. Recall@5 comes from the ``metrics.json`` of runs given with
   ``--teacher-run`` / ``--student-run``.
2. faiss search time per query and recall@1 (fraction of queries whose exact nearest neighbour is ranked first)
   for ``IndexFlatIP`` vs ``IndexIVFPQ`` on synthetic unit descriptors (256-d, clustered, queries = noisy map
   entries) with 10k and 100k entries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def _median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def _macs(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2.0


def _models() -> list[tuple[str, torch.nn.Module]]:
    from maploc_netvlad.model import GlobalDescriptorNet

    def teacher(backbone: str, layer: int, whitening_dim: int) -> torch.nn.Module:
        m = GlobalDescriptorNet(backbone, layer, 64)
        d = m.netvlad.output_dim
        m.whitening.mean = torch.zeros(d)
        m.whitening.projection = torch.randn(whitening_dim, d) / d**0.5
        return m

    return [
        ("teacher netvlad (default: resnet18 stage 3)", teacher("resnet18", 3, 512)),
        ("teacher netvlad --preset full (vgg16 conv5_3)", teacher("vgg16", 4, 4096)),
        ("student mobilenetvlad (mobilenetv2_035)", GlobalDescriptorNet("mobilenetv2_035", 4, 64, projection_dim=256)),
    ]


def encoders(height: int, threads: list[int], warmup: int, repeats: int, runs: dict[str, Path | None]) -> None:
    width = height * 4 // 3
    rows = []
    models = _models()
    for label, model in models:
        model.eval()
        params = sum(p.numel() for p in model.parameters())
        row: dict[str, object] = {"model": label, "params_M": params / 1e6,
                                  "GMACs/img": _macs(model, torch.rand(1, 3, height, width)) / 1e9}
        for n in threads:
            torch.set_num_threads(n)
            for batch in (1, 16):
                x = torch.rand(batch, 3, height, width)

                def run(m: torch.nn.Module = model, x: torch.Tensor = x) -> None:
                    with torch.no_grad():
                        m(x)

                row[f"{n}thr b{batch} ms/img"] = _median_ms(run, warmup, repeats) / batch
        rows.append(row)
    devices = "CPU"
    if torch.cuda.is_available():
        devices += " (a CUDA device is present: not timed here)"
    _print(rows, f"Encoders at {height}x{width} px on {devices}, median of {repeats} calls after {warmup} warm-up")
    student = rows[-1]
    for t in rows[:-1]:
        ups = ", ".join(f"{k.replace(' ms/img', '')} {t[k] / student[k]:.1f}x" for k in t if str(k).endswith("ms/img"))
        print(f"student speed-up vs {t['model']}: {ups}; multiply-adds {t['GMACs/img'] / student['GMACs/img']:.0f}x")
    recalls = {}
    for who, run_dir in runs.items():
        if run_dir is None:
            continue
        m = json.loads((Path(run_dir) / "metrics.json").read_text())
        key = "recall_at_5"  # the core's score of the run's test-block queries (maploc.evaluation.scoring)
        recalls[who] = (m.get(key, float("nan")), key, m.get("thumbnails:" + key, float("nan")),
                        m.get("chance:" + key, float("nan")))
        print(f"{who} run {run_dir}: {key} = {recalls[who][0]:.1f} % (thumbnails {recalls[who][2]:.1f} %, "
              f"chance {recalls[who][3]:.1f} %)")
    if "teacher" in recalls and "student" in recalls and recalls["teacher"][0] > 0:
        print(f"student recall@5 / teacher recall@5: {100 * recalls['student'][0] / recalls['teacher'][0]:.1f} %")


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
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--teacher-run", type=Path)
    p.add_argument("--student-run", type=Path)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--skip-encoders", action="store_true")
    p.add_argument("--skip-search", action="store_true")
    a = p.parse_args()
    if not a.skip_encoders:
        encoders(a.height, a.threads, a.warmup, a.repeats, {"teacher": a.teacher_run, "student": a.student_run})
    if not a.skip_search:
        search(a.sizes, a.dim, a.queries)


if __name__ == "__main__":
    main()

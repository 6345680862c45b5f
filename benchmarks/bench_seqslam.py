"""SeqSLAM matching: maploc's vectorised, chunked PyTorch search against a straightforward
per-query NumPy loop of the same algorithm (``maploc_seqslam.reference_loop``).

Synthetic descriptors: a reference traversal of M frames (Gaussian descriptors of ``--dim``
values) and a query traversal of M frames that follows it at speed 1 with noise. Each
configuration runs in its own process so that its peak resident memory (``ru_maxrss``) is its own;
the table shows the peak and the peak above the process's resident size just before matching
(imports and descriptors loaded), wall time and the process's CPU time (``time.process_time``;
on a loaded machine the CPU time is the fairer comparison), and the speed-up as wall/CPU.
The NumPy loop runs on the first ``--loop-queries`` queries
when M is large (its time per query is extrapolated, and said so); the matches of those queries
are compared with the vectorised search (identical = same best reference index).

    python benchmarks/bench_seqslam.py                       # 200, 2000, 20000 frames, dim 64
    python benchmarks/bench_seqslam.py --sizes 2000 --dim 2048   # SeqSLAM's 64x32 images

The whole pipeline is timed (difference rows, contrast enhancement, sequence search), ds=10,
v 0.8..1.2 step 0.1 (5 velocities), one CPU thread for both by default (``--threads``), the
same budget as the NumPy loop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _data(M: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(M, dim)).astype(np.float32)
    query = (refs + rng.normal(scale=1.5, size=(M, dim))).astype(np.float32)
    return refs, query


def worker(impl: str, M: int, dim: int, n_queries: int, threads: int, out: Path, device: str = "cpu") -> None:
    import torch

    from maploc_seqslam.reference_loop import seqslam_loop
    from maploc_seqslam.search import SearchParams, SequenceSearch, difference_rows, enhance_rows

    if threads:
        torch.set_num_threads(threads)
    refs, query = _data(M, dim)
    query = query[:n_queries]
    params = SearchParams()
    cuda = device.startswith("cuda")

    def vectorised() -> np.ndarray:
        search = SequenceSearch(params, M, device=device)
        refs_t = torch.from_numpy(refs).to(device)
        chunk = 256
        parts = []
        for s in range(0, query.shape[0], chunk):
            rows = difference_rows(torch.from_numpy(query[s:s + chunk]).to(device), refs_t)
            parts.append(search.push(enhance_rows(rows, params.r_window)).best)
        return torch.cat(parts).cpu().numpy()

    if cuda and impl != "numpy-loop":  # one untimed pass on a short prefix loads the kernels
        n_all = query.shape[0]
        query = query[:min(n_all, 300)]
        vectorised()
        query = _data(M, dim)[1][:n_queries]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    if impl == "numpy-loop":
        best, _ = seqslam_loop(query, refs, params)
    else:
        best = vectorised()
        if cuda:
            torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if cuda and impl != "numpy-loop" else None
    np.save(out.with_suffix(".npy"), best)
    out.write_text(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "queries": int(query.shape[0]), "peak_mib": _peak_mib(),
                               "base_mib": base, "gpu_peak_mib": gpu_peak}))


def run(impl: str, M: int, dim: int, n_queries: int, threads: int, tmp: Path, device: str = "cpu") -> dict:
    out = tmp / f"{impl}-{M}-{dim}.json"
    cmd = [sys.executable, __file__, "--worker", impl, str(M), str(dim), str(n_queries), str(threads), str(out), device]
    subprocess.run(cmd, check=True)
    result = json.loads(out.read_text())
    result["best"] = np.load(out.with_suffix(".npy"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,2000,20000", help="reference (= query) traversal lengths")
    parser.add_argument("--dim", type=int, default=64, help="descriptor length (SeqSLAM's 64x32 images: 2048)")
    parser.add_argument("--loop-queries", type=int, default=1000,
                        help="queries the NumPy loop runs when M is larger (time extrapolated)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the NumPy loop's budget; 0 = torch's default)")
    parser.add_argument("--device", default="cpu",
                        help="where maploc's search runs (cpu, cuda; the NumPy loop always runs on the CPU). On CUDA "
                             "the time includes copying descriptors to the GPU and the matches back; one untimed "
                             "pass warms up the kernels; the +MiB column is then the GPU's peak allocation")
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, M, dim, nq, threads, out, device = args.worker
        worker(impl, int(M), int(dim), int(nq), int(threads), Path(out), device)
        return
    print(f"load before: {os.getloadavg()[0]:.1f} (1-min), {os.cpu_count()} CPUs; descriptors dim {args.dim}; "
          f"maploc-torch on {args.device}")
    head = (f"{'frames':>7} {'impl':<12} {'queries':>8} {'total s':>9} {'ms/query':>9} {'CPU ms/q':>9} "
            f"{'peak MiB':>9} {'+MiB':>7} {'speed-up':>9} {'identical':>10}")
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        for M in (int(s) for s in args.sizes.split(",")):
            vec = run("maploc-torch", M, args.dim, M, args.threads, Path(tmp), args.device)
            if vec.get("gpu_peak_mib") is not None:  # the GPU's own peak, not the host's
                vec["peak_mib"], vec["base_mib"] = vec["gpu_peak_mib"], 0.0
            nq = min(M, args.loop_queries)
            loop = run("numpy-loop", M, args.dim, nq, args.threads, Path(tmp))
            same = int((vec["best"][:nq] == loop["best"]).sum())
            ms_vec = 1000 * vec["seconds"] / vec["queries"]
            ms_loop = 1000 * loop["seconds"] / loop["queries"]
            cpu_vec = 1000 * vec["cpu_seconds"] / vec["queries"]
            cpu_loop = 1000 * loop["cpu_seconds"] / loop["queries"]
            note = "" if nq == M else f" (loop on {nq} queries; total extrapolated)"
            for name, r, ms, cpu in (("maploc-torch", vec, ms_vec, cpu_vec), ("numpy-loop", loop, ms_loop, cpu_loop)):
                total = ms * M / 1000
                speed = f"{ms_loop / ms_vec:>4.1f}/{cpu_loop / cpu_vec:<4.1f}" if name == "maploc-torch" else f"{'1/1':>9}"
                ident = f"{same}/{nq}" if name == "maploc-torch" else ""
                print(f"{M:>7} {name:<12} {r['queries']:>8} {total:>9.1f} {ms:>9.2f} {cpu:>9.2f} {r['peak_mib']:>9.0f} "
                      f"{r['peak_mib'] - r['base_mib']:>7.0f} {speed} {ident:>10}")
            if note:
                print(f"        {note.strip()}")
    print(f"load after: {os.getloadavg()[0]:.1f} (1-min)")


if __name__ == "__main__":
    main()

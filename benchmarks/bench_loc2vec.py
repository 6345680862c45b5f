"""Loc2Vec speed: tiles generated per second, training samples per second (fp32 vs bf16 autocast), indexing the
reference grid at H headings (learned and raw-tile baselines), and query latencies. Prints a table.

Usage::

    python benchmarks/bench_loc2vec.py                 # the Helsinki sample (fetched on first use)
    python benchmarks/bench_loc2vec.py --synthetic     # the file-free synthetic city (no fetch)
    python benchmarks/bench_loc2vec.py --steps 10 --batch-size 16 --input-px 64   # model.input_px=64
    OMP_NUM_THREADS=1 python benchmarks/bench_loc2vec.py   # on a machine shared with other jobs (see the README)

Training is measured as the core engine runs it (``Engine.fit`` with ``precision`` ``32`` and ``bf16``, one
process, CPU), as the median step time after ``--warmup`` steps; samples are triplets (3 tiles each). The two
precisions are run alternately ``--repeats`` times and the best run is reported (all runs are listed). The numbers
depend on the machine's load: this repository's CI machine has 2 CPU cores shared with other jobs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _datasets(synthetic: bool) -> tuple:
    from maploc_loc2vec.data import OsmTileDataset, SyntheticTileDataset

    if synthetic:
        return SyntheticTileDataset(None, "train"), SyntheticTileDataset(None, "map")
    from maploc.data.fetch import fetch

    root = fetch("helsinki-osm", progress=lambda s: print(s, file=sys.stderr))
    return OsmTileDataset(root, "train"), OsmTileDataset(root, "map")


def bench_tiles(train, reference, seconds: float = 3.0) -> list[tuple[str, str]]:
    rows = []
    poses = np.stack([reference.poses(i)[0] for i in range(min(len(reference), 2048))])
    poses[:, 2] = np.random.default_rng(0).uniform(-math.pi, math.pi, len(poses))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        reference.render(poses[(n % len(poses)) : (n % len(poses)) + 256])
        n += len(poses[(n % len(poses)) : (n % len(poses)) + 256])
    rows.append(("tiles rendered / s (crop_many, random rotation)", f"{n / (time.perf_counter() - t0):,.0f}"))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        train[n]
        n += 1
    rate = n / (time.perf_counter() - t0)
    rows.append(("train samples / s (triplet: sampling, 3 tiles, packing, preview)", f"{rate:,.0f} ({3 * rate:,.0f} tiles/s)"))
    return rows


def bench_training(train, precision: str, steps: int, warmup: int, batch_size: int, input_px: int, backbone: str) -> float:
    """Triplets per second of ``Engine.fit`` at ``precision``, after ``warmup`` steps."""
    from maploc.config import apply_overrides
    from maploc.engine import Engine, EngineConfig
    from maploc_loc2vec.method import Loc2VecConfig, Loc2VecMethod

    times: list[float] = []

    class Clock:
        def on_train_batch_end(self, engine, step, epoch, loss):
            times.append(time.perf_counter())

    overrides = [f"train.max_steps={warmup + steps}", f"train.batch_size={batch_size}", "train.checkpoint_every=0",
                 f"model.input_px={input_px}", f"model.backbone={backbone}"]
    method = Loc2VecMethod(apply_overrides(Loc2VecConfig(), overrides))
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(EngineConfig(precision=precision, progress=False, seed=0), Path(tmp), callbacks=[Clock()])
        engine.launch()
        method.model = method.configure_model()
        engine.fit(method, train)
    step_times = np.diff(times[warmup - 1 :]) if warmup >= 1 else np.diff(times)
    return batch_size / float(statistics.median(step_times))


def bench_faiss(num_reference: int, dim: int = 16, queries: int = 1000) -> list[tuple[str, str]]:
    import faiss

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(num_reference, dim)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    q = rng.normal(size=(queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = faiss.IndexFlatL2(dim)
    index.add(ref)
    rows = []
    t0 = time.perf_counter()
    for i in range(200):
        index.search(q[i : i + 1], 20)
    single = (time.perf_counter() - t0) / 200
    t0 = time.perf_counter()
    index.search(q, 20)
    batched = (time.perf_counter() - t0) / queries
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    for i in range(200):
        index.search(q[i : i + 1], 20)
    single_1 = (time.perf_counter() - t0) / 200
    faiss.omp_set_num_threads(threads)
    rows.append((f"faiss IndexFlatL2 top-20, {num_reference:,} x {dim}-D, one query", f"{single * 1e6:,.0f} us "
                 f"({threads} OpenMP threads), {single_1 * 1e6:,.0f} us (1 thread)"))
    rows.append((f"faiss IndexFlatL2 top-20, {num_reference:,} x {dim}-D, batch of {queries}", f"{batched * 1e6:,.1f} us/query"))
    return rows


def bench_map(reference, headings: int, locations: int, input_px: int, backbone: str) -> list[tuple[str, str]]:
    """Seconds to index ``locations`` reference locations at ``headings`` headings with ``Loc2VecMethod.build_map``
    (rendering, the learned embedding of an untrained model, raw-tile descriptors, PCA), and query times of the
    resulting indexes, extrapolated to the whole grid."""
    from maploc.config import apply_overrides
    from maploc_loc2vec.method import Loc2VecConfig, Loc2VecMethod

    class Subset:
        def __init__(self, data, n):
            self.data, self.n = data, n
            self.render, self.channel_names = data.render, data.channel_names

        def __len__(self):
            return self.n

        def names(self):
            return self.data.names()[: self.n]

        def positions(self):
            return self.data.positions()[: self.n]

    n = min(locations, len(reference))
    method = Loc2VecMethod(apply_overrides(Loc2VecConfig(), [f"eval.headings={headings}", f"model.input_px={input_px}",
                                                             f"model.backbone={backbone}"]))
    method.model = method.configure_model().eval()
    t0 = time.perf_counter()
    method.build_map(Subset(reference, n))
    seconds = time.perf_counter() - t0
    tiles = n * headings
    rows = [(f"build_map: {n} locations x {headings} headings ({backbone} at {input_px} px, raw, PCA)",
             f"{seconds:.1f} s ({tiles / seconds:,.0f} tiles/s; whole grid of {len(reference):,}: "
             f"~{seconds * len(reference) / n:,.0f} s)")]
    queries = torch.from_numpy(reference.render(np.column_stack([reference.positions()[:64], np.full(64, 0.3)])))
    for key, index in method.indexes.items():
        _, per_query = index.query(queries, 20)
        rows.append((f"query, {key} ({index.dim}-D, {index.entries:,} entries; grows with the grid)",
                     f"{per_query * 1e3:,.2f} ms/query (batch of 64)"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="use the file-free synthetic city")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per precision")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="triplets per step (3 tiles each)")
    parser.add_argument("--input-px", type=int, default=16, help="model input size (model.input_px; 0 = the tile size)")
    parser.add_argument("--headings", type=int, default=8, help="reference headings of build_map (eval.headings)")
    parser.add_argument("--map-locations", type=int, default=256, help="reference locations indexed by bench_map")
    parser.add_argument("--backbone", default="mlp", help="model.backbone (mlp or a timm name)")
    parser.add_argument("--repeats", type=int, default=2, help="training runs per precision (the best is reported)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    train, reference = _datasets(args.synthetic)
    rows: list[tuple[str, str]] = [("data", f"{train!r}; tiles {train.options.tile_px} px at {train.options.resolution_m:g} m")]
    rows += bench_tiles(train, reference)
    rates: dict[str, list[float]] = {"32": [], "bf16": []}
    for _ in range(args.repeats):  # alternate the precisions: a shared machine's load drifts
        for precision in rates:
            rates[precision].append(
                bench_training(train, precision, args.steps, args.warmup, args.batch_size, args.input_px, args.backbone))
    for precision, values in rates.items():
        rate = max(values)
        rows.append((f"training, {args.backbone} at {args.input_px or train.options.tile_px} px, precision {precision}",
                     f"{rate:,.1f} triplets/s ({3 * rate:,.1f} tiles/s); runs: "
                     + ", ".join(f"{v:.1f}" for v in values)))
    rows += bench_map(reference, args.headings, args.map_locations, args.input_px, args.backbone)
    rows += bench_faiss(len(reference) * args.headings)
    rows += bench_faiss(100_000)
    width = max(len(k) for k, _ in rows)
    print(f"{'measurement':<{width}}  value")
    print("-" * (width + 30))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(f"(torch {torch.__version__}, {torch.get_num_threads()} threads; CPU load at the end: "
          f"{' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())})")


if __name__ == "__main__":
    main()

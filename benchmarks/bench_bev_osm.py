"""Benchmark of maploc-bev-osm: exhaustive matching (FFT vs direct correlation) and training throughput.

Matching: 256 yaw bins, map 256 x 256 cells (128 m at 0.5 m), BEV template 64 x 64 (here 65 x 65: odd, camera at
the centre), 8 feature channels, batch 1 and 8: time per query and peak memory (CPU: peak RSS growth measured in
a fresh subprocess per case; CUDA: torch.cuda.max_memory_allocated). On CPU the direct path computes
``--direct-yaws`` (16) of the 256 yaw bins and its time is scaled to 256 (it is linear in them; the full direct
product takes many minutes per query on CPU). Training: images/s at the default and
``full`` presets (random images and rasters, the real networks, backward included).

    python benchmarks/bench_bev_osm.py [--repeats 3] [--skip-train] [--skip-match] [--device cpu|cuda]
        [--direct-batches 1,8] [--direct-yaws N]

Prints markdown tables. Report the machine load (``uptime``) with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _match_case(method: str, batch: int, yaws: int, size: int, tsize: int, channels: int, repeats: int,
                device: str, measured_yaws: int) -> dict:  # fmt: skip
    import torch

    from maploc_bev_osm.matching import correlate_direct, correlate_fft, log_softmax_volume, rotate_templates

    g = torch.Generator().manual_seed(0)
    m = torch.randn(batch, channels, size, size, generator=g).to(device)
    t = torch.randn(batch, channels, tsize, tsize, generator=g).to(device)
    scale = yaws / measured_yaws  # direct on CPU: a subset of the yaw bins, time scaled (it is linear in them)

    def corr(m, t):
        return correlate_fft(m, t, chunk_yaws=16) if method == "fft" else correlate_direct(m, t)

    yaws = measured_yaws
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            vol = log_softmax_volume(corr(m, rotate_templates(t, yaws)))
            vol.reshape(batch, -1).argmax(-1)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"ms_per_query": min(times) / batch * 1000 * scale, "peak_mib": peak}


def _train_case(preset: str, steps: int, device: str) -> dict:
    import torch

    from maploc.config import load_preset
    from maploc_bev_osm.method import BEVOSMConfig
    from maploc_bev_osm.model import BEVOSMModel

    cfg = BEVOSMConfig() if preset == "default" else load_preset(BEVOSMConfig, "maploc_bev_osm.presets", preset)
    h = cfg.data.image_height or 240
    w = round(h * 4 / 3)
    b = cfg.train.batch_size
    size = round(cfg.search.crop_m / cfg.model.cell_m)
    model = BEVOSMModel(51, cfg.model).to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    f = w / 2 / 0.7
    K = torch.tensor([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]]).expand(b, 3, 3).to(device)
    images, raster = torch.rand(b, 3, h, w).to(device), (torch.rand(b, 51, size, size) > 0.9).float().to(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        out = model(images, K, raster, cfg.search.num_yaws_train)
        loss = -out["log_volume"][:, 0, size // 2, size // 2].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step = min(times[1:])
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20  # fmt: skip
    return {"batch": b, "image": f"{w}x{h}", "crop_cells": size, "yaws": cfg.search.num_yaws_train,
            "s_per_step": step, "images_per_s": b / step, "peak_mib": peak}


def _direct_yaws(args: argparse.Namespace) -> int:
    return args.direct_yaws or (256 if args.device == "cuda" else 16)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=2)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-match", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--direct-batches", default="1,8", help="batches run by direct correlation")
    p.add_argument("--direct-yaws", type=int, default=None,
                   help="yaw bins the direct path really computes (time scaled to 256); default 16 on CPU, 256 on CUDA")
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:  # child process: one case, JSON on stdout
        kind, *rest = args.case.split(":")
        if kind == "match":
            method, batch = rest[0], int(rest[1])
            measured = 256 if method == "fft" else _direct_yaws(args)
            # direct on CPU takes minutes: one timed call; elsewhere the best of --repeats (the first is a warm-up)
            repeats = 1 if method == "direct" and args.device == "cpu" else args.repeats
            out = _match_case(method, batch, 256, 256, 65, 8, repeats, args.device, measured)
        else:
            out = _train_case(rest[0], args.train_steps, args.device)
        print(json.dumps(out))
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    print(f"load: {os.getloadavg()}, {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    print("\nFFT: real FFTs, 16 yaw bins at a time (bounded memory). Direct: one matrix product per template row "
          f"(no FFT); it computes {_direct_yaws(args)} of the 256 yaw bins and its time is scaled to 256 (linear).")
    print("\n| matching (256 yaws, map 256x256, template 65x65, 8 ch) | batch | ms / query | peak memory (MiB) |")
    print("|---|---|---|---|")
    for batch in () if args.skip_match else (1, 8):
        for method in ("fft", "direct"):
            if method == "direct" and str(batch) not in args.direct_batches.split(","):
                print(f"| direct ({args.device}) | {batch} | not run (--direct-batches) | |")
                continue
            r = subprocess.run([sys.executable, __file__, "--case", f"match:{method}:{batch}", "--repeats",
                                str(args.repeats), "--device", args.device], capture_output=True, text=True)  # fmt: skip
            if r.returncode:
                print(f"| {method} | {batch} | failed: {r.stderr.strip().splitlines()[-1]} | |")
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"| {method} ({args.device}) | {batch} | {res['ms_per_query']:.0f} | {res['peak_mib']:.0f} |")
            sys.stdout.flush()
    if not args.skip_train:
        print("\n| training preset | batch | image | crop cells | yaw bins | s / step | images / s | peak memory (MiB) |")
        print("|---|---|---|---|---|---|---|---|")
        for preset in ("default", "full"):
            r = subprocess.run([sys.executable, __file__, "--case", f"train:{preset}", "--train-steps",
                                str(args.train_steps), "--device", args.device], capture_output=True, text=True)  # fmt: skip
            if r.returncode:
                print(f"| {preset} | failed: {r.stderr.strip().splitlines()[-1]} |")
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"| {preset} | {res['batch']} | {res['image']} | {res['crop_cells']} | {res['yaws']} | "
                  f"{res['s_per_step']:.2f} | {res['images_per_s']:.2f} | {res['peak_mib']:.0f} |")
    print(f"\nload after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput (images/s) of the DSAC* ``init`` stage (maploc_dsac), on CPU by default.

(``--stage reprojection`` or ``--stage e2e`` times those stages instead.)

Times complete optimizer steps of :meth:`maploc_dsac.method.DSACMethod.training_step` (augmentation,
forward, Euclidean loss against scene coordinates from depth, backward, Adam) on synthetic-room
batches, for a grid of network widths and input heights. One row per setting: images per second,
seconds per step, the network's parameters and multiply-adds per image.

    python benchmarks/bench_dsac_train.py                          # CPU, default grid
    python benchmarks/bench_dsac_train.py --heights 240 480 --widths 1.0 --steps 5
    python benchmarks/bench_dsac_train.py --stage e2e --heights 120 --widths 0.25
    python benchmarks/bench_dsac_train.py --device cuda
    python benchmarks/bench_dsac_train.py --stage e2e --heights 120 --widths 0.25 --threads 1 --profile 25
                                            # plus cProfile's top 25 functions of the timed steps

Not a test: it prints a table and asserts nothing. Other processes on the machine change the
numbers; the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import torch

from maploc.config import apply_overrides
from maploc.data.collate import collate
from maploc.data.synthetic import SyntheticRoom
from maploc_dsac.config import DSACConfig
from maploc_dsac.method import DSACMethod


def conv_macs(model: torch.nn.Module, height: int, width: int) -> int:
    """Multiply-adds of the convolutions for one ``height x width`` image (forward only)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups)
        total += output.numel() // output.shape[0] * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.rand(1, 3, height, width))
    for h in handles:
        h.remove()
    return total


def _step(method, model, batch, optimizer, scheduler, i: int) -> None:
    loss = method.training_step(model, batch, i)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()


def bench(args) -> None:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for height in args.heights:
        room = SyntheticRoom(None, "train", image_height=height)
        samples = [room[i] for i in range(args.batch_size)]
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in collate(samples).items()}
        for width in args.widths:
            cfg = apply_overrides(DSACConfig(), [f"network.width={width}", f"network.encoder={args.encoder}",
                                                 f"train.batch_size={args.batch_size}", f"stages=[{args.stage}]",
                                                 f"{args.stage}.steps=1000"])
            torch.manual_seed(0)
            method = DSACMethod(cfg)
            model = method.configure_model().to(device)
            method.model = model
            optimizer, scheduler = method.configure_optimizers(model)

            for i in range(args.warmup):
                _step(method, model, batch, optimizer, scheduler, i)
            if device.type == "cuda":
                torch.cuda.synchronize()
            profiler = cProfile.Profile() if args.profile else None
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for i in range(args.steps):
                _step(method, model, batch, optimizer, scheduler, args.warmup + i)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - t0) / args.steps
            if profiler is not None:
                profiler.disable()
                print(f"-- cProfile of {args.steps} {args.stage} steps at {height} px, width {width}:")
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
            params = sum(p.numel() for p in model.parameters())
            macs = conv_macs(model.cpu().eval(), height, round(height * 4 / 3))
            rows.append((height, width, params / 1e6, macs / 1e9, seconds, args.batch_size / seconds))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"DSAC* {args.stage}-stage training throughput on {device} ({torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, encoder {args.encoder}; load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"{'height px':>9} {'width':>6} {'params M':>9} {'GMAC/img':>9} {'s/step':>8} {'images/s':>9}")
    for height, width, params, gmacs, seconds, ips in rows:
        print(f"{height:>9} {width:>6.3g} {params:>9.2f} {gmacs:>9.2f} {seconds:>8.3f} {ips:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--heights", type=int, nargs="+", default=[120, 240, 480])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--encoder", default="dsacstar")
    parser.add_argument("--stage", default="init", choices=["init", "reprojection", "e2e"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N functions (0: no profile)")
    bench(parser.parse_args())


if __name__ == "__main__":
    main()

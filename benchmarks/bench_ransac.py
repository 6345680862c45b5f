"""Accuracy against CPU time per frame of the DSAC* RANSAC (maploc_dsac.solvers) and three PnP anchors
(PoseLib, pycolmap, OpenCV), all swept on the same iteration grid and each also with its own adaptive stop.

Synthetic 640x480 frames (rendered from a random camera, not real images): one correspondence per
8x8 cell (80 x 60 = 4,800), 1 px pixel noise, a fraction of the scene coordinates replaced by random
points in the scene's bounding box. Every solver gets the same correspondences, the same intrinsics
and the same inlier threshold (``--threshold`` px), on ``--threads`` CPU threads (default 1; the
OpenMP/BLAS thread variables are set before numpy, torch and OpenCV are imported).

Curves (one point per budget ``N`` of ``--iterations``, the same grid for every solver, default x2 steps):

* ``maploc b1``: :class:`DSACRansac` (DSAC*'s rules: ``N`` hypotheses, redraws of self-inconsistent
  minimal sets, soft inlier scoring, argmax, LM refinement with inlier re-collection), one call per
  frame. The minimal sets it drew (redraws included) are printed beside it.
* ``maploc b<B>``: the same, ``--batch`` frames per call; its time per frame is the call's time
  divided by ``B`` (the frames of a call share it; stated as such). Same seeds per frame as ``b1``,
  so the poses are the same and only the time differs.
* ``poselib``: ``poselib.estimate_absolute_pose`` (LO-RANSAC, bundle adjustment), ``min = max = N`` iterations.
* ``pycolmap``: ``pycolmap.estimate_and_refine_absolute_pose``, ``min = max = N`` trials.
* ``opencv``: ``cv2.solvePnPRansac`` (``SOLVEPNP_P3P``, 4-point sets as DSAC*) at confidence ``1 - 1e-12``
  (the bound stays at ``N`` while outliers remain), then ``cv2.solvePnPRefineLM`` on its inliers.

Single points, each solver's own adaptive stop:

* ``maploc b1/b<B> adaptive p H=h``: ``DSACRansac(num_hypotheses=h, adaptive_confidence=p)`` for each ``h``
  of ``--adaptive-hypotheses`` (:mod:`maploc_dsac.solvers.adaptive`; a deviation from DSAC*, test time only).
* ``poselib default``: PoseLib's defaults (success probability 0.9999, 1,000 to 100,000 iterations).
* ``pycolmap default``: COLMAP's defaults (confidence 0.99999, 100 to 10,000 trials).
* ``opencv p=--opencv-confidence``: OpenCV's adaptive bound at that confidence, 10,000 iterations at most.

The anchors are the ``poselib-pnp``, ``pycolmap-pnp`` and ``opencv-pnp`` solvers of maploc-features
(their ``solve_arrays``). A curve's sweep ends early once ``--stop-after-full`` consecutive budgets
put every frame within 5 cm / 5 deg (larger budgets only cost more) or once a budget costs more
than ``--max-cpu-ms`` per frame; the skipped budgets are listed.

Per outlier ratio: a table of every configuration (CPU ms per frame: mean and median over frames,
wall ms mean, share within 5 cm / 5 deg, median errors), then for each curve and adaptive point the
least mean CPU ms at which it puts at least 95 % and 100 % of the frames within 5 cm / 5 deg ("not
reached" with its best share otherwise). The same table for all ratios closes the output, and
``--plot`` gets the accuracy-time curves (one panel per outlier ratio).

    pip install -e "plugins/dsac[bench]"                 # poselib, pycolmap, matplotlib
    nice python benchmarks/bench_ransac.py --threads 1 --frames 64 --plot /tmp/ransac.png

The header prints the command, commit, CPU model, threads, load average and date. Times are CPU
time of this process (every solver on one thread): far less disturbed than wall-clock time by other
jobs on a loaded machine, but not immune to it. Not a test: it prints tables and asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CONF_MAX = 1.0 - 1e-12  # OpenCV asserts 0 < confidence < 1
CURVES = ("maploc b1", "maploc batched", "poselib", "pycolmap", "opencv")
FAILED = (180.0, math.inf)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="frames per outlier ratio (a multiple of --batch)")
    parser.add_argument("--batch", type=int, default=16, help="frames per call of the batched maploc curve")
    parser.add_argument("--threshold", type=float, default=10.0, help="inlier threshold, px")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.5, 0.8, 0.9])
    parser.add_argument("--iterations", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
                        help="the budget grid of every curve: maploc hypotheses, anchor iterations")
    parser.add_argument("--adaptive-confidence", type=float, default=0.999, help="maploc's adaptive stop")
    parser.add_argument("--adaptive-hypotheses", type=int, nargs="+", default=[64, 256],
                        help="maploc's budgets H with the adaptive stop (DSAC*'s H is 64)")
    parser.add_argument("--opencv-confidence", type=float, default=0.999, help="OpenCV's adaptive point")
    parser.add_argument("--stop-after-full", type=int, default=2,
                        help="end a curve after this many consecutive budgets at 100 %% (0: never)")
    parser.add_argument("--max-cpu-ms", type=float, default=500.0,
                        help="end a curve after a budget costing more CPU ms per frame than this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="/tmp/bench_ransac.png", help="PNG path; empty: no plot")
    parser.add_argument("--anchors", nargs="*", default=["poselib", "pycolmap", "cv2"],
                        help="PnP anchors to run (poselib, pycolmap, cv2); one that is not installed is skipped")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.batch < 1 or args.frames % args.batch:
        parser.error(f"--frames ({args.frames}) must be a positive multiple of --batch ({args.batch})")
    if args.threads < 1 or min(args.iterations) < 1:
        parser.error("--threads and --iterations must be positive")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # before numpy / torch / OpenCV start their thread pools
    for var in THREAD_VARS:
        os.environ[var] = str(ARGS.threads)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from maploc_dsac.solvers import DSACRansac  # noqa: E402


def make_frame(rng: np.random.Generator, outlier_ratio: float, noise_px: float = 1.0, stride: int = 8):
    W, H, f = 640, 480, 525.0
    K = np.array([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]])
    u, v = np.meshgrid(np.arange(W // stride) * stride + stride / 2, np.arange(H // stride) * stride + stride / 2)
    uv = np.stack([u.ravel(), v.ravel()], 1)
    n = len(uv)
    angles = rng.normal(size=3) * 0.5
    R_c2w = cv2.Rodrigues(angles)[0]
    t_c2w = rng.normal(size=3)
    depth = rng.uniform(1.0, 5.0, n)
    pc = np.concatenate([uv, np.ones((n, 1))], 1) @ np.linalg.inv(K).T * depth[:, None]
    Xw = pc @ R_c2w.T + t_c2w
    n_out = int(round(outlier_ratio * n))
    idx = rng.permutation(n)[:n_out]
    Xw[idx] = rng.uniform(Xw.min(0), Xw.max(0), size=(n_out, 3))
    uv_obs = uv + rng.normal(size=uv.shape) * noise_px
    return K, R_c2w, t_c2w, uv_obs, Xw


def errors(R_est, t_est, R_gt, t_gt):
    """Rotation error in degrees (chordal, exact for orthonormal inputs) and translation error in metres."""
    chord = np.linalg.norm(np.asarray(R_est, dtype=np.float64) - R_gt) / (2.0 * math.sqrt(2.0))
    return math.degrees(2.0 * math.asin(min(chord, 1.0))), float(np.linalg.norm(t_est - t_gt))


class Timer:
    """Wall-clock and process CPU time of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_maploc(solver: DSACRansac, frames, batch: int):
    """Times ``solver`` on ``batch`` frames per call; each frame of a call is charged call time / batch.
    Returns per-frame wall and CPU seconds, errors, and the mean minimal sets drawn per frame."""
    X = torch.tensor(np.stack([f[4] for f in frames]), dtype=torch.float32)
    uv = torch.tensor(np.stack([f[3] for f in frames]), dtype=torch.float32)
    K = torch.tensor(np.stack([f[0] for f in frames]), dtype=torch.float32)
    seeds = torch.arange(len(frames), dtype=torch.int64)
    walls, cpus, errs, sets = [], [], [], []
    for start in range(0, len(frames), batch):
        sl = slice(start, start + batch)
        with Timer() as tm:
            res = solver(X[sl], uv[sl], K[sl], seed=seeds[sl])
        b = X[sl].shape[0]
        walls += [tm.wall / b] * b
        cpus += [tm.cpu / b] * b
        sets += res.num_minimal_sets.tolist()
        for j in range(b):
            f = frames[start + j]
            R, t = res.R_cam2world[j].double().numpy(), res.t_cam2world[j].double().numpy()
            errs.append(errors(R, t, f[1], f[2]) if bool(res.success[j]) else FAILED)
    return walls, cpus, errs, statistics.mean(sets)


def run_per_frame(solve: Callable, frames):
    """``solve(frame) -> (R_cam2world, t_cam2world) | None`` timed frame by frame."""
    walls, cpus, errs = [], [], []
    for f in frames:
        with Timer() as tm:
            out = solve(f)
        walls.append(tm.wall)
        cpus.append(tm.cpu)
        errs.append(FAILED if out is None else errors(out[0], out[1], f[1], f[2]))
    return walls, cpus, errs


def anchor_solver(family: str, iterations: int | None, threshold: float, confidence: float = CONF_MAX) -> Callable:
    """``solve(frame)`` of a PnP anchor (maploc-features' ``solve_arrays``). ``iterations=None``: the
    library's defaults (OpenCV: 10,000 at most, stopping at ``confidence``); else ``min = max = iterations``."""
    from maploc_features.solvers import OpenCVPnPSolver, PoseLibPnPSolver, PycolmapPnPSolver

    budget = {} if iterations is None else {"min_iterations": iterations, "max_iterations": iterations}
    if family == "opencv":
        solver = OpenCVPnPSolver(inlier_threshold_px=threshold, confidence=confidence, **budget)
    elif family == "poselib":
        solver = PoseLibPnPSolver(inlier_threshold_px=threshold, **budget)
    else:
        solver = PycolmapPnPSolver(inlier_threshold_px=threshold, **budget)

    def solve(f):
        K, _, _, uv, X = f
        out = solver.solve_arrays(uv, X, K, 640, 480)
        return None if out is None else out[:2]

    return solve


def summarize(name: str, curve: str, budget: int | None, walls, cpus, errs, note: str = "") -> dict:
    rot = np.array([e[0] for e in errs])
    trans = np.array([e[1] for e in errs])
    return {"name": name, "curve": curve, "budget": budget, "wall_ms": 1e3 * statistics.mean(walls),
            "cpu_ms": 1e3 * statistics.mean(cpus), "cpu_med_ms": 1e3 * statistics.median(cpus),
            "within": float(np.mean((rot <= 5.0) & (trans <= 0.05))), "rot": float(np.median(rot)),
            "trans_cm": 100.0 * float(np.median(trans)), "errs": errs, "note": note}


def print_row(r: dict) -> None:
    print(f"{r['name']:<36} {r['cpu_ms']:>9.2f} {r['cpu_med_ms']:>9.2f} {r['wall_ms']:>9.2f} "
          f"{100 * r['within']:>7.1f}% {min(r['rot'], 180.0):>8.4f} {min(r['trans_cm'], 1e4):>8.3f}  {r['note']}",
          flush=True)


def header_row() -> None:
    print(f"{'configuration':<36} {'CPU mean':>9} {'CPU med':>9} {'wall':>9} {'5cm/5deg':>8} {'med deg':>8} "
          f"{'med cm':>8}  note (ms per frame)", flush=True)


def sweep(label: str, budgets: list[int], run: Callable[[int], dict], args) -> list[dict]:
    """Runs ``run(budget)`` over the grid until the curve is full ``--stop-after-full`` times in a row or
    too costly; prints each row and what was skipped."""
    rows, full = [], 0
    for i, n in enumerate(budgets):
        r = run(n)
        rows.append(r)
        print_row(r)
        full = full + 1 if r["within"] >= 1.0 else 0
        rest = budgets[i + 1:]
        if rest and args.stop_after_full and full >= args.stop_after_full:
            print(f"  ({label}: {full} budgets in a row at 100 %; not run: {', '.join(map(str, rest))})")
            break
        if rest and r["cpu_ms"] > args.max_cpu_ms:
            print(f"  ({label}: {r['cpu_ms']:.0f} CPU ms per frame > --max-cpu-ms {args.max_cpu_ms:g}; "
                  f"not run: {', '.join(map(str, rest))})")
            break
    return rows


def reach(rows: list[dict], share: float) -> dict | None:
    """The cheapest row (mean CPU ms per frame) with at least ``share`` of frames within 5 cm / 5 deg."""
    ok = [r for r in rows if r["within"] >= share - 1e-9]
    return min(ok, key=lambda r: r["cpu_ms"]) if ok else None


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by curve: the swept curves, then each adaptive point on its own."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["curve"], []).append(r)
    return out


def reach_cell(rows: list[dict], share: float) -> str:
    r = reach(rows, share)
    if r is None:
        return f"not reached (best {100 * max(x['within'] for x in rows):.1f} %)"
    at = f"N={r['budget']}" if r["budget"] is not None else "adaptive"
    return f"{r['cpu_ms']:.2f} ms ({at})"


def print_reach(ratio: float, rows: list[dict]) -> None:
    print(f"-- {100 * ratio:.0f} % outliers: least mean CPU ms per frame at which each curve / adaptive point "
          "puts >= 95 % and 100 % of frames within 5 cm / 5 deg (under load)")
    g = groups(rows)
    for name, rs in g.items():
        print(f"   {name:<34} 95 %: {reach_cell(rs, 0.95):<34} 100 %: {reach_cell(rs, 1.0)}")
    for share in (0.95, 1.0):
        best = sorted(((reach(rs, share), name) for name, rs in g.items() if reach(rs, share)),
                      key=lambda x: x[0]["cpu_ms"])
        if best:
            line = ", ".join(f"{name} {r['cpu_ms']:.2f}" for r, name in best[:3])
            print(f"   cheapest to {100 * share:.0f} %: {line} ms")
    print(flush=True)


def consistency(rows: list[dict], batch: int) -> None:
    """maploc b1 and b<B> use the same per-frame seeds: report whether their poses agree."""
    b1 = {r["budget"]: r for r in rows if r["curve"] == "maploc b1"}
    bb = {r["budget"]: r for r in rows if r["curve"] == f"maploc b{batch}"}
    common = sorted(set(b1) & set(bb))
    diffs = [n for n in common
             if not np.allclose(np.array(b1[n]["errs"]), np.array(bb[n]["errs"]), rtol=0.0, atol=1e-3)]
    if common:
        print(f"   maploc b1 vs b{batch} (same seeds): budgets whose per-frame errors differ by more than "
              f"1e-3 deg or m: {len(diffs)} of {len(common)}" + (f" (N = {diffs})" if diffs else ""))


def plot(path: str, results: dict[float, list[dict]], batch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from maploc.evaluation.report import save_figure

    ratios = sorted(results)
    fig, axes = plt.subplots(1, len(ratios), figsize=(4.6 * len(ratios), 4.4), squeeze=False, sharey=True)
    colors = {"maploc b1": "C0", f"maploc b{batch}": "C1", "poselib": "C2", "pycolmap": "C3", "opencv": "C4"}
    by_length = sorted(colors, key=len, reverse=True)
    marks = ["*", "P", "D", "X"]
    ms_all = [r["cpu_ms"] for rows in results.values() for r in rows]
    lo, hi = 10 ** math.floor(math.log10(min(ms_all))), 10 ** math.ceil(math.log10(max(ms_all)))
    handles: dict[str, object] = {}
    for j, ratio in enumerate(ratios):
        ax = axes[0, j]
        seen: dict[str, int] = {}
        for name, rs in groups(results[ratio]).items():
            base = next((c for c in by_length if name.startswith(c)), None)
            if rs[0]["budget"] is not None:
                rs = sorted(rs, key=lambda r: r["budget"])
                (h,) = ax.plot([r["cpu_ms"] for r in rs], [100 * r["within"] for r in rs], "o-", ms=3,
                               color=colors.get(base), label=f"{name}: N on the grid")
            else:
                k = seen[base] = seen.get(base, -1) + 1
                (h,) = ax.plot([rs[0]["cpu_ms"]], [100 * rs[0]["within"]], marks[k % len(marks)], ms=10,
                               color=colors.get(base), markeredgecolor="k", label=name)
            handles.setdefault(h.get_label(), h)
        ax.axhline(95, color="grey", lw=0.7, ls="--")
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-3, 103)
        ax.set_xlabel("CPU ms per frame (mean; 1 thread; under load)")
        ax.set_title(f"{100 * ratio:.0f} % outliers")
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].set_ylabel("% of frames within 5 cm / 5 deg")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3, fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.045 * math.ceil(len(handles) / 3)))
    fig.suptitle("RANSAC accuracy against CPU time per frame, synthetic 640x480 frames, 4,800 correspondences")
    save_figure(fig, path)
    print(f"plot: {path}")


def header(args) -> None:
    root = Path(__file__).resolve().parents[1]

    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    commit = sh(["git", "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "status", "--porcelain", "--", "benchmarks/bench_ransac.py", "plugins/dsac/src",
                "plugins/features/src"])
    cpu = next((ln.split(":", 1)[1].strip() for ln in sh(["lscpu"]).splitlines() if ln.startswith("Model name")),
               platform.processor() or "unknown")
    versions = [f"torch {torch.__version__}", f"opencv {cv2.__version__}"]
    for mod in ("poselib", "pycolmap"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    la = os.getloadavg()
    print(f"command: {shlex.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"commit: {commit}" + (" (uncommitted changes in the benchmark or solvers)" if dirty else ""))
    print(f"CPU model: {cpu}; {os.cpu_count()} cores visible")
    print(f"threads: {args.threads} (torch {torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}, "
          + ", ".join(f"{v}={os.environ.get(v)}" for v in THREAD_VARS) + ")")
    print(f"niceness: {os.nice(0)}")
    print(f"load average at start: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (1/5/15 min; other jobs share the cores)")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"versions: {', '.join(versions)}, python {platform.python_version()}")
    print(f"{args.frames} frames per outlier ratio, 4,800 correspondences, 1 px noise, threshold {args.threshold} px; "
          f"grid N = {' '.join(map(str, args.iterations))}; maploc batched = {args.batch} frames per call "
          f"(time per frame = call / {args.batch}); all times CPU ms per frame under load", flush=True)


def maploc_row(frames, n: int, batch: int, threshold: float, p: float | None = None) -> dict:
    """maploc with ``n`` hypotheses, ``batch`` frames per call, the adaptive stop at ``p`` if given."""
    solver = DSACRansac("rgb", num_hypotheses=n, inlier_threshold=threshold, adaptive_confidence=p)
    w, c, e, sets = run_maploc(solver, frames, batch)
    curve = f"maploc b{batch}" + (f" adaptive {p} H={n}" if p else "")
    name = f"maploc b{batch} " + (f"adaptive {p} H={n}" if p else f"H={n}")
    return summarize(name, curve, None if p else n, w, c, e, f"{sets:.0f} minimal sets")


def anchor_row(frames, family: str, n: int | None, threshold: float, label: str, confidence: float = CONF_MAX) -> dict:
    return summarize(label, label if n is None else family, n,
                     *run_per_frame(anchor_solver(family, n, threshold, confidence), frames))


def run_ratio(frames, args, anchors: list[str]) -> list[dict]:
    """Every curve on the grid, then every adaptive point, on one outlier ratio's frames."""
    thr, B, grid = args.threshold, args.batch, sorted(args.iterations)
    rows: list[dict] = []
    rows += sweep("maploc b1", grid, lambda n: maploc_row(frames, n, 1, thr), args)
    rows += sweep(f"maploc b{B}", grid, lambda n: maploc_row(frames, n, B, thr), args)
    for fam in ("poselib", "pycolmap", "opencv"):
        if ("cv2" if fam == "opencv" else fam) in anchors:
            rows += sweep(fam, grid, lambda n, fam=fam: anchor_row(frames, fam, n, thr, f"{fam} {n} it"), args)
    for H in args.adaptive_hypotheses:
        for batch in (1, B):
            rows.append(maploc_row(frames, H, batch, thr, args.adaptive_confidence))
            print_row(rows[-1])
    for fam, label in (("poselib", "poselib default (p=0.9999)"), ("pycolmap", "pycolmap default (p=0.99999)")):
        if fam in anchors:
            rows.append(anchor_row(frames, fam, None, thr, label))
            print_row(rows[-1])
    if "cv2" in anchors:
        p = args.opencv_confidence
        rows.append(anchor_row(frames, "opencv", None, thr, f"opencv p={p} (<=10000 it)", p))
        print_row(rows[-1])
    return rows


def main(args: argparse.Namespace) -> None:
    anchors = []
    for name in args.anchors:
        try:
            __import__(name)
            anchors.append(name)
        except ImportError:
            print(f"skipping anchor {name}: not installed (pip install -e './plugins/dsac[bench]')")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    header(args)
    warm = make_frame(np.random.default_rng(-1 % 2**32), 0.5)  # untimed: torch's first-call set-up
    run_maploc(DSACRansac("rgb", num_hypotheses=8, inlier_threshold=args.threshold), [warm], 1)
    t_start = time.perf_counter()
    B = args.batch
    results: dict[float, list[dict]] = {}
    for ratio in args.ratios:
        rng = np.random.default_rng(args.seed)
        frames = [make_frame(rng, ratio) for _ in range(args.frames)]
        print(f"\n== {100 * ratio:.0f} % outliers, {len(frames)} frames ==")
        header_row()
        rows = run_ratio(frames, args, anchors)
        results[ratio] = rows
        print()
        print_reach(ratio, rows)
        consistency(rows, B)
        print(f"   load average now: {os.getloadavg()[0]:.2f}; elapsed {time.perf_counter() - t_start:.0f} s",
              flush=True)

    print("\n== summary: least mean CPU ms per frame to put 95 % / 100 % of frames within 5 cm / 5 deg "
          "(under load; N = budget on the shared grid) ==")
    names = list(dict.fromkeys(name for rows in results.values() for name in groups(rows)))
    for share in (0.95, 1.0):
        print(f"\n-- {100 * share:.0f} % of frames --")
        print(f"{'solver':<36}" + "".join(f"{f'{100 * r:.0f} % outliers':>36}" for r in results))
        for name in names:
            cells = [reach_cell(groups(results[r]).get(name, []), share) if name in groups(results[r]) else "not run"
                     for r in results]
            print(f"{name:<36}" + "".join(f"{c:>36}" for c in cells))
    la = os.getloadavg()
    print(f"\nload average at the end: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; "
          f"wall time {time.perf_counter() - t_start:.0f} s")
    if args.plot:
        plot(args.plot, results, B)


if __name__ == "__main__":
    main(ARGS)

"""Speed and accuracy of the DSAC* RANSAC (maploc_dsac.solvers) against OpenCV's solvePnPRansac.

Synthetic 640x480 frames, one correspondence per 8x8 cell (80 x 60 = 4,800), 1 px pixel noise, a
fraction of the scene coordinates replaced by random points in the scene's bounding box. Rows:
outlier ratio x solver; columns: time per frame and median rotation / translation error.

    python benchmarks/bench_ransac.py                     # CPU
    python benchmarks/bench_ransac.py --device cuda       # GPU (maploc timings synchronised)
    python benchmarks/bench_ransac.py --frames 32 --repeats 3

Not a test: it prints a table and asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import cv2
import numpy as np
import torch

from maploc_dsac.solvers import DSACRansac


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
    """Rotation error in degrees (from the chordal distance, accurate for small angles; assumes
    orthonormal inputs, valid up to 180 deg) and translation error in metres."""
    chord = np.linalg.norm(np.asarray(R_est, dtype=np.float64) - R_gt) / (2.0 * math.sqrt(2.0))
    return math.degrees(2.0 * math.asin(min(chord, 1.0))), float(np.linalg.norm(t_est - t_gt))


def bench(args) -> None:
    device = torch.device(args.device)
    dtype = torch.float32
    solver = DSACRansac(
        "rgb",
        num_hypotheses=args.hypotheses,
        inlier_threshold=args.threshold,
        candidates_per_hypothesis=args.candidates,
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for ratio in args.outliers:
        rng = np.random.default_rng(args.seed)
        frames = [make_frame(rng, ratio) for _ in range(args.frames)]
        K = torch.tensor(np.stack([f[0] for f in frames]), dtype=dtype, device=device)
        uv = torch.tensor(np.stack([f[3] for f in frames]), dtype=dtype, device=device)
        X = torch.tensor(np.stack([f[4] for f in frames]), dtype=dtype, device=device)
        seeds = torch.arange(args.frames, device=device) + 1000

        solver(X[:1], uv[:1], K[:1], seed=seeds[:1])  # warm-up
        sync()
        # maploc, one frame at a time
        times, errs = [], []
        for _ in range(args.repeats):
            for i in range(args.frames):
                sync()
                t0 = time.perf_counter()
                res = solver(X[i : i + 1], uv[i : i + 1], K[i : i + 1], seed=seeds[i : i + 1])
                sync()
                times.append(time.perf_counter() - t0)
                if len(errs) < args.frames:
                    R = res.R_cam2world[0].double().cpu().numpy()
                    t = res.t_cam2world[0].double().cpu().numpy()
                    errs.append(errors(R, t, frames[i][1], frames[i][2]))
        rows.append((ratio, "maploc single", statistics.median(times), errs))
        # maploc, the whole batch at once
        times, errs = [], []
        for _ in range(args.repeats):
            for start in range(0, args.frames, args.batch):
                sl = slice(start, start + args.batch)
                sync()
                t0 = time.perf_counter()
                res = solver(X[sl], uv[sl], K[sl], seed=seeds[sl])
                sync()
                times.append((time.perf_counter() - t0) / X[sl].shape[0])
                if len(errs) < args.frames:
                    for j in range(X[sl].shape[0]):
                        R = res.R_cam2world[j].double().cpu().numpy()
                        t = res.t_cam2world[j].double().cpu().numpy()
                        errs.append(errors(R, t, frames[start + j][1], frames[start + j][2]))
        rows.append((ratio, f"maploc batch {args.batch} (per frame)", statistics.median(times), errs))
        # OpenCV
        for name, flag in (("cv2 P3P", cv2.SOLVEPNP_P3P), ("cv2 default", cv2.SOLVEPNP_ITERATIVE)):
            times, errs = [], []
            cv2.setRNGSeed(args.seed)
            for _ in range(args.repeats):
                for i in range(args.frames):
                    Kn, Rg, tg, uvn, Xn = frames[i]
                    t0 = time.perf_counter()
                    ok, rvec, tvec, inl = cv2.solvePnPRansac(
                        Xn,
                        uvn,
                        Kn,
                        None,
                        iterationsCount=args.hypotheses,
                        reprojectionError=args.threshold,
                        confidence=0.99,
                        flags=flag,
                    )
                    times.append(time.perf_counter() - t0)
                    if len(errs) < args.frames:
                        if ok:
                            R_w2c = cv2.Rodrigues(rvec)[0]
                            R = R_w2c.T
                            t = -R_w2c.T @ tvec.ravel()
                            errs.append(errors(R, t, Rg, tg))
                        else:
                            errs.append((180.0, float("inf")))
            rows.append((ratio, f"{name} ({args.hypotheses} it)", statistics.median(times), errs))

    print(
        f"\nDSAC* RANSAC benchmark: {args.hypotheses} hypotheses x 4800 correspondences, tau = {args.threshold} px, "
        f"1 px noise, {args.frames} frames, device {args.device}, torch threads {torch.get_num_threads()}, "
        f"maploc candidates/hypothesis {args.candidates}"
    )
    print(f"{'outliers':>8}  {'solver':<30} {'ms/frame':>9} {'median rot (deg)':>17} {'median trans (cm)':>18}")
    for ratio, name, sec, errs in rows:
        rot = statistics.median(e[0] for e in errs)
        trans = statistics.median(e[1] for e in errs) * 100
        print(f"{ratio * 100:7.0f}%  {name:<30} {sec * 1000:9.1f} {rot:17.3f} {trans:18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=16, help="frames per outlier ratio (and batch size cap)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--hypotheses", type=int, default=64)
    parser.add_argument("--threshold", type=float, default=10.0)
    parser.add_argument("--candidates", type=int, default=64, help="maploc: candidate minimal sets per hypothesis")
    parser.add_argument("--outliers", type=float, nargs="+", default=[0.0, 0.5, 0.8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch / OpenCV threads (0: library default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    bench(args)


if __name__ == "__main__":
    main()

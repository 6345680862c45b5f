"""Speed and memory of the local-feature parts of maploc-features on real Strecha photographs (CPU).

For each configuration (extractor x matcher x resolution) a fresh Python subprocess loads the parts by name
(``maploc.plugins.load_component``), extracts ``--images`` consecutive images of ``fountain-P11`` (1536x1024 as
given; ``resize_max`` 1536 = as given, 1024 = shrunk inside the extractor) after one warm-up extraction, matches
each consecutive pair after one warm-up match, and reports:

* ``extract ms``: median wall time per image (keypoints back in the given pixels included);
* ``kpts``: mean keypoints per image; ``match ms``: median wall time per pair; ``matches``: mean per pair;
* ``epi<2px``: share of the matches within 2 px of their epipolar line under the ground-truth poses (Strecha's
  laser-scan calibration): a check that the configuration works, not an accuracy benchmark;
* ``peak RSS MB``: the subprocess's maximum resident set size (``getrusage``), imports and weights included.

Every configuration runs on the CPU with ``--threads`` threads (torch, OpenCV, OpenMP). The images are read from
``../shared/data/strecha`` relative to the project root (``--data``); ``lightglue-weights`` is fetched first if
absent. Prints a header (command, commit, CPU, threads, load average at start and end) and one table.

    python benchmarks/bench_features.py --threads 1 | tee benchmarks/results/features-cpu.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "strecha"

#: (extractor, matcher) pairs that hloc composes
PAIRS = [("sift", "mnn"), ("xfeat", "mnn"), ("xfeat", "lighterglue"), ("aliked", "mnn"), ("aliked", "lightglue")]


def _child(args: argparse.Namespace) -> None:
    """One configuration, in this (fresh) process; prints one JSON line."""
    import resource

    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from maploc_features.extractors import resized_size

    from maploc.plugins import load_component

    scene = Path(args.data) / "fountain-P11"
    names = [f"{i:04d}.jpg" for i in range(args.images)]
    images = []
    for name in names:
        bgr = cv2.imread(str(scene / "images" / name), cv2.IMREAD_COLOR)
        images.append(torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255)
    options = {"max_keypoints": args.max_keypoints, "resize_max": args.resize_max}
    if args.extractor != "sift":
        options["device"] = "cpu"
    extractor = load_component("encoders", args.extractor)(**options)
    matcher = load_component("matchers", args.matcher)(**({} if args.matcher == "mnn" else {"device": "cpu"}))
    extractor.extract(images[0])  # warm-up
    feats, t_ex = [], []
    for img in images:
        t0 = time.perf_counter()
        feats.append(extractor.extract(img))
        t_ex.append(time.perf_counter() - t0)
    matcher.match(feats[0], feats[1])  # warm-up
    t_m, n_m, epi = [], [], []
    for i in range(len(feats) - 1):
        t0 = time.perf_counter()
        m = matcher.match(feats[i], feats[i + 1])
        t_m.append(time.perf_counter() - t0)
        n_m.append(len(m))
        F = _fundamental(scene, names[i], names[i + 1])
        x0 = np.c_[feats[i].keypoints[m.pairs[:, 0]], np.ones(len(m))]
        x1 = np.c_[feats[i + 1].keypoints[m.pairs[:, 1]], np.ones(len(m))]
        line = x0 @ F.T  # epipolar lines in image i+1
        d = np.abs((x1 * line).sum(1)) / np.linalg.norm(line[:, :2], axis=1)
        epi.extend((d < 2.0).tolist())
    print(json.dumps({
        "extract_ms": 1000 * float(np.median(t_ex)), "kpts": float(np.mean([len(f) for f in feats])),
        "size": "{1}x{0}".format(*resized_size(images[0].shape[1], images[0].shape[2], extractor.resize_max,
                                                extractor.size_multiple)),
        "match_ms": 1000 * float(np.median(t_m)), "matches": float(np.mean(n_m)),
        "epi": 100 * float(np.mean(epi)) if epi else float("nan"),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def _camera(path: Path):
    import numpy as np

    rows = [list(map(float, line.split())) for line in path.read_text().split("\n") if line.strip()]
    K, R, C = np.array(rows[0:3]), np.array(rows[4:7]), np.array(rows[7])
    return K, R, C  # R: camera -> world, C: centre (README of the Strecha copy)


def _fundamental(scene: Path, a: str, b: str):
    """F with x_b^T F x_a = 0 (pixels, OpenCV convention) from the ground-truth cameras."""
    import numpy as np

    Ka, Ra, Ca = _camera(scene / "gt_dense_cameras" / f"{a}.camera")
    Kb, Rb, Cb = _camera(scene / "gt_dense_cameras" / f"{b}.camera")
    R = Rb.T @ Ra  # a -> b
    t = Rb.T @ (Ca - Cb)
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return np.linalg.inv(Kb).T @ tx @ R @ np.linalg.inv(Ka)


def _header(argv: list[str], threads: int) -> list[str]:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    cpu = next((line.split(":", 1)[1].strip() for line in run(["lscpu"]).splitlines()
                if line.startswith("Model name")), platform.processor() or "?")
    import cv2
    import torch

    try:
        import kornia

        kornia_version = kornia.__version__
    except ImportError:
        kornia_version = "not installed"
    used = ["benchmarks/bench_features.py", *(f"plugins/features/src/maploc_features/{m}.py"
                                               for m in ("types", "extractors", "matchers", "weights"))]
    dirty = " (+ uncommitted changes to the code measured)" if run(["git", "status", "--porcelain", "--", *used]) else ""
    return [
        f"command:  python benchmarks/bench_features.py {shlex.join(argv)}",
        f"commit:   {run(['git', 'rev-parse', '--short', 'HEAD'])}{dirty}",
        f"cpu:      {cpu} ({os.cpu_count()} logical CPUs, shared); threads {threads} per configuration",
        f"load:     {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min) at start; the machine is shared: "
        "timings are UNDER LOAD",
        f"versions: python {platform.python_version()}, torch {torch.__version__}, opencv {cv2.__version__}, "
        f"kornia {kornia_version}",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=3, help="consecutive fountain-P11 images (>= 2)")
    parser.add_argument("--max-keypoints", type=int, default=4096)
    parser.add_argument("--resize-max", type=int, nargs="+", default=[1536, 1024])
    parser.add_argument("--pairs", nargs="+", default=[f"{e}+{m}" for e, m in PAIRS],
                        help="extractor+matcher configurations")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--timeout", type=float, default=300, help="seconds per configuration")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--extractor", help=argparse.SUPPRESS)
    parser.add_argument("--matcher", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.resize_max = args.resize_max[0]
        _child(args)
        return 0
    if args.images < 2:
        parser.error("--images must be at least 2")
    if not (Path(args.data) / "fountain-P11" / "images").is_dir():
        print(f"bench_features: the Strecha scenes are not at {Path(args.data).resolve()} (--data)", file=sys.stderr)
        return 2
    if any(p.split("+")[0] == "aliked" for p in args.pairs):
        from maploc_features.weights import LIGHTGLUE_WEIGHTS

        from maploc.data.fetch import fetch

        fetch(LIGHTGLUE_WEIGHTS)
    for line in _header(argv, args.threads):
        print(line, flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    head = (f"{'extractor':<9} {'matcher':<12} {'resize_max':>10} {'size':>10} {'kpts':>6} {'extract ms':>10} "
            f"{'match ms':>9} {'matches':>8} {'epi<2px':>8} {'peak RSS MB':>11}")
    print(f"\nfountain-P11, {args.images} images 1536x1024 ({args.images - 1} consecutive pairs), "
          f"max_keypoints {args.max_keypoints}, CPU, {args.threads} thread(s); medians after one warm-up")
    print(head)
    print("-" * len(head))
    t_start = time.time()
    for pair in args.pairs:
        ex, m = pair.split("+")
        for r in args.resize_max:
            cmd = [sys.executable, __file__, "--child", "--extractor", ex, "--matcher", m, "--resize-max", str(r),
                   "--threads", str(args.threads), "--images", str(args.images), "--max-keypoints",
                   str(args.max_keypoints), "--data", args.data]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{ex:<9} {m:<12} {r:>10}  timed out after {args.timeout:.0f} s", flush=True)
                continue
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{ex:<9} {m:<12} {r:>10}  failed: {tail}", flush=True)
                continue
            res = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{ex:<9} {m:<12} {r:>10} {res['size']:>10} {res['kpts']:>6.0f} {res['extract_ms']:>10.0f} "
                  f"{res['match_ms']:>9.0f} {res['matches']:>8.0f} {res['epi']:>7.1f}% {res['rss_mb']:>11.0f}",
                  flush=True)
    print(f"\ntotal {time.time() - t_start:.0f} s; load average at end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""hloc on the real Strecha scenes, leave-one-out, one row per scene x (features, matcher), with the core's
coverage floor and the nn-retrieval baseline beside them. Prints a table; not a test.

    python benchmarks/bench_hloc_strecha.py [--root ../shared/data/strecha] [--out /tmp/strecha-bench]
        [--configs sift+mnn xfeat+lighterglue aliked+lightglue] [--scenes fountain-P11 Herz-Jesus-P8 castle-P19]
        [--threads 2] [-o resize_max=1024 ...]

Each cell is one ``maploc run --method hloc --dataset strecha --data-root SCENE -o features=F -o matcher=M``
(subprocess, its wall time and peak RSS measured here), scored by the core from ``RUN/predictions/`` (every image
of the scene is a query once, against a map triangulated from the others). ``nn-retrieval`` returns the pose of
the most similar other image (thumbnails); ``coverage`` is the core's floor: the nearest other camera. A finished
run folder (``metrics.json`` present) is reused, so a rerun only scores what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (("median_translation_cm", "med cm", "{:.1f}"), ("median_rotation_deg", "med deg", "{:.2f}"),
           ("recall_5cm_1deg", "5cm/1deg %", "{:.1f}"), ("recall_25cm_2deg", "25cm/2deg %", "{:.1f}"),
           ("recall_1m_5deg", "1m/5deg %", "{:.1f}"), ("num_failed", "failed", "{:.0f}"),
           ("num_queries", "queries", "{:.0f}"))


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except OSError:
        model = ""
    return f"{model or platform.processor() or 'unknown'}, {os.cpu_count()} logical CPUs"


def _run(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """Runs ``cmd``; returns (wall s, peak RSS MiB of that child process, exit code)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return wall, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status)


def _fmt(metrics: dict, key: str, fmt: str) -> str:
    v = metrics.get(key)
    return "-" if v is None else fmt.format(float(v))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "strecha")
    p.add_argument("--scenes", nargs="+", default=["fountain-P11", "Herz-Jesus-P8", "castle-P19"])
    p.add_argument("--configs", nargs="+", default=["sift+mnn", "xfeat+lighterglue", "aliked+lightglue"])
    p.add_argument("--out", type=Path, default=Path("/tmp/strecha-bench"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("-o", dest="overrides", action="append", default=[], help="extra hloc option key=value")
    p.add_argument("--no-baseline", action="store_true", help="skip the nn-retrieval runs")
    args = p.parse_args()
    for scene in args.scenes:
        if not (args.root / scene / "gt_dense_cameras").is_dir():
            print(f"bench_hloc_strecha: {args.root / scene} is not a Strecha scene folder (no gt_dense_cameras/)",
                  file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    print(f"$ python benchmarks/bench_hloc_strecha.py {' '.join(sys.argv[1:])}")
    print(f"commit: {commit}; cpu: {_cpu()}; threads: {args.threads}; load at start: {os.getloadavg()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; every image is real (Strecha, 1536x1024)")
    header = ["scene", "method", *[c[1] for c in COLUMNS], "s/query", "wall s", "peak MiB"]
    rows: list[list[str]] = []
    jobs: list[tuple[str, str, list[str]]] = []
    for scene in args.scenes:
        for cfg in args.configs:
            feats, matcher = cfg.split("+")
            jobs.append((scene, f"hloc {cfg}", ["--method", "hloc", "-o", f"features={feats}", "-o",
                                                f"matcher={matcher}", *sum((["-o", o] for o in args.overrides), [])]))
        if not args.no_baseline:
            jobs.append((scene, "nn-retrieval", ["--method", "nn-retrieval"]))
    for scene, label, method_args in jobs:
        run = args.out / f"{scene}-{label.replace(' ', '-').replace('+', '_')}"
        cmd = ["maploc", "run", *method_args, "--dataset", "strecha", "--data-root", str(args.root / scene),
               "--out", str(run), "--threads", str(args.threads), "--no-progress"]
        wall, peak = float("nan"), float("nan")
        if not (run / "metrics.json").is_file():
            print("$ " + " ".join(cmd), flush=True)
            wall, peak, rc = _run(cmd, args.out / f"{run.name}.log")
            if rc != 0:
                print(f"  exit {rc}; see {args.out / (run.name + '.log')}", flush=True)
                rows.append([scene, label, *["error"] * (len(header) - 2)])
                continue
        m = json.loads((run / "metrics.json").read_text())
        per_query = m.get("time_per_query_ms")
        rows.append([scene, label, *[_fmt(m, k, f) for k, _, f in COLUMNS],
                     "-" if per_query is None else f"{float(per_query) / 1000:.2f}",
                     "reused" if wall != wall else f"{wall:.0f}", "-" if peak != peak else f"{peak:.0f}"])
        if label == "nn-retrieval" or (args.no_baseline and label.endswith(args.configs[-1])):
            rows.append([scene, "coverage (floor)", *[_fmt(m, f"coverage:{k}", f) for k, _, f in COLUMNS],
                         "-", "-", "-"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

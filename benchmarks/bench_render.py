"""Speed and memory of the sim-city renderer (maploc_simcity) on the real Helsinki OSM map.

Rows: parsing the map, building the scene (ground grid, buildings, trees, lamps, furniture, paint), creating the
renderer (EGL context, shaders, buffers), and rendering a traversal at 320x240 under each condition with RGB,
depth and labels read back (``Renderer.render``). Frame rates are wall-clock; the CPU column is the process CPU
time per frame (all llvmpipe threads), which says what an idle machine would do when others share the cores.
Peak memory is the process's maximum resident set size.

    python benchmarks/bench_render.py                        # Helsinki, 200 frames, day and night
    python benchmarks/bench_render.py --frames 100 --conditions day,dusk,night,overcast,autumn
    python benchmarks/bench_render.py --map path/to/city.osm.pbf --width 640 --height 480

Not a test: it prints a table and asserts nothing. Targets (issue 4): scene build < 20 s, > 30 fps at 320x240,
peak memory < 2 GiB.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024**2)  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map", default="helsinki-osm", help="sample name or OSM file (default: helsinki-osm)")
    parser.add_argument("--frames", type=int, default=200, help="frames per condition (default: 200)")
    parser.add_argument("--conditions", default="day,night")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fov", type=float, default=70.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spacing", type=float, default=4.0, help="metres between frames (default: 4)")
    args = parser.parse_args()

    from maploc_osm import parse_osm, resolve_map
    from maploc_simcity import Renderer, build_scene, make_camera, plan_route, traversal_poses

    rows: list[tuple[str, str, str, str]] = []
    path = resolve_map(args.map)
    t = time.perf_counter()
    osm_map = parse_osm(path)
    parse_s = time.perf_counter() - t
    rows.append(("parse OSM", f"{parse_s:.2f} s", "", f"{path.name}, {osm_map.counts['file_ways']} ways"))
    t = time.perf_counter()
    scene = build_scene(osm_map, seed=args.seed)
    build_s = time.perf_counter() - t
    st = scene.stats
    rows.append(("build scene", f"{build_s:.2f} s", "< 20 s", f"parse + build {parse_s + build_s:.1f} s"))
    for key in ("ground_s", "buildings_s", "trees_s", "furniture_s", "paint_s", "tiles_s"):
        rows.append((f"  {key[:-2]}", f"{st[key]:.2f} s", "", ""))
    rows.append(
        (
            "  scene size",
            f"{st['triangles'] / 1e3:.0f} k tris",
            "",
            f"{st['buildings']} buildings, {st['trees']} trees, {st['lamps']} lamps, {st['furniture']} furniture, "
            f"{st['ground_texels'] / 1e6:.0f} M ground texels",
        )
    )
    camera = make_camera(args.width, args.height, args.fov)
    route = plan_route(osm_map, 5.0 + (args.frames - 1) * args.spacing + 5.0, seed=args.seed)
    poses = traversal_poses(route, args.frames, spacing_m=args.spacing, seed=args.seed)
    t = time.perf_counter()
    renderer = Renderer(scene, camera)
    renderer.render(poses[0].T_cam2world, "day")  # first frame: driver warm-up
    rows.append(("create renderer", f"{time.perf_counter() - t:.2f} s", "", renderer.ctx.info["GL_RENDERER"]))
    for condition in [c.strip() for c in args.conditions.split(",") if c.strip()]:
        times, cpu0, t0 = [], time.process_time(), time.perf_counter()
        for view in poses:
            s = time.perf_counter()
            frame = renderer.render(view.T_cam2world, condition)
            times.append(time.perf_counter() - s)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        fps = len(poses) / wall
        rows.append(
            (
                f"render {condition}",
                f"{fps:.1f} fps",
                "> 30 fps",
                f"{args.width}x{args.height} RGB+depth+labels; median {1e3 * np.median(times):.1f} ms, "
                f"p95 {1e3 * np.percentile(times, 95):.1f} ms, CPU {1e3 * cpu / len(poses):.1f} ms/frame",
            )
        )
        assert frame.rgb.shape == (args.height, args.width, 3)
    renderer.release()
    rows.append(("peak memory", f"{peak_rss_gib():.2f} GiB", "< 2 GiB", "max resident set size"))

    load = os.getloadavg()
    print(f"maploc sim-city renderer on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip
    widths = [max(len(r[k]) for r in rows + [("step", "value", "target", "notes")]) for k in range(4)]
    header = ("step", "value", "target", "notes")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    main()

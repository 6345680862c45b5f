"""TransPose scene model on the real 7-Scenes stairs sample: Open3D TSDF mesh vs a z-buffered point splat.

Both models are built from the same real RGB-D mapping frames (depth registered to the colour
camera by the ``7scenes`` loader) and rendered at 640x480:

* ``tsdf``: :func:`maploc_dsac.transpose.fusion.fuse_rgbd` (Open3D VoxelBlockGrid, 1 cm voxels,
  4 cm truncation), ray cast with Embree, vertex colours interpolated.
* ``splat``: every valid depth pixel back-projected to a coloured world point, projected into the
  target view and z-buffered (nearest point wins), each point a square of side
  ``clip(round(source pixel footprint / target pixel footprint), 1, 3)`` pixels; no hole filling.

Evaluated against REAL frames (real image, real depth) the model did or did not see:

* ``map (all)``: each mapping frame re-rendered from the model of all 6 (the splat reproduces
  its own pixels; a sanity check, not a quality measure);
* ``map (leave-one-out)``: each mapping frame rendered from the model of the other 5;
* ``query``: the 6 real query frames (41-46 deg, 0.22-0.27 m from the nearest mapping frame)
  rendered from the model of the 6 mapping frames: the viewpoints TransPose wants to synthesize.

Columns: ``valid`` = fraction of image pixels with a surface; ``covered`` = fraction of the real
depth pixels that the render covers; ``depth rel`` / ``depth cm`` = median relative / absolute
depth error over pixels valid in both; ``rgb mae`` = mean absolute colour error (/255) there;
``outliers`` = fraction of those pixels whose depth is off by more than 10 cm (wrong training
labels: a surface behind showing through).

Writes one PNG: real frames beside the renders of both models, and novel views orbiting a mapping
frame by 30 and 60 degrees (yaw about the point at its median depth). Usage::

    OMP_NUM_THREADS=1 python benchmarks/transpose_fusion_compare.py --out /tmp/transpose_fusion.png
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from maploc.data.fetch import fetch
from maploc.data.sevenscenes import SevenScenes
from maploc.types import Pose, Sample
from maploc_dsac.transpose.fusion import FusionOptions, RenderedView, fuse_rgbd


class PointSplat:
    """Back-projected RGB-D points rendered by z-buffered square splats (the baseline)."""

    def __init__(self, frames: list[Sample], depth_max_m: float = 4.0) -> None:
        points, colors, footprint = [], [], []
        for f in frames:
            d = f.depth.numpy()
            v, u = np.nonzero((d > 0) & (d <= depth_max_m))
            z = d[v, u].astype(np.float64)
            K = f.camera.K.double().numpy()
            p_cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], 1)
            R, t = f.T_cam2world.R.double().numpy(), f.T_cam2world.t.double().numpy()
            points.append(p_cam @ R.T + t)
            colors.append((f.image.permute(1, 2, 0).numpy()[v, u] * 255).round().astype(np.uint8))
            footprint.append(z / K[0, 0])  # metres per source pixel
        self.points = np.concatenate(points)
        self.colors = np.concatenate(colors)
        self.footprint = np.concatenate(footprint)
        self.depth_max_m = depth_max_m

    def render(self, K: np.ndarray, T_cam2world: Pose, width: int, height: int) -> RenderedView:
        R, t = T_cam2world.R.double().numpy(), T_cam2world.t.double().numpy()
        p = (self.points - t) @ R
        keep = (p[:, 2] > 0.05) & (p[:, 2] <= self.depth_max_m)
        idx = np.nonzero(keep)[0]
        p = p[keep]
        u = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
        v = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
        size = np.clip(np.rint(self.footprint[idx] * K[0, 0] / p[:, 2]), 1, 3).astype(np.int64)
        zq = np.rint(p[:, 2] * 1e4).astype(np.int64)
        pix_all, key_all = [], []
        for s in (1, 2, 3):
            sel = size == s
            if not sel.any():
                continue
            u0 = np.rint(u[sel] - (s - 1) / 2).astype(np.int64)
            v0 = np.rint(v[sel] - (s - 1) / 2).astype(np.int64)
            key = (zq[sel] << 22) | np.nonzero(sel)[0]
            for dy in range(s):
                for dx in range(s):
                    uu, vv = u0 + dx, v0 + dy
                    ok = (uu >= 0) & (uu < width) & (vv >= 0) & (vv < height)
                    pix_all.append(vv[ok] * width + uu[ok])
                    key_all.append(key[ok])
        pix, key = np.concatenate(pix_all), np.concatenate(key_all)
        order = np.lexsort((key, pix))
        pix, key = pix[order], key[order]
        first = np.r_[True, pix[1:] != pix[:-1]]
        pix, key = pix[first], key[first]
        local = key & ((1 << 22) - 1)
        rgb = np.zeros((height * width, 3), np.uint8)
        depth = np.zeros(height * width, np.float32)
        coords = np.zeros((height * width, 3), np.float32)
        valid = np.zeros(height * width, bool)
        rgb[pix] = self.colors[idx[local]]
        depth[pix] = p[local, 2]
        coords[pix] = self.points[idx[local]]
        valid[pix] = True
        return RenderedView(rgb=rgb.reshape(height, width, 3), depth_m=depth.reshape(height, width),
                            scene_coords=coords.reshape(height, width, 3), valid=valid.reshape(height, width))


def compare(view: RenderedView, frame: Sample) -> dict[str, float]:
    d = frame.depth.numpy()
    both = view.valid & (d > 0)
    gt = frame.image.permute(1, 2, 0).numpy() * 255
    err = np.abs(view.depth_m[both] - d[both])
    return {
        "valid": view.valid_fraction,
        "covered": float(both.sum() / max(1, (d > 0).sum())),
        "depth rel": float(np.median(err / d[both])),
        "depth cm": float(np.median(err) * 100),
        "rgb mae": float(np.abs(view.rgb[both].astype(float) - gt[both]).mean()),
        "outliers": float((err > 0.10).mean()),
    }


def orbit(T: Pose, pivot_m: float, yaw_deg: float) -> Pose:
    """``T`` orbited by ``yaw_deg`` about its own y axis through the point ``pivot_m`` ahead."""
    R, c = T.R.double(), T.t.double()
    a = math.radians(yaw_deg)
    Ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=torch.float64)
    dR = R @ Ry @ R.T
    p = c + pivot_m * R[:, 2]
    return Pose(R=(dR @ R).float(), t=(p - dR @ (p - c)).float())


def render(model, frame_or_pose, like: Sample):
    T = frame_or_pose.T_cam2world if isinstance(frame_or_pose, Sample) else frame_or_pose
    t0 = time.perf_counter()
    view = model.render(like.camera.K.double().numpy(), T, like.camera.width, like.camera.height)
    return view, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--voxel", type=float, default=0.01)
    args = parser.parse_args()
    root = fetch("7scenes-stairs")
    mapping = SevenScenes(root, "map")
    query = SevenScenes(root, "query")
    frames = [mapping[i] for i in range(len(mapping))]
    queries = [query[i] for i in range(len(query))]
    options = FusionOptions(voxel_m=args.voxel, truncation_m=4 * args.voxel)
    print(f"uptime: {os.popen('uptime').read().strip()}")

    t0 = time.perf_counter()
    tsdf = fuse_rgbd(frames, options)
    fuse_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    splat = PointSplat(frames, options.depth_max_m)
    splat_s = time.perf_counter() - t0
    print(f"build (6 real frames, 640x480): tsdf fusion {fuse_s:.2f} s ({tsdf.num_triangles} triangles), "
          f"splat back-projection {splat_s:.2f} s ({len(splat.points)} points)")

    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    times: dict[str, list[float]] = {"tsdf": [], "splat": []}
    for name, model in (("tsdf", tsdf), ("splat", splat)):
        for f in frames:
            view, dt = render(model, f, f)
            times[name].append(dt)
            rows.setdefault(("map (all)", name), []).append(compare(view, f))
        for q in queries:
            view, dt = render(model, q, q)
            times[name].append(dt)
            rows.setdefault(("query", name), []).append(compare(view, q))
    loo_views = {}
    for i, f in enumerate(frames):
        others = frames[:i] + frames[i + 1:]
        for name, model in (("tsdf", fuse_rgbd(others, options)), ("splat", PointSplat(others, options.depth_max_m))):
            view, _ = render(model, f, f)
            rows.setdefault(("map (leave-one-out)", name), []).append(compare(view, f))
            if i == 0:
                loo_views[name] = view

    keys = ["valid", "covered", "depth rel", "depth cm", "rgb mae", "outliers"]
    print(f"\n| frames (real) | model | n | {' | '.join(keys)} |")
    print("|---|---|---|" + "---|" * len(keys))
    for (frames_name, name), values in rows.items():
        cells = [f"{np.median([v[k] for v in values]):.4f}" if k == "depth rel" else
                 f"{np.median([v[k] for v in values]):.3f}" if k in ("valid", "covered", "outliers") else
                 f"{np.median([v[k] for v in values]):.2f}" for k in keys]
        print(f"| {frames_name} | {name} | {len(values)} | {' | '.join(cells)} |")
    print("(medians over frames of the per-frame values)")
    for name, ts in times.items():
        print(f"render time per 640x480 view, {name}: median {np.median(ts) * 1000:.0f} ms "
              f"(min {min(ts) * 1000:.0f}, max {max(ts) * 1000:.0f}, {len(ts)} views)")

    # figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maploc.evaluation.report import save_figure

    f0, q0 = frames[0], queries[3]
    pivot = float(f0.depth[f0.depth > 0].median())
    panels = [
        ("REAL mapping frame " + f0.name, f0.image.permute(1, 2, 0).numpy()),
        ("tsdf render, frame left out", loo_views["tsdf"].rgb),
        ("splat render, frame left out", loo_views["splat"].rgb),
        ("REAL query frame " + q0.name, q0.image.permute(1, 2, 0).numpy()),
        ("tsdf render at the query pose", render(tsdf, q0, q0)[0].rgb),
        ("splat render at the query pose", render(splat, q0, q0)[0].rgb),
    ]
    for yaw in (30, 60):
        T = orbit(f0.T_cam2world, pivot, yaw)
        for name, model in (("tsdf", tsdf), ("splat", splat)):
            view = render(model, T, f0)[0]
            panels.append((f"{name}: {yaw} deg orbit of {f0.name} (valid {view.valid_fraction:.2f})", view.rgb))
    fig, axes = plt.subplots(4, 3, figsize=(15, 15))
    order = [0, 1, 2, 3, 4, 5, 6, 8, None, 7, 9, None]
    for ax, k in zip(axes.ravel(), order):
        ax.axis("off")
        if k is not None:
            ax.imshow(panels[k][1])
            ax.set_title(panels[k][0], fontsize=9)
    fig.suptitle("7-Scenes stairs: REAL frames vs RENDERS of models fused from the 6 real mapping frames "
                 "(black = hole, masked)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

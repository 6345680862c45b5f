"""Every bad input is answered before any work: one line on stderr, exit status 2, no traceback,
and nothing left behind (issue: lean core, bad input)."""

from __future__ import annotations

import stat

import numpy as np
import pytest


def _error_line(proc) -> str:
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("maploc: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


ROOM = ("--dataset", "synthetic-room", "--no-progress")


@pytest.mark.parametrize("value", ["-3", "0"])
def test_out_of_range_count(run_cli, tmp_path, value):
    out = tmp_path / "r"
    line = _error_line(run_cli("run", "--method", "nn-retrieval", *ROOM, "-o", f"top_k={value}", "--out", str(out)))
    assert f"config key 'top_k' must be >= 1, got {value}" in line
    assert not out.exists()


def test_out_of_range_learning_rate(run_cli):
    line = _error_line(run_cli("run", "--method", "boring", *ROOM, "-o", "train.lr=-1"))
    assert "'train.lr' must be > 0" in line


def test_out_under_a_file(run_cli, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    line = _error_line(run_cli("run", "--method", "nn-retrieval", *ROOM, "--out", str(blocker / "run")))
    assert "is a file, not a folder" in line and "afile" in line


def test_out_unwritable(run_cli):
    line = _error_line(run_cli("run", "--method", "nn-retrieval", *ROOM, "--out", "/sys/maploc-run"))
    assert "cannot write the run directory /sys/maploc-run" in line


def test_dataset_option_typo(run_cli):
    line = _error_line(run_cli("run", "--method", "nn-retrieval", "--dataset", "7scenes", "-o", "data.load_dpth=false"))
    assert "unknown config key 'data.load_dpth' for dataset '7scenes'" in line and "data.load_depth" in line


def _dsac_scene(root):
    import cv2

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 2)):
        for i in range(n):
            stem = f"frame-{i:06d}"
            for sub in ("rgb", "poses", "calibration"):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / "rgb" / f"{stem}.color.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
            T = np.eye(4)
            T[:3, 3] = rng.normal(size=3)
            np.savetxt(root / split / "poses" / f"{stem}.pose.txt", T)
            (root / split / "calibration" / f"{stem}.calibration.txt").write_text("30.0")
    return root


@pytest.mark.parametrize("broken", ["corrupt_query_image", "nan_map_pose"])
def test_broken_split_is_reported_before_training(run_cli, tmp_path, broken):
    root = _dsac_scene(tmp_path / "scene")
    if broken == "corrupt_query_image":
        (root / "test" / "rgb" / "frame-000001.color.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        expect = "frame-000001.color.png"
    else:
        pose = root / "train" / "poses" / "frame-000003.pose.txt"
        pose.write_text(pose.read_text().replace(pose.read_text().split()[3], "nan", 1))
        expect = "frame-000003"
    out = tmp_path / "run"
    proc = run_cli("run", "--method", "boring", "--dataset", "dsac", "--data-root", str(root),
                   "-o", "train.max_steps=50", "-o", "train.batch_size=2", "--out", str(out), "--no-progress")
    line = _error_line(proc)
    assert expect in line
    assert "Trained" not in proc.stdout
    assert not out.exists()  # a failed run leaves no run directory holding only config.yaml


def test_run_files_have_default_permissions(run_cli, tmp_path):
    out = tmp_path / "ok"
    proc = run_cli("run", "--method", "nn-retrieval", *ROOM, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert {"metrics.json", "results.csv", "report.txt", "config.yaml"} <= set(modes)
    assert len(set(modes.values())) == 1, modes  # every file the same mode (no 0600 among 0644)
    assert all(m & stat.S_IRGRP for m in modes.values()), modes


def test_negative_threads_is_one_line(maploc_main):
    status, out, err = maploc_main("run", "--method", "nn-retrieval", "--dataset", "synthetic-room", "--threads", "-1")
    assert status == 2 and err.strip().splitlines() == ["maploc: error: --threads must be >= 0 (0: one per core), got -1"]


def test_threads_sets_torch_threads(maploc_main, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        status, _, err = maploc_main("run", "--method", "nn-retrieval", "--dataset", "synthetic-room", "--threads", "1",
                                     "--out", str(tmp_path / "run"), "--no-progress")
        assert status == 0, err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

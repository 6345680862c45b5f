"""The command line as a user types it: help, errors on bad input, run / repeat / train / eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


@pytest.mark.parametrize("command", [[], ["list"], ["run"], ["train"], ["eval"], ["config", "show"], ["data", "fetch"]])
def test_help(run_cli, command):
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: maploc" in proc.stdout


def test_run_help_lists_hook_options(run_cli):
    proc = run_cli("run", "--help")
    assert "--no-tensorboard" in proc.stdout  # contributed by the core's own hook plugin
    assert "--devices" in proc.stdout and "--resume" in proc.stdout


def _error_line(proc):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("maploc: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_unknown_method(run_cli):
    line = _error_line(run_cli("run", "--method", "dsca"))
    assert "unknown method 'dsca'" in line and "nn-retrieval" in line


def test_unknown_config_key(run_cli):
    line = _error_line(run_cli("run", "--method", "nn-retrieval", "--dataset", "synthetic-room", "-o", "thumbnail=3"))
    assert "unknown config key 'thumbnail'" in line and "thumbnail_width" in line


def test_wrong_type(run_cli):
    line = _error_line(run_cli("run", "--method", "nn-retrieval", "--dataset", "synthetic-room", "-o", "top_k=many"))
    assert "'top_k' expects an int" in line


def test_missing_data_root(run_cli, tmp_path):
    line = _error_line(run_cli("run", "--method", "nn-retrieval", "--data-root", str(tmp_path / "nowhere")))
    assert "does not exist" in line and "nowhere" in line


def test_corrupt_checkpoint(run_cli, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00garbage")
    line = _error_line(run_cli("eval", "--method", "boring", "--checkpoint", str(bad)))
    assert "bad.ckpt cannot be read" in line and "corrupt" in line
    assert "weights_only" not in line  # never relay torch's hint to turn unpickling on


def test_debug_shows_traceback(run_cli):
    proc = run_cli("--debug", "run", "--method", "dsca")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_config_show(run_cli):
    proc = run_cli("config", "show", "--method", "boring", "-o", "train.lr=0.01", "-o", "train.max_steps=20")
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["train"]["max_steps"] == 20 and data["train"]["lr"] == 0.01
    assert "presets: default" in proc.stdout
    assert "dataset 'synthetic-room' takes no options" in proc.stdout


def test_config_show_lists_dataset_options(run_cli):
    proc = run_cli("config", "show", "--method", "nn-retrieval", "--dataset", "7scenes", "-o", "data.load_depth=false")
    assert proc.returncode == 0, proc.stderr
    assert "data.load_depth: False" in proc.stdout


def test_run_writes_run_dir_and_can_be_repeated(run_cli, tmp_path):
    out = tmp_path / "run1"
    proc = run_cli("run", "--method", "nn-retrieval", "--dataset", "synthetic-room", "-o", "thumbnail_width=16",
                   "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "median_translation_cm" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_queries"] == 12 and metrics["num_failed"] == 0
    assert 0 < metrics["median_translation_cm"] < 500  # inside a 6 x 4 m room
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == "nn-retrieval" and saved["config"]["thumbnail_width"] == 16
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 13
    assert (out / "error_cdf.png").stat().st_size > 1000

    again = tmp_path / "run2"
    proc = run_cli("run", "--config", str(out / "config.yaml"), "--out", str(again), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((again / "metrics.json").read_text())["median_translation_cm"] == metrics["median_translation_cm"]
    assert yaml.safe_load((again / "config.yaml").read_text())["config"] == saved["config"]


@pytest.mark.slow
def test_train_then_eval_checkpoint(run_cli, tmp_path):
    out = tmp_path / "boring"
    proc = run_cli("train", "--method", "boring", "-o", "train.max_steps=12", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Trained 12 steps" in proc.stdout
    assert not (out / "metrics.json").exists()  # train only
    ckpt = out / "checkpoints" / "last.ckpt"
    proc = run_cli("eval", "--checkpoint", str(ckpt), "--out", str(tmp_path / "ev"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["num_queries"] == 12
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "train/loss" in x] == list(range(1, 13))
    assert [x["step"] for x in lines if "val/val_loss" in x] == [6, 12]  # end of each epoch (val split)


def test_list_check_reports_a_component_whose_runtime_import_fails(run_cli, tmp_path):
    """`maploc list --check` calls a component's check_runtime(): a lazily imported native dependency
    (Open3D's libusb-1.0) that fails makes the component FAILED with the reason, not ok."""
    site = tmp_path / "site"
    info = site / "maploc_lazy-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: maploc-lazy\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[maploc.methods]\nlazy3d = lazy_mod:M\n")
    (site / "lazy_mod.py").write_text(
        "class M:\n    @classmethod\n    def check_runtime(cls):\n        import fake_o3d_lib\n")
    (site / "fake_o3d_lib.py").write_text("raise ImportError('libusb-1.0.so.0: cannot open shared object file')\n")
    env = {"PYTHONPATH": str(site)}
    proc = run_cli("list", "--check", "--kind", "methods", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED") and " lazy3d " in line]
    assert len(failed) == 1 and "libusb-1.0.so.0" in failed[0], proc.stdout
    assert "ok      maploc.methods   nn-retrieval" in proc.stdout
    assert "maploc.datasets" not in proc.stdout  # --kind limits the check


@pytest.mark.slow
def test_cli_ddp_two_processes(run_cli, tmp_path):
    out = tmp_path / "ddp"
    proc = run_cli("run", "--method", "boring", "--devices", "2", "--strategy", "ddp", "-o", "train.max_steps=4",
                   "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Trained 4 steps" in proc.stdout
    assert json.loads((out / "metrics.json").read_text())["num_queries"] == 12
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]


def test_list_check_reports_broken_plugins(run_cli, tmp_path):
    site = tmp_path / "site"
    info = site / "maploc_broken-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: maploc-broken\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[maploc.methods]\nbroken = broken_mod:X\n[maploc.solvers]\ngone = gone_mod:Y\n")
    (site / "broken_mod.py").write_text("raise ImportError('libfoo.so not found')\n")
    env = {"PYTHONPATH": str(site)}
    proc = run_cli("list", env=env)
    assert proc.returncode == 0 and "broken" in proc.stdout  # listing imports nothing
    proc = run_cli("list", "--check", env=env)
    assert proc.returncode == 1
    # only maploc-broken's two entries: another component may also fail where its system library is missing
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED") and "maploc-broken" in line]
    assert len(failed) == 2, proc.stdout
    assert any("libfoo.so not found" in line for line in failed)
    assert any("gone_mod" in line for line in failed)
    assert "ok      maploc.methods   nn-retrieval" in proc.stdout


@pytest.mark.slow
def test_cli_resume_continues_exactly(run_cli, tmp_path):
    import torch

    full, part = tmp_path / "full", tmp_path / "part"
    common = ("--method", "boring", "--no-progress", "--no-tensorboard")
    assert run_cli("train", *common, "-o", "train.max_steps=8", "--out", str(full)).returncode == 0
    # stop after 4 of 6 steps of the first epoch, then resume up to 8 steps from the run directory
    assert run_cli("train", *common, "-o", "train.max_steps=4", "--out", str(part)).returncode == 0
    proc = run_cli("train", *common, "-o", "train.max_steps=8", "--out", str(part), "--resume")
    assert proc.returncode == 2 and "train.max_steps is 4" in proc.stderr  # the saved config is kept by default
    proc = run_cli("train", *common, "-o", "train.max_steps=8", "--out", str(part), "--resume", "--change-config")
    assert proc.returncode == 0, proc.stderr
    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name


def test_run_validates_on_the_dataset_val_split(run_cli, tmp_path):
    """synthetic-room has a ``val`` split: maploc run passes it, and validation metrics reach
    metrics.jsonl (and TensorBoard) during training."""
    out = tmp_path / "val"
    proc = run_cli("run", "--method", "boring", "-o", "train.max_steps=4", "-o", "train.val_every=2",
                   "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/val_loss" in r]
    assert [r["step"] for r in val] == [2, 4]
    assert all(r["val/val_loss"] > 0 for r in val)
    assert any((out / "tensorboard").iterdir())


def test_method_is_told_its_run_and_the_checkpoint_run(maploc_main, monkeypatch, tmp_path, fake_site):
    """``RunContext.run_dir`` is the run in progress; ``source_run_dir`` the run that wrote the
    evaluated checkpoint, so that a method can reuse what it saved there (an index, a teacher)."""
    from maploc.testing.fakes import BoringMethod

    seen: list[tuple[object, object]] = []
    original = BoringMethod.build_map

    def spy(self, map_data, context):
        seen.append((context.run_dir, context.source_run_dir))
        return original(self, map_data, context)

    monkeypatch.setattr(BoringMethod, "build_map", spy)
    monkeypatch.syspath_prepend(str(fake_site))  # registers ``boring`` for this process
    out = tmp_path / "train"
    status, _, err = maploc_main("run", "--method", "boring", "-o", "train.max_steps=2", "--out", str(out),
                                 "--no-progress")
    assert status == 0, err
    ev = tmp_path / "ev"
    status, _, err = maploc_main("eval", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--out", str(ev),
                                 "--no-progress")
    assert status == 0, err
    assert [(Path(a).resolve(), b) for a, b in seen] == [(out.resolve(), None), (ev.resolve(), out.resolve())]

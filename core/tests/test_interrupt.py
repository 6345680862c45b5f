"""Ctrl-C during training loses nothing, and --resume continues the run as it was configured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

TRAIN = ["run", "--method", "template", "-o", "train.max_steps=4000", "--no-progress", "--threads", "1"]


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, MAPLOC_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("MAPLOC_RUN_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "maploc.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["model"]


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_resume_gives_the_uninterrupted_weights(tmp_path):
    interrupted = tmp_path / "interrupted"
    proc = _cli(*TRAIN, "--out", str(interrupted))
    log = interrupted / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 2):  # training has begun
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "--resume" in err and "SIGINT at step" in err  # one line, says how to resume
    saved = sorted((interrupted / "checkpoints").glob("step-*.ckpt"))
    assert len(saved) == 1 and not (interrupted / "checkpoints" / "last.ckpt").exists()
    step = int(saved[0].stem.split("-")[1])
    assert 1 <= step < 4000
    config_before = (interrupted / "config.yaml").read_text()

    # a flag that differs from the saved config is refused, naming both values
    proc = _cli("run", "--out", str(interrupted), "--resume", "-o", "train.max_steps=10")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "train.max_steps is 4000" in err and "10" in err

    # resume takes the saved config (no flags but --out) and finishes the run
    proc = _cli("run", "--out", str(interrupted), "--resume", "--no-progress", "--threads", "1")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert yaml.safe_load((interrupted / "config.yaml").read_text()) == yaml.safe_load(config_before)

    straight = tmp_path / "straight"
    proc = _cli(*TRAIN, "--out", str(straight))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    a, b = _weights(interrupted), _weights(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

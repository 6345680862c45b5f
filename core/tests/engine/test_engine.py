"""The generic engine: exact resume, checkpoint safety, NaN loss, DDP equivalence."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from maploc.config import apply_overrides
from maploc.data.synthetic import SyntheticRoom
from maploc.engine import Engine, EngineConfig, TrainingError, load_checkpoint, save_checkpoint
from maploc.errors import CheckpointError
from maploc.testing.fakes import BoringConfig, BoringMethod


def _train(run_dir: Path, overrides=(), resume=None, callbacks=()):
    method = BoringMethod(apply_overrides(BoringConfig(), list(overrides)))
    engine = Engine(EngineConfig(seed=3, progress=False), run_dir, callbacks=callbacks)
    engine.launch()
    method.model = method.configure_model()
    result = engine.fit(method, SyntheticRoom(None, "train"), SyntheticRoom(None, "query"), resume=resume)
    return method, result


class _Interrupt(Exception):
    pass


class _StopAt:
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, engine, step, epoch, loss):
        if step == self.step:
            raise _Interrupt


def test_resume_mid_epoch_gives_identical_weights(tmp_path):
    # 48 samples / batch 8 = 6 steps per epoch; 3 epochs = 18 steps; checkpoint every 4 steps.
    overrides = ["train.epochs=3", "train.checkpoint_every=4"]
    full, result = _train(tmp_path / "full", overrides)
    assert result.steps == 18 and result.epochs_completed == 3

    with pytest.raises(_Interrupt):
        _train(tmp_path / "cut", overrides, callbacks=[_StopAt(10)])  # dies in epoch 1, batch 4
    ckpt_path = tmp_path / "cut" / "checkpoints" / "step-00000008.ckpt"
    ckpt = load_checkpoint(ckpt_path)
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (8, 1, 2)  # mid-epoch
    assert not (tmp_path / "cut" / "checkpoints" / "last.ckpt").exists()

    resumed, result2 = _train(tmp_path / "cut", overrides, resume=ckpt_path)
    assert result2.steps == 18
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after resume"
    # and the interrupted run did move away from the start: weights at step 8 differ from the end
    assert not torch.equal(ckpt["model"]["linear.weight"], full.model.state_dict()["linear.weight"])


def test_training_reduces_the_loss(tmp_path):
    method, result = _train(tmp_path, ["train.epochs=6"])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines() if (tmp_path / "metrics.jsonl").exists() else []
    assert result.steps == 36
    data = SyntheticRoom(None, "train")
    batch = method.collate([data[i] for i in range(len(data))])
    with torch.no_grad():
        final = float(method.loss(method.model(batch["image"]), batch))
        start = BoringMethod(BoringConfig())
        torch.manual_seed(3)
        m0 = start.configure_model()
        initial = float(start.loss(m0(batch["image"]), batch))
    assert final < 0.5 * initial, (initial, final)
    assert lines == []  # no jsonl logger was attached in this direct use


def test_checkpoint_is_plain_data_and_atomic(tmp_path):
    path = save_checkpoint(tmp_path / "a.ckpt", {"method": "x", "model": {"w": torch.ones(2)}, "step": 3})
    data = load_checkpoint(path)
    assert data["step"] == 3 and torch.equal(data["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]  # no temp files left behind


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path):
    good = save_checkpoint(tmp_path / "good.ckpt", {"method": "x", "model": {"w": torch.ones(1000)}})
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.ckpt cannot be read") as info:
        load_checkpoint(truncated)
    assert "weights_only" not in str(info.value)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.ckpt cannot be read"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not a maploc checkpoint"):
        load_checkpoint(foreign)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"format": "maploc-checkpoint", "x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        load_checkpoint(evil)  # weights_only refuses to run code
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path):
    class NaNAfter(BoringMethod):
        def training_step(self, model, batch, batch_idx):
            loss = super().training_step(model, batch, batch_idx)
            return loss * float("nan") if batch_idx >= 3 else loss

    method = NaNAfter(apply_overrides(BoringConfig(), ["train.checkpoint_every=2"]))
    engine = Engine(EngineConfig(progress=False), tmp_path)
    method.model = method.configure_model()
    with pytest.raises(TrainingError, match=r"loss is nan at step 3.*step-00000002.ckpt"):
        engine.fit(method, SyntheticRoom(None, "train"))
    assert load_checkpoint(tmp_path / "checkpoints" / "step-00000002.ckpt")["step"] == 2


def test_split_smaller_than_a_batch_is_sampled_with_replacement(tmp_path, caplog):
    """A one-image scene trains with the default batch size (DSAC* itself trains with batch 1)."""
    import logging

    from maploc.data.synthetic import SyntheticRoom as Room

    class OneImage(torch.utils.data.Dataset):
        def __init__(self):
            self.room = Room(None, "train")

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return self.room[0]

    method = BoringMethod(apply_overrides(BoringConfig(), ["train.batch_size=4", "train.max_steps=3"]))
    engine = Engine(EngineConfig(progress=False), tmp_path)
    method.model = method.configure_model()
    with caplog.at_level(logging.INFO, logger="maploc.engine.engine"):
        result = engine.fit(method, OneImage())
    assert result.steps == 3 and engine.sampling_with_replacement
    assert sum("sampling with replacement" in r.message for r in caplog.records) == 1


def test_training_step_none_skips_the_optimizer_step(tmp_path):
    class SkipOdd(BoringMethod):
        def training_step(self, model, batch, batch_idx):
            if batch_idx % 2:
                return None
            return {"loss": super().training_step(model, batch, batch_idx), "extra/value": 1.5}

    method = SkipOdd(apply_overrides(BoringConfig(), ["train.max_steps=4", "train.log_every=1"]))
    engine = Engine(EngineConfig(progress=False), tmp_path)
    method.model = method.configure_model()
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    result = engine.fit(method, SyntheticRoom(None, "train"))
    assert result.steps == 4 and result.skipped_steps == 2
    assert any(not torch.equal(before[k], v) for k, v in method.model.state_dict().items())


DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from maploc.config import apply_overrides
    from maploc.data.synthetic import SyntheticRoom
    from maploc.engine import Engine, EngineConfig
    from maploc.testing.fakes import BoringConfig, BoringMethod

    devices, out = int(sys.argv[1]), Path(sys.argv[2])
    method = BoringMethod(apply_overrides(BoringConfig(), ["train.epochs=2", "train.batch_size=8"]))
    engine = Engine(EngineConfig(devices=devices, strategy="ddp" if devices > 1 else "auto", seed=7,
                                 progress=False), out)
    engine.launch()
    method.model = method.configure_model()
    if engine.is_global_zero:
        torch.save({k: v.detach().clone() for k, v in method.model.state_dict().items()}, out / "initial.pt")
    result = engine.fit(method, SyntheticRoom(None, "train"))
    if engine.is_global_zero:
        torch.save({k: v.detach().clone() for k, v in method.model.state_dict().items()}, out / "weights.pt")
        print("STEPS", result.steps, "WORLD", engine.world_size)
    """
)


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_"))}
    weights = {}
    for devices in (1, 2):
        out = tmp_path / f"d{devices}"
        out.mkdir()
        proc = subprocess.run([sys.executable, str(script), str(devices), str(out)], capture_output=True, text=True,
                              env=env, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"STEPS 12 WORLD {devices}" in proc.stdout
        weights[devices] = torch.load(out / "weights.pt", weights_only=True)
    initial = torch.load(tmp_path / "d1" / "initial.pt", weights_only=True)
    torch.testing.assert_close(torch.load(tmp_path / "d2" / "initial.pt", weights_only=True), initial)
    for name in weights[1]:
        torch.testing.assert_close(weights[2][name], weights[1][name], atol=1e-5, rtol=1e-4)
    # the runs trained: the weights moved well beyond the tolerance
    assert (weights[1]["linear.weight"] - initial["linear.weight"]).abs().max() > 1e-2


def test_bf16_autocast_trains_on_cpu(tmp_path):
    seen = []

    class Probe:
        def on_train_batch_end(self, engine, step, epoch, loss):
            seen.append(loss)

    method = BoringMethod(apply_overrides(BoringConfig(), ["train.max_steps=3"]))
    engine = Engine(EngineConfig(precision="bf16", progress=False), tmp_path, callbacks=[Probe()])
    method.model = method.configure_model()
    result = engine.fit(method, SyntheticRoom(None, "train"))
    assert result.steps == 3 and len(seen) == 3 and all(torch.isfinite(torch.tensor(seen)))
    # under autocast the linear layer really ran in bf16
    with engine.fabric.autocast():
        out = method.model(torch.rand(2, 3, 48, 64))
    assert out.dtype == torch.bfloat16


def test_fp16_on_cpu_is_a_clear_error(tmp_path):
    from maploc.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16 autocast is not supported on CPU"):
        Engine(EngineConfig(precision="16"), tmp_path)

"""Training through the core engine: exact mid-epoch resume, NaN loss, bf16 autocast, validation metrics."""

from __future__ import annotations

import math

import pytest
import torch

from maploc.config import apply_overrides
from maploc.engine import Engine, EngineConfig, TrainingError, load_checkpoint
from maploc_loc2vec.data import SyntheticTileDataset, SyntheticTileOptions
from maploc_loc2vec.method import Loc2VecConfig, Loc2VecMethod

# 24 triplets / batch 4 = 6 steps per epoch; 2 epochs = 12 steps
FAST = ["model.backbone=test_resnet", "model.input_px=32", "train.batch_size=4", "train.epochs=2", "train.max_steps=0", "train.checkpoint_every=4"]


def _data(split: str = "train", n: int = 24) -> SyntheticTileDataset:
    options = SyntheticTileOptions(train_samples=n, val_samples=8)
    return SyntheticTileDataset(None, split, options=options)


def _train(run_dir, overrides=(), resume=None, callbacks=(), method_cls=Loc2VecMethod, precision="32", val=None):
    method = method_cls(apply_overrides(Loc2VecConfig(), [*FAST, *overrides]))
    engine = Engine(EngineConfig(seed=5, progress=False, precision=precision), run_dir, callbacks=callbacks)
    engine.launch()
    method.model = method.configure_model()
    result = engine.fit(method, _data(), val, resume=resume)
    return method, result


class _Interrupt(Exception):
    pass


class _StopAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, engine, step, epoch, loss):
        if step == self.step:
            raise _Interrupt


def test_interrupted_mid_epoch_and_resumed_gives_the_same_weights(tmp_path):
    full, result = _train(tmp_path / "full")
    assert result.steps == 12 and result.epochs_completed == 2

    with pytest.raises(_Interrupt):
        _train(tmp_path / "cut", callbacks=[_StopAt(10)])  # dies in epoch 1, after its 4th batch
    ckpt_path = tmp_path / "cut" / "checkpoints" / "step-00000008.ckpt"
    ckpt = load_checkpoint(ckpt_path)
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (8, 1, 2)  # mid-epoch
    assert not (tmp_path / "cut" / "checkpoints" / "last.ckpt").exists()

    resumed, result2 = _train(tmp_path / "cut", resume=ckpt_path)
    assert result2.steps == 12
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    # the run did move: the weights at step 8 differ from the final ones
    assert not torch.equal(ckpt["model"]["head.weight"], a["head.weight"])


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    class NaNAfter(Loc2VecMethod):
        def training_step(self, model, batch, batch_idx):
            out = super().training_step(model, batch, batch_idx)
            return {**out, "loss": out["loss"] * float("nan")} if batch_idx >= 5 else out

    with pytest.raises(TrainingError, match=r"loss is nan at step 5.*step-00000004\.ckpt"):
        _train(tmp_path, method_cls=NaNAfter)
    kept = load_checkpoint(tmp_path / "checkpoints" / "step-00000004.ckpt")
    assert kept["step"] == 4 and kept["method"] == "loc2vec"
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_bf16_autocast_training_and_validation(tmp_path):
    method, result = _train(tmp_path, ["train.epochs=1", "train.max_steps=3", "train.val_every=3"], precision="bf16",
                            val=_data("val"))
    assert result.steps == 3 and torch.isfinite(torch.tensor(result.last_loss))
    lines = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] if (
        tmp_path / "metrics.jsonl").exists() else []
    assert lines == []  # no jsonl logger attached in direct engine use
    batch = method.collate([_data("val")[i] for i in range(4)])
    values = method.validation_step(method.model.eval(), batch, 0)
    assert set(values) == {"val_loss", "val_triplet_accuracy"}
    # the percent of the 4 dataset triplets with d(a, p) < d(a, n), recomputed from the embeddings
    with torch.no_grad():
        e = method.model(batch["tiles"])
    closer = (e[:4] - e[4:8]).norm(dim=1) < (e[:4] - e[8:]).norm(dim=1)
    assert values["val_triplet_accuracy"] == pytest.approx(100.0 * float(closer.float().mean()))
    assert math.isfinite(values["val_loss"]) and values["val_loss"] > 0
    assert method.last_stats["triplets"] > 0


def test_collate_layout():
    method = Loc2VecMethod(Loc2VecConfig())
    data = _data()
    batch = method.collate([data[i] for i in range(3)])
    assert batch["tiles"].shape == (9, 12, 64, 64) and batch["tiles"].dtype == torch.uint8
    assert batch["xy"].shape == (9, 2) and batch["yaw"].shape == (9,)
    assert batch["max_rotation_rad"] == pytest.approx(math.radians(22.5))
    assert batch["pairs"].tolist() == [[0, 3], [1, 4], [2, 5]]
    assert batch["negatives"].tolist() == [[0, 6], [1, 7], [2, 8]]
    s = data[1]
    assert batch["xy"][4].tolist() == [s.extras["positive_pose2"].x, s.extras["positive_pose2"].y]
    from maploc.errors import DataError

    with pytest.raises(DataError, match="triplet samples"):
        method.collate([SyntheticTileDataset(None, "map")[0]])

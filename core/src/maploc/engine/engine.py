"""The generic train / validate loop, on Lightning Fabric.

Fabric owns devices, mixed precision and distributed data parallel (DDP over gloo on CPU, NCCL on
GPU; the processes are started by Fabric's launcher, not by maploc). This module adds what every
localization method needs on top: a seeded, exactly resumable loop (checkpoints hold the position
inside the epoch), atomic checkpoints, progress bars, TensorBoard logs and callbacks contributed by
plugins.

Data order is a pure function of ``(seed, epoch)`` (a ``DistributedSampler`` with ``drop_last``):
with N processes each rank sees every N-th sample of the same permutation, so one process with
global batch B and N processes with B/N each consume the same samples per step, and DDP's gradient
averaging makes their updates equal up to floating-point reduction order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch.utils.data import DataLoader, DistributedSampler

from maploc.engine.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from maploc.engine.protocols import TrainableMethod
from maploc.errors import CheckpointError, ConfigError, MaplocError

__all__ = ["EngineConfig", "Engine", "TrainingError", "TrainingInterrupted", "FitResult", "PRECISIONS"]

log = logging.getLogger(__name__)

#: CLI spelling -> Fabric precision.
PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed", "64": "64-true"}


class TrainingError(MaplocError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class TrainingInterrupted(MaplocError):
    """SIGINT (Ctrl-C) or SIGTERM arrived during training: the engine finished the step in progress,
    saved a checkpoint of it (``checkpoint``) and stopped. ``--resume`` continues exactly from it."""

    def __init__(self, message: str, checkpoint: Path, step: int) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.step = step


class _StopRequests:
    """While active (main thread only), SIGINT and SIGTERM only record a stop request; the training loop
    checks it between steps, so that the checkpoint it then writes is of a whole step (exact resume). A
    second signal while a stop is pending raises ``KeyboardInterrupt`` at once."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> _StopRequests:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@attrs.frozen(kw_only=True)
class EngineConfig:
    """Where and how to run (not part of a method's config).

    Attributes:
        accelerator: ``cpu``, ``cuda`` or ``auto``.
        devices: number of devices (processes) on this machine.
        strategy: ``auto`` (single device), ``ddp`` (processes started by Fabric's launcher) or
            ``ddp_spawn``.
        precision: ``32``, ``bf16``, ``16`` or ``64`` (``bf16``/``16`` are autocast mixed precision).
        seed: the global seed; data order, initialisation and augmentation derive from it.
        progress: show progress bars (rank 0 only).
    """

    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    precision: str = "32"
    seed: int = 0
    progress: bool = True


@attrs.frozen
class FitResult:
    """What ``Engine.fit`` did: steps run, the final training loss, seconds, checkpoint path, and
    how many batches skipped the optimizer step (``training_step`` returned ``None``)."""

    steps: int
    epochs_completed: int
    last_loss: float
    seconds: float
    checkpoint: Path | None
    samples_per_second: float
    skipped_steps: int = 0


def _split_step_output(out: Any) -> tuple[torch.Tensor | None, dict[str, float]]:
    """``training_step``'s return value -> (loss or None, extra scalars)."""
    if out is None:
        return None, {}
    if isinstance(out, torch.Tensor):
        return out, {}
    if isinstance(out, Mapping):
        if "loss" not in out:
            raise MaplocError(f"training_step returned a mapping without a 'loss' key: {sorted(out)}")
        loss = out["loss"]
        scalars = {str(k): float(v) for k, v in out.items() if k != "loss"}
        return loss, scalars
    raise MaplocError(f"training_step must return a tensor, a mapping with 'loss', or None; got {type(out).__name__}")


class _ReplacementSampler(torch.utils.data.Sampler):
    """Samples with replacement, a pure function of ``(seed, epoch)``: for training splits smaller
    than one global batch (a one-image DSAC* scene). Each rank draws its own share."""

    def __init__(self, n: int, num_samples: int, seed: int, rank: int) -> None:
        self.n, self.num_samples, self.seed, self.rank = n, num_samples, seed, rank
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 101 + self.rank)
        idx = torch.randint(self.n, (self.num_samples,), generator=g).tolist()
        return iter(idx[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


class _ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` that can start in the middle of an epoch (exact resume)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


class Engine:
    """Runs the training loop of any :class:`maploc.api.Method`.

    Args:
        config: devices, precision, strategy, seed.
        run_dir: the run directory; checkpoints go to ``run_dir/checkpoints``.
        callbacks: objects with optional ``on_*`` methods (see :mod:`maploc.hookspecs`).
        loggers: Fabric loggers (e.g. TensorBoard); scalars are logged through ``fabric.log_dict``.

    Raises:
        ConfigError: an unknown precision or an impossible device request.
    """

    def __init__(
        self, config: EngineConfig, run_dir: Path, callbacks: Sequence[Any] = (), loggers: Sequence[Any] = ()
    ) -> None:
        from lightning_fabric import Fabric

        if config.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {config.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if config.devices < 1:
            raise ConfigError(f"--devices must be >= 1, got {config.devices}")
        if config.accelerator == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda was requested but CUDA is not available; use --device cpu")
        if config.precision == "16" and config.accelerator == "cpu":
            raise ConfigError("fp16 autocast is not supported on CPU; use --precision bf16 (or 32)")
        self.config = config
        self.run_dir = Path(run_dir)
        try:
            self.fabric = Fabric(
                accelerator=config.accelerator,
                devices=config.devices,
                strategy=config.strategy,
                precision=PRECISIONS[config.precision],  # type: ignore[arg-type]
                callbacks=list(callbacks),
                loggers=list(loggers),
            )
        except (ValueError, RuntimeError, TypeError) as e:
            raise ConfigError(f"cannot set up devices/strategy/precision: {e}") from None
        self._launched = False
        #: set by ``fit`` when the training split was smaller than a batch (sampled with replacement).
        self.sampling_with_replacement = False
        #: a checkpoint the next ``fit`` call resumes from (set by ``maploc run --resume``; used once).
        self.resume_from: Path | None = None

    # -- process information ---------------------------------------------------------------------
    def launch(self) -> None:
        """Starts the other processes (DDP) and seeds every process. Call once, early."""
        if not self._launched:
            self.fabric.launch()
            self._launched = True
            self.fabric.seed_everything(self.config.seed, verbose=False)

    @property
    def is_global_zero(self) -> bool:
        return self.fabric.is_global_zero

    @property
    def world_size(self) -> int:
        return self.fabric.world_size

    @property
    def device(self) -> torch.device:
        return self.fabric.device

    def barrier(self) -> None:
        self.fabric.barrier()

    def call(self, hook: str, **kwargs: Any) -> None:
        self.fabric.call(hook, engine=self, **kwargs)

    # -- training ----------------------------------------------------------------------------------
    def fit(
        self, method: TrainableMethod, train_data: Any, val_data: Any = None, resume: Path | None = None
    ) -> FitResult:
        """Trains ``method.model`` with ``method.training_step`` on ``train_data``.

        Settings come from ``method.config.train`` (:class:`maploc.config.TrainConfig`). After the
        call ``method.model`` holds the trained (unwrapped) module on ``self.device``.

        Args:
            method: the method (its ``model`` must be built).
            train_data: a map-style dataset of :class:`~maploc.types.Sample` (or anything the
                method's ``collate`` accepts).
            val_data: optional validation dataset (``method.validation_step``).
            resume: a checkpoint to continue from exactly (same data order, RNG and schedule);
                defaults to :attr:`resume_from`, which is consumed by the first ``fit`` call.

        Raises:
            ConfigError: the global batch size is not divisible by the number of processes, or the
                training split is empty. A split smaller than one global batch is sampled with
                replacement (logged once at INFO), so that a one-image scene trains with defaults.
            TrainingError: the loss became NaN/inf; the last good checkpoint is kept.
            TrainingInterrupted: SIGINT or SIGTERM arrived (in the main thread): the step in progress is
                finished and saved as ``checkpoints/step-<N>.ckpt`` (resumable exactly); a second signal
                stops at once.
            CheckpointError: ``resume`` is unreadable or belongs to another method.
        """
        self.launch()
        if resume is None and self.resume_from is not None:
            resume, self.resume_from = self.resume_from, None
        fabric = self.fabric
        cfg = method.config.train
        if method.model is None:
            raise ConfigError(f"method {method.name!r} has no model to train")
        if cfg.batch_size % self.world_size:
            raise ConfigError(
                f"train.batch_size={cfg.batch_size} is the global batch size and must be divisible by "
                f"the number of processes ({self.world_size})"
            )
        per_device = cfg.batch_size // self.world_size
        if len(train_data) == 0:
            raise ConfigError(f"the training split of {train_data!r} is empty")
        sampler: Any
        if len(train_data) < cfg.batch_size:
            log.info(
                "the training split has %d samples, fewer than train.batch_size=%d: sampling with replacement",
                len(train_data), cfg.batch_size,
            )
            self.sampling_with_replacement = True
            sampler = _ReplacementSampler(len(train_data), per_device, self.config.seed, fabric.global_rank)
            steps_per_epoch = 1
        else:
            sampler = _ResumableSampler(
                train_data, num_replicas=self.world_size, rank=fabric.global_rank, shuffle=True,
                seed=self.config.seed, drop_last=True,
            )
            steps_per_epoch = sampler.num_samples // per_device
        total_steps = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * steps_per_epoch

        model = method.model
        optimizer, scheduler = method.configure_optimizers(model)
        model, optimizer = fabric.setup(model, optimizer)

        step, epoch, batch_in_epoch = 0, 0, 0
        if resume is not None:
            ckpt = load_checkpoint(resume)
            if ckpt.get("method") != method.name:
                raise CheckpointError(f"{resume} was written by method {ckpt.get('method')!r}, not {method.name!r}")
            if ckpt.get("global_batch_size") != cfg.batch_size:
                raise CheckpointError(
                    f"{resume} was trained with train.batch_size={ckpt.get('global_batch_size')}; "
                    f"resume with the same global batch size (got {cfg.batch_size})"
                )
            self._unwrap(model).load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scheduler is not None and ckpt.get("scheduler") is not None:
                scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
            if batch_in_epoch >= steps_per_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
            log.info("resumed from %s at step %d (epoch %d, batch %d)", resume, step, epoch, batch_in_epoch)

        def make_state() -> dict[str, Any]:
            return {
                "method": method.name,
                "config": _plain(method.config),
                "model": self._unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": get_rng_state(),
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "global_batch_size": cfg.batch_size,
                "world_size": self.world_size,
            }

        ckpt_dir = self.run_dir / "checkpoints"
        last_ckpt: Path | None = Path(resume) if resume is not None else None
        progress = None
        if self.config.progress and self.is_global_zero and total_steps > step:
            from tqdm.auto import tqdm

            progress = tqdm(total=total_steps, initial=step, desc=f"train {method.name}", unit="step", dynamic_ncols=True)
        self.call("on_train_start", method=method)
        t0 = time.perf_counter()
        samples_seen = 0
        skipped = 0
        last_loss = math.nan
        stop = _StopRequests()

        def stop_here() -> None:
            """After a whole step: on a pending SIGINT/SIGTERM, save this step and stop."""
            if stop.signal is None:
                return
            if progress is not None:
                progress.close()
            path = self._save(ckpt_dir / f"step-{step:08d}.ckpt", make_state())
            name = "SIGINT" if stop.signal == 2 else "SIGTERM" if stop.signal == 15 else f"signal {stop.signal}"
            raise TrainingInterrupted(
                f"{name} at step {step} of {total_steps}: saved {path}; continue exactly from it with "
                f"`maploc run --out {self.run_dir} --resume` (the run's config.yaml is reused)", path, step)

        with stop:
            while step < total_steps:
                sampler.set_epoch(epoch)
                sampler.start = batch_in_epoch * per_device
                loader = DataLoader(
                    train_data, batch_size=per_device, sampler=sampler, collate_fn=method.collate,
                    num_workers=cfg.num_workers, drop_last=True,
                )
                for batch in loader:
                    model.train()
                    batch = fabric.to_device(batch)
                    loss, extra_scalars = _split_step_output(method.training_step(model, batch, step))
                    if loss is None:  # the method asked to skip this batch (e.g. every image failed)
                        skipped += 1
                        step += 1
                        batch_in_epoch += 1
                        if progress is not None:
                            progress.update(1)
                            progress.set_postfix(skipped=skipped, epoch=epoch)
                        if step >= total_steps:
                            break
                        stop_here()
                        continue
                    if not torch.isfinite(loss.detach()).all():
                        where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else ""
                        raise TrainingError(f"the training loss is {float(loss.detach())} at step {step} (epoch {epoch}){where}")
                    optimizer.zero_grad(set_to_none=True)
                    fabric.backward(loss)
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    step += 1
                    batch_in_epoch += 1
                    samples_seen += cfg.batch_size
                    last_loss = float(fabric.all_reduce(loss.detach().float(), reduce_op="mean"))
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(loss=f"{last_loss:.4g}", epoch=epoch)
                    if cfg.log_every and step % cfg.log_every == 0:
                        scalars = {"train/loss": last_loss, "train/epoch": epoch, "train/skipped_steps": skipped}
                        scalars.update({f"train/{k}": v for k, v in extra_scalars.items()})
                        if scheduler is not None:
                            scalars["train/lr"] = float(scheduler.get_last_lr()[0])
                        fabric.log_dict(scalars, step=step)
                    self.call("on_train_batch_end", step=step, epoch=epoch, loss=last_loss, scalars=extra_scalars)
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
                        last_ckpt = self._save(ckpt_dir / f"step-{step:08d}.ckpt", make_state())
                    if val_data is not None and cfg.val_every and step % cfg.val_every == 0:
                        self.validate(method, model, val_data, step)
                    if step >= total_steps:
                        break
                    stop_here()
                if batch_in_epoch >= steps_per_epoch:
                    epoch += 1
                    batch_in_epoch = 0
                    if val_data is not None and not cfg.val_every:
                        self.validate(method, model, val_data, step)
        if progress is not None:
            progress.close()
        seconds = time.perf_counter() - t0
        last_ckpt = self._save(ckpt_dir / "last.ckpt", make_state())
        self.call("on_train_end", step=step)
        method.model = self._unwrap(model)
        return FitResult(
            steps=step, epochs_completed=epoch, last_loss=last_loss, seconds=seconds, checkpoint=last_ckpt,
            samples_per_second=samples_seen / seconds if seconds > 0 else math.nan, skipped_steps=skipped,
        )

    def validate(self, method: TrainableMethod, model: Any, val_data: Any, step: int) -> dict[str, float]:
        """Runs ``method.validation_step`` over ``val_data`` (sharded over processes), logs the means."""
        cfg = method.config.train
        per_device = max(1, cfg.batch_size // self.world_size)
        sampler = DistributedSampler(val_data, num_replicas=self.world_size, rank=self.fabric.global_rank, shuffle=False)
        loader = DataLoader(val_data, batch_size=per_device, sampler=sampler, collate_fn=method.collate)
        sums: dict[str, float] = {}
        count = 0
        model.eval()
        with torch.no_grad():
            for i, batch in enumerate(loader):
                values = method.validation_step(model, self.fabric.to_device(batch), i)
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
        metrics = {}
        for k, v in sorted(sums.items()):
            mean = torch.tensor(v / max(count, 1), dtype=torch.float64)
            metrics[k] = float(self.fabric.all_reduce(mean, reduce_op="mean"))
        if metrics:
            self.fabric.log_dict({f"val/{k}": v for k, v in metrics.items()}, step=step)
        self.call("on_validation_end", step=step, metrics=metrics)
        model.train()
        return metrics

    # -- checkpoints -------------------------------------------------------------------------------
    def _save(self, path: Path, state: dict[str, Any]) -> Path:
        if self.is_global_zero:
            save_checkpoint(path, state)
            self.call("on_checkpoint", path=path)
        self.barrier()
        return path

    @staticmethod
    def _unwrap(model: Any) -> torch.nn.Module:
        module = getattr(model, "module", model)  # Fabric's wrapper -> the original module
        return getattr(module, "module", module)  # DDP -> the original module


def _plain(config: Any) -> Any:
    from maploc.config import unstructure

    return unstructure(config)

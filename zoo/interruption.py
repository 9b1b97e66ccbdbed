"""Runs that survive faults: a clean stop on SIGINT and SIGTERM, mid-epoch resume, per-epoch seeds.

- SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler sends) stop the run before the next training batch: the
  full training state goes to ``last.ckpt`` (with the position in the epoch and every random generator), the run
  ends with :class:`~zoo.errors.RunStoppedError`, the logger records the stop (MLflow: the run ends KILLED) and the
  command that resumes it is printed. A second signal stops at once. Resuming such a mid-epoch checkpoint is exact
  when the data is loaded in the main process; with loader workers the rest of that one epoch sees the same
  examples in the same order but fresh augmentation draws (the workers' generators are not saved), and later
  epochs are exact again.
- Each epoch is seeded from ``(seed, epoch)`` (:mod:`zoo.reproducibility`), so that a resumed run repeats the
  uninterrupted one.
- ``ZOO_FAULT`` injects a fault at a chosen moment, for the tests (:mod:`zoo.fault_injection`).
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch import Callback
from typing_extensions import override

from zoo.checkpointing import ZooCheckpoint, flush_checkpoints
from zoo.data.sampling import EpochSampler, epoch_seed, run_seed
from zoo.errors import RunStoppedError
from zoo.fault_injection import inject
from zoo.protocols import StoppableRun
from zoo.reproducibility import pipelines, rng_state, set_rng_state, train_loaders

__all__ = ["FaultTolerance"]


class FaultTolerance(Callback):
    """Atomic checkpoints, per-epoch seeds, mid-epoch resume and a clean stop on SIGINT and SIGTERM.

    Args:
        seed: base seed of the per-epoch seeds (default: the run's ``--seed_everything``, else 0).
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._signal: int | None = None
        self._handlers: dict[int, Any] = {}
        self._mid_epoch: dict[str, Any] | None = None  # the state being saved at a stop
        self._resume: dict[str, Any] | None = None  # the state a resumed run starts from
        self._stop_pending: str | None = None  # the mid-epoch checkpoint written after a signal
        self._resumed_epoch: int | None = None  # the epoch a mid-epoch resume continues

    @property
    def state_key(self) -> str:
        return "FaultTolerance"

    def _seed(self) -> int:
        return self.seed if self.seed is not None else run_seed(0)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._resume is not None:  # before the epoch's data iterator starts, so that the sampler skips
            self._restore_mid_epoch(trainer)
        # Installed here, after Lightning's own SIGTERM handler (which would end the run at once, exit status 0,
        # with no resumable state), and replacing it for the training loop.
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is not None:  # a second signal: stop now
            self._restore_handlers()
            raise KeyboardInterrupt
        self._signal = signum
        print(f"\nreceived {signal.Signals(signum).name}: stopping after this batch and saving the run's state "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def _restore_handlers(self) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers.clear()

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._restore_handlers()

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self._resumed_epoch:  # its generators were restored as they were at the stop
            return
        seed = epoch_seed(self._seed(), trainer.current_epoch)
        torch.manual_seed(seed)  # the CUDA generators too
        np.random.seed(seed % 2**32)
        random.seed(seed)
        for loader in train_loaders(trainer):
            if loader.generator is not None:
                loader.generator.manual_seed(seed)  # the workers' seeds, drawn when the epoch's iterator starts
            if loader.num_workers == 0:
                for pipeline in pipelines(loader.dataset)[:1]:
                    pipeline.set_random_seed(seed % 2**32)

    def _restore_mid_epoch(self, trainer: L.Trainer) -> None:
        state, self._resume = self._resume, None
        self._resumed_epoch = trainer.current_epoch
        for loader in train_loaders(trainer):
            if isinstance(loader.sampler, EpochSampler):
                loader.sampler.skip = state["batches"] * (loader.batch_size or 1)
            if loader.num_workers == 0:
                set_rng_state(state["rng"], pipelines(loader.dataset))
                return
        set_rng_state(state["rng"], [])

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"mid_epoch": self._mid_epoch}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = state_dict.get("mid_epoch")
        if self._resume is not None:  # EpochSampler.skip makes the loader resumable: Lightning cannot know that
            warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before the epoch.*")

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        inject("train_batch", epoch=trainer.current_epoch, batch=batch_idx, step=trainer.global_step)
        if self._signal is None or self._stop_pending or batch_idx + 1 >= trainer.num_training_batches:
            return  # after an epoch's last batch the epoch's own checkpoint comes first; the next batch stops
        # Saved here, where Lightning knows how to resume from (it counts the batch as done), and the run stops
        # before the next batch, once Lightning has logged this batch's metrics and stepped its schedules.
        augmentations = next((pipelines(dl.dataset) for dl in train_loaders(trainer) if dl.num_workers == 0), [])
        self._mid_epoch = {"batches": batch_idx + 1, "rng": rng_state(augmentations)}
        try:
            self._stop_pending = _save_last(trainer) or ""
        finally:
            self._mid_epoch = None

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._stop_pending is not None:
            self._stop(trainer, pl_module, self._stop_pending)

    @override
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            inject("val_batch", epoch=trainer.current_epoch, batch=batch_idx)

    def _stop(self, trainer: L.Trainer, pl_module: L.LightningModule, path: str | None) -> None:
        name = signal.Signals(self._signal).name
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        lines = [f"stopped by {name} at {where}"]
        if path:
            lines.append(f"the run's state is saved in {path}")
        logger = next((lg for lg in trainer.loggers if isinstance(lg, StoppableRun)), None)
        run_id = logger.mark_stopped(f"{name} at {where}") if logger is not None else None
        if run_id:
            model_id = getattr(pl_module, "model_id", "MODEL")
            lines.append(f"resume it with: zoo train {model_id} --resume {run_id}")
        raise RunStoppedError("\n".join(lines), self._signal)


def _save_last(trainer: L.Trainer) -> str | None:
    """Write the full training state to the run's ``last.ckpt`` now (mid-epoch); returns its path."""
    last = next((c for c in trainer.callbacks if isinstance(c, ZooCheckpoint) and c.kind == "last"), None)
    if last is None or not last.dirpath:
        return None
    path = str(Path(last.dirpath) / "last.ckpt")
    trainer.save_checkpoint(path, weights_only=False)
    flush_checkpoints(trainer)
    last.best_model_path = last.last_model_path = path
    return path

"""Runs that survive faults.

- Checkpoints are written atomically (:func:`atomic_save`: a temporary file beside the target, flushed and fsynced,
  then renamed over it), so a process killed while writing never leaves a truncated ``last.ckpt``; a failed write
  (a full disk, an unwritable folder) raises :class:`~zoo.errors.CheckpointWriteError` naming the path and keeps the
  last good checkpoint.
- Training randomness is a function of the seed and the epoch: :class:`EpochSampler` orders each epoch from
  ``(seed, epoch)`` alone, and :class:`FaultTolerance` reseeds torch, numpy, ``random``, the loader's worker seeds
  and the augmentation pipeline at each epoch start. A run resumed from its last end-of-epoch checkpoint (after
  ``kill -9``) therefore repeats exactly what the uninterrupted run did.
- SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler sends) stop the run before the next training batch: the
  full training state goes to ``last.ckpt`` (with the position in the epoch and every random generator), the MLflow
  run is marked KILLED and the command that resumes it is printed. A second signal stops at once. Resuming such a
  mid-epoch checkpoint is exact when the data is loaded in the main process; with loader workers the rest of that
  one epoch sees the same examples in the same order but fresh augmentation draws (the workers' generators are not
  saved), and later epochs are exact again.
- ``ZOO_FAULT`` injects a fault at a chosen moment, for the tests (see :func:`inject`).
"""

from __future__ import annotations

import io
import itertools
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Callback
from lightning_utilities.core.apply_func import apply_to_collection
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler
from typing_extensions import override

from zoo.errors import CheckpointWriteError, RunStoppedError, ZooError

FAULT_ENV = "ZOO_FAULT"
_checkpoint_writes = itertools.count(1)


# --- fault injection (tests) --------------------------------------------------------------------------------------
def inject(point: str, **where: int) -> None:
    """Send this process the signal that ``ZOO_FAULT`` names when ``point`` and all its conditions match.

    ``ZOO_FAULT="point[@key=value,...][:SIGNAL]"``, e.g. ``train_batch@epoch=1,batch=2`` (SIGKILL there),
    ``val_batch@epoch=1,batch=0:SIGTERM``, ``checkpoint_write@n=2`` (killed half-way through the second write).
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    spec, _, action = spec.partition(":")
    name, _, conditions = spec.partition("@")
    wanted = {k: int(v) for k, v in (c.split("=") for c in conditions.split(",") if c)}
    if name != point or any(where.get(k) != v for k, v in wanted.items()):
        return
    print(f"{FAULT_ENV}: {action or 'SIGKILL'} at {point} {where}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), getattr(signal, action or "SIGKILL"))


# --- atomic checkpoint writes -------------------------------------------------------------------------------------
def temp_path(path: Path) -> Path:
    """The temporary file a write of ``path`` goes through (same folder, so that the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


class _CountedWrites(io.RawIOBase):
    """A file that reports each write to the fault injector once the first has landed, so that a test can kill
    the process with a partial temporary file on disk."""

    def __init__(self, file: Any, write_number: int):
        self.file, self.write_number, self.calls = file, write_number, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.calls += 1
        if self.calls == 2:
            self.file.flush()
            inject("checkpoint_write", n=self.write_number)
        return self.file.write(data)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` through a temporary file that is flushed, fsynced and renamed over ``path``;
    streamed (no second copy of the checkpoint in memory).

    Raises:
        CheckpointWriteError: the write failed (no space left, read-only folder); ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    write = next(_checkpoint_writes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, _CountedWrites(f, write) if os.environ.get(FAULT_ENV) else f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        kept = f"; the last good checkpoint {path} is kept" if path.is_file() else ""
        raise CheckpointWriteError(f"could not write the checkpoint {path}: {err.strerror or err}{kept}") from err


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a killed process left in ``folder``."""
    stale = sorted(folder.glob(".*.ckpt.*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


CHECKPOINT_EVERY_ENV = "ZOO_CHECKPOINT_EVERY"
DEFAULT_CHECKPOINT_EVERY_S = 60.0


def checkpoint_interval() -> float:
    """Seconds between checkpoint writes: ``$ZOO_CHECKPOINT_EVERY`` (0: every epoch), else 60.

    Raises:
        ZooError: the variable is not a number of seconds >= 0.
    """
    text = os.environ.get(CHECKPOINT_EVERY_ENV, "").strip()
    try:
        seconds = float(text) if text else DEFAULT_CHECKPOINT_EVERY_S
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ZooError(f"{CHECKPOINT_EVERY_ENV}={text!r}: give the seconds between checkpoint writes (0: every "
                       "epoch)")
    return seconds


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing local files with :func:`atomic_save`, at most once per ``interval_s``.

    A checkpoint asked for sooner is kept in memory (its tensors copied, since training goes on changing them) and
    replaces any earlier one pending for the same path; pending checkpoints are written when the interval has
    passed at a later save, at :meth:`flush` (the end of training, a stop on a signal) and at teardown (also
    after a failure). On short epochs this is most of the framework's overhead otherwise: a ResNet-50's
    ``last.ckpt`` with AdamW state is 280 MB. The price: ``kill -9`` loses up to ``interval_s`` of training, which
    ``zoo train --resume`` recomputes exactly (it continues from the last written epoch, and a resumed run skips
    the metric steps it logged before).

    Args:
        interval_s: least seconds between writes, counted from the start of training; 0 writes every save.
    """

    def __init__(self, interval_s: float = 0.0):
        super().__init__()
        self.interval_s = interval_s
        self._pending: dict[str, dict[str, Any]] = {}
        self._last_write = time.monotonic()

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = str(path).removeprefix("file://")
        if self.interval_s <= 0:
            atomic_save(checkpoint, path)
            return
        self._pending[path] = apply_to_collection(checkpoint, torch.Tensor, lambda t: t.detach().clone())
        if time.monotonic() - self._last_write >= self.interval_s:
            self.flush()

    @override
    def remove_checkpoint(self, path: Any) -> None:
        self._pending.pop(str(path).removeprefix("file://"), None)
        super().remove_checkpoint(path)

    def flush(self) -> None:
        """Write every pending checkpoint now."""
        while self._pending:
            path, checkpoint = next(iter(self._pending.items()))
            atomic_save(checkpoint, path)
            del self._pending[path]
        self._last_write = time.monotonic()

    @override
    def teardown(self) -> None:
        self.flush()


def flush_checkpoints(trainer: L.Trainer) -> None:
    """Write the checkpoints that a run's :class:`AtomicCheckpointIO` holds back (no-op for other IO)."""
    checkpoint_io = trainer.strategy.checkpoint_io
    if isinstance(checkpoint_io, AtomicCheckpointIO):
        checkpoint_io.flush()


# --- randomness as a function of (seed, epoch) --------------------------------------------------------------------
def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded with ``seed`` (any epoch's seed, without replaying the others)."""
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % 2**63


class EpochSampler(RandomSampler):
    """Shuffles each epoch from ``(seed, epoch)`` alone, so that an epoch's order does not depend on how the run got
    there; ``skip`` drops the examples a resumed epoch has already seen.

    A ``RandomSampler``, so that Lightning swaps it for its seeded ``DistributedSampler`` under DDP.

    Args:
        data_source: the dataset (only its length is used).
        seed: base seed.
        shuffle: False keeps the dataset order.
    """

    def __init__(self, data_source: Any, seed: int, shuffle: bool = True):
        super().__init__(data_source)
        self.seed, self.shuffle, self.epoch, self.skip = seed, shuffle, 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch."""
        self.epoch = epoch

    @override
    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        start, self.skip = self.skip, 0
        yield from order[start:].tolist()

    @override
    def __len__(self) -> int:
        return len(self.data_source)


def resumable_loader(loader: DataLoader, seed: int) -> DataLoader:
    """``loader`` with an :class:`EpochSampler` and workers started afresh each epoch (their seeds then follow the
    epoch's seed); ``loader`` itself when its sampling is its own (a custom batch sampler, weighted sampling)."""
    if type(loader.batch_sampler) is not BatchSampler:
        return loader
    sampler = loader.sampler
    if type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None:
        shuffle = True
    elif type(sampler) is SequentialSampler:
        shuffle = False
    else:
        return loader
    extra: dict[str, Any] = {}
    if loader.num_workers > 0:
        extra = {"prefetch_factor": loader.prefetch_factor, "multiprocessing_context": loader.multiprocessing_context}
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=EpochSampler(loader.dataset, seed, shuffle),
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      drop_last=loader.drop_last, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=False, **extra)


def _pipelines(dataset: Any) -> list[Any]:
    """The albumentations-style pipelines (they keep generators of their own) of a dataset and its children."""
    transform = getattr(dataset, "transform", None)
    if transform is None and hasattr(dataset, "dataset"):  # a Subset
        transform = getattr(dataset.dataset, "transform", None)
    found: list[Any] = []
    stack = [transform] if hasattr(transform, "set_random_seed") else []
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(t for t in getattr(node, "transforms", []) if hasattr(t, "random_generator"))
    return found


def _rng_state(pipelines: list[Any]) -> dict[str, Any]:
    """Every generator the training loop draws from, in types that load with ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(), "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "pipelines": [(p.random_generator.bit_generator.state, p.py_random.getstate()) for p in pipelines],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], pipelines: list[Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    for pipeline, (numpy_state, python_state) in zip(pipelines, state["pipelines"], strict=False):
        pipeline.random_generator.bit_generator.state = numpy_state
        pipeline.py_random.setstate(python_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _train_loaders(trainer: L.Trainer) -> list[DataLoader]:
    loaders = trainer.train_dataloader
    if loaders is None:
        return []
    flat = getattr(loaders, "flattened", None)
    loaders = flat if flat is not None else (loaders if isinstance(loaders, list | tuple) else [loaders])
    return [dl for dl in loaders if isinstance(dl, DataLoader)]


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
        return self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO(checkpoint_interval())
        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "_zoo_resumable", False):
            return
        make_loader = datamodule.train_dataloader

        def train_dataloader() -> Any:
            loader = make_loader()
            return resumable_loader(loader, self._seed()) if isinstance(loader, DataLoader) else loader

        datamodule.train_dataloader = train_dataloader
        datamodule._zoo_resumable = True

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from zoo.tracking import ZooCheckpoint

        for callback in trainer.callbacks:
            if isinstance(callback, ZooCheckpoint) and callback.dirpath:
                remove_stale_temporaries(Path(callback.dirpath))

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
        for loader in _train_loaders(trainer):
            if loader.generator is not None:
                loader.generator.manual_seed(seed)  # the workers' seeds, drawn when the epoch's iterator starts
            if loader.num_workers == 0:
                for pipeline in _pipelines(loader.dataset)[:1]:
                    pipeline.set_random_seed(seed % 2**32)

    def _restore_mid_epoch(self, trainer: L.Trainer) -> None:
        state, self._resume = self._resume, None
        self._resumed_epoch = trainer.current_epoch
        for loader in _train_loaders(trainer):
            if isinstance(loader.sampler, EpochSampler):
                loader.sampler.skip = state["batches"] * (loader.batch_size or 1)
            if loader.num_workers == 0:
                _set_rng_state(state["rng"], _pipelines(loader.dataset))
                return
        _set_rng_state(state["rng"], [])

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
        pipelines = next((_pipelines(dl.dataset) for dl in _train_loaders(trainer) if dl.num_workers == 0), [])
        self._mid_epoch = {"batches": batch_idx + 1, "rng": _rng_state(pipelines)}
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
        from zoo.tracking import mlflow_logger

        name = signal.Signals(self._signal).name
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        lines = [f"stopped by {name} at {where}"]
        if path:
            lines.append(f"the run's state is saved in {path}")
        logger = mlflow_logger(trainer)
        if logger is not None and logger.started:
            logger.final_status = "KILLED"
            logger.set_tags({"zoo.stopped": f"{name} at {where}"})
            model_id = getattr(pl_module, "model_id", "MODEL")
            lines.append(f"resume it with: zoo train {model_id} --resume {logger.run_id}")
        raise RunStoppedError("\n".join(lines), self._signal)


def _save_last(trainer: L.Trainer) -> str | None:
    """Write the full training state to the run's ``last.ckpt`` now (mid-epoch); returns its path."""
    from zoo.tracking import ZooCheckpoint

    last = next((c for c in trainer.callbacks if isinstance(c, ZooCheckpoint) and c.kind == "last"), None)
    if last is None or not last.dirpath:
        return None
    path = str(Path(last.dirpath) / "last.ckpt")
    trainer.save_checkpoint(path, weights_only=False)
    flush_checkpoints(trainer)
    last.best_model_path = last.last_model_path = path
    return path

"""A run's checkpoints: where they go, how often they reach the disk, and that a write is all or nothing.

- Checkpoints are written atomically (:func:`atomic_save`: a temporary file beside the target, flushed and fsynced,
  then renamed over it), so a process killed while writing never leaves a truncated ``last.ckpt``; a failed write
  (a full disk, an unwritable folder) raises :class:`~zoo.errors.CheckpointWriteError` naming the path and keeps the
  last good checkpoint. :class:`AtomicCheckpointIO` is the Lightning ``CheckpointIO`` plugin that does this (the
  runner passes it in ``plugins=``), at most once per ``ZOO_CHECKPOINT_EVERY`` seconds.
- A run keeps two checkpoints, "best" and "last" (:class:`ZooCheckpoint`), in the folder its logger names (inside
  the MLflow run's artifacts when they are local).
"""

from __future__ import annotations

import io
import itertools
import os
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning_utilities.core.apply_func import apply_to_collection
from typing_extensions import override

from zoo.errors import CheckpointWriteError, ZooError
from zoo.fault_injection import FAULT_ENV, inject
from zoo.protocols import CheckpointFolder

__all__ = ["CHECKPOINT_EVERY_ENV", "DEFAULT_CHECKPOINT_EVERY_S", "AtomicCheckpointIO", "ZooCheckpoint", "atomic_save",
           "checkpoint_interval", "flush_checkpoints", "remove_stale_temporaries", "run_checkpoints", "temp_path"]

_checkpoint_writes = itertools.count(1)


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
        self._read: dict[str, dict[str, Any]] = {}

    def add_read(self, path: str | Path, checkpoint: dict[str, Any]) -> None:
        """Hand over a checkpoint already read from ``path`` (``zoo test --ckpt``), so that Lightning's restore
        from ``ckpt_path=path`` takes it instead of reading the file again."""
        self._read[str(Path(path).resolve())] = checkpoint

    @override
    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        read = self._read.pop(str(Path(str(path)).resolve()), None) if "://" not in str(path) else None
        return read if read is not None else super().load_checkpoint(path, *args, **kwargs)

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


def run_checkpoints(trainer: L.Trainer) -> dict[str, str]:
    """Paths of the run's "best" and "last" checkpoints (empty strings before they are written)."""
    paths = {c.kind: c.path for c in trainer.callbacks if isinstance(c, ZooCheckpoint)}
    if paths.get("best"):  # a spawned DDP job hands back only the first checkpoint's path: the others sit beside it
        for kind, path in paths.items():
            beside = Path(paths["best"]).with_name(f"{kind}.ckpt")
            if not path and beside.is_file():
                paths[kind] = str(beside)
    return paths


class ZooCheckpoint(ModelCheckpoint):
    """One of a run's two checkpoints, written into the MLflow run's checkpoint folder.

    Args:
        kind: "best": the weights of the epoch with the best value of the task's monitored metric (no optimiser
            state: it is for evaluation and prediction, and a third of the size with Adam); "last": the full
            training state after the latest epoch, which ``zoo train --resume`` continues from.
    """

    def __init__(self, kind: Literal["best", "last"] = "best", dirpath: str | None = None):
        super().__init__(dirpath=dirpath, filename=kind, save_top_k=1, save_weights_only=kind == "best",
                         auto_insert_metric_name=False, enable_version_counter=False)
        self.kind = kind

    @property
    def state_key(self) -> str:
        return f"ZooCheckpoint[{self.kind}]"

    @property
    def path(self) -> str:
        """The checkpoint file written last ("" before the first)."""
        return self.best_model_path

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        monitor, mode = getattr(pl_module, "monitor", None), getattr(pl_module, "monitor_mode", "min")
        if self.kind == "best" and monitor and self.monitor is None:
            self.monitor, self.mode = monitor, mode
            self.kth_value = torch.tensor(torch.inf if mode == "min" else -torch.inf)
        logger = next((lg for lg in trainer.loggers if isinstance(lg, CheckpointFolder)), None)
        if self.dirpath is None and logger is not None:  # the run exists on rank 0 only: its folder is sent
            self.dirpath = trainer.strategy.broadcast(str(logger.checkpoint_folder()) if trainer.is_global_zero
                                                      else None)
        super().setup(trainer, pl_module, stage)

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.dirpath:  # what a process killed in the middle of a write left behind
            remove_stale_temporaries(Path(self.dirpath))

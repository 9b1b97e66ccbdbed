"""Training randomness as a function of the seed and the epoch.

:class:`EpochSampler` orders each epoch from ``(seed, epoch)`` alone, and the run's fault-tolerance callback
reseeds torch, numpy, ``random``, the loader's worker seeds and the augmentation pipeline at each epoch start
(:func:`epoch_seed`). A run resumed from its last end-of-epoch checkpoint (after ``kill -9``) therefore repeats
exactly what the uninterrupted run did; :func:`rng_state` / :func:`set_rng_state` carry every generator through a
mid-epoch stop.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from zoo.data.sampling import EpochSampler, epoch_seed  # the data layer's: one class for isinstance checks

__all__ = ["EpochSampler", "epoch_seed", "pipelines", "resumable_loader", "rng_state", "set_rng_state",
           "train_loaders"]


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


def pipelines(dataset: Any) -> list[Any]:
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


def rng_state(pipelines: list[Any]) -> dict[str, Any]:
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


def set_rng_state(state: dict[str, Any], pipelines: list[Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    for pipeline, (numpy_state, python_state) in zip(pipelines, state["pipelines"], strict=False):
        pipeline.random_generator.bit_generator.state = numpy_state
        pipeline.py_random.setstate(python_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_loaders(trainer: L.Trainer) -> list[DataLoader]:
    loaders = trainer.train_dataloader
    if loaders is None:
        return []
    flat = getattr(loaders, "flattened", None)
    loaders = flat if flat is not None else (loaders if isinstance(loaders, list | tuple) else [loaders])
    return [dl for dl in loaders if isinstance(dl, DataLoader)]

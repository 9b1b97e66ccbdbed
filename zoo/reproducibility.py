"""Training randomness as a function of the seed and the epoch.

:class:`zoo.data.sampling.EpochSampler` (every data module's training loader) orders each epoch from
``(seed, epoch)`` alone, and the run's fault-tolerance callback reseeds torch, numpy, ``random``, the loader's
worker seeds and the augmentation pipeline at each epoch start (``epoch_seed``). A run resumed from its last
end-of-epoch checkpoint (after ``kill -9``) therefore repeats exactly what the uninterrupted run did;
:func:`rng_state` / :func:`set_rng_state` carry every generator through a mid-epoch stop.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

__all__ = ["pipelines", "rng_state", "set_rng_state", "train_loaders"]


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

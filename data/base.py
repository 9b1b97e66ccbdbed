"""What every zoo data module shares: batch size, loader workers, seeded shuffling and augmentation, the cache
folder of the embedded datasets, and the one line that says what data a run uses."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataError


def cache_root() -> Path:
    """Where embedded datasets are written once: ``$ZOO_CACHE`` or ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo"))


def seed_worker(worker_id: int) -> None:
    """Seed numpy and Python's ``random`` in a loader worker from torch's per-worker seed, so random
    augmentations (albumentations draws from both) repeat run after run."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    transform = getattr(getattr(info, "dataset", None), "transform", None)
    if hasattr(transform, "set_random_seed"):  # albumentations pipelines keep their own generator
        transform.set_random_seed(seed)


def bundled_photos(skimage_names: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket"),
                   matplotlib_names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Real photos that ship with the installed packages, name -> uint8 (H, W, 3): scikit-learn's two sample
    images, matplotlib's sample photos ``matplotlib_names`` (e.g. ``grace_hopper.jpg``) and, when scikit-image is
    installed, its ``skimage_names`` (grey ones repeated to three channels; one that would need a download is left
    out). The offline defaults of restoration and detection are built on them."""
    import logging

    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    photos = {Path(name).stem: image for name, image in zip(sample.filenames, sample.images, strict=True)}
    if matplotlib_names:
        import matplotlib.cbook

        for name in matplotlib_names:
            with matplotlib.cbook.get_sample_data(name) as file:
                photos[Path(name).stem] = np.asarray(Image.open(file).convert("RGB"))
    try:
        import skimage.data
    except ImportError:
        logging.getLogger(__name__).info("scikit-image is not installed: only scikit-learn's two photos are used")
        return photos
    for name in skimage_names:
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a photo that needs a download is left out
            continue
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        photos[name] = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
    return photos


class ZooDataModule(L.LightningDataModule):
    """Base of the zoo data modules.

    Args:
        batch_size: examples per training batch (> 0).
        num_workers: loader processes; None picks 0 for in-memory data, else up to 4.
        seed: seed of the splits and of the shuffling and augmentation order.
    """

    in_memory: bool = False

    def __init__(self, batch_size: int = 64, num_workers: int | None = None, seed: int = 0):
        super().__init__()
        if batch_size < 1:
            raise DataError(f"--data.batch_size must be a positive number of examples, got {batch_size}")
        if num_workers is not None and num_workers < 0:
            raise DataError(f"--data.num_workers must be 0 or more, got {num_workers}")
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    @property
    def has_test_split(self) -> bool:
        return True

    def describe(self) -> str:
        """One line: the source, the split sizes, the input size and classes (printed before training)."""
        return type(self).__name__

    def loader(self, dataset: Dataset, shuffle: bool, batch_size: int | None = None,
               collate_fn: Callable[[list[Any]], Any] | None = None, drop_last: bool | None = None) -> DataLoader:
        """A DataLoader whose shuffling and worker seeds follow ``seed`` (the same order every run)."""
        batch_size = batch_size or self.batch_size
        workers = self.num_workers
        if workers is None:
            workers = 0 if self.in_memory else min(4, os.cpu_count() or 1)
        generator = torch.Generator().manual_seed(self.seed)
        if drop_last is None:
            drop_last = shuffle and len(dataset) > batch_size
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          persistent_workers=workers > 0, drop_last=drop_last, collate_fn=collate_fn,
                          worker_init_fn=seed_worker if workers > 0 else None, generator=generator)

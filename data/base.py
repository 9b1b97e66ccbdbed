"""What every zoo data module shares: batch size, loader workers, the four loaders (seeded, resumable shuffling;
seeded augmentation), the cache folder of the embedded datasets, and the one line that says what data a run uses.

:class:`ZooDataModule` implements :class:`~zoo.data.contracts.ZooData`, what the framework may ask of a data module
(re-exported here)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from zoo.data.contracts import ZooData
from zoo.data.sampling import EpochSampler, epoch_seed, run_seed

from zoo.errors import DataError

__all__ = ["EpochSampler", "ZooData", "ZooDataModule", "bundled_photos", "cache_root", "describe_files", "epoch_seed",
           "match_class_names", "run_seed", "seed_worker"]


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


def describe_files(paths: Sequence[Path]) -> str:
    """How a line names the files read: the one file, or the folder that holds them all (``a/b/``)."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return str(paths[0])
    try:
        folder = Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:  # on different drives
        return f"{len(paths)} files"
    return f"{folder}{os.sep}"


def match_class_names(found: Sequence[str], known: Sequence[str], where: str) -> list[int]:
    """The index in ``known`` (the classes a model was trained on, in label order) of each class name in
    ``found`` (those of the data at ``where``): classes match by name, whatever their order.

    Raises:
        DataError: the two sets of names differ (a class missing on either side): one line naming both sides.
    """
    found, known = [str(n) for n in found], [str(n) for n in known]
    if set(found) != set(known) or len(found) != len(set(found)):
        def listed(names: Sequence[str]) -> str:
            return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")

        unknown, missing = [n for n in found if n not in known], [n for n in known if n not in found]
        detail = "; ".join(part for part in (f"not known to the model: {listed(unknown)}" if unknown else "",
                                             f"missing: {listed(missing)}" if missing else "") if part)
        raise DataError(f"{where} has classes {listed(found)}, but the model was trained on {listed(known)} "
                        f"(classes match by name; {detail})")
    return [known.index(name) for name in found]


class ZooDataModule(L.LightningDataModule):
    """Base of the zoo data modules: implements :class:`~zoo.data.contracts.ZooData` with defaults and the four
    loaders, driven by each split's dataset and a few hooks a module sets.

    A module sets up ``train_set`` / ``val_set`` / ``test_set`` / ``predict_set`` (or overrides
    :meth:`split_dataset` where it holds its splits otherwise or builds them on demand) and, where it needs them:

    - ``collate_fn``: how a batch is made from a list of examples (``staticmethod(fn)``; None: torch's default);
    - ``eval_batch_size`` (or :meth:`split_batch_size`): examples per validation, test and prediction batch;
    - ``drop_last``: whether the last partial training batch is left out (None: when there is more than one batch);
    - :meth:`train_batch_sampler`: its own training batches (balanced classes, weighted sampling).

    The training loader shuffles with an :class:`~zoo.data.sampling.EpochSampler` seeded with the run's seed, so
    each epoch's order follows from (seed, epoch) alone and a resumed run repeats the uninterrupted one.

    Args:
        batch_size: examples per training batch (> 0).
        num_workers: loader processes; None picks 0 for in-memory data, else up to 4.
        seed: seed of the splits and of the shuffling and augmentation order.
    """

    in_memory: bool = False
    PREPROCESSING_FIELDS: ClassVar[dict[str, str]] = {}  # weight-set preprocessing name -> this module's argument
    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None
    predict_set: Dataset | None = None
    predict_paths: Sequence[Path] | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    eval_batch_size: int | None = None
    drop_last: bool | None = None

    def __init__(self, batch_size: int = 64, num_workers: int | None = None, seed: int = 0):
        super().__init__()
        if batch_size < 1:
            raise DataError(f"--data.batch_size must be a positive number of examples, got {batch_size}")
        if num_workers is not None and num_workers < 0:
            raise DataError(f"--data.num_workers must be 0 or more, got {num_workers}")
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    # --- the contract ---------------------------------------------------------------------------------------------
    @property
    def has_test_split(self) -> bool:
        return True

    def describe(self) -> str:
        """One line: the source, the split sizes, the input size and classes (printed before training)."""
        return type(self).__name__

    def set_epoch(self, epoch: int, max_epochs: int | None) -> None:
        """Called at each training epoch start; nothing changes with the epoch unless a module says so."""

    def evaluation_line(self, split: str) -> str:
        """One line printed before ``zoo validate|test|predict`` reads ``split`` ("val", "test", "predict"): the
        files and the number of examples, and which split of the module's data when it is one.

        This default names the files predicted (``predict_paths``: the file, or their common folder), else the
        split of the source that :meth:`describe` names (its text up to the first ";"); modules whose examples
        are not files, or that evaluate a user's test-only folder, say more by overriding it.
        """
        try:
            count: int | None = len(self.split_dataset(split))  # type: ignore[arg-type]
        except (DataError, TypeError):
            count = None
        examples = "" if count is None else f", {count} example{'s' if count != 1 else ''}"
        if split == "predict" and self.predict_paths:
            return f"data: {describe_files(self.predict_paths)}{examples}"
        source = self.describe().removeprefix("data:").split(";", 1)[0].strip()
        part = {"val": "validation"}.get(split, split)
        return f"data: {part} split of {source}{examples}"

    # --- hooks ----------------------------------------------------------------------------------------------------
    def split_dataset(self, split: str) -> Dataset:
        """The dataset the loader of ``split`` ("train", "val", "test", "predict") reads: ``{split}_set``.

        Raises:
            DataError: the module holds no such split (not set up, or no data for it).
        """
        dataset = getattr(self, f"{split}_set", None)
        if dataset is None:
            raise DataError(f"{type(self).__name__} has no {split} data: it is read by setup() for the "
                            f"{'predict' if split == 'predict' else 'fit/test'} stage")
        return dataset

    def split_batch_size(self, split: str) -> int:
        """Examples per batch of ``split``: ``batch_size`` for training, else ``eval_batch_size`` when set."""
        return self.batch_size if split == "train" else self.eval_batch_size or self.batch_size

    def train_batch_sampler(self) -> Sampler[list[int]] | None:
        """The module's own training batches (lists of indices), or None for seeded shuffling. A per-example
        sampler (weighted sampling) is given wrapped in a ``BatchSampler``."""
        return None

    # --- loaders --------------------------------------------------------------------------------------------------
    def workers(self) -> int:
        """Loader processes: ``num_workers``, else 0 for in-memory data and up to 4 otherwise."""
        if self.num_workers is not None:
            return self.num_workers
        return 0 if self.in_memory else min(4, os.cpu_count() or 1)

    def loader(self, dataset: Dataset, shuffle: bool, batch_size: int | None = None,
               collate_fn: Callable[[list[Any]], Any] | None = None, drop_last: bool | None = None) -> DataLoader:
        """A DataLoader whose shuffling and worker seeds follow ``seed`` (the same order every run)."""
        batch_size = batch_size or self.batch_size
        workers = self.workers()
        generator = torch.Generator().manual_seed(self.seed)
        if drop_last is None:
            drop_last = shuffle and len(dataset) > batch_size
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          persistent_workers=workers > 0, drop_last=drop_last, collate_fn=collate_fn,
                          worker_init_fn=seed_worker if workers > 0 else None, generator=generator)

    def train_dataloader(self) -> DataLoader:
        """Training batches: the module's :meth:`train_batch_sampler`, else shuffled by an :class:`EpochSampler`
        seeded with the run's seed (``--seed_everything``, else ``seed``), with the workers started afresh each
        epoch so that their seeds follow the epoch's."""
        dataset = self.split_dataset("train")
        workers = self.workers()
        batch_sampler = self.train_batch_sampler()
        if batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                              persistent_workers=workers > 0, collate_fn=self.collate_fn,
                              worker_init_fn=seed_worker if workers > 0 else None)
        seed = run_seed(self.seed)
        batch_size = self.split_batch_size("train")
        drop_last = self.drop_last if self.drop_last is not None else len(dataset) > batch_size
        return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(dataset, seed), num_workers=workers,
                          persistent_workers=False, drop_last=drop_last, collate_fn=self.collate_fn,
                          worker_init_fn=seed_worker if workers > 0 else None,
                          generator=torch.Generator().manual_seed(seed))

    def evaluation_loader(self, split: str) -> DataLoader:
        """The batches of ``split`` ("val", "test", "predict") in order, none left out."""
        return self.loader(self.split_dataset(split), shuffle=False, batch_size=self.split_batch_size(split),
                           collate_fn=self.collate_fn, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return self.evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.evaluation_loader("predict")

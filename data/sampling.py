"""Training order as a function of the run's seed and the epoch alone.

:class:`EpochSampler` shuffles epoch ``e`` of a run seeded with ``s`` from ``epoch_seed(s, e)``, so that an epoch's
order does not depend on how the run got there (a run resumed from a checkpoint repeats the uninterrupted one), and
``skip`` drops the examples a resumed epoch has already seen. :func:`run_seed` is the seed of the run (what
``--seed_everything`` set). The base data module's training loader is built on these
(:meth:`zoo.data.base.ZooDataModule.train_dataloader`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import RandomSampler
from typing_extensions import override

SEED_ENV = "PL_GLOBAL_SEED"


def run_seed(default: int) -> int:
    """The run's seed: ``$PL_GLOBAL_SEED`` (set by ``seed_everything``, so by ``--seed_everything``), else
    ``default``."""
    return int(os.environ.get(SEED_ENV, default))


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

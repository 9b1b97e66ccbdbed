"""Evaluation outputs gathered from every DDP process, so that metrics computed over a whole split (C-index,
per-patient alarm statistics, forecast backtests) see the whole split, not one process's share of it."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["gather_from_ranks"]


def gather_from_ranks(items: list[Any], world_size: int) -> list[Any]:
    """Every process's ``items`` (picklable: numpy arrays, dicts of them), joined in rank order; ``items`` itself
    when one process runs.

    Lightning's distributed evaluation sampler pads the split with repeats of its first examples so that every
    process gets as many: up to ``world_size - 1`` examples are counted twice.
    """
    if world_size <= 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return items
    gathered: list[list[Any] | None] = [None] * world_size
    torch.distributed.all_gather_object(gathered, items)
    return [item for part in gathered for item in (part or [])]

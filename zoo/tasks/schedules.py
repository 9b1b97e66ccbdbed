"""Learning-rate schedules stepped per optimiser step.

Schedulers whose constructor takes ``total_steps`` (this one, ``torch.optim.lr_scheduler.OneCycleLR``) get it
filled in from the trainer and are stepped every optimiser step; all others are stepped once per epoch.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosineLR(LambdaLR):
    """Linear warm-up from ``warmup_start_ratio * lr`` to ``lr``, then cosine decay to ``min_lr_ratio * lr``.

    Args:
        total_steps: optimiser steps of the whole run (filled in by the task when omitted).
        warmup_steps: warm-up length in steps, or as a fraction of ``total_steps`` when < 1.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int | None = None, warmup_steps: float = 0.05,
                 warmup_start_ratio: float = 0.01, min_lr_ratio: float = 0.0):
        if total_steps is None or total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        warmup = int(warmup_steps * total_steps) if warmup_steps < 1 else int(warmup_steps)
        self.total_steps, self.warmup = total_steps, min(warmup, total_steps - 1)

        def factor(step: int) -> float:
            if step < self.warmup:
                return warmup_start_ratio + (1 - warmup_start_ratio) * step / max(1, self.warmup)
            progress = min(1.0, (step - self.warmup) / max(1, total_steps - self.warmup))
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        super().__init__(optimizer, factor)

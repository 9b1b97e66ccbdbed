"""What the framework relies on a model to offer, as typed protocols with one name each.

A task or the hub never imports a model file: it checks ``isinstance(model, Classifier)`` and the like.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Classifier(Protocol):
    """A model with a classification head that can be read and replaced.

    ``reset_classifier`` makes a new head of ``num_classes`` outputs on the old head's device and dtype.
    """

    def get_classifier(self) -> nn.Module: ...

    def reset_classifier(self, num_classes: int) -> None: ...


@runtime_checkable
class NoWeightDecay(Protocol):
    """A model whose parameters named by ``no_weight_decay()`` (embeddings, position tables) take no decay."""

    def no_weight_decay(self) -> set[str]: ...


@runtime_checkable
class ChecksInput(Protocol):
    """A model that explains a wrong input (``zoo.errors.InputShapeError``) before it runs."""

    def check_input(self, x: torch.Tensor) -> None: ...

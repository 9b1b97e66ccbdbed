"""What the framework relies on a model to offer, as typed protocols with one name each.

A task or the hub never imports a model file: it checks ``isinstance(model, Classifier)`` and the like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class DeclaresInputShapes(Protocol):
    """A model whose configuration fixes the shape of its inputs (a window of ``seq_len`` snapshots, ``in_features``
    covariates, the side of a second image): what ``zoo export`` and the MLflow model build their example inputs
    with, instead of the card's default configuration.

    ``input_shapes()`` maps input names ("input" for the first, then the card's ``extra_inputs`` names) to one
    example's shape without the batch dimension, None for a dimension of any size (the card's default is used).
    """

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]: ...


@runtime_checkable
class RunRecorder(Protocol):
    """A logger that keeps files with the run (zoo's MLflow logger): figures, texts and artifacts.

    A task logs its plots and tables through this, never through a logger class.
    """

    def log_figure(self, figure: Any, artifact_file: str) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...


@runtime_checkable
class CheckpointFolder(Protocol):
    """A logger that says where its run's checkpoints go (zoo's MLflow logger: inside the run's artifacts)."""

    def checkpoint_folder(self) -> Path: ...


@runtime_checkable
class StoppableRun(Protocol):
    """A logger whose run can be marked as stopped by a signal and continued later by its id."""

    def mark_stopped(self, reason: str) -> str | None:
        """Record that the run was stopped (``reason``: "SIGTERM at epoch 1, step 40"); returns the run's id, or
        None when the run was never started."""
        ...

"""A checkpoint of a zoo run, read once and checked: everything ``zoo validate|test|predict|explain|export`` and
``--resume`` need from it.

A zoo task writes its Lightning checkpoint with a ``zoo`` record beside Lightning's own entries::

    checkpoint["zoo"] = {"model": {"model_id", "num_classes", "model_kwargs"},   # what create_model needs
                         "weights_prefix": "model." | "ema.module.",               # where the weights sit
                         "task": kind, "datamodule": class path, "extras": {...}}  # class names, scalers, ...
    checkpoint["hyper_parameters"], checkpoint["datamodule_hyper_parameters"], checkpoint["state_dict"], ...

:func:`read_checkpoint` reads the file (never running pickled code) and hands back a :class:`TrainedCheckpoint`
that answers every question about it without reading the file again.

Example:
    >>> checkpoint = read_checkpoint("mlruns/.../checkpoints/best.ckpt")
    >>> checkpoint.model_id, checkpoint.task_kind
    ('vision/eca_resnet50', 'image_classification')
    >>> model = checkpoint.build_model().eval()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from zoo.errors import CheckpointError
from zoo.factory import create_model
from zoo.weights import LoadedWeights, lightning_checkpoint_weights, read_torch_file

__all__ = ["TrainedCheckpoint", "read_checkpoint"]


@dataclass(frozen=True)
class TrainedCheckpoint:
    """The content of a zoo run's checkpoint file.

    Attributes:
        path: the file it was read from.
        content: the whole checkpoint dict, as Lightning wrote it (with the ``zoo`` record).
    """

    path: Path
    content: dict[str, Any]

    @property
    def record(self) -> dict[str, Any]:
        """``checkpoint["zoo"]``: model record, weights prefix, task kind, data module, task extras."""
        return self.content["zoo"]

    @property
    def model_id(self) -> str:
        return self.record["model"]["model_id"]

    @property
    def task_kind(self) -> str:
        """The task kind that wrote it ("" in checkpoints of runs older than the record's ``task`` entry)."""
        return self.record.get("task") or ""

    @property
    def extras(self) -> dict[str, Any]:
        """What the task stored beyond the model (class names, thresholds, fitted scalers)."""
        return self.record.get("extras") or {}

    @property
    def data_class(self) -> str | None:
        """Class path of the data module the run trained with, if it had one."""
        return self.record.get("datamodule")

    @property
    def data_hparams(self) -> dict[str, Any]:
        """The data module's constructor arguments (image size, normalisation, paths, ...)."""
        return {k: v for k, v in (self.content.get("datamodule_hyper_parameters") or {}).items()
                if not k.startswith("_")}

    @property
    def task_hparams(self) -> dict[str, Any]:
        """The task's constructor arguments (model id, model_kwargs, optimiser, ...)."""
        return {k: v for k, v in (self.content.get("hyper_parameters") or {}).items() if not k.startswith("_")}

    def config(self) -> dict[str, Any]:
        """The model and data sections of a LightningCLI config that rebuild the run's task and data module; the
        weights then come from this checkpoint, not from the task's ``pretrained`` source."""
        config: dict[str, Any] = {"model": {**self.task_hparams, "pretrained": None}}
        if self.data_class:
            config["data"] = {"class_path": self.data_class, "init_args": self.data_hparams}
        return config

    def weights(self) -> LoadedWeights:
        """The model's weights (the EMA copy when the run kept one), with the model record."""
        return lightning_checkpoint_weights(self.content, str(self.path))

    def build_model(self) -> nn.Module:
        """The trained model, as ``zoo.create_model`` builds it from these weights (no second read of the file)."""
        return create_model(self.model_id, pretrained=self.weights())


def read_checkpoint(path: str | Path) -> TrainedCheckpoint:
    """Read a zoo run's checkpoint file once, safely.

    Raises:
        CheckpointError: the file is missing, is not a readable torch file, or was not written by a zoo task
            (it lacks the ``zoo`` record); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    content = read_torch_file(path)
    if not isinstance(content, dict) or not isinstance(content.get("zoo"), dict) \
            or not isinstance(content["zoo"].get("model"), dict):
        raise CheckpointError(f"{path} is not a checkpoint of a zoo run (it lacks the 'zoo' record)")
    return TrainedCheckpoint(path, content)

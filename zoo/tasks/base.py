"""What every zoo task shares: the model built from its id, optimiser and schedule from the config, EMA of the
weights, a guard against non-finite losses, and what a checkpoint must carry to be used on its own."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from timm.utils import ModelEmaV3
from torch import nn

from zoo.errors import NonFiniteLossError
from zoo.factory import create_model
from zoo.hub import save_pretrained
from zoo.tracking import mlflow_logger

DEFAULT_OPTIMIZER = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "weight_decay": 0.05}}


def import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import {class_path!r}: {err}") from err


class ZooTask(L.LightningModule):
    """Base LightningModule of the zoo tasks.

    Args:
        model: registered model id, e.g. "vision/eca_resnet50".
        num_classes: head size (linked from the data module by ``zoo train``).
        pretrained: any weight source ``zoo.create_model`` accepts.
        model_kwargs: constructor arguments of the model family.
        optimizer: ``{"class_path": ..., "init_args": {...}}``, set by ``--optimizer`` / ``--optimizer.lr``;
            any ``torch.optim.Optimizer``, including timm's ``timm.optim.Lamb`` and ``timm.optim.Lars``.
        lr_scheduler: same form, set by ``--lr_scheduler``; see ``zoo.tasks.schedules`` for step-wise ones.
        decay_norm_and_bias: apply weight decay to biases and normalisation weights too (what most official
            recipes did); False gives them zero decay.
        ema_decay: keep an exponential moving average of the weights with this decay and evaluate with it.
    """

    monitor: str = "val/loss"
    monitor_mode: str = "min"
    # (data module attribute, task argument) pairs that `zoo train` links, e.g. the number of classes.
    data_links: tuple[tuple[str, str], ...] = ()

    def __init__(self, model: str, num_classes: int | None = None, pretrained: str | None = None,
                 model_kwargs: dict[str, Any] | None = None, optimizer: dict | None = None,
                 lr_scheduler: dict | None = None, decay_norm_and_bias: bool = True,
                 ema_decay: float | None = None):
        super().__init__()
        self.model_id = model
        self.model = create_model(model, pretrained=pretrained, num_classes=num_classes, **(model_kwargs or {}))
        self.ema = None
        if ema_decay:
            self.ema = ModelEmaV3(self.model, decay=ema_decay)
            self.ema.requires_grad_(False)
        self.logged_model_uri: str | None = None

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def log_figure(self, make_figure: Callable[[], Any], artifact_file: str) -> None:
        """Draw a matplotlib figure and log it to the run's MLflow artifacts (nothing is drawn without MLflow)."""
        logger = mlflow_logger(self.trainer)
        if logger is None:
            return
        import matplotlib.pyplot as plt

        figure = make_figure()
        logger.log_figure(figure, artifact_file)
        plt.close(figure)

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            lrs = ", ".join(f"{g['lr']:.3g}" for g in self.trainer.optimizers[0].param_groups[:1])
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}. "
                f"Lower the learning rate (now {lrs}), clip gradients (--trainer.gradient_clip_val 1.0), "
                "or check the data for NaN/inf values."
            )

    def parameter_groups(self) -> list[dict[str, Any]]:
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if self.hparams.decay_norm_and_bias:
            return [{"params": [p for _, p in params]}]
        skip = set(getattr(self.model, "no_weight_decay", lambda: ())())
        no_decay = [p for n, p in params if p.ndim <= 1 or n in skip]
        decay = [p for n, p in params if not (p.ndim <= 1 or n in skip)]
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self) -> Any:
        spec = self.hparams.optimizer or DEFAULT_OPTIMIZER
        optimizer = import_class(spec["class_path"])(self.parameter_groups(), **spec.get("init_args", {}))
        spec = self.hparams.lr_scheduler
        if not spec:
            return optimizer
        scheduler_class = import_class(spec["class_path"])
        args = dict(spec.get("init_args", {}))
        interval = "epoch"
        if "total_steps" in inspect.signature(scheduler_class).parameters:
            if args.get("total_steps") is None:
                args["total_steps"] = int(self.trainer.estimated_stepping_batches)
            interval = "step"
        scheduler = scheduler_class(optimizer, **args)
        config = {"scheduler": scheduler, "interval": interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        checkpoint["zoo"] = {
            "model_id": self.model_id,
            "task": f"{type(self).__module__}.{type(self).__qualname__}",
            "datamodule": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}" if datamodule else None,
        }
        if getattr(self, "class_names", None) is not None:
            checkpoint["zoo"]["class_names"] = self.class_names

    def export_pretrained(self, checkpoint_path: str, folder: Path) -> Path:
        """Write the weights of a checkpoint of this task as a ``zoo.save_pretrained`` folder."""
        model = create_model(self.model_id, pretrained=checkpoint_path,
                             **(self.hparams.model_kwargs or {}))
        return save_pretrained(model, folder)

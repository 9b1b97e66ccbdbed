"""What every zoo task shares: the model built from its id, one step template for training and evaluation,
optimiser and schedule from the config, EMA of the weights, a guard against non-finite losses, the checkpoint
record, and where predictions are written.

A task of a new kind subclasses :class:`ZooTask`, registers its kind and fills in the template::

    @register_task("image_restoration")
    class RestorationTask(ZooTask):
        monitor, monitor_mode = "val/psnr", "max"

        def __init__(self, model: str, pixel_loss: str = "l1", **kwargs):
            super().__init__(model, **kwargs)
            self.save_hyperparameters()
            self.build_model()

        def step(self, batch, stage): ...              # -> loss; updates and logs the stage's metrics
        def end_of_epoch(self, stage): ...             # epoch metrics and figures of "val" / "test"
        def predict_step(self, batch, batch_idx): ...
        def write_predictions(self, predictions, datamodule, output): ...
"""

from __future__ import annotations

import copy
import csv
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from timm.utils import ModelEmaV3
from torch import nn
from typing_extensions import override

from zoo.class_paths import import_class
from zoo.errors import NonFiniteLossError, ZooError
from zoo.factory import create_model
from zoo.protocols import NoWeightDecay, RunRecorder
from zoo.tasks.compiling import compile_model
from zoo.tasks.optimizers import build_optimizer

DEFAULT_OPTIMIZER = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "weight_decay": 0.05}}
STAGES = ("train", "val", "test")


def outputs_in_fp32(output: Any) -> Any:
    """``output`` with every bf16/fp16 tensor (in tuples, lists and dicts too) cast to float32, the rest unchanged.

    Under mixed precision a model's last layer gives bf16 (or fp16); the tasks compute their losses and metrics
    from what the model returns, and these must not inherit bf16's 8-bit mantissa (tied C-index risks, rounded
    box coordinates, a softmax in bf16)."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype in (torch.bfloat16, torch.float16) else output
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # a NamedTuple
        return type(output)(*(outputs_in_fp32(o) for o in output))
    if isinstance(output, (list, tuple)):
        return type(output)(outputs_in_fp32(o) for o in output)
    if isinstance(output, dict):
        return {k: outputs_in_fp32(v) for k, v in output.items()}
    return output


def _fp32_output_hook(module: nn.Module, args: Any, output: Any) -> Any:
    return outputs_in_fp32(output)


def write_csv(rows: Sequence[dict[str, Any]], output: Path) -> str:
    """Write ``rows`` (dicts with the same keys) as a CSV file; returns the one-line summary for the user."""
    if not rows:
        return "nothing to predict"
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return f"wrote {len(rows)} predictions to {output.resolve()}"


class ZooTask(L.LightningModule):
    """Base LightningModule of the zoo tasks.

    Args:
        model: registered model id, e.g. "vision/eca_resnet50".
        pretrained: any weight source ``zoo.create_model`` accepts.
        model_kwargs: constructor arguments of the model family.
        optimizer: ``{"class_path": ..., "init_args": {...}}``, set by ``--optimizer`` / ``--optimizer.lr``;
            any ``torch.optim.Optimizer``, including timm's ``timm.optim.Lamb`` and ``timm.optim.Lars``.
        lr_scheduler: same form, set by ``--lr_scheduler``; see ``zoo.tasks.schedules`` for step-wise ones.
        decay_norm_and_bias: apply weight decay to biases and normalisation weights too (what most official
            recipes did); False gives them zero decay, and none to the model's ``no_weight_decay()`` names.
        ema_decay: keep an exponential moving average of the weights with this decay and evaluate with it.
        compile: run the model through ``torch.compile`` where it works (see ``zoo.tasks.compiling``: a model or
            task that does not compile stays eager, with one line that says why).

    Class attributes a task sets: ``monitor`` / ``monitor_mode`` (what the "best" checkpoint keeps),
    ``data_links`` ((data-module attribute, task argument) pairs that ``zoo train`` links, e.g. the number of
    classes), ``prediction_output`` (the default of ``zoo predict --output``) and ``dynamic_shapes`` (why the
    task's batches change shape from batch to batch, which keeps ``compile`` off; None when they do not).
    ``task_kind`` is set by ``zoo.tasks.registry.register_task``.
    """

    task_kind: ClassVar[str] = ""
    monitor: str = "val/loss"
    monitor_mode: str = "min"
    data_links: ClassVar[tuple[tuple[str, str], ...]] = ()
    prediction_output: ClassVar[str] = "predictions.csv"
    dynamic_shapes: ClassVar[str | None] = None

    def __init__(self, model: str, pretrained: str | None = None, model_kwargs: dict[str, Any] | None = None,
                 optimizer: dict | None = None, lr_scheduler: dict | None = None, decay_norm_and_bias: bool = True,
                 ema_decay: float | None = None, compile: bool = False):
        super().__init__()
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {ema_decay}")
        self.save_hyperparameters()
        self.model_id = model
        self.model: nn.Module | None = None
        self.ema: ModelEmaV3 | None = None
        self.logged_model_uri: str | None = None

    @override
    def save_hyperparameters(self, *args: Any, frame: Any = None, **kwargs: Any) -> None:
        """Lightning's, merged: a subclass that calls it with its own signature (``model, ..., **kwargs``) keeps
        the base arguments it did not pass, with their defaults, which the base ``__init__`` saved first."""
        earlier = dict(self.hparams)
        super().save_hyperparameters(*args, frame=frame or inspect.currentframe().f_back, **kwargs)
        for key, value in earlier.items():
            self.hparams.setdefault(key, copy.deepcopy(value))

    def build_model(self, **arguments: Any) -> nn.Module:
        """Build ``self.model`` from the id, ``pretrained``, ``model_kwargs`` and ``arguments`` (what the data module
        gives, e.g. ``num_classes`` or the shape of a table; None: not given), and its EMA copy when ``ema_decay`` is
        set. An argument that ``model_kwargs`` sets to another value is a ZooError naming both.

        The model's outputs leave it in float32 (:func:`outputs_in_fp32`) whatever the autocast precision, and with
        ``compile`` its forward is compiled (after the EMA copy is made: that copy evaluates eager)."""
        hparams = self.hparams
        given = hparams.get("model_kwargs") or {}
        arguments = {k: v for k, v in arguments.items() if v is not None or k not in given}
        clashes = [f"{k}={given[k]!r} (the data gives {k}={v!r})" for k, v in arguments.items()
                   if k in given and given[k] != v]
        if clashes:
            raise ZooError(f"--model.model_kwargs sets {', '.join(clashes)}: the task takes these from the data "
                           "module; drop them from model_kwargs")
        kwargs = {**given, **arguments}
        self.model = create_model(self.model_id, pretrained=hparams.get("pretrained"), **kwargs)
        self.model.register_forward_hook(_fp32_output_hook)
        if hparams.get("ema_decay"):
            self.ema = ModelEmaV3(self.model, decay=hparams["ema_decay"])
            self.ema.requires_grad_(False)
        if hparams.get("compile"):
            print(compile_model(self.model, self.model_id, self.dynamic_shapes), flush=True)
        return self.model

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    # --- the step template ------------------------------------------------------------------------------------
    def step(self, batch: Any, stage: str) -> torch.Tensor:
        """One batch of ``stage`` ("train", "val" or "test"): the loss, after updating (and logging) the stage's
        metrics. Evaluation stages should run ``self.eval_model``."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(batch, stage)")

    def end_of_epoch(self, stage: str) -> None:
        """Compute and log the epoch metrics of "val" or "test" (and their figures)."""

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch, "train")
        self.check_finite(loss)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val/loss", self.step(batch, "val"), on_epoch=True, sync_dist=True)

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.log("test/loss", self.step(batch, "test"), on_epoch=True, sync_dist=True)

    @override
    def on_validation_epoch_end(self) -> None:
        self.end_of_epoch("val")

    @override
    def on_test_epoch_end(self) -> None:
        self.end_of_epoch("test")

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            lrs = ", ".join(f"{g['lr']:.3g}" for g in self.trainer.optimizers[0].param_groups[:1])
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}. "
                f"Lower the learning rate (now {lrs}), clip gradients (--trainer.gradient_clip_val 1.0), "
                "or check the data for NaN/inf values."
            )

    # --- predictions ------------------------------------------------------------------------------------------
    def write_predictions(self, predictions: list[Any], datamodule: Any, output: Path) -> str:
        """Write what ``predict_step`` returned for every batch to ``output`` (a file or folder, by kind);
        returns a one-line summary for the user."""
        raise NotImplementedError(f"{type(self).__name__} does not write predictions")

    # --- the data module -------------------------------------------------------------------------------------
    @property
    def datamodule(self) -> Any:
        """The data module of the trainer this task runs in; None without a trainer or a data module. What a task
        may ask of it is a protocol of :mod:`zoo.data.contracts`."""
        try:
            return self.trainer.datamodule
        except RuntimeError:  # not attached to a trainer
            return None

    # --- figures ----------------------------------------------------------------------------------------------
    def run_recorder(self) -> RunRecorder | None:
        """The trainer's logger that keeps files with the run (figures, tables), if it has one."""
        return next((lg for lg in self.trainer.loggers if isinstance(lg, RunRecorder)), None)

    def log_figure(self, make_figure: Callable[[], Any], artifact_file: str) -> None:
        """Draw a matplotlib figure and log it to the run's MLflow artifacts (nothing is drawn without MLflow)."""
        logger = self.run_recorder()
        if logger is None or self.trainer.sanity_checking:
            return
        import matplotlib.pyplot as plt

        figure = make_figure()
        logger.log_figure(figure, artifact_file)
        plt.close(figure)

    # --- optimisation -----------------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if self.hparams.decay_norm_and_bias:
            return [{"params": [p for _, p in params]}]
        skip = set(self.model.no_weight_decay()) if isinstance(self.model, NoWeightDecay) else set()
        no_decay = [p for n, p in params if p.ndim <= 1 or n in skip]
        decay = [p for n, p in params if not (p.ndim <= 1 or n in skip)]
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    @override
    def configure_optimizers(self) -> Any:
        spec = self.hparams.optimizer or DEFAULT_OPTIMIZER
        # Lightning's mixed-precision plugin refuses to clip the gradients of a fused optimiser
        clips = bool(getattr(self._trainer, "gradient_clip_val", None))
        optimizer = build_optimizer(spec, self.parameter_groups(), fuse=not clips)
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

    # --- checkpoints ------------------------------------------------------------------------------------------
    def checkpoint_extras(self) -> dict[str, Any]:
        """What this task adds to a checkpoint beyond the model record (class names, thresholds, scalers)."""
        return {}

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint_extras` stored."""

    def checkpoint_record(self) -> dict[str, Any]:
        """``checkpoint["zoo"]``: the model record (id + constructor arguments, all the hub reads), where its
        weights sit in the state dict, the task kind, the data module class and the task's extras."""
        datamodule = self.datamodule
        return {
            "model": dict(self.model.zoo_config),
            "weights_prefix": "ema.module." if self.ema is not None else "model.",
            "task": self.task_kind,
            "datamodule": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}" if datamodule else None,
            "extras": self.checkpoint_extras(),
        }

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo"] = self.checkpoint_record()

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.load_checkpoint_extras(checkpoint.get("zoo", {}).get("extras") or {})

"""LightningCLI set up for zoo: recipes, MLflow tracking, checkpoints, and the end-of-run summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, LearningRateMonitor
from lightning.pytorch.cli import LightningCLI
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from zoo.tasks.base import ZooTask
from zoo.tasks.registry import get_task_class
from zoo.tracking import RunArtifacts, ZooCheckpoint, ZooMLFlowLogger, ZooSaveConfig, mlflow_logger, run_checkpoints


class PredictionWriter(BasePredictionWriter):
    """Hands every batch's predictions to the task, which writes them in its kind's format at the end of
    ``zoo predict`` (CSV rows, images, YOLO/COCO files, per-subject files, forecast tables)."""

    def __init__(self, output: str):
        super().__init__(write_interval="epoch")
        self.output = Path(output)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        print(pl_module.write_predictions(predictions, trainer.datamodule, self.output), flush=True)


class DataSummary(Callback):
    """Prints the data module's one-line description once its data is set up, before the first epoch."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        describe = getattr(trainer.datamodule, "describe", None)
        if trainer.is_global_zero and callable(describe):
            print(describe(), flush=True)


class ZooCLI(LightningCLI):
    """LightningCLI whose model is a zoo task, with data attributes linked into the task's arguments."""

    def __init__(self, task_class: type[ZooTask], args: list[str], extra_callbacks: list[Any] = (),
                 run: bool = True):
        self.task_class = task_class
        super().__init__(
            model_class=task_class, datamodule_class=L.LightningDataModule, subclass_mode_model=False,
            subclass_mode_data=True, save_config_callback=ZooSaveConfig, auto_configure_optimizers=False,
            load_from_checkpoint_support=False,
            trainer_defaults={
                "logger": {"class_path": f"{ZooMLFlowLogger.__module__}.ZooMLFlowLogger"},
                "callbacks": [ZooCheckpoint("best"), ZooCheckpoint("last"),
                              LearningRateMonitor(logging_interval="step"), RunArtifacts(), DataSummary(),
                              *extra_callbacks],
                "enable_autolog_hparams": False,
            },
            seed_everything_default=0, args=args, run=run,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_optimizer_args((Optimizer,), link_to="model.optimizer")
        parser.add_lr_scheduler_args((LRScheduler, ReduceLROnPlateau), link_to="model.lr_scheduler")
        for data_attribute, task_argument in self.task_class.data_links:
            parser.link_arguments(f"data.{data_attribute}", f"model.{task_argument}", apply_on="instantiate")


def _format_metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {float(v):.4f}" for k, v in sorted(metrics.items()))


def print_summary(cli: ZooCLI, checkpoints: dict[str, str], test_metrics: dict[str, Any]) -> None:
    trainer, task = cli.trainer, cli.model
    checkpoint = trainer.checkpoint_callback
    logger = mlflow_logger(trainer)
    lines = ["", f"Finished training {task.model_id}."]
    if checkpoint is not None and checkpoint.best_model_score is not None:
        lines.append(f"  best {checkpoint.monitor}: {float(checkpoint.best_model_score):.4f}")
    if test_metrics:
        lines.append(f"  test (best checkpoint): {_format_metrics(test_metrics)}")
    if logger is not None:
        lines += [
            f"  MLflow run:   {logger.run_id} (experiment {logger.experiment_name!r}, store {logger.tracking_uri})",
            f"  open it:      zoo ui   then  {logger.ui_url}",
        ]
    if checkpoints:
        lines.append(f"  checkpoints:  best {checkpoints['best']}")
        lines.append(f"                last {checkpoints['last']}")
    if getattr(task, "logged_model_uri", None):
        lines.append(f"  model:        zoo.create_model({task.model_id!r}, pretrained={task.logged_model_uri!r})")
    print("\n".join(lines), flush=True)


def run_lightning(command: str, task_kind: str, args: list[str], ckpt_path: str | None = None,
                  predictions: str | None = None) -> int:
    """Build the task, data and trainer from ``args`` (LightningCLI flags) and run ``command``.

    Args:
        command: "train", "validate", "test" or "predict".
        task_kind: the model card's task, which picks the task class.
        ckpt_path: checkpoint to resume training from, or to evaluate.
    """
    task_class = get_task_class(task_kind)
    extra = [PredictionWriter(predictions or task_class.prediction_output)] if command == "predict" else []
    torch.set_float32_matmul_precision("high")
    argv, sys.argv = sys.argv, [f"zoo {command}"]  # LightningCLI takes its program name from sys.argv
    try:
        cli = ZooCLI(task_class, args, extra_callbacks=extra, run=False)
    finally:
        sys.argv = argv
    trainer, task, datamodule = cli.trainer, cli.model, cli.datamodule
    if command != "train":
        getattr(trainer, command)(task, datamodule=datamodule, ckpt_path=ckpt_path)
        return 0
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    if trainer.interrupted:
        return 1
    checkpoints = run_checkpoints(trainer)  # read now: testing the best checkpoint restores its older state
    test_metrics: dict[str, Any] = {}
    if getattr(datamodule, "has_test_split", True) and not trainer.fast_dev_run:
        results = trainer.test(task, datamodule=datamodule, ckpt_path="best", verbose=False)
        test_metrics = results[0] if results else {}
    if trainer.is_global_zero:
        print_summary(cli, checkpoints, test_metrics)
    return 0

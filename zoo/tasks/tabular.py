"""Tabular regression and classification (binary, multiclass) for the ``tabular/*`` models, TabR included.

The task takes the table's shape and target scaling from the data module (``zoo.data.tabular.TabularData``), builds
the model for it, and for retrieval models (TabR) hands the model its candidates (``zoo.tasks.retrieval``: the data
module's whole preprocessed training table, on every rank under DDP; they go into checkpoints, so a checkpoint
alone predicts new rows).

Metrics are those of the field, on the original target scale: RMSE (monitored, as the paper's score), MAE and R2
for regression; accuracy (monitored), macro F1 and ROC-AUC for binary; accuracy and macro F1 for multiclass.
Early stopping on the monitored validation metric with the paper's patience (16 epochs) is on by default.

One kind, two classes. Every tabular card names the task kind ``"tabular"``, because one card (``tabular/mlp``,
``tabular/tabr``, ...) trains regression or classification depending on the table it is given, which the card
cannot know. So ``"tabular"`` stays the one registered kind, :class:`TabularTask`, and constructing it builds
:class:`TabularRegressionTask` (``num_classes`` 1) or :class:`TabularClassificationTask` (2 or more), decided in
one place, :func:`tabular_task_class` (``TabularTask.__init__`` becomes that class once the model is built, so
the weights' head decides, with no second build; the CLI,
``load_from_checkpoint`` and recipes all construct ``TabularTask``, so cards, recipes, checkpoints and
``zoo train tabular/...`` work unchanged). ``TabularTask`` holds what both share: the constructor (its signature is
the ``--model.*`` flags), features, the retrieval plumbing, the steps, the metric epoch logic, the prediction CSV
and the checkpoint extras; a subclass adds its loss, metrics, predictions and figures.

Batches are the dicts of ``zoo.data.tabular``: ``x_num`` (B, F_num) float32, ``x_bin`` (B, F_bin) float32,
``x_cat`` (B, F_cat) int64, ``y`` (B,) float32 standardised target or int64 class, ``index`` (B,) int64 row of the
split. Model outputs are (B, 1) for regression and binary classification (one logit), (B, C) for multiclass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import BinaryAUROC, MulticlassConfusionMatrix

from zoo.tasks.base import ZooTask, write_csv
from zoo.tasks.classification import classification_metrics
from zoo.tasks.plots import confusion_matrix_figure, predicted_vs_true_figure
from zoo.tasks.registry import register_task
from zoo.tasks.retrieval import CANDIDATES_KEY, Features, RetrievalMixin

__all__ = ["CANDIDATES_KEY", "TabularClassificationTask", "TabularRegressionTask", "TabularTask",
           "tabular_task_class"]

MAX_PROBABILITY_COLUMNS = 20


def table_kind(num_classes: int) -> str:
    """The table's task type from the model's number of classes: "regression", "binclass" or "multiclass"."""
    return "regression" if num_classes == 1 else "binclass" if num_classes == 2 else "multiclass"


def tabular_task_class(num_classes: int) -> type[TabularTask]:
    """The task that trains a model of ``num_classes`` classes: 1 is regression, 2 or more classification."""
    return TabularRegressionTask if num_classes == 1 else TabularClassificationTask


@register_task("tabular")
class TabularTask(RetrievalMixin, ZooTask):
    """What tabular regression and classification share; ``TabularTask(...)`` builds the one for the model's
    ``num_classes`` (see the module docstring).

    Args:
        num_classes: 1 for regression, else the number of classes (linked from the data module).
        feature_shapes: ``n_num_features``, ``n_bin_features``, ``cat_cardinalities`` (linked).
        class_names: class names in label order (linked).
        target_scaling: [mean, std] of the regression target (linked); predictions are de-standardised with it.
        decay_norm_and_bias: False (default) keeps biases, norms, embeddings and TabR's label encoder out of weight
            decay, as the TabR code meant to; True decays everything, as it actually did (its "paper" recipe).
        patience: epochs without a better validation score before stopping (16 in the paper); None: never stop.
        freeze_contexts_after_epochs: TabR's "context freeze": from this epoch on, each training object keeps the
            contexts it had then, and a step encodes only those candidates (much faster on large tables).
        **kwargs: the arguments of ``zoo.tasks.base.ZooTask`` (pretrained, model_kwargs, optimizer, ...).

    Attributes:
        kind: the table's task type, "regression", "binclass" or "multiclass" (the registered kind of the class
            is "tabular").
        retrieval: whether the model retrieves from the training table (``zoo.tasks.retrieval``).
    """

    data_links = (("num_classes", "num_classes"), ("feature_shapes", "feature_shapes"),
                  ("class_names", "class_names"), ("target_scaling", "target_scaling"))
    table_kinds: ClassVar[tuple[str, ...]] = ()  # the task types a subclass trains

    def __init__(self, model: str, num_classes: int | None = None, feature_shapes: dict[str, Any] | None = None,
                 class_names: list[str] | None = None, target_scaling: list[float] | None = None,
                 decay_norm_and_bias: bool = False, patience: int | None = 16,
                 freeze_contexts_after_epochs: int | None = None, **kwargs: Any):
        super().__init__(model, decay_norm_and_bias=decay_norm_and_bias, **kwargs)
        self.save_hyperparameters()
        given = kwargs.get("model_kwargs") or {}  # a feature shape set in model_kwargs overrides the table's
        self.build_model(num_classes=num_classes, **{k: v for k, v in (feature_shapes or {}).items() if k not in given})
        self.num_classes = self.model.zoo_config["num_classes"]
        if type(self) is TabularTask:  # the model built for the table decides: regression or classification
            self.__class__ = tabular_task_class(self.num_classes)
        self.kind = table_kind(self.num_classes)
        if self.kind not in self.table_kinds:
            raise ValueError(f"{type(self).__name__} trains {' and '.join(self.table_kinds) or 'no table'}, not a "
                             f"model with num_classes={self.num_classes}; build TabularTask to get the right task")
        self.class_names = class_names or ([str(i) for i in range(self.num_classes)] if self.num_classes > 1 else [])
        self.init_retrieval(freeze_contexts_after_epochs)
        self.val_metrics = self.metric_collection("val/")
        self.test_metrics = self.metric_collection("test/")
        self.configure_kind(target_scaling)

    # --- what a subclass provides ---------------------------------------------------------------------------------
    def configure_kind(self, target_scaling: list[float] | None) -> None:
        """Set up what the kind needs beyond its metrics (called at the end of ``__init__``)."""

    def metric_collection(self, prefix: str) -> MetricCollection:
        """The metrics of one evaluation stage, named ``prefix + name``."""
        raise NotImplementedError

    def _loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        """The training loss of (B, outputs) outputs and (B,) labels."""
        raise NotImplementedError

    def update_metrics(self, outputs: Tensor, y: Tensor, stage: str) -> None:
        """Update the metrics of ``stage`` ("val" or "test") with a batch's (B, outputs) outputs, (B,) labels."""
        raise NotImplementedError

    def log_test_figure(self) -> None:
        """Log the figure of the test epoch (called after its metrics)."""

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def prediction_rows(self, predictions: list[dict[str, Tensor]], datamodule: Any) -> list[dict[str, Any]]:
        """One CSV row per table row: its number (0-based, in file order) and the prediction."""
        raise NotImplementedError

    # --- forward --------------------------------------------------------------------------------------------------
    @staticmethod
    def _features(batch: dict[str, Tensor]) -> Features:
        return batch["x_num"], batch["x_bin"], batch["x_cat"]

    def _train_outputs(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, outputs) outputs of the trained model (a retrieval model retrieves, each object barred from
        itself)."""
        if self.retrieval:
            return self.retrieval_train_outputs(self._features(batch), batch["index"], batch["y"])
        return self.model(*self._features(batch))

    def _eval_outputs(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, outputs) outputs of the evaluated model (the EMA copy when EMA is on)."""
        if self.retrieval:
            return self.retrieval_eval_outputs(self._features(batch))
        return self.eval_model(*self._features(batch))

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """A batch dict -> (B, 1) or (B, C) outputs of the evaluated model."""
        return self._eval_outputs(batch)

    # --- steps ----------------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(self._train_outputs(batch), batch["y"])
        self.check_finite(loss)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["y"]))
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> None:
        outputs = self._eval_outputs(batch)
        y = batch["y"]
        self.log(f"{stage}/loss", self._loss(outputs, y), on_epoch=True, sync_dist=True, batch_size=len(y))
        self.update_metrics(outputs, y, stage)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def epoch_metrics(self, stage: str) -> dict[str, Tensor]:
        """The computed metrics of ``stage``, named ``stage/name`` (the metrics are reset)."""
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        values = metrics.compute()
        metrics.reset()
        return values

    def end_of_epoch(self, stage: str) -> None:
        """Log the epoch metrics of ``stage`` (the monitored one on the progress bar), then the test figure."""
        values = self.epoch_metrics(stage)
        monitored = self.monitor.replace("val/", f"{stage}/")
        self.log(monitored, values.pop(monitored), prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)
        if stage == "test":
            self.log_test_figure()

    # --- prediction and checkpoints -------------------------------------------------------------------------------
    def write_predictions(self, predictions: list[dict[str, Tensor]], datamodule: Any, output: Path) -> str:
        return write_csv(self.prediction_rows(predictions, datamodule), output)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names)}

    def configure_callbacks(self) -> list:
        if not self.hparams.patience:
            return []
        return [EarlyStopping(monitor=self.monitor, mode=self.monitor_mode, patience=self.hparams.patience)]


class TabularRegressionTask(TabularTask):
    """Regression: MSE on the standardised target; RMSE (monitored), MAE and R2 on the original scale; a
    predicted-vs-true figure of the test split. Build it through ``TabularTask`` (``num_classes`` 1)."""

    table_kinds = ("regression",)
    monitor, monitor_mode = "val/rmse", "min"

    def configure_kind(self, target_scaling: list[float] | None) -> None:
        mean, std = target_scaling or (0.0, 1.0)
        self.y_mean, self.y_std = float(mean), float(std)
        self._test_outputs: list[tuple[Tensor, Tensor]] = []  # (predicted, true) (B,) pairs of the test epoch

    def metric_collection(self, prefix: str) -> MetricCollection:
        return MetricCollection({"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError(),
                                 "r2": R2Score()}, prefix=prefix)

    def _original_scale(self, values: Tensor) -> Tensor:
        """Standardised (B,) values -> the target's scale."""
        return values * self.y_std + self.y_mean

    def _loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(outputs.squeeze(-1), y.float())

    def update_metrics(self, outputs: Tensor, y: Tensor, stage: str) -> None:
        predicted, true = self._original_scale(outputs.squeeze(-1)), self._original_scale(y)
        (self.val_metrics if stage == "val" else self.test_metrics).update(predicted, true)
        if stage == "test":
            self._test_outputs.append((predicted.detach().cpu(), true.detach().cpu()))

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._test_outputs = []

    def log_test_figure(self) -> None:
        outputs, self._test_outputs = self._test_outputs, []
        if outputs:
            predicted, true = (torch.cat(t).numpy() for t in zip(*outputs, strict=True))
            self.log_figure(lambda: predicted_vs_true_figure(predicted, true, "test: prediction vs target"),
                            "plots/test_predicted_vs_true.png")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``prediction`` (B,) on the target's scale."""
        return {"prediction": self._original_scale(self._eval_outputs(batch).squeeze(-1))}

    def prediction_rows(self, predictions: list[dict[str, Tensor]], datamodule: Any) -> list[dict[str, Any]]:
        """One CSV row per table row: its number (0-based, in file order) and the prediction."""
        values = torch.cat([p["prediction"] for p in predictions]).tolist()
        return [{"row": i, "prediction": f"{v:.6g}"} for i, v in enumerate(values)]


class TabularClassificationTask(TabularTask):
    """Binary (BCE on one logit) or multiclass (cross-entropy) classification: accuracy (monitored) and macro F1,
    ROC-AUC for binary; a confusion-matrix figure of the test split. Build it through ``TabularTask``
    (``num_classes`` >= 2)."""

    table_kinds = ("binclass", "multiclass")
    monitor, monitor_mode = "val/acc", "max"

    def configure_kind(self, target_scaling: list[float] | None) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.kind == "binclass":
            self.val_auc, self.test_auc = BinaryAUROC(), BinaryAUROC()
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)

    def metric_collection(self, prefix: str) -> MetricCollection:
        return classification_metrics(self.num_classes, prefix, top5=False)

    def _loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        if self.kind == "binclass":
            return F.binary_cross_entropy_with_logits(outputs.squeeze(-1), y.float())
        return F.cross_entropy(outputs, y)

    def _probabilities(self, outputs: Tensor) -> Tensor:
        """(B, C) class probabilities from the (B, 1) binary or (B, C) multiclass logits."""
        if self.kind == "binclass":
            p = outputs.squeeze(-1).sigmoid()
            return torch.stack([1 - p, p], dim=-1)
        return outputs.softmax(dim=-1)

    def update_metrics(self, outputs: Tensor, y: Tensor, stage: str) -> None:
        probabilities = self._probabilities(outputs)
        (self.val_metrics if stage == "val" else self.test_metrics).update(probabilities, y)
        if self.kind == "binclass":
            (self.val_auc if stage == "val" else self.test_auc).update(probabilities[:, 1], y)
        if stage == "test":
            self.test_confusion.update(probabilities, y)

    def epoch_metrics(self, stage: str) -> dict[str, Tensor]:
        values = super().epoch_metrics(stage)
        if self.kind == "binclass":
            auc = self.val_auc if stage == "val" else self.test_auc
            values[f"{stage}/roc_auc"] = auc.compute()
            auc.reset()
        return values

    def log_test_figure(self) -> None:
        matrix = self.test_confusion.compute().cpu().numpy()
        self.test_confusion.reset()
        self.log_figure(lambda: confusion_matrix_figure(matrix, self.class_names, "test confusion matrix"),
                        "plots/test_confusion_matrix.png")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``probabilities`` (B, C)."""
        return {"probabilities": self._probabilities(self._eval_outputs(batch))}

    def prediction_rows(self, predictions: list[dict[str, Tensor]], datamodule: Any) -> list[dict[str, Any]]:
        """One CSV row per table row: its number (0-based, in file order), the class, its score and the class
        probabilities (for up to 20 classes)."""
        probabilities = torch.cat([p["probabilities"] for p in predictions])
        rows = []
        for i, p in enumerate(probabilities.tolist()):
            best = int(np.argmax(p))
            row: dict[str, Any] = {"row": i, "label": self.class_names[best], "score": f"{p[best]:.6f}"}
            if self.num_classes <= MAX_PROBABILITY_COLUMNS:
                row.update({f"p_{name}": f"{q:.6f}" for name, q in zip(self.class_names, p, strict=True)})
            rows.append(row)
        return rows

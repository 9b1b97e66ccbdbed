"""Tabular regression and classification (binary, multiclass) for the ``tabular/*`` models, TabR included.

The task takes the table's shape and target scaling from the data module (``zoo.data.tabular.TabularData``), builds
the model for it, and for retrieval models (TabR) hands the model its candidates: the data module's whole
preprocessed training table (on every rank under DDP, whatever part of the table the rank's loader sees). The
candidates go into checkpoints, so a checkpoint alone predicts new rows.

Metrics are those of the field, on the original target scale: RMSE (monitored, as the paper's score), MAE and R2
for regression; accuracy (monitored), macro F1 and ROC-AUC for binary; accuracy and macro F1 for multiclass.
Early stopping on the monitored validation metric with the paper's patience (16 epochs) is on by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import BinaryAUROC, MulticlassConfusionMatrix

from zoo.blocks.retrieval import Candidates
from zoo.tasks.base import ZooTask, write_csv
from zoo.tasks.classification import classification_metrics
from zoo.tasks.plots import confusion_matrix_figure, predicted_vs_true_figure
from zoo.tasks.registry import register_task

CANDIDATES_KEY = "tabular_candidates"
MAX_PROBABILITY_COLUMNS = 20


def _metrics(kind: str, num_classes: int, prefix: str) -> MetricCollection:
    if kind == "regression":
        return MetricCollection({"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError(),
                                 "r2": R2Score()}, prefix=prefix)
    return classification_metrics(num_classes, prefix, top5=False)


@register_task("tabular")
class TabularTask(ZooTask):
    """Regression (MSE on the standardised target), binary (BCE on one logit) or multiclass (cross-entropy).

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

    Batches are the dicts of ``zoo.data.tabular``: ``x_num``, ``x_bin``, ``x_cat``, ``y``, ``index``.
    """

    data_links = (("num_classes", "num_classes"), ("feature_shapes", "feature_shapes"),
                  ("class_names", "class_names"), ("target_scaling", "target_scaling"))

    def __init__(self, model: str, num_classes: int | None = None, feature_shapes: dict[str, Any] | None = None,
                 class_names: list[str] | None = None, target_scaling: list[float] | None = None,
                 decay_norm_and_bias: bool = False, patience: int | None = 16,
                 freeze_contexts_after_epochs: int | None = None, **kwargs: Any):
        super().__init__(model, decay_norm_and_bias=decay_norm_and_bias, **kwargs)
        self.save_hyperparameters()
        self.build_model(num_classes=num_classes, **{**(feature_shapes or {}), **(kwargs.get("model_kwargs") or {})})
        self.num_classes = self.model.zoo_config["num_classes"]
        self.kind = "regression" if self.num_classes == 1 else "binclass" if self.num_classes == 2 else "multiclass"
        self.class_names = class_names or ([str(i) for i in range(self.num_classes)] if self.num_classes > 1 else [])
        if self.kind != "regression" and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        mean, std = target_scaling or (0.0, 1.0)
        self.y_mean, self.y_std = float(mean), float(std)
        self.monitor, self.monitor_mode = ("val/rmse", "min") if self.kind == "regression" else ("val/acc", "max")
        self.retrieval = bool(getattr(self.model, "retrieval", False))
        self.val_metrics = _metrics(self.kind, self.num_classes, "val/")
        self.test_metrics = _metrics(self.kind, self.num_classes, "test/")
        if self.kind == "binclass":
            self.val_auc, self.test_auc = BinaryAUROC(), BinaryAUROC()
        if self.kind != "regression":
            self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self._candidates: Candidates | None = None  # CPU copy: the whole preprocessed training table
        self._device_candidates: Candidates | None = None
        self._eval_keys: Tensor | None = None
        self._frozen_contexts: Tensor | None = None
        self._test_outputs: list[tuple[Tensor, Tensor]] = []

    # --- candidates -----------------------------------------------------------------------------------------------
    def set_candidates(self, candidates: Candidates) -> None:
        """The table retrieval models retrieve from (the preprocessed training table and its labels)."""
        self._candidates = Candidates(*(None if t is None else t.detach().cpu() for t in candidates))
        self._device_candidates = None
        self._eval_keys = None

    def _candidates_from_datamodule(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "train_table"):
            raise RuntimeError(f"{self.model_id} retrieves from the training table: train with a tabular data "
                               "module, or load a checkpoint that holds the candidates")
        table = datamodule.train_table()
        self.set_candidates(Candidates(table.x_num, table.x_bin, table.x_cat, table.y))

    def candidates(self) -> Candidates:
        """The candidates on the model's device."""
        if self._candidates is None:
            self._candidates_from_datamodule()
        if self._device_candidates is None or self._device_candidates.y.device != self.device:
            self._device_candidates = self._candidates.to(self.device)
        return self._device_candidates

    def setup(self, stage: str) -> None:
        if self.retrieval and stage == "fit":
            self._candidates_from_datamodule()  # the full table, not the rank's shard of it

    # --- forward --------------------------------------------------------------------------------------------------
    @staticmethod
    def _features(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        return batch["x_num"], batch["x_bin"], batch["x_cat"]

    def _train_outputs(self, batch: dict[str, Tensor]) -> Tensor:
        if not self.retrieval:
            return self.model(*self._features(batch))
        candidates, index = self.candidates(), batch["index"]
        if self._frozen_contexts is not None:
            contexts = self._frozen_contexts.to(self.device)[index]  # (B, m) rows of the training table
            rows, relative = contexts.unique(return_inverse=True)
            return self.model(*self._features(batch), candidates=candidates.select(rows), y=batch["y"],
                              context_index=relative)
        keep = torch.ones(candidates.size, dtype=torch.bool, device=self.device)
        keep[index] = False  # the batch joins the candidates inside the model, each object barred from itself
        return self.model(*self._features(batch), candidates=candidates.select(keep.nonzero().squeeze(1)),
                          y=batch["y"])

    def _eval_outputs(self, batch: dict[str, Tensor]) -> Tensor:
        model = self.eval_model
        if not self.retrieval:
            return model(*self._features(batch))
        candidates = self.candidates()
        if self._eval_keys is None:  # the encoder is fixed during evaluation: encode the candidates once
            self._eval_keys = model.encode_candidates(candidates)
        return model(*self._features(batch), candidates=candidates, candidate_keys=self._eval_keys)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """A batch dict -> (B, 1) or (B, C) outputs of the evaluated model."""
        return self._eval_outputs(batch)

    def _loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        if self.kind == "regression":
            return F.mse_loss(outputs.squeeze(-1), y.float())
        if self.kind == "binclass":
            return F.binary_cross_entropy_with_logits(outputs.squeeze(-1), y.float())
        return F.cross_entropy(outputs, y)

    def _probabilities(self, outputs: Tensor) -> Tensor:
        """(B, C) class probabilities from the logits."""
        if self.kind == "binclass":
            p = outputs.squeeze(-1).sigmoid()
            return torch.stack([1 - p, p], dim=-1)
        return outputs.softmax(dim=-1)

    def _original_scale(self, values: Tensor) -> Tensor:
        return values * self.y_std + self.y_mean

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
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        if self.kind == "regression":
            predicted, true = self._original_scale(outputs.squeeze(-1)), self._original_scale(y)
            metrics.update(predicted, true)
            if stage == "test":
                self._test_outputs.append((predicted.detach().cpu(), true.detach().cpu()))
            return
        probabilities = self._probabilities(outputs)
        metrics.update(probabilities, y)
        if self.kind == "binclass":
            (self.val_auc if stage == "val" else self.test_auc).update(probabilities[:, 1], y)
        if stage == "test":
            self.test_confusion.update(probabilities, y)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _end_of_evaluation(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        values = metrics.compute()
        metrics.reset()
        if self.kind == "binclass":
            auc = self.val_auc if stage == "val" else self.test_auc
            values[f"{stage}/roc_auc"] = auc.compute()
            auc.reset()
        self.log(self.monitor.replace("val/", f"{stage}/"), values.pop(self.monitor.replace("val/", f"{stage}/")),
                 prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._eval_keys = None

    def on_test_epoch_start(self) -> None:
        self._eval_keys = None
        self._test_outputs = []

    def on_predict_epoch_start(self) -> None:
        self._eval_keys = None

    def on_validation_epoch_end(self) -> None:
        self._end_of_evaluation("val")
        self._eval_keys = None

    def on_test_epoch_end(self) -> None:
        self._end_of_evaluation("test")
        self._eval_keys = None
        if self.kind == "regression":
            outputs, self._test_outputs = self._test_outputs, []
            if outputs:
                predicted, true = (torch.cat(t).numpy() for t in zip(*outputs, strict=True))
                self.log_figure(lambda: predicted_vs_true_figure(predicted, true, "test: prediction vs target"),
                                "plots/test_predicted_vs_true.png")
            return
        matrix = self.test_confusion.compute().cpu().numpy()
        self.test_confusion.reset()
        self.log_figure(lambda: confusion_matrix_figure(matrix, self.class_names, "test confusion matrix"),
                        "plots/test_confusion_matrix.png")

    # --- context freeze -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def freeze_contexts(self, batch_size: int = 4096) -> Tensor:
        """(N, m) contexts of every training object under the current encoder, itself excluded."""
        model, candidates = self.model, self.candidates()
        was_training = model.training
        model.eval()
        try:
            keys = model.encode_candidates(candidates)
            contexts = []
            for start in range(0, candidates.size, batch_size):
                rows = torch.arange(start, min(start + batch_size, candidates.size), device=self.device)
                part = candidates.select(rows)
                contexts.append(model.contexts(part.x_num, part.x_bin, part.x_cat, candidate_keys=keys,
                                               exclude=rows)[1])
        finally:
            model.train(was_training)
        return torch.cat(contexts)

    def on_train_epoch_start(self) -> None:
        after = self.hparams.freeze_contexts_after_epochs
        if self.retrieval and after is not None and self.current_epoch >= after and self._frozen_contexts is None:
            self._frozen_contexts = self.freeze_contexts()

    # --- prediction -----------------------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Regression: ``prediction`` (B,) on the target's scale; classes: ``probabilities`` (B, C)."""
        outputs = self._eval_outputs(batch)
        if self.kind == "regression":
            return {"prediction": self._original_scale(outputs.squeeze(-1))}
        return {"probabilities": self._probabilities(outputs)}

    def prediction_rows(self, predictions: list[dict[str, Tensor]], datamodule: Any) -> list[dict[str, Any]]:
        """One CSV row per table row: its number (0-based, in file order) and the prediction (class, score and the
        class probabilities for up to 20 classes)."""
        if self.kind == "regression":
            values = torch.cat([p["prediction"] for p in predictions]).tolist()
            return [{"row": i, "prediction": f"{v:.6g}"} for i, v in enumerate(values)]
        probabilities = torch.cat([p["probabilities"] for p in predictions])
        rows = []
        for i, p in enumerate(probabilities.tolist()):
            best = int(np.argmax(p))
            row: dict[str, Any] = {"row": i, "label": self.class_names[best], "score": f"{p[best]:.6f}"}
            if self.num_classes <= MAX_PROBABILITY_COLUMNS:
                row.update({f"p_{name}": f"{q:.6f}" for name, q in zip(self.class_names, p, strict=True)})
            rows.append(row)
        return rows

    def write_predictions(self, predictions: list[dict[str, Tensor]], datamodule: Any, output: Path) -> str:
        return write_csv(self.prediction_rows(predictions, datamodule), output)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names)}

    # --- training setup and checkpoints ---------------------------------------------------------------------------
    def configure_callbacks(self) -> list:
        if not self.hparams.patience:
            return []
        return [EarlyStopping(monitor=self.monitor, mode=self.monitor_mode, patience=self.hparams.patience)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.retrieval:
            if self._candidates is None:
                self._candidates_from_datamodule()
            checkpoint[CANDIDATES_KEY] = {k: v for k, v in self._candidates._asdict().items() if v is not None}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(CANDIDATES_KEY)
        if self.retrieval and stored is not None:
            self.set_candidates(Candidates(stored.get("x_num"), stored.get("x_bin"), stored.get("x_cat"),
                                           stored["y"]))

"""Mid-price trend classification on limit-order books (TLOB, MLPLOB, DeepLOB): the classification task plus what
the LOB papers report and compare against, on the same validation/test windows.

Logged per stage (``val/`` or ``test/``): ``acc``, ``f1_macro`` (the headline metric of the TLOB/LOBCAST line),
``precision_macro``, ``recall_macro``, ``mcc``, ``f1_<class>`` per class, and two trivial predictors scored on
exactly the windows the model was scored on:

- ``majority_f1_macro`` / ``majority_acc``: always the most frequent class of the *training* labels (a predictor one
  could deploy; the evaluated split's own majority when the data module exposes no training labels);
- ``stationary_f1_macro`` / ``stationary_acc``: always "stationary" (index 1 in ``zoo.data.lob.CLASS_NAMES``:
  0 up, 1 stationary, 2 down).

Both baselines' macro F1 are computed with the same torchmetrics macro F1 as the model's, so the numbers compare.
The confusion matrix is logged to MLflow by the classification task (``plots/test_confusion_matrix.png``).
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.functional.classification import multiclass_f1_score
from typing_extensions import override

from zoo.data.contracts import LabelledSplits
from zoo.registry import ModelCard
from zoo.tasks.classification import ClassificationTask
from zoo.tasks.registry import register_task

STATIONARY = "stationary"


def lob_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Accuracy, macro F1/precision/recall and MCC; inputs (B, C) logits and (B,) class indices."""
    return MetricCollection({
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        "precision_macro": MulticlassPrecision(num_classes, average="macro"),
        "recall_macro": MulticlassRecall(num_classes, average="macro"),
        "mcc": MulticlassMatthewsCorrCoef(num_classes),
    }, prefix=prefix, compute_groups=False)


def constant_predictor_metrics(counts: torch.Tensor, predicted: int) -> dict[str, float]:
    """Accuracy and macro F1 of always predicting class ``predicted`` on labels with the class ``counts`` (C,).

    Accuracy is the predicted class's share p. Its F1 is 2p / (1 + p) (precision p, recall 1), every other class
    scores 0, and the macro average is torchmetrics' (classes with no label and no prediction are left out)."""
    counts = counts.long().cpu()
    total = int(counts.sum())
    if total == 0:
        raise ValueError("no labels to score a constant predictor on")
    target = torch.repeat_interleave(torch.arange(len(counts)), counts)
    preds = torch.full_like(target, predicted)
    f1 = multiclass_f1_score(preds, target, num_classes=len(counts), average="macro")
    return {"acc": float(counts[predicted]) / total, "f1_macro": float(f1)}


@register_task("lob_trend")
class LOBTrendTask(ClassificationTask):
    """Mid-price trend (up / stationary / down) from windows of order-book snapshots.

    The classification task (cross-entropy, EMA, confusion matrix, class probabilities from ``zoo predict``) with
    the LOB metrics and the majority-class and always-stationary baselines on the same windows (module docstring).
    The best checkpoint keeps the highest validation macro F1. Args as ``ClassificationTask``'s; mixing and
    Grad-CAM do not apply to order-book windows and are off.
    """

    monitor = "val/f1_macro"
    monitor_mode = "max"

    def __init__(self, model: str, num_classes: int | None = None, class_names: list[str] | None = None,
                 label_smoothing: float = 0.0, **kwargs: Any):
        kwargs.setdefault("explain_images", 0)
        super().__init__(model, num_classes=num_classes, class_names=class_names, label_smoothing=label_smoothing,
                         **kwargs)
        self.val_metrics = lob_metrics(self.num_classes, "val/")
        self.test_metrics = lob_metrics(self.num_classes, "test/")

    @classmethod
    @override
    def inapplicable_arguments(cls, card: ModelCard) -> dict[str, str]:
        why = "Mixup, CutMix and Grad-CAM are for images, not order-book windows"
        return dict.fromkeys(("mixup_alpha", "cutmix_alpha", "mix_prob", "mix_switch_prob", "explain_images"), why)

    @override
    def log_majority_baseline(self, matrix, stage: str) -> None:
        """Logged by :meth:`end_of_epoch` with the *training* majority class instead."""

    @property
    def stationary_index(self) -> int:
        names = [n.lower() for n in self.class_names]
        if STATIONARY in names:
            return names.index(STATIONARY)
        return 1  # TLOB's order: 0 up, 1 stationary, 2 down

    def training_majority(self) -> int | None:
        """The most frequent class of the training labels, when the data module holds them (LOBData does)."""
        datamodule = self.datamodule
        train = datamodule.splits.get("train") if isinstance(datamodule, LabelledSplits) else None
        labels = getattr(train, "y", None)
        if labels is None:  # other data evaluated alone: the counts the data module recorded in training
            counts = getattr(datamodule, "train_class_counts", None)
            return int(torch.tensor(counts).argmax()) if counts else None
        labels = torch.as_tensor(labels).long().flatten()
        return int(torch.bincount(labels, minlength=self.num_classes).argmax())

    @override
    def end_of_epoch(self, stage: str) -> None:
        confusion = self.val_confusion if stage == "val" else self.test_confusion
        # rows: true classes, so the row sums are the label counts of exactly the windows the model was scored on
        matrix = confusion.compute().detach().cpu().to(torch.float64)
        counts = matrix.sum(dim=1).round().long()
        super().end_of_epoch(stage)
        if counts.sum() == 0:
            return
        tp = matrix.diagonal()
        denominator = matrix.sum(0) + matrix.sum(1)
        per_class = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
        values: dict[str, float] = {f"{stage}/f1_{name}": float(f) for name, f in
                                    zip(self.class_names, per_class, strict=True)}
        majority = self.training_majority()
        if majority is None:
            majority = int(counts.argmax())
        for label, predicted in (("majority", majority), ("stationary", self.stationary_index)):
            for key, value in constant_predictor_metrics(counts, predicted).items():
                values[f"{stage}/{label}_{key}"] = value
        self.log_dict(values, sync_dist=True)

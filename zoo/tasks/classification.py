"""Classification of images (and any model whose forward gives (B, num_classes) logits)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score
from typing_extensions import override

from zoo.data.contracts import ZooData
from zoo.explain import MIN_MAP_SIZE, default_target_layer, explanation_figure, grad_cam, unnormalise
from zoo.registry import ModelCard, get_card
from zoo.tasks.base import ZooTask, write_csv
from zoo.tasks.plots import confusion_matrix_figure
from zoo.tasks.registry import register_task

if TYPE_CHECKING:
    from zoo.checkpoints import TrainedCheckpoint

PER_CLASS_MAX = 5  # few-class problems (screening: COVIDx, sepsis) report each class's sensitivity and PPV


def per_class_rates(matrix, class_names: list[str] | None, stage: str) -> dict[str, float]:
    """Sensitivity (recall) and positive predictive value (precision) of each class from a confusion matrix
    (rows: true class, columns: predicted), as COVID-Net reports them; a class never predicted has PPV 0."""
    import re

    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float64)
    hits, actual, predicted = np.diag(matrix), matrix.sum(1), matrix.sum(0)
    names = class_names or [str(i) for i in range(len(matrix))]
    rates = {}
    for i, name in enumerate(names):
        key = re.sub(r"[^\w.-]+", "_", str(name))
        rates[f"{stage}/sensitivity_{key}"] = float(hits[i] / actual[i]) if actual[i] else float("nan")
        rates[f"{stage}/ppv_{key}"] = float(hits[i] / predicted[i]) if predicted[i] else 0.0
    return rates


def classification_metrics(num_classes: int, prefix: str, top5: bool = True) -> MetricCollection:
    """Accuracy (micro: the fraction correct), macro F1, and top-5 accuracy when asked and there are more than 5
    classes. Inputs: (B, C) logits or probabilities and (B,) class indices."""
    metrics: dict[str, Any] = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
    }
    if top5 and num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    # No compute groups: they merge metrics whose states match after the first batch, and top-1 and top-5
    # statistics match whenever that batch is classified perfectly; F1 then came out as top-5 accuracy.
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


@register_task("image_classification")
class ClassificationTask(ZooTask):
    """Cross-entropy classification with accuracy, top-5 accuracy and macro F1, and a confusion matrix plot.

    Args:
        num_classes: head size (linked from the data module).
        class_names: names of the classes in label order (linked from the data module), for plots and predictions.
        label_smoothing: cross-entropy label smoothing (folded into the mixed targets when mixing).
        mixup_alpha / cutmix_alpha: Beta(alpha, alpha) of Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019)
            on training batches, with soft-target cross-entropy (timm's ``Mixup``, as DeiT/Swin/VMamba use it);
            0 turns each off. With both on, each batch uses one of them (CutMix with ``mix_switch_prob``).
        mix_prob: probability that a training batch is mixed at all. Mixing needs an even batch size.
        explain_images: at the end of training, log Grad-CAM overlays of this many validation images to MLflow
            (for models whose card names a Grad-CAM layer; 0 turns it off).
        **kwargs: the arguments of ``zoo.tasks.base.ZooTask`` (pretrained, model_kwargs, optimizer, ...).

    Batches are ``(inputs (B, ...), labels (B,))``; prediction batches may omit the labels.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    data_links = (("num_classes", "num_classes"), ("class_names", "class_names"))

    def __init__(self, model: str, num_classes: int | None = None, class_names: list[str] | None = None,
                 label_smoothing: float = 0.0, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 mix_prob: float = 1.0, mix_switch_prob: float = 0.5, explain_images: int = 4, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.save_hyperparameters()
        strengths = {"mixup_alpha": mixup_alpha, "cutmix_alpha": cutmix_alpha}
        refused = {name: why for name, why in self.inapplicable_arguments(get_card(model)).items()
                   if strengths.get(name, 0) > 0}
        if refused:
            raise ValueError("; ".join(f"--model.{name} does not apply to {model}: {why}"
                                       for name, why in refused.items()))
        self.build_model(num_classes=num_classes)
        self.num_classes = self.model.zoo_config["num_classes"]
        self.class_names = class_names or [str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.mixup = None
        if mixup_alpha > 0 or cutmix_alpha > 0:
            self.mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=mix_prob,
                               switch_prob=mix_switch_prob, label_smoothing=label_smoothing,
                               num_classes=self.num_classes)
            self.mixed_criterion = SoftTargetCrossEntropy()
        self.train_metrics = MulticlassAccuracy(self.num_classes, average="micro")
        self.val_metrics = classification_metrics(self.num_classes, "val/")
        self.test_metrics = classification_metrics(self.num_classes, "test/")
        self.val_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self._val_confusion_matrix = None

    @classmethod
    def inapplicable_arguments(cls, card: ModelCard) -> dict[str, str]:
        """The arguments that do nothing for a model of ``card``, with why: CutMix for inputs that are not images
        (Mixup applies to any input, e.g. AST-style spectrograms), Grad-CAM for a card that names no layer.
        ``zoo train MODEL --help`` leaves them out; a mixing strength set for such a model is refused."""
        out = {}
        if len(card.input_shape) != 3:
            why = f"CutMix cuts boxes out of images, and this model takes {tuple(card.input_shape)} inputs"
            out |= {"cutmix_alpha": why, "mix_switch_prob": why}
        if not card.target_layer:
            out["explain_images"] = "Grad-CAM needs the layer a model card names, and this card names none"
        return out

    @override
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> logits (B, num_classes)."""
        return self.eval_model(images) if not self.training else self.model(images)

    @override
    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        inputs, labels = batch[0], batch[1]
        if stage == "train":
            if self.mixup is not None:
                return self._mixed_loss(inputs, labels)
            logits = self.model(inputs)
            self.train_metrics(logits, labels)
            self.log("train/acc", self.train_metrics, on_step=False, on_epoch=True)
            return self.criterion(logits, labels)
        logits = self.eval_model(inputs)
        metrics, confusion = (self.val_metrics, self.val_confusion) if stage == "val" else \
            (self.test_metrics, self.test_confusion)
        metrics.update(logits, labels)
        confusion.update(logits, labels)
        return self.criterion(logits, labels)

    def _mixed_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mixup/CutMix: soft targets (B, num_classes), soft-target cross-entropy; no training accuracy (the
        mixed images have no single true class)."""
        if len(images) % 2:
            raise ValueError(f"Mixup/CutMix pair the images of a batch, so the batch size must be even; got a "
                             f"batch of {len(images)}. Use an even --data.batch_size.")
        images, targets = self.mixup(images, labels)
        return self.mixed_criterion(self.model(images), targets)

    @override
    def end_of_epoch(self, stage: str) -> None:
        metrics, confusion = (self.val_metrics, self.val_confusion) if stage == "val" else \
            (self.test_metrics, self.test_confusion)
        values = metrics.compute()
        accuracy = values.pop(f"{stage}/acc")
        self.log(f"{stage}/acc", accuracy, prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)
        metrics.reset()
        matrix = confusion.compute().cpu().numpy()
        confusion.reset()
        self.log_majority_baseline(matrix, stage)
        if stage == "test" and self.num_classes <= PER_CLASS_MAX:
            self.log_dict(per_class_rates(matrix, self.class_names, stage))
        if stage == "val":  # plotted once, at the end of training (a figure per epoch costs more than it shows)
            self._val_confusion_matrix = matrix
        else:
            self._log_confusion_matrix(matrix, stage)

    def log_majority_baseline(self, matrix, stage: str) -> None:
        """``<stage>/majority_acc`` and ``majority_f1_macro``: always predicting the most frequent class of the
        evaluated examples (the confusion matrix's row sums), the do-nothing baseline the summary compares with."""
        from torchmetrics.functional.classification import multiclass_f1_score

        counts = torch.as_tensor(matrix).sum(1).round().long().cpu()
        if counts.sum() == 0:
            return
        target = torch.repeat_interleave(torch.arange(len(counts)), counts)
        predicted = torch.full_like(target, int(counts.argmax()))
        f1 = multiclass_f1_score(predicted, target, num_classes=len(counts), average="macro")  # as the model's
        self.log_dict({f"{stage}/majority_acc": float(counts.max()) / float(counts.sum()),
                       f"{stage}/majority_f1_macro": float(f1)}, sync_dist=True)

    def _log_confusion_matrix(self, matrix, stage: str) -> None:
        self.log_figure(lambda: confusion_matrix_figure(matrix, self.class_names, f"{stage} confusion matrix"),
                        f"plots/{stage}_confusion_matrix.png")

    @override
    def on_fit_end(self) -> None:
        """Log the last validation confusion matrix and Grad-CAM overlays of a few validation images."""
        if self._val_confusion_matrix is not None:
            self._log_confusion_matrix(self._val_confusion_matrix, "val")
        count = self.hparams.explain_images
        if self.run_recorder() is None or not count or not self.trainer.is_global_zero:
            return
        datamodule = self.trainer.datamodule
        images, labels = next(iter(datamodule.val_dataloader()))[:2]
        if images.ndim != 4:
            return
        try:
            layer = default_target_layer(self.model, images.shape[-2:])
        except ValueError:
            return
        images, labels = images[:count].to(self.device), labels[:count]
        heat, logits = grad_cam(self.eval_model, images, target_layer=layer)
        probabilities = logits.softmax(-1).max(-1)
        mean, std = getattr(datamodule.hparams, "mean", (0.5,) * 3), getattr(datamodule.hparams, "std", (0.5,) * 3)
        titles = [f"true {self.class_names[y]}\npred {self.class_names[p]} ({s:.2f})"
                  for y, p, s in zip(labels.tolist(), probabilities.indices.tolist(),
                                     probabilities.values.tolist(), strict=True)]
        self.log_figure(lambda: explanation_figure(unnormalise(images, mean, std), heat.cpu().numpy(), titles),
                        "plots/gradcam_val.png")

    @override
    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Class probabilities and the top classes (up to 5) of each example."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        probabilities = self.eval_model(images).softmax(dim=-1)
        top = probabilities.topk(min(5, self.num_classes), dim=-1)
        return {"probabilities": probabilities, "top_indices": top.indices, "top_scores": top.values}

    def prediction_rows(self, predictions: list[dict[str, torch.Tensor]], datamodule: Any) -> list[dict[str, Any]]:
        """One CSV row per example: its path (when the data module lists them), top class and score, top 5."""
        indices = torch.cat([p["top_indices"] for p in predictions]).tolist()
        scores = torch.cat([p["top_scores"] for p in predictions]).tolist()
        names = (datamodule.predict_paths if isinstance(datamodule, ZooData) else None) or range(len(indices))
        rows = []
        for name, top, score in zip(names, indices, scores, strict=True):
            rows.append({
                "input": str(name),
                "label": self.class_names[top[0]],
                "score": f"{score[0]:.6f}",
                "top5": ";".join(f"{self.class_names[i]}:{s:.4f}" for i, s in zip(top, score, strict=True)),
            })
        return rows

    @override
    def write_predictions(self, predictions: list[dict[str, torch.Tensor]], datamodule: Any, output: Path) -> str:
        return write_csv(self.prediction_rows(predictions, datamodule), output)

    @override
    def checkpoint_extras(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names)}

    @override
    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        if extras.get("class_names"):
            self.class_names = list(extras["class_names"])

    @classmethod
    def explain(cls, checkpoint: TrainedCheckpoint, image: str, target: str | None, layer: str | None,
                output: Path) -> str:
        """Grad-CAM of one image file for a checkpoint of this task, written to ``output`` as a PNG of image |
        overlay, with the checkpoint's own evaluation transform; returns what to print.

        Raises:
            ZooError: the checkpoint is not an image classifier's, or ``target`` names no class.
        """
        from PIL import Image

        from zoo.data.images import image_transform, read_image
        from zoo.errors import ZooError
        from zoo.explain import overlay

        class_names = checkpoint.extras.get("class_names")
        data = checkpoint.data_hparams
        if not class_names or "image_size" not in data:
            raise ZooError(f"{checkpoint.path} is not an image classification checkpoint")
        model = checkpoint.build_model().eval()
        transform = image_transform(data["image_size"], data.get("augment", "none"), data["mean"], data["std"],
                                    False, interpolation=data.get("interpolation"),
                                    crop_pct=data.get("crop_pct", 0.875))
        images = transform(image=read_image(image))["image"][None]
        chosen = None
        if target is not None:
            if target in class_names:
                chosen = [class_names.index(target)]
            elif target.isdigit() and int(target) < len(class_names):
                chosen = [int(target)]
            else:
                raise ZooError(f"unknown class {target!r}; classes: {', '.join(class_names)}")
        note = ""
        if layer is None:  # the card's layer; at small inputs its map can be 1x1, and a finer layer is named
            layer, finer = default_target_layer(model), default_target_layer(model, images.shape[-2:])
            if finer != layer:
                note = (f"\nnote: at {data['image_size']} px the card's layer {layer} gives a map under "
                        f"{MIN_MAP_SIZE}x{MIN_MAP_SIZE}, too coarse to locate much; --layer {finer} gives a finer one")
        heat, logits = grad_cam(model, images, chosen, layer)
        probabilities = logits.softmax(-1)[0]
        explained = chosen[0] if chosen else int(probabilities.argmax())
        predicted = int(probabilities.argmax())
        display = unnormalise(images, data["mean"], data["std"])[0]
        blended = Image.fromarray(overlay(display, heat[0].numpy()))
        scale = max(1, round(256 / max(blended.size)))  # tiny inputs are enlarged so the map can be seen
        blended = blended.resize((blended.width * scale, blended.height * scale), Image.Resampling.BILINEAR)
        blended.save(output)
        return (f"{Path(image).name}: predicted {class_names[predicted]} ({probabilities[predicted]:.3f}); "
                f"Grad-CAM of class {class_names[explained]} at layer {layer} over the {data['image_size']}px "
                f"model input\nwrote {output.resolve()}{note}")

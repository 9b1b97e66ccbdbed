"""Object detection: images in, a variable number of boxes per image out (YOLO9tr, GELAN and later detectors).

Batches are ``(images (B, 3, S, S) in [0, 1], targets)`` with targets a list of B dicts (``zoo.data.detection``):
``boxes`` (n, 4) x1y1x2y2 pixels of the S x S letterboxed frame, ``labels`` (n,) int64, and ``index``, ``ratio``,
``pad``, ``orig_size`` to map boxes back to the original image.

The model gives raw DFL head maps (the :class:`Detector` protocol): a list of heads, the auxiliary (PGI) one
first when the training graph has it, the main one last, each a list of (B, 4 * reg_max + nc, H_i, W_i) maps.
Loss: :class:`zoo.blocks.detection.DetectionLoss` (task-aligned assigner top-k 10, alpha 0.5, beta 6; CIoU box,
DFL and BCE class losses with gains 7.5 / 1.5 / 0.5; the auxiliary head weighted 0.25, the main one 1.0; the sum
times the batch size, as YOLOv9 trains).

Evaluation (val / test): the main head decoded, class-aware NMS (confidence 0.001, IoU 0.7, 300 detections), then
COCO mAP through torchmetrics' ``MeanAveragePrecision`` (pycocotools: 101-point interpolated AP, IoU 0.50:0.05:0.95,
the COCO limit of 100 detections per image): ``map`` (mAP@0.5:0.95), ``map_50``, ``map_75``, ``mar_100``. Per-class
AP@0.5 and AP@0.5:0.95 go to MLflow as a CSV table with precision-recall curves at IoU 0.5 (test, and the last
validation of a fit), and each validation epoch logs a few images with the predicted (and true) boxes drawn.

``zoo predict`` writes into the output folder: ``labels/<image>.txt`` in YOLO format (``class xc yc w h score``,
normalised by the original image size), ``predictions.json`` as COCO results (``image_id``, ``category_id`` (the
dataset's category id when trained on a COCO json, else the class index), ``bbox`` [x, y, w, h] pixels of the
original image, ``score``; the image id is the file name when it is a number, as in COCO, else the image's position
in the sorted folder) and ``images/<image>.jpg`` with the boxes drawn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics.detection import MeanAveragePrecision
from typing_extensions import override

from zoo.blocks.detection import DetectionLoss, non_max_suppression
from zoo.data.contracts import ZooData
from zoo.tasks.base import ZooTask
from zoo.tasks.registry import register_task

__all__ = ["DetectionTask", "Detector", "WarmupLinearLR", "detection_metric", "draw_boxes", "per_class_ap"]

PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40))


@runtime_checkable
class Detector(Protocol):
    """What the detection task needs from a model: raw head maps from ``forward`` (a list of heads, the main head
    last), ``decode(heads)`` -> (B, A, 4 + nc) boxes x1y1x2y2 in input pixels and class scores of the main head,
    and the head layout (``num_classes``, ``strides``, ``reg_max``)."""

    num_classes: int
    strides: tuple[int, ...]
    reg_max: int

    def decode(self, heads: list[list[torch.Tensor]]) -> torch.Tensor: ...


class WarmupLinearLR(LambdaLR):
    """YOLOv5/v9's schedule, stepped per optimiser step: a linear warm-up of the learning rate from 0 and of SGD's
    momentum from ``warmup_momentum`` (0.8), then a linear decay of the learning rate to ``final_ratio`` x (0.01).

    YOLOv9 warms up over max(3 epochs, 100 steps) and decays per epoch; here both are per step, and the bias
    learning-rate warm-up (from 0.1) is left out: every parameter group warms up from 0.

    Args:
        total_steps: optimiser steps of the whole run (filled in by the task when omitted).
        warmup_steps: warm-up length in steps, or as a fraction of ``total_steps`` when < 1 (3 of 200 epochs:
            0.015).
    """

    def __init__(self, optimizer: Optimizer, total_steps: int | None = None, warmup_steps: float = 0.015,
                 final_ratio: float = 0.01, warmup_momentum: float = 0.8):
        if total_steps is None or total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        warmup = int(warmup_steps * total_steps) if warmup_steps < 1 else int(warmup_steps)
        self.total_steps, self.warmup = total_steps, min(warmup, total_steps - 1)
        self.warmup_momentum = warmup_momentum
        self.momenta = [g.get("momentum") for g in optimizer.param_groups]

        def factor(step: int) -> float:
            decay = 1 - (1 - final_ratio) * min(1.0, step / max(1, total_steps - 1))
            return decay * min(1.0, step / self.warmup) if self.warmup and step < self.warmup else decay

        super().__init__(optimizer, factor)

    @override
    def step(self, epoch: int | None = None) -> None:
        super().step(epoch)
        if self.warmup and self.last_epoch <= self.warmup:
            share = self.last_epoch / self.warmup
            for group, momentum in zip(self.optimizer.param_groups, self.momenta, strict=True):
                if momentum is not None:
                    group["momentum"] = self.warmup_momentum + (momentum - self.warmup_momentum) * share


def detection_metric() -> MeanAveragePrecision:
    """COCO box mAP (pycocotools) with per-class values and the precision array for PR curves."""
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, extended_summary=True,
                                  backend="pycocotools")
    metric.warn_on_many_detections = False  # NMS keeps up to 300 (YOLOv9); COCO scores the best 100 per image
    return metric


def per_class_ap(values: dict[str, Any], num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From ``MeanAveragePrecision(extended_summary=True).compute()``: per class AP@0.5 and AP@0.5:0.95 (NaN for a
    class without ground-truth boxes) and the PR curves at IoU 0.5, (num_classes, 101) precision (NaN where
    undefined) at recall 0, 0.01, ..., 1 (area "all", the largest detection limit)."""
    ap50, ap = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    curves = np.full((num_classes, 101), np.nan)
    precision = values.get("precision")
    classes = values.get("classes")
    if not isinstance(precision, torch.Tensor) or precision.ndim != 5 or classes is None:
        return ap50, ap, curves
    precision = precision.cpu().numpy()  # (T, R, K, A, M)
    for k, c in enumerate(torch.as_tensor(classes).view(-1).tolist()):
        if not 0 <= c < num_classes:
            continue
        p = precision[:, :, k, 0, -1]  # (T, R)
        if (p[0] > -1).any():
            ap50[c] = p[0][p[0] > -1].mean()
            curves[c] = np.where(p[0] > -1, p[0], np.nan)
        valid = p > -1
        if valid.any():
            ap[c] = np.mean([row[row > -1].mean() for row in p if (row > -1).any()])
    return ap50, ap, curves


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: Sequence[int], names: Sequence[str],
               scores: Sequence[float] | None = None, width: int = 2, dashed: bool = False):
    """A PIL image of ``image`` (H, W, 3) uint8 with ``boxes`` (n, 4) x1y1x2y2 pixels drawn, labelled with the class
    name (and score); ``dashed`` draws thin grey outlines (ground truth beside predictions)."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    for i, (box, label) in enumerate(zip(np.asarray(boxes).reshape(-1, 4).tolist(), labels, strict=True)):
        colour = (255, 255, 255) if dashed else PALETTE[int(label) % len(PALETTE)]
        draw.rectangle(box, outline=colour, width=1 if dashed else width)
        if dashed:
            continue
        name = names[int(label)] if 0 <= int(label) < len(names) else str(int(label))
        text = name if scores is None else f"{name} {float(scores[i]):.2f}"
        x, y = box[0], max(0.0, box[1] - 11)
        draw.rectangle([x, y, x + 6 * len(text) + 2, y + 11], fill=colour)
        draw.text((x + 1, y), text, fill=(255, 255, 255))
    return canvas


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def _metric_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-.]", "_", name)


@register_task("detection")
class DetectionTask(ZooTask):
    """Object detection with the YOLOv9 TAL loss and COCO mAP.

    Args:
        model: a registered model id whose card names "detection" (e.g. "vision/yolo9tr").
        num_classes / class_names: the classes (linked from the data module).
        aux_weight: weight of the auxiliary (PGI) head's loss, when the model has one (YOLOv9: 0.25).
        box_gain / cls_gain / dfl_gain: gains of the CIoU, BCE and DFL losses (7.5 / 0.5 / 1.5).
        topk / alpha / beta: task-aligned assigner (10 / 0.5 / 6.0).
        conf_threshold / iou_threshold / max_det: NMS of evaluation (0.001 / 0.7 / 300, YOLOv9's val_dual.py).
        predict_conf_threshold: the confidence of the boxes ``zoo predict`` writes (0.25, YOLO's detect default).
        sample_images: images with their predicted boxes drawn, logged each validation epoch (0: none).
        category_ids: the COCO category id of each class index (linked from a COCO data module), written as
            ``category_id`` in ``predictions.json``; None writes the class index.
        **kwargs: the ZooTask arguments (pretrained, model_kwargs, optimizer, lr_scheduler, ema_decay, ...).
    """

    monitor = "val/map_50"
    monitor_mode = "max"
    data_links = (("num_classes", "num_classes"), ("class_names", "class_names"), ("category_ids", "category_ids"))
    prediction_output = "predictions"

    def __init__(self, model: str, num_classes: int | None = None, class_names: list[str] | None = None,
                 aux_weight: float = 0.25, box_gain: float = 7.5, cls_gain: float = 0.5, dfl_gain: float = 1.5,
                 topk: int = 10, alpha: float = 0.5, beta: float = 6.0, conf_threshold: float = 0.001,
                 iou_threshold: float = 0.7, max_det: int = 300, predict_conf_threshold: float = 0.25,
                 sample_images: int = 4, category_ids: list[int] | None = None, **kwargs: Any):
        super().__init__(model, **kwargs)
        if not (0 <= conf_threshold < 1 and 0 < iou_threshold <= 1 and 0 <= predict_conf_threshold < 1):
            raise ValueError("conf_threshold and predict_conf_threshold must lie in [0, 1), iou_threshold in (0, 1]")
        if max_det < 1 or topk < 1:
            raise ValueError(f"max_det and topk must be positive, got {max_det} and {topk}")
        self.save_hyperparameters()
        self.build_model(**({} if num_classes is None else {"num_classes": num_classes}))
        if not isinstance(self.model, Detector):
            raise TypeError(f"{model} is not a detector: the detection task needs raw head maps from forward and "
                            "decode(heads), num_classes, strides and reg_max (zoo.tasks.detection.Detector)")
        self.num_classes = int(self.model.num_classes)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if category_ids is not None and len(category_ids) != self.num_classes:
            raise ValueError(f"{len(category_ids)} COCO category ids for {self.num_classes} classes")
        self.category_ids = list(category_ids) if category_ids is not None else None
        self.criterion = DetectionLoss(self.num_classes, tuple(self.model.strides), int(self.model.reg_max),
                                       topk=topk, alpha=alpha, beta=beta, box_gain=box_gain, cls_gain=cls_gain,
                                       dfl_gain=dfl_gain)
        self.metrics = nn.ModuleDict({s: detection_metric() for s in ("val", "test")})
        self._samples: list[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        self._last_val: dict[str, Any] | None = None

    # --- model ------------------------------------------------------------------------------------------------
    def head_weights(self, heads: list) -> tuple[float, ...]:
        """Loss weight of each head: the auxiliary ones ``aux_weight``, the main (last) one 1.0."""
        return (self.hparams.aux_weight,) * (len(heads) - 1) + (1.0,)

    def detect(self, images: torch.Tensor, model: nn.Module | None = None, conf_threshold: float | None = None
               ) -> tuple[list[list[torch.Tensor]], list[dict[str, torch.Tensor]]]:
        """(B, 3, S, S) -> (raw heads, per image {"boxes" (n, 4) x1y1x2y2 in the S x S frame, "scores", "labels"})."""
        model = model or self.eval_model
        heads = model(images)
        hp = self.hparams
        conf = hp.conf_threshold if conf_threshold is None else conf_threshold
        return heads, non_max_suppression(model.decode(heads), conf, hp.iou_threshold, hp.max_det)

    @override
    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """(B, 3, S, S) -> per image {"boxes", "scores", "labels"} (evaluation thresholds)."""
        return self.detect(images)[1]

    # --- steps ------------------------------------------------------------------------------------------------
    @override
    def on_train_epoch_start(self) -> None:
        datamodule = self.datamodule
        if isinstance(datamodule, ZooData):
            datamodule.set_epoch(self.current_epoch, self.trainer.max_epochs)

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch, "train")
        self.check_finite(loss)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        return loss

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val/loss", self.step(batch, "val"), on_epoch=True, sync_dist=True, batch_size=len(batch[0]))

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.log("test/loss", self.step(batch, "test"), on_epoch=True, sync_dist=True, batch_size=len(batch[0]))

    @override
    def step(self, batch: tuple[torch.Tensor, list[dict[str, torch.Tensor]]], stage: str) -> torch.Tensor:
        images, targets = batch
        if stage == "train":
            heads = self.model(images)
            loss, parts = self.criterion(heads, targets, self.head_weights(heads))
            self.log_dict({f"train/{k}": v for k, v in zip(("box", "cls", "dfl"), parts, strict=True)},
                          on_step=False, on_epoch=True, batch_size=len(images))
            return loss
        heads, detections = self.detect(images)
        loss, _ = self.criterion(heads, targets, self.head_weights(heads))
        truth = [{"boxes": t["boxes"].to(images.device), "labels": t["labels"].to(images.device)} for t in targets]
        self.metrics[stage].update(detections, truth)
        if stage == "val" and len(self._samples) < self.hparams.sample_images and not self.trainer.sanity_checking:
            for image, det, gt in zip(images, detections, truth, strict=True):
                if len(self._samples) >= self.hparams.sample_images:
                    break
                keep = det["scores"] >= self.hparams.predict_conf_threshold
                self._samples.append((_to_uint8(image), {k: v[keep].cpu().numpy() for k, v in det.items()},
                                      {k: v.cpu().numpy() for k, v in gt.items()}))
        return loss

    @override
    def end_of_epoch(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        scalars = {k: v for k, v in values.items() if isinstance(v, torch.Tensor) and v.numel() == 1
                   and k != "classes" and not k.endswith("_per_class")}
        self.log(f"{stage}/map_50", scalars.pop("map_50").float(), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/map", scalars.pop("map").float(), prog_bar=True, sync_dist=True)
        self.log_dict({f"{stage}/{k}": v.float() for k, v in scalars.items()}, sync_dist=True)
        ap50, ap, curves = per_class_ap(values, self.num_classes)
        if stage == "test":
            self.log_dict({f"test/ap50_{_metric_name(n)}": float(a) for n, a in zip(self.class_names, ap50,
                                                                                   strict=True) if not np.isnan(a)})
            self._log_per_class(stage, ap50, ap, curves)
        elif not self.trainer.sanity_checking:
            self._last_val = {"ap50": ap50, "ap": ap, "curves": curves}
        if stage == "val" and self._samples:
            samples, self._samples = self._samples, []
            self.log_figure(lambda: self._samples_figure(samples), f"plots/val_boxes_epoch{self.current_epoch:03d}.png")

    @override
    def on_fit_end(self) -> None:
        if self._last_val is not None:
            self._log_per_class("val", **self._last_val)

    # --- figures and tables -----------------------------------------------------------------------------------
    def per_class_table(self, ap50: np.ndarray, ap: np.ndarray) -> str:
        """CSV: class, AP@0.5, AP@0.5:0.95 (empty where the split has no box of the class)."""
        lines = ["class,ap50,ap50_95"]
        for name, a50, a in zip(self.class_names, ap50, ap, strict=True):
            lines.append(f"{name},{'' if np.isnan(a50) else f'{a50:.4f}'},{'' if np.isnan(a) else f'{a:.4f}'}")
        return "\n".join(lines) + "\n"

    def _log_per_class(self, stage: str, ap50: np.ndarray, ap: np.ndarray, curves: np.ndarray) -> None:
        logger = self.run_recorder()
        if logger is None:
            return
        logger.log_text(self.per_class_table(ap50, ap), f"tables/{stage}_per_class_ap.csv")
        self.log_figure(lambda: self._pr_figure(curves, ap50, stage), f"plots/{stage}_pr_curves.png")

    def _pr_figure(self, curves: np.ndarray, ap50: np.ndarray, stage: str):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
        recall = np.linspace(0, 1, 101)
        for c, name in enumerate(self.class_names):
            if not np.isnan(ap50[c]):
                ax.plot(recall, curves[c], linewidth=1, label=f"{name} {ap50[c]:.3f}" if c < 20 else None)
        ax.plot(recall, np.nanmean(curves, 0), color="black", linewidth=2.5, label=f"all {np.nanmean(ap50):.3f}")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{stage} precision-recall at IoU 0.5 (legend: AP@0.5)")
        ax.legend(loc="lower left", fontsize=7)
        fig.tight_layout()
        return fig

    def _samples_figure(self, samples):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 3.4), squeeze=False)
        for ax, (image, det, gt) in zip(axes[0], samples, strict=True):
            drawn = draw_boxes(image, gt["boxes"], gt["labels"], self.class_names, dashed=True)
            drawn = draw_boxes(np.asarray(drawn), det["boxes"], det["labels"], self.class_names, det["scores"])
            ax.imshow(drawn)
            ax.set_axis_off()
        fig.suptitle(f"validation, epoch {self.current_epoch}: predictions >= "
                     f"{self.hparams.predict_conf_threshold} (white: true boxes)")
        fig.tight_layout()
        return fig

    # --- predictions ------------------------------------------------------------------------------------------
    @override
    def predict_step(self, batch: tuple[torch.Tensor, list[dict[str, torch.Tensor]]], batch_idx: int
                     ) -> list[dict[str, torch.Tensor]]:
        """Per image: boxes (n, 4) x1y1x2y2 in pixels of the original image, scores, labels, index, orig_size."""
        images, targets = batch
        _, detections = self.detect(images, conf_threshold=self.hparams.predict_conf_threshold)
        out = []
        for det, target in zip(detections, targets, strict=True):
            ratio = float(target.get("ratio", 1.0))
            pad = torch.as_tensor(target.get("pad", (0.0, 0.0)), dtype=det["boxes"].dtype, device=det["boxes"].device)
            height, width = (int(v) for v in target.get("orig_size", images.shape[-2:]))
            boxes = (det["boxes"] - pad.repeat(2)) / ratio
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            out.append({"boxes": boxes.cpu(), "scores": det["scores"].cpu(), "labels": det["labels"].cpu(),
                        "index": int(target.get("index", len(out))), "orig_size": (height, width)})
        return out

    @override
    def write_predictions(self, predictions: list[list[dict[str, Any]]], datamodule: Any, output: Path) -> str:
        from PIL import Image

        output = Path(output)
        if output.suffix:
            raise ValueError(f"--output {output}: detection predictions are a folder (labels/, images/, "
                             "predictions.json), not a file")
        (output / "labels").mkdir(parents=True, exist_ok=True)
        (output / "images").mkdir(parents=True, exist_ok=True)
        paths = list((datamodule.predict_paths if isinstance(datamodule, ZooData) else None) or [])
        results, images, boxes_written = [], 0, 0
        for det in (d for batch in predictions for d in batch):
            index = det["index"]
            path = Path(paths[index]) if index < len(paths) else Path(f"{index:06d}.jpg")
            height, width = det["orig_size"]
            boxes, scores, labels = det["boxes"].numpy(), det["scores"].tolist(), det["labels"].tolist()
            lines = []
            for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores, labels, strict=True):
                lines.append(f"{label} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                             f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {score:.5f}")
                results.append({"image_id": int(path.stem) if path.stem.isdigit() else index,
                                "file_name": path.name,
                                "category_id": self.category_ids[label] if self.category_ids else int(label),
                                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                                "score": round(score, 5)})
            (output / "labels" / f"{path.stem}.txt").write_text("\n".join(lines) + "\n" if lines else "")
            if path.is_file():
                with Image.open(path) as original:
                    image = np.asarray(original.convert("RGB"))
                draw_boxes(image, boxes, labels, self.class_names, scores).save(output / "images" / f"{path.stem}.jpg",
                                                                                 quality=90)
            images += 1
            boxes_written += len(lines)
        (output / "predictions.json").write_text(json.dumps(results))
        return (f"wrote {boxes_written} boxes (score >= {self.hparams.predict_conf_threshold}) of {images} images to "
                f"{output.resolve()}: labels/ (YOLO txt), predictions.json (COCO results), images/ (drawn)")

    # --- checkpoints ------------------------------------------------------------------------------------------
    @override
    def checkpoint_extras(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names)}

    @override
    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        if extras.get("class_names"):
            self.class_names = list(extras["class_names"])

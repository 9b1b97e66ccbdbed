"""The detection task: the task-aligned assigner, CIoU, DFL and the YOLOv9 loss on hand-made cases with known answers;
COCO mAP (torchmetrics, pycocotools) on hand-made predictions against hand-computed values; a short training run of a
tiny YOLO9tr whose mAP@0.5 rises well past the untrained model's; predictions written as YOLO txt, COCO json and
drawn images in the original image's pixels."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from zoo.data.detection import DetectionData, write_synthetic_detection

from zoo.blocks.detection import (
    DetectionLoss,
    TaskAlignedAssigner,
    box_ciou,
    distribution_focal_loss,
    pad_targets,
)
from zoo.tasks.detection import detection_metric, per_class_ap
from zoo.tasks.registry import get_task_class

TINY = {"width": 0.25, "depth": 1}


def _ciou_by_hand(a, b):
    """CIoU of two x1y1x2y2 boxes, from its definition (Zheng et al. 2020)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    wa, ha, wb, hb = a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]
    iou = iw * ih / (wa * ha + wb * hb - iw * ih)
    diag = (max(a[2], b[2]) - min(a[0], b[0])) ** 2 + (max(a[3], b[3]) - min(a[1], b[1])) ** 2
    rho = ((a[0] + a[2] - b[0] - b[2]) / 2) ** 2 + ((a[1] + a[3] - b[1] - b[3]) / 2) ** 2
    v = 4 / math.pi ** 2 * (math.atan(wb / hb) - math.atan(wa / ha)) ** 2
    return iou - rho / diag - (v * v / (v - iou + 1) if v else 0.0)


# --- assigner and losses ---------------------------------------------------------------------------------------------
GT1, GT2 = [0.0, 0.0, 30.0, 20.0], [20.0, 0.0, 50.0, 20.0]
PRED = [GT1, [5.0, 0.0, 25.0, 20.0], GT2, [30.0, 0.0, 40.0, 20.0], [40.0, 0.0, 50.0, 20.0], GT2]


def _assign(topk=3):
    """Six anchors on a row at x = 5, 15, ..., 55 (y = 10); GT1 (class 1) holds the first three, GT2 (class 0) the
    third to fifth; the sixth lies outside both but predicts GT2 exactly, with a high score."""
    points = torch.tensor([[5.0 + 10 * k, 10.0] for k in range(6)])
    scores = torch.full((1, 6, 2), 0.5)
    scores[0, 5] = 0.9
    gt_boxes = torch.tensor([[GT1, GT2, [0.0, 0.0, 0.0, 0.0]]])  # a padding row, masked out
    gt_labels = torch.tensor([[1, 0, 0]])
    mask = torch.tensor([[True, True, False]])
    return TaskAlignedAssigner(topk=topk)(scores, torch.tensor([PRED]), points, gt_labels, gt_boxes, mask)


def test_ciou_matches_its_definition():
    for a, b in [(GT1, PRED[1]), (GT1, GT2), ([0, 0, 10, 10], [5, 5, 25, 12]), (GT2, GT2)]:
        got = box_ciou(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
        assert got.item() == pytest.approx(_ciou_by_hand(a, b), abs=1e-6)


def test_assigner_positives_conflicts_and_soft_targets():
    boxes, scores, fg, gt_index = _assign(topk=3)
    # every anchor inside a box is in that box's top 3; the one outside both is never positive, however good
    assert fg[0].tolist() == [True, True, True, True, True, False]
    # the third anchor lies in both boxes and predicts GT2 exactly: it goes to GT2, the box it overlaps most
    assert gt_index[0, :5].tolist() == [0, 0, 1, 1, 1]
    torch.testing.assert_close(boxes[0, 2], torch.tensor(GT2))
    # soft targets: t = s^0.5 u^6, normalised per box so its best anchor gets that box's best overlap (here 1)
    expected = torch.zeros(6, 2)
    expected[0, 1] = 1.0
    expected[1, 1] = _ciou_by_hand(GT1, PRED[1]) ** 6
    expected[2, 0] = 1.0
    expected[3, 0] = _ciou_by_hand(GT2, PRED[3]) ** 6
    expected[4, 0] = _ciou_by_hand(GT2, PRED[4]) ** 6
    torch.testing.assert_close(scores[0], expected, atol=1e-5, rtol=1e-4)


def test_assigner_top_k_keeps_the_best_aligned():
    _, scores, fg, _ = _assign(topk=1)
    assert fg[0].tolist() == [True, False, True, False, False, False]
    assert scores[0].sum().item() == pytest.approx(2.0)


def test_distribution_focal_loss_by_hand():
    target = torch.tensor([[3.3, 0.0, 7.0, 14.5]])
    uniform = distribution_focal_loss(torch.zeros(1, 4, 16), target)
    assert uniform.item() == pytest.approx(math.log(16), rel=1e-6)  # any target: -log(1/16)
    probs = torch.full((16,), 0.1 / 14)
    probs[3], probs[4] = 0.6, 0.3
    bins = probs.log().expand(1, 4, 16)
    one_side = distribution_focal_loss(bins, torch.tensor([[3.3, 3.3, 3.3, 3.3]]))
    assert one_side.item() == pytest.approx(-(0.7 * math.log(0.6) + 0.3 * math.log(0.3)), rel=1e-5)


def test_loss_without_boxes_is_the_class_loss_only():
    torch.manual_seed(0)
    levels = [torch.randn(2, 64 + 3, s, s) for s in (8, 4, 2)]
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    loss, parts = DetectionLoss(3)([levels], empty)
    logits = torch.cat([x[:, 64:].flatten(2) for x in levels], 2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="sum")
    assert parts[0] == 0 and parts[2] == 0
    assert parts[1].item() == pytest.approx(0.5 * bce.item(), rel=1e-5)  # class gain 0.5, divided by max(sum t, 1)
    assert loss.item() == pytest.approx(2 * parts.sum().item(), rel=1e-6)  # times the batch size, as YOLOv9


def test_pad_targets_masks_the_padding():
    boxes, labels, mask = pad_targets([{"boxes": torch.ones(2, 4), "labels": torch.tensor([1, 2])},
                                       {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}])
    assert boxes.shape == (2, 2, 4) and labels.tolist() == [[1, 2], [0, 0]]
    assert mask.tolist() == [[True, True], [False, False]]


def test_dual_head_loss_weights_and_decreases_when_overfitting_one_batch():
    torch.manual_seed(0)
    task = get_task_class("detection")("vision/yolo9tr", num_classes=2, model_kwargs=TINY)
    images = torch.rand(2, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[20.0, 16.0, 60.0, 60.0], [2.0, 2.0, 14.0, 14.0]]),
                "labels": torch.tensor([0, 1])}]
    heads = task.model(images)
    assert len(heads) == 2 and task.head_weights(heads) == (0.25, 1.0)
    criterion = task.criterion
    _, aux = criterion([heads[0]], targets)
    _, main = criterion([heads[1]], targets)
    _, both = criterion(heads, targets, (0.25, 1.0))
    torch.testing.assert_close(both, 0.25 * aux + main)
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, _ = criterion(task.model(images), targets, (0.25, 1.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# --- COCO mAP ---------------------------------------------------------------------------------------------------------
def _map(predictions, truth):
    metric = detection_metric()
    metric.update(predictions, truth)
    return metric.compute()


def _p(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


def _t(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float), "labels": torch.tensor(labels)}


def test_map_on_hand_made_predictions():
    box = [10.0, 10.0, 60.0, 60.0]
    # perfect: 1 everywhere
    values = _map([_p([box], [0.9], [0])], [_t([box], [0])])
    assert values["map"] == pytest.approx(1.0) and values["map_50"] == pytest.approx(1.0)
    # IoU 0.62 (a 50 x 50 box against one shifted by 11.75 px): a hit at 0.50, 0.55, 0.60 only -> mAP 3 / 10
    shifted = [10.0, 10.0 + 11.75, 60.0, 60.0 + 11.75]
    iou = 50 * (50 - 11.75) / (2 * 2500 - 50 * (50 - 11.75))
    assert 0.6 < iou < 0.65
    values = _map([_p([shifted], [0.9], [0])], [_t([box], [0])])
    assert values["map_50"] == pytest.approx(1.0) and values["map_75"] == pytest.approx(0.0)
    assert values["map"] == pytest.approx(0.3)
    # class 0 found, class 1 missed: mean over the classes with boxes = 0.5; per class 1 and 0
    values = _map([_p([box], [0.9], [0])], [_t([box, [70.0, 70.0, 90.0, 90.0]], [0, 1])])
    assert values["map_50"] == pytest.approx(0.5)
    ap50, ap, curves = per_class_ap(values, 3)
    assert ap50[:2].tolist() == pytest.approx([1.0, 0.0]) and ap[:2].tolist() == pytest.approx([1.0, 0.0])
    assert np.isnan(ap50[2]) and curves.shape == (3, 101) and curves[0, -1] == pytest.approx(1.0)
    # a false positive scored above the true one: precision 1/2 at recall 1 -> AP@0.5 = 0.5 (101-point)
    values = _map([_p([[70.0, 0.0, 95.0, 30.0], box], [0.9, 0.8], [0, 0])], [_t([box], [0])])
    assert values["map_50"] == pytest.approx(0.5)


# --- training, evaluation, prediction ------------------------------------------------------------------------------
def _tiny_synthetic(root):
    return write_synthetic_detection(root, counts=(96, 24, 24), image_size=96, max_objects=2, object_size=(28, 56))


def test_training_lifts_map_well_past_the_untrained_model(tmp_path, learning):
    """The untrained model's mAP@0.5 on the same test images is the baseline; with lr 0 the "trained" model is the
    untrained one (but for its batch-norm statistics) and this fails."""
    torch.manual_seed(learning.seed)
    folder = _tiny_synthetic(tmp_path / "syn")
    data = DetectionData(str(folder), image_size=96, batch_size=16, num_workers=0, scale=0.2)
    task = get_task_class("detection")(
        "vision/yolo9tr", num_classes=data.num_classes, class_names=data.class_names, model_kwargs=TINY,
        optimizer=learning.optimizer(0.01, "torch.optim.AdamW", weight_decay=0.01),
        lr_scheduler={"class_path": "zoo.tasks.schedules.WarmupCosineLR", "init_args": {"warmup_steps": 0.05}},
        sample_images=0)
    trainer = L.Trainer(max_epochs=12, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                        gradient_clip_val=10.0)
    untrained = trainer.test(task, datamodule=data, verbose=False)[0]
    trainer.fit(task, datamodule=data)
    trained = trainer.test(task, datamodule=data, verbose=False)[0]
    print(untrained["test/map_50"], trained["test/map_50"], trained["test/map"])
    assert trained["test/map_50"] > max(0.15, 5 * untrained["test/map_50"])
    assert 0 < trained["test/map"] < trained["test/map_50"]


def test_predictions_are_yolo_txt_coco_json_and_drawn_images_in_original_pixels(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((50, 100, 3), 90, np.uint8)).save(photos / "000000000042.jpg")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(photos / "road.png")
    data = DetectionData(str(_tiny_synthetic(tmp_path / "syn")), image_size=64, predict_path=str(photos),
                         num_workers=0)
    task = get_task_class("detection")("vision/yolo9tr", num_classes=data.num_classes,
                                       class_names=data.class_names, model_kwargs=TINY,
                                       category_ids=[11, 12, 13, 14])  # a COCO set's own category ids

    def detect(images, model=None, conf_threshold=None):  # one box in the 64 x 64 letterbox frame per image
        detections = [{"boxes": torch.tensor([[16.0, 24.0, 48.0, 40.0]]), "scores": torch.tensor([0.8]),
                       "labels": torch.tensor([2])} for _ in images]
        return None, detections

    task.detect = detect
    trainer = L.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    predictions = trainer.predict(task, datamodule=data)
    summary = task.write_predictions(predictions, data, tmp_path / "out")
    assert "wrote 2 boxes" in summary
    # 100 x 50 letterboxed to 64: ratio 0.64, 16 px of padding on top; the box maps back to (25, 12.5, 75, 37.5)
    label = (tmp_path / "out" / "labels" / "000000000042.txt").read_text().split()
    assert label[0] == "2" and [float(v) for v in label[1:]] == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.8])
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    by_file = {r["file_name"]: r for r in results}
    assert by_file["000000000042.jpg"]["image_id"] == 42 and by_file["000000000042.jpg"]["category_id"] == 13
    assert by_file["000000000042.jpg"]["bbox"] == pytest.approx([25.0, 12.5, 50.0, 25.0])
    assert by_file["road.png"]["bbox"] == pytest.approx([16.0, 24.0, 32.0, 16.0])
    drawn = Image.open(tmp_path / "out" / "images" / "000000000042.jpg")
    assert drawn.size == (100, 50)
    assert np.asarray(drawn).std() > 1  # the box is drawn on the grey image


def test_a_model_that_is_not_a_detector_is_refused():
    with pytest.raises(TypeError, match="not a detector"):
        get_task_class("detection")("vision/eca_resnet18", num_classes=3)


@pytest.mark.slow
def test_quickstart_trains_offline_logs_the_tables_and_predicts(tmp_path):
    """`zoo train vision/yolo9tr` as the README gives it, then `zoo predict` on test images of the default set."""
    import subprocess
    import sys
    from pathlib import Path

    from mlflow import MlflowClient

    zoo_command = str(Path(sys.executable).with_name("zoo"))
    result = subprocess.run([zoo_command, "train", "vision/yolo9tr", "--trainer.enable_progress_bar", "false"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    metrics = run.data.metrics
    print({k: v for k, v in metrics.items() if k.startswith("test/")})
    assert metrics["test/map_50"] > 0.3 and 0.1 < metrics["test/map"] < metrics["test/map_50"], metrics
    artifacts = {a.path for folder in ("plots", "tables") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"tables/test_per_class_ap.csv", "tables/val_per_class_ap.csv", "plots/test_pr_curves.png",
            "plots/val_pr_curves.png"} <= artifacts
    assert any(a.startswith("plots/val_boxes_epoch") for a in artifacts)
    best = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints" / "best.ckpt"
    images = Path(tmp_path / "cache" / "detection_shapes" / "images" / "test")
    assert images.is_dir()
    predicted = subprocess.run([zoo_command, "predict", "--ckpt", str(best), "--data.predict_path", str(images),
                                "--output", str(tmp_path / "out"), "--trainer.enable_progress_bar", "false"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    labels = sorted((tmp_path / "out" / "labels").glob("*.txt"))
    assert len(labels) == len(list(images.glob("*.jpg"))) == len(list((tmp_path / "out" / "images").glob("*.jpg")))
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])

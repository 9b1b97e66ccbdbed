"""Detection task kind (issue 10). Only the kind is registered so far, so that the detector cards validate; the
loss (task-aligned assigner, CIoU + DFL + BCE), the COCO mAP metrics and prediction writing are not built yet:
training a detector raises NotImplementedError from ``ZooTask.step``."""

from __future__ import annotations

from zoo.tasks.base import ZooTask
from zoo.tasks.registry import register_task


@register_task("detection")
class DetectionTask(ZooTask):
    """Object detection (not implemented yet). Batches will be (images (B, 3, H, W), targets: per image
    {"boxes" (n, 4) x1y1x2y2 pixels, "labels" (n,)})."""

    monitor = "val/map_50"
    monitor_mode = "max"

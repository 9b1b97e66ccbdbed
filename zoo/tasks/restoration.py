"""Image restoration: image in, image out (dehazing, denoising, ...). Being built (issue 9)."""

from __future__ import annotations

from zoo.tasks.base import ZooTask
from zoo.tasks.registry import register_task


@register_task("image_restoration")
class RestorationTask(ZooTask):
    """Image restoration (being built)."""

"""Survival analysis (placeholder while the task is written)."""
from zoo.tasks.base import ZooTask
from zoo.tasks.registry import register_task


@register_task("survival")
class SurvivalTask(ZooTask):
    """Placeholder."""

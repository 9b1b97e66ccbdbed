"""LightningModules, one per kind of task, each taking any registered model of that kind by id."""

from zoo.tasks.base import ZooTask
from zoo.tasks.classification import ClassificationTask
from zoo.tasks.schedules import WarmupCosineLR

# Model-card task kind -> the task class that trains it.
TASKS: dict[str, type[ZooTask]] = {"image_classification": ClassificationTask}

__all__ = ["TASKS", "ClassificationTask", "WarmupCosineLR", "ZooTask"]

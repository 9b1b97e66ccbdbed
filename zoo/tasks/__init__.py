"""LightningModules, one per kind of task, each taking any registered model of that kind by id."""

from zoo.tasks.base import ZooTask
from zoo.tasks.classification import ClassificationTask
from zoo.tasks.schedules import WarmupCosineLR
from zoo.tasks.tabular import TabularTask

# Model-card task kind -> the task class that trains it.
TASKS: dict[str, type[ZooTask]] = {"image_classification": ClassificationTask, "tabular": TabularTask}

__all__ = ["TASKS", "ClassificationTask", "TabularTask", "WarmupCosineLR", "ZooTask"]

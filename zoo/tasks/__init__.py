"""LightningModules, one per kind of task, each registered under its kind (``zoo.tasks.registry``) and taking any
registered model of that kind by id. Every module of this package is imported when the kinds are first asked for.
"""

from zoo.tasks.registry import get_task_class, register_task, task_class_of, task_kinds

__all__ = ["get_task_class", "register_task", "task_class_of", "task_kinds"]

"""Task kinds: each LightningModule of ``zoo.tasks`` registers the kind it trains, once.

    @register_task("image_restoration")
    class RestorationTask(ZooTask): ...

The built-in task modules are every module of the ``zoo.tasks`` package (found, not listed); third-party task
kinds come through the ``zoo.tasks`` entry-point group (each entry point names a module that registers on import).
A model card's ``task`` must be one of these kinds; ``zoo train`` takes the task class from the card
(:func:`task_class_of`), which is where an unknown kind is reported.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

from zoo.errors import UnknownTaskError
from zoo.registry import get_card

ENTRY_POINT_GROUP = "zoo.tasks"

_TASKS: dict[str, type] = {}
_DISCOVERED = False


def register_task(kind: str) -> Callable[[type], type]:
    """Class decorator: ``cls`` trains models whose card names ``kind``; sets ``cls.task_kind`` (which its
    checkpoints record)."""

    def decorator(cls: type) -> type:
        if kind in _TASKS and _TASKS[kind] is not cls:
            raise ValueError(f"task kind {kind!r} registered twice: by {_TASKS[kind].__qualname__} and "
                             f"{cls.__qualname__}")
        cls.task_kind = kind
        _TASKS[kind] = cls
        return cls

    return decorator


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = importlib.import_module("zoo.tasks")
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_") and module.name != "registry":
            importlib.import_module(f"zoo.tasks.{module.name}")
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as err:  # a broken plugin must not take the built-in tasks down with it
            warnings.warn(f"could not load zoo tasks from {entry_point.value!r}: {err}", stacklevel=2)


def task_kinds() -> list[str]:
    """Every registered task kind, sorted."""
    _discover()
    return sorted(_TASKS)


def get_task_class(kind: str) -> Any:
    """The task class registered for ``kind``; an unknown kind raises with the known ones."""
    _discover()
    if kind not in _TASKS:
        raise UnknownTaskError(f"no task trains {kind!r}; known task kinds: {', '.join(sorted(_TASKS))}")
    return _TASKS[kind]


def task_class_of(model_id: str) -> Any:
    """The task class that trains ``model_id``, from its card's task kind.

    Raises:
        UnknownModelError: ``model_id`` is not registered (with the closest ids).
        UnknownTaskError: the card names a kind no task registered, with the known kinds.
    """
    kind = get_card(model_id).task
    _discover()
    if kind not in _TASKS:
        raise UnknownTaskError(f"{model_id}: the card's task {kind!r} is not a registered task kind; known kinds: "
                               f"{', '.join(sorted(_TASKS))}")
    return _TASKS[kind]

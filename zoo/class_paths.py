"""Classes named by a dotted path in a config (``torch.optim.AdamW``, a data module's class)."""

from __future__ import annotations

import importlib

__all__ = ["import_class"]


def import_class(class_path: str) -> type:
    """The class at ``class_path`` ("package.module.Name").

    Raises:
        ValueError: the module or the name cannot be imported, with the reason.
    """
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import {class_path!r}: {err}") from err

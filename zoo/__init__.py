"""zoo: domain-application deep-learning models from recent papers, trained by one Lightning trainer and tracked
in MLflow.

    >>> import zoo
    >>> zoo.list_models("vision/eca*")
    >>> model = zoo.create_model("vision/eca_resnet50", pretrained="eca_resnet50_k3557.pth.tar", num_classes=10)
"""

import os

# Before torch loads OpenMP: idle worker threads sleep instead of spinning, which on a busy small machine (two
# cores, a data loader, another run) made epochs several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "get_card", "list_models", "register_model", "save_pretrained"]

# The public functions load on first use, so that `zoo list`, `zoo info` and `zoo --version` answer without
# importing torch (seconds of start-up).
_EXPORTS = {"create_model": "zoo.factory", "save_pretrained": "zoo.weights", "get_card": "zoo.registry",
            "list_models": "zoo.registry", "register_model": "zoo.registry"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    try:
        return importlib.import_module(f"zoo.{name}")  # `import zoo; zoo.weights...`
    except ModuleNotFoundError as err:
        if err.name != f"zoo.{name}":
            raise
        raise AttributeError(f"module 'zoo' has no attribute {name!r}") from err


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

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

from zoo.factory import create_model
from zoo.hub import save_pretrained
from zoo.registry import get_card, list_models, register_model

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "get_card", "list_models", "register_model", "save_pretrained"]

"""zoo: domain-application deep-learning models from recent papers, trained by one Lightning trainer and tracked
in MLflow.

    >>> import zoo
    >>> zoo.list_models("vision/eca*")
    >>> model = zoo.create_model("vision/eca_resnet50", pretrained="eca_resnet50_k3557.pth.tar", num_classes=10)
"""

from zoo.factory import create_model
from zoo.hub import save_pretrained
from zoo.registry import get_card, list_models, register_model

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "get_card", "list_models", "register_model", "save_pretrained"]

"""``create_model``: the one way to build a registered model, optionally with pretrained weights."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from torch import nn

from zoo import weights
from zoo.errors import CheckpointError
from zoo.registry import KwargsFromCheckpoint, get_entry

log = logging.getLogger(__name__)


def _head_size(model: nn.Module, state_dict: dict) -> int | None:
    """Number of classes of the checkpoint's head, read off the last weight of the model's classifier (in the
    model's parameter order: the output layer of a head with several layers, e.g. a detector's class branch)."""
    head = weights.classifier_keys(model)
    for key in reversed([k for k, _ in model.named_parameters() if k in head]):
        if key.endswith("weight") and key in state_dict:
            return int(state_dict[key].shape[0])
    return None


def kwargs_from_file(read_kwargs: KwargsFromCheckpoint | None, loaded: weights.LoadedWeights) -> dict[str, Any]:
    """Constructor arguments a family reads off a checkpoint: ``read_kwargs(state_dict)``, or
    ``read_kwargs(state_dict, checkpoint)`` for a reader that also wants what the file records beside the weights
    (hyper-parameters, configuration)."""
    if read_kwargs is None:
        return {}
    if len(inspect.signature(read_kwargs).parameters) >= 2:
        return read_kwargs(loaded.state_dict, loaded.checkpoint)
    return read_kwargs(loaded.state_dict)


def create_model(model_id: str, pretrained: Any = None, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build ``model_id`` as a plain ``nn.Module``.

    Args:
        model_id: a registered id such as "vision/eca_resnet50" (see ``zoo.list_models``).
        pretrained: any source ``zoo.weights`` reads (weight-set name, file, folder, URL, MLflow URI), or None.
        num_classes: head size. With weights of another head size the backbone is loaded and a new head made;
            when None, the head takes the size of the weights (or the card's default without weights).
        **kwargs: constructor arguments of the model family (override those recorded with the weights).

    Raises:
        UnknownModelError: for an id that is not registered (the message suggests close ids).
        CheckpointError: for weights that cannot be read or do not fit.
    """
    entry = get_entry(model_id)
    loaded = None
    if pretrained is not None and pretrained is not False:
        loaded = weights.load_weights(pretrained, entry)
        if loaded.model_id and loaded.model_id != model_id:
            raise CheckpointError(f"{loaded.source} holds weights of {loaded.model_id}, not {model_id}")
        inferred = kwargs_from_file(entry.kwargs_from_checkpoint, loaded)
        file_classes = inferred.pop("num_classes", None)  # e.g. the classes a label encoder has (TabR)
        kwargs = {**loaded.model_kwargs, **inferred, **kwargs}
        if num_classes is None and loaded.num_classes is not None:
            num_classes = loaded.num_classes  # recorded with the weights (zoo checkpoints, folders, weight sets)
        if num_classes is None:
            num_classes = file_classes  # read off the file by the family

    has_classes = entry.card.num_classes is not None
    if num_classes is not None and not has_classes:
        raise TypeError(f"{model_id} has no classes to set (its output is {type(entry.card.output).__name__}); "
                        "drop num_classes")
    if has_classes:
        kwargs_with_head = {**kwargs, "num_classes": entry.card.num_classes if num_classes is None else num_classes}
    else:
        kwargs_with_head = kwargs
    model = entry.factory(**kwargs_with_head)
    if loaded is not None:
        state_dict = loaded.state_dict
        if entry.checkpoint_filter is not None:
            state_dict = entry.checkpoint_filter(state_dict, model)
        weights_classes = _head_size(model, state_dict)
        drop_head = False
        if weights_classes is not None and weights_classes != _head_size(model, model.state_dict()):
            if num_classes is None:
                model.reset_classifier(weights_classes)
            else:
                drop_head = True
                log.info("%s: the %d-class head of the weights is replaced by a new %d-class head",
                         model_id, weights_classes, num_classes)
        if num_classes is None:
            num_classes = weights_classes
        weights.fit_state_dict(model, state_dict, loaded.source, drop_head=drop_head)

    # The model's record: all that is needed to build it again (checkpoints and saved folders store exactly this).
    model.zoo_config = {
        "model_id": model_id,
        "num_classes": (num_classes if num_classes is not None else entry.card.num_classes) if has_classes else None,
        "model_kwargs": kwargs,
    }
    return model

"""The inputs a model takes, as specs with shapes and dtypes, and random example batches of them: what
``zoo export`` traces and checks with and what the MLflow model's signature and input example show.

The shapes are the trained model's (:func:`trained_input_shapes`): what its configuration fixes (a window length, a
number of features, declared through ``zoo.protocols.DeclaresInputShapes``), the image size or number of frames its
data module recorded, else the model card's (``ModelCard.inputs``); a tabular model's come from its configuration.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.protocols import DeclaresInputShapes
from zoo.registry import get_card, get_entry

__all__ = ["TABULAR_INPUTS", "InputSpec", "example_inputs", "trained_input_shapes"]

TABULAR_INPUTS = ("x_num", "x_bin", "x_cat")


@dataclass(frozen=True)
class InputSpec:
    """One input of the exported program: ``name``, per-example ``shape`` (no batch), dtype, and for integer
    inputs the exclusive upper bound ``high`` of the random codes it is checked with."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    high: int | None = None

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """A random (batch, *shape) tensor: N(0, 1) floats, or integer codes in [0, high)."""
        if self.dtype.is_floating_point:
            return torch.randn(batch, *self.shape, generator=generator, dtype=self.dtype)
        return torch.randint(0, max(1, self.high or 1), (batch, *self.shape), generator=generator, dtype=self.dtype)


def _factory_defaults(model_id: str) -> dict[str, Any]:
    signature = inspect.signature(get_entry(model_id).factory)
    return {n: p.default for n, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}


def example_inputs(model: nn.Module, model_id: str, data_hparams: dict[str, Any] | None = None,
                   input_shape: tuple[int, ...] | None = None, given_keywords: Collection[str] = ()
                   ) -> tuple[list[InputSpec], list[int | None]]:
    """The inputs to export ``model`` with, and how they map onto its positional arguments.

    The trained model's shapes (:func:`trained_input_shapes`, ``data_hparams``: the data module's arguments as a
    checkpoint records them), except that ``input_shape`` replaces the first input's shape; a tabular model
    (forward ``x_num, x_bin, x_cat``) gets the feature kinds its configuration has (x_cat int64 codes).

    ``given_keywords``: keyword-only arguments of ``forward`` the caller supplies itself (a retrieval model's
    ``candidates``); any other required one is a ZooError.

    Returns:
        the input specs, and per positional argument of ``model.forward`` the index of its input (None: None).
    """
    signature = inspect.signature(model.forward)
    required = [n for n, p in signature.parameters.items() if n not in given_keywords
                and p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty]
    if required:
        raise ZooError(f"{model_id} needs {', '.join(required)} at inference besides its inputs (keyword "
                       f"argument{'s' if len(required) > 1 else ''} of {type(model).__name__}.forward, e.g. the "
                       "training rows a retrieval model looks up); zoo export cannot give them")
    parameters = list(signature.parameters)
    if parameters[:3] == list(TABULAR_INPUTS):
        config = {**_factory_defaults(model_id), **(getattr(model, "zoo_config", {}).get("model_kwargs") or {})}
        cardinalities = [int(c) for c in config.get("cat_cardinalities") or ()]
        specs = [InputSpec("x_num", (int(config.get("n_num_features", 0)),)),
                 InputSpec("x_bin", (int(config.get("n_bin_features", 0)),)),
                 InputSpec("x_cat", (len(cardinalities),), torch.int64, min(cardinalities, default=1))]
        if input_shape is not None:
            specs[0] = InputSpec("x_num", tuple(input_shape))
        present = [s for s in specs if s.shape[0] > 0]
        slots = [present.index(s) if s in present else None for s in specs]
        return present, slots
    shapes = trained_input_shapes(model, model_id, data_hparams)
    if input_shape is not None:
        shapes["input"] = tuple(input_shape)
    specs = [InputSpec(name, tuple(shape)) for name, shape in shapes.items()]
    return specs, list(range(len(specs)))


def trained_input_shapes(model: nn.Module, model_id: str, data_hparams: dict[str, Any] | None = None
                         ) -> dict[str, tuple[int, ...]]:
    """Every input's shape (one example, no batch) for the model as it was built and trained, never the card's
    default configuration where they differ.

    In order of precedence: the sizes the model's own configuration fixes (``DeclaresInputShapes``: a TLOB window of
    32 snapshots, 118 ICU features, 82 covariates); then the data module's recorded ``image_size`` (the first input
    (C, S, S)) or ``num_frames`` (a spectrogram (frames, bins)); then the card's ``inputs``.
    """
    shapes = dict(get_card(model_id).inputs)
    data = data_hparams or {}
    first = tuple(shapes["input"])
    if len(first) == 3 and isinstance(data.get("image_size"), int):
        shapes["input"] = (first[0], data["image_size"], data["image_size"])
    elif len(first) == 2 and isinstance(data.get("num_frames"), int):  # a spectrogram: (frames, bins)
        shapes["input"] = (data["num_frames"], first[1])
    if isinstance(model, DeclaresInputShapes):
        for name, declared in model.input_shapes().items():
            default = shapes.get(name)
            if default is None or len(default) != len(declared):
                raise ZooError(f"{model_id}: the model declares an input {name!r} of {len(declared)} dimensions "
                               f"that its card's inputs ({', '.join(f'{k} {v}' for k, v in shapes.items())}) lack")
            shapes[name] = tuple(d if size is None else int(size) for size, d in zip(declared, default, strict=True))
    return shapes

"""The inputs a model takes, as specs with shapes and dtypes, and random example batches of them: what
``zoo export`` traces and checks with and what the MLflow model's signature and input example show.

The shapes come from the model card (``ModelCard.inputs``), at the trained model's own size where the data module
recorded it (image size, number of frames), and a tabular model's from its configuration.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.registry import get_card, get_entry

__all__ = ["TABULAR_INPUTS", "InputSpec", "example_inputs"]

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
                   input_shape: tuple[int, ...] | None = None) -> tuple[list[InputSpec], list[int | None]]:
    """The inputs to export ``model`` with, and how they map onto its positional arguments.

    From the card (``ModelCard.inputs``), except: ``input_shape`` replaces the first input's shape; a data module
    (``data_hparams``: its arguments, as a checkpoint records them) that records ``image_size`` gives the
    (C, S, S) image at that size, one that records ``num_frames`` the (frames, bins) spectrogram of that length;
    a tabular model (forward ``x_num, x_bin, x_cat``) gets the feature kinds its configuration has (x_cat int64
    codes).

    Returns:
        the input specs, and per positional argument of ``model.forward`` the index of its input (None: None).
    """
    card = get_card(model_id)
    signature = inspect.signature(model.forward)
    required = [n for n, p in signature.parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty]
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
    shapes = dict(card.inputs)
    first = tuple(shapes["input"])
    data = data_hparams or {}
    if input_shape is not None:
        first = tuple(input_shape)
    elif len(first) == 3 and isinstance(data.get("image_size"), int):
        first = (first[0], data["image_size"], data["image_size"])
    elif len(first) == 2 and isinstance(data.get("num_frames"), int):  # a spectrogram: (frames, bins)
        first = (data["num_frames"], first[1])
    shapes["input"] = first
    specs = [InputSpec(name, tuple(shape)) for name, shape in shapes.items()]
    return specs, list(range(len(specs)))

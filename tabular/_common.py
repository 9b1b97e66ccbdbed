"""What the tabular models share: the three kinds of input features, their flat encoding, the output size.

Every tabular model takes the features of a table by kind, as the TabR code does:

- ``x_num`` (B, F_num) float32: numerical features (already quantile-transformed by ``data.tabular``);
- ``x_bin`` (B, F_bin) float32: binary features, 0 or 1;
- ``x_cat`` (B, F_cat) int64: categorical features, ordinal codes 0..cardinality-1; the code ``cardinality``
  marks a category never seen in training (it one-hot encodes to zeros).

Any kind may be None when the table has none of it. ``num_classes`` sets the task: 1 = regression (one output),
2 = binary classification (one logit, as in the TabR code), C > 2 = multiclass (C logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from rtdl_num_embeddings import LinearReLUEmbeddings, PeriodicEmbeddings
from torch import Tensor, nn

from zoo.errors import InputShapeError

NumEmbeddings = Literal["lr", "plr"]


def output_size(num_classes: int) -> int:
    """Outputs of the head: 1 for regression and binary classification, else ``num_classes``."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be 1 (regression), 2 (binary) or more (multiclass), got {num_classes}")
    return 1 if num_classes <= 2 else num_classes


class OneHotEncoder(nn.Module):
    """(B, F_cat) int64 codes -> (B, sum(cardinalities)) one-hot; the unknown code ``cardinality`` gives zeros.

    The cardinalities are a buffer, so a checkpoint tells the table's shape (``kwargs_from_checkpoint``).
    """

    cardinalities: Tensor

    def __init__(self, cardinalities: Sequence[int]):
        super().__init__()
        if any(int(c) < 1 for c in cardinalities):
            raise ValueError(f"categorical cardinalities must be positive, got {list(cardinalities)}")
        self.register_buffer("cardinalities", torch.tensor([int(c) for c in cardinalities], dtype=torch.int64))
        self._sizes = [int(c) for c in cardinalities]

    def forward(self, x: Tensor) -> Tensor:
        columns = [F.one_hot(x[:, i].clamp(0, size), size + 1)[:, :size] for i, size in enumerate(self._sizes)]
        return torch.cat(columns, dim=1).float()


def make_num_embeddings(kind: NumEmbeddings | None, n_features: int, d_embedding: int, n_frequencies: int = 48,
                        frequency_scale: float = 0.01) -> nn.Module | None:
    """The numerical-feature embeddings of "On Embeddings for Numerical Features" (rtdl_num_embeddings).

    "lr": per-feature Linear(1 -> d_embedding) + ReLU; "plr": periodic features of ``n_frequencies`` frequencies
    ~ N(0, frequency_scale) -> Linear(2 * n_frequencies -> d_embedding) shared by all features ("lite", as TabR
    uses) + ReLU. Input (B, F) -> (B, F, d_embedding).
    """
    if kind is None or n_features == 0:
        return None
    if kind == "lr":
        return LinearReLUEmbeddings(n_features, d_embedding)
    if kind == "plr":
        return PeriodicEmbeddings(n_features, d_embedding, n_frequencies=n_frequencies,
                                  frequency_init_scale=frequency_scale, activation=True, lite=True)
    raise ValueError(f"unknown numerical embeddings {kind!r}; use None, 'lr' or 'plr'")


def embedding_no_weight_decay(prefix: str, embeddings: nn.Module | None) -> set[str]:
    """Names of the embedding parameters that take no weight decay in the TabR code: the linear embeddings and the
    frequencies of the periodic ones (the shared linear layer of PLR-lite keeps its decay, as there)."""
    if embeddings is None:
        return set()
    names = {f"{prefix}.{n}" for n, _ in embeddings.named_parameters()}
    if isinstance(embeddings, PeriodicEmbeddings):
        names = {n for n in names if ".periodic." in n or n.endswith("bias")}
    return names


class FlatInput(nn.Module):
    """Concatenates the (embedded) numerical, binary and one-hot categorical features: -> (B, d_in)."""

    def __init__(self, n_num_features: int, n_bin_features: int, cat_cardinalities: Sequence[int],
                 num_embeddings: NumEmbeddings | None = None, d_embedding: int = 32, n_frequencies: int = 48,
                 frequency_scale: float = 0.01):
        super().__init__()
        if n_num_features + n_bin_features + len(cat_cardinalities) == 0:
            raise ValueError("a tabular model needs at least one feature")
        self.n_num_features, self.n_bin_features = n_num_features, n_bin_features
        self.n_cat_features = len(cat_cardinalities)
        # A buffer, not a parameter: checkpoints then tell the table's shape (see ``shapes_from_state_dict``).
        self.register_buffer("feature_counts", torch.tensor([n_num_features, n_bin_features], dtype=torch.int64))
        self.num_embeddings = make_num_embeddings(num_embeddings, n_num_features, d_embedding, n_frequencies,
                                                  frequency_scale)
        self.one_hot = OneHotEncoder(cat_cardinalities) if cat_cardinalities else None
        d_num = n_num_features * (d_embedding if self.num_embeddings is not None else 1)
        self.d_in = d_num + n_bin_features + sum(int(c) for c in cat_cardinalities)

    def forward(self, x_num: Tensor | None, x_bin: Tensor | None, x_cat: Tensor | None) -> Tensor:
        check_features(x_num, x_bin, x_cat, self.n_num_features, self.n_bin_features, self.n_cat_features)
        parts = []
        if self.n_num_features:
            parts.append(x_num if self.num_embeddings is None else self.num_embeddings(x_num).flatten(1))
        if self.n_bin_features:
            parts.append(x_bin)
        if self.one_hot is not None:
            parts.append(self.one_hot(x_cat))
        return torch.cat(parts, dim=1)


def check_features(x_num: Tensor | None, x_bin: Tensor | None, x_cat: Tensor | None, n_num: int, n_bin: int,
                   n_cat: int) -> None:
    """Raise InputShapeError unless each kind of feature is (B, F) with the F the model was built for."""
    batch = None
    for name, x, n in (("x_num", x_num, n_num), ("x_bin", x_bin, n_bin), ("x_cat", x_cat, n_cat)):
        if n == 0:
            if x is not None and x.numel() and x.shape[-1] != 0:
                raise InputShapeError(f"{name}: the model was built without such features, got {tuple(x.shape)}")
            continue
        if x is None or x.ndim != 2 or x.shape[1] != n:
            got = "None" if x is None else tuple(x.shape)
            raise InputShapeError(f"{name} must be (batch, {n}), got {got}")
        if batch is not None and x.shape[0] != batch:
            raise InputShapeError(f"{name} has {x.shape[0]} rows, the other features {batch}")
        batch = x.shape[0]


def table_shape(feature_counts: Tensor, cardinalities: Tensor | None) -> dict:
    """Constructor arguments from the saved (2,) [numerical, binary] counts and (F_cat,) cardinalities buffers."""
    return {"n_num_features": int(feature_counts[0]), "n_bin_features": int(feature_counts[1]),
            "cat_cardinalities": [int(c) for c in cardinalities.tolist()] if cardinalities is not None else []}


def shapes_from_state_dict(state_dict: dict[str, Tensor], prefix: str) -> dict:
    """The constructor arguments of a ``FlatInput`` saved under ``prefix``: feature counts, cardinalities and the
    kind and size of the numerical embeddings. Returns {} when the state dict holds no such module."""
    counts = state_dict.get(f"{prefix}.feature_counts")
    if counts is None:
        return {}
    kwargs = table_shape(counts, state_dict.get(f"{prefix}.one_hot.cardinalities"))
    lr = state_dict.get(f"{prefix}.num_embeddings.linear.weight")
    periodic = state_dict.get(f"{prefix}.num_embeddings.periodic.weight")
    if periodic is not None:
        kwargs.update(num_embeddings="plr", n_frequencies=int(periodic.shape[1]),
                      d_embedding=int(state_dict[f"{prefix}.num_embeddings.linear.weight"].shape[0]))
    elif lr is not None:
        kwargs.update(num_embeddings="lr", d_embedding=int(lr.shape[1]))
    else:
        kwargs["num_embeddings"] = None
    return kwargs

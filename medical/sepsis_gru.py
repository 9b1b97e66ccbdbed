"""The recurrent baseline of the sepsis transformer's paper: a GRU over the ICU hours with one logit per hour.

Official code: BorgwardtLab/multicenter-sepsis (Apache-2.0), ``src/torch/models/recurrent_model.py``
(``GRUModel``), read for facts: ``model`` = nn.GRU(d_in, d_model, n_layers, dropout, batch_first) over packed
sequences, ``linear`` = Linear(d_model -> 1) on every hour; defaults d_model 64, 1 layer, dropout 0.1. Here it takes
the same hourly input as the transformer (hour encoding + features), so that the two compare on equal inputs; the
official GRU read the features with NaN indicators and no hour encoding.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from zoo.errors import InputShapeError
from zoo.registry import ModelCard, Paper, PerStep, register_model

__all__ = ["SepsisGRU"]


class SepsisGRU(nn.Module):
    """GRU sequence labeller (causal by construction).

    Shapes: ``forward(x (B, T, in_features), lengths (B,) or None) -> (B, T, num_classes)`` logits; outputs at or
    past a sequence's length are 0 (padding).
    """

    def __init__(self, in_features: int = 196, d_model: int = 64, num_layers: int = 1, dropout: float = 0.1,
                 num_classes: int = 1) -> None:
        super().__init__()
        self.in_features = in_features
        self.model = nn.GRU(in_features, d_model, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0,
                            batch_first=True)
        self.linear = nn.Linear(d_model, num_classes)

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One stay: (hours of any number, in_features) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (None, self.in_features)}

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, in_features), (B,) -> (B, T, num_classes)."""
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise InputShapeError(f"SepsisGRU expects (batch, hours, {self.in_features}) inputs, got {tuple(x.shape)}")
        if lengths is None:
            return self.linear(self.model(x)[0])
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        hidden = nn.utils.rnn.pad_packed_sequence(self.model(packed)[0], batch_first=True,
                                                  total_length=x.shape[1])[0]
        return self.linear(hidden)

    def get_classifier(self) -> nn.Module:
        return self.linear

    def reset_classifier(self, num_classes: int) -> None:
        old = self.linear
        self.linear = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)

    def no_weight_decay(self) -> set[str]:
        return {name for name, _ in self.named_parameters() if "bias" in name}


@register_model("medical/sepsis_gru", card=ModelCard(
    task="sequence_labelling",
    paper=Paper("Predicting sepsis using deep learning across international sites: a retrospective development "
                "and validation study", arxiv="2107.05230", venue="eClinicalMedicine 62:102124 (2023)",
                code_url="https://github.com/BorgwardtLab/multicenter-sepsis"),
    license="Apache-2.0 (official code, read for facts)", num_params=50_369, input_shape=(72, 196),
    output=PerStep(1), recipes={"quickstart": ("sepsis_quickstart.yaml", "sepsis_gru.yaml")},
    notes="The official GRUModel's defaults (d_model 64, 1 layer) and key layout (model.weight_ih_l0, linear.*), "
          "on the transformer's input (hour encoding + features; 118 wide on PhysioNet files). A baseline.",
))
def sepsis_gru(**kwargs: Any) -> SepsisGRU:
    return SepsisGRU(**kwargs)

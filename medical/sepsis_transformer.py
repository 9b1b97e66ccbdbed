"""The sepsis transformer of Moor et al.: a causal self-attention model that gives one sepsis risk per ICU hour.

"Predicting sepsis using deep learning across international sites: a retrospective development and validation
study" (Moor, Bennett, Plecko, Horn, Rieck, Meinshausen, Buehlmann, Borgwardt; eClinicalMedicine 2023, preprint
arXiv 2107.05230). Official code: BorgwardtLab/multicenter-sepsis (Apache-2.0), ``src/torch/models/
attention_model.py`` (``AttentionModel``), read for facts; this is our own implementation.

Per hour the input is the 10-channel sinusoidal encoding of the ICU hour (5 timescales from 1 h to 500 h, sines
then cosines; :func:`hour_encoding`, which the data module applies, as the official dataset transform does)
followed by the hourly feature columns (raw values, missingness indicators, measurement counts, derived scores,
z-scored, NaN -> 0): 10 + 186 = 196 inputs for the paper's ``small`` feature set, 10 + 108 = 118 for the 33
variables that PhysioNet 2019 has. Then, as in the official module list ``layers``:

- ``layers.0``: Linear(d_in -> d_model), the input embedding;
- ``layers.1 .. layers.n``: post-norm encoder layers (multi-head self-attention with a causal mask and a padding
  mask, then a 4·d_model ReLU feed-forward), each sub-layer added back through ReZero (``x + alpha * f(x)``, a
  learnable ``resweight`` starting at 0) or through a plain residual followed by LayerNorm (``norm="layer"``);
- ``layers.n+1``: Linear(d_model -> 1), one logit per hour.

The causal mask keeps hour t from attending to later hours, so the risk at hour t uses hours 1..t only (an online
prediction, as the PhysioNet 2019 challenge demands).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import CheckpointError, InputShapeError
from zoo.registry import ModelCard, Paper, PerStep, register_model

__all__ = ["ReZero", "SepsisEncoderLayer", "SepsisTransformer", "causal_mask", "hour_encoding", "padding_mask"]


def hour_encoding(hours: Tensor, channels: int = 10, min_timescale: float = 1.0, max_timescale: float = 500.0
                  ) -> Tensor:
    """The official positional encoding of the ICU hour: ``channels // 2`` inverse timescales spaced
    geometrically from ``1 / min_timescale`` to ``1 / max_timescale``; sines of ``hour * scale`` then cosines.

    Shapes: hours (..., T) -> (..., T, channels).
    """
    n = channels // 2
    increment = math.log(max_timescale / min_timescale) / (n - 1)
    inv = min_timescale * torch.exp(-increment * torch.arange(n, dtype=torch.float64))
    scaled = hours.to(torch.float64)[..., None] * inv
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1).to(torch.float32)


def causal_mask(steps: int, device: torch.device | None = None) -> Tensor:
    """(T, T) boolean mask, True above the diagonal: step t may not attend to steps after t."""
    return torch.triu(torch.ones(steps, steps, dtype=torch.bool, device=device), diagonal=1)


def padding_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B, T) boolean mask, True at the padded steps (index >= length)."""
    return torch.arange(steps, device=lengths.device)[None, :] >= lengths[:, None]


class ReZero(nn.Module):
    """``x + resweight * f(x)`` with a learnable scalar starting at 0 (Bachlechner et al., ReZero)."""

    def __init__(self) -> None:
        super().__init__()
        self.resweight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, branch: Tensor) -> Tensor:
        return x + self.resweight * branch


class Residual(nn.Module):
    """The plain residual ``x + f(x)`` of the LayerNorm variant (no parameters)."""

    def forward(self, x: Tensor, branch: Tensor) -> Tensor:
        return x + branch


class SepsisEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer: self-attention and a ReLU feed-forward, each with dropout, residual
    (ReZero or plain) and norm (identity or LayerNorm), as the official ``TransformerEncoderLayer``.

    Shapes: (B, T, d_model) -> (B, T, d_model).
    """

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float = 0.1, norm: str = "rezero") -> None:
        super().__init__()
        if norm not in ("rezero", "layer"):
            raise ValueError(f"norm must be 'rezero' or 'layer', got {norm!r}")
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ff_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm1 = nn.LayerNorm(dim) if norm == "layer" else nn.Identity()
        self.norm2 = nn.LayerNorm(dim) if norm == "layer" else nn.Identity()
        self.residual1 = ReZero() if norm == "rezero" else Residual()
        self.residual2 = ReZero() if norm == "rezero" else Residual()
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None) -> Tensor:
        """x (B, T, d), attn_mask (T, T) True = blocked, key_padding_mask (B, T) True = padded -> (B, T, d)."""
        attended = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                  need_weights=False)[0]
        x = self.norm1(self.residual1(x, self.dropout1(attended)))
        hidden = self.linear2(self.dropout(torch.relu(self.linear1(x))))
        return self.norm2(self.residual2(x, self.dropout2(hidden)))


class SepsisTransformer(nn.Module):
    """Causal transformer that labels every step of a padded sequence (one sepsis logit per ICU hour).

    Args:
        in_features: width of one hour's input (10 hour-encoding channels + feature columns): 196 for the paper's
            ``small`` feature set, 118 for PhysioNet 2019's 33 variables.
        d_model: model width (the published sweep: 32, 64, 128 or 256).
        num_layers: encoder layers (2 in the published sweep).
        num_heads: attention heads.
        dropout: dropout of attention weights, feed-forward and both residual branches.
        norm: "rezero" (the official default) or "layer".
        num_classes: outputs per step (1: a single risk logit).

    Shapes: ``forward(x (B, T, in_features), lengths (B,) or None) -> (B, T, num_classes)`` logits; steps at or past
    a sequence's length are padding (their outputs are meaningless), ``lengths=None`` means no padding.

    Example:
        >>> model = SepsisTransformer(in_features=118, d_model=64)
        >>> model(torch.randn(2, 24, 118), torch.tensor([24, 10])).shape
        torch.Size([2, 24, 1])
    """

    def __init__(self, in_features: int = 196, d_model: int = 256, num_layers: int = 2, num_heads: int = 8,
                 dropout: float = 0.5, norm: str = "rezero", num_classes: int = 1) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of num_heads ({num_heads})")
        self.in_features = in_features
        self.num_classes = num_classes
        self.layers = nn.ModuleList(
            [nn.Linear(in_features, d_model)]
            + [SepsisEncoderLayer(d_model, num_heads, 4 * d_model, dropout, norm) for _ in range(num_layers)]
            + [nn.Linear(d_model, num_classes)]
        )

    def check_input(self, x: Tensor, lengths: Tensor | None) -> None:
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise InputShapeError(f"SepsisTransformer expects (batch, hours, {self.in_features}) inputs, "
                                  f"got {tuple(x.shape)}")
        if lengths is not None:
            if lengths.shape != (x.shape[0],):
                raise InputShapeError(f"lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}")
            if bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
                raise InputShapeError(f"lengths must lie in [1, {x.shape[1]}], got {lengths.tolist()}")

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One stay: (hours of any number, in_features) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (None, self.in_features)}

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, in_features), (B,) -> (B, T, d_model) causal hidden states."""
        self.check_input(x, lengths)
        steps = x.shape[1]
        future = causal_mask(steps, x.device)
        padded = None if lengths is None else padding_mask(lengths.to(x.device), steps)
        x = self.layers[0](x)
        for layer in self.layers[1:-1]:
            x = layer(x, attn_mask=future, key_padding_mask=padded)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, T, num_classes)."""
        return self.layers[-1](x)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, in_features), (B,) or None -> (B, T, num_classes) per-step logits."""
        return self.forward_head(self.forward_features(x, lengths))

    def get_classifier(self) -> nn.Module:
        return self.layers[-1]

    def reset_classifier(self, num_classes: int) -> None:
        old = self.layers[-1]
        self.layers[-1] = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        self.num_classes = num_classes

    def no_weight_decay(self) -> set[str]:
        """The official optimiser decays every parameter but the biases."""
        return {name for name, _ in self.named_parameters() if name.endswith("bias")}


def official_checkpoint_filter(state_dict: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Official Lightning checkpoints hold the BCE loss's ``loss.pos_weight`` buffer beside the model's
    ``layers.*``; drop it (the task recomputes the weight from the training prevalence)."""
    return {k: v for k, v in state_dict.items() if not k.startswith("loss.")}


def kwargs_from_official(state_dict: dict[str, Any], checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Input width, model width, depth, norm and output size read off an official state dict; from an official
    Lightning checkpoint also the head count and dropout its ``hyper_parameters`` record (``n_heads``,
    ``dropout``: the tensors do not tell the heads)."""
    hparams = (checkpoint or {}).get("hyper_parameters")
    from_hparams = {}
    if isinstance(hparams, dict):
        if hparams.get("ignore_statics") is False or any(k.startswith("statics_embedding.") for k in state_dict):
            raise CheckpointError("the official checkpoint was trained with statics (ignore_statics=False: a "
                                  "statics token prepended to every stay); the zoo's model has no statics branch "
                                  "(the paper's sweeps ignored statics)")
        from_hparams = {name: hparams[key] for key, name in (("n_heads", "num_heads"), ("dropout", "dropout"))
                        if key in hparams}
    layer_ids = {int(k.split(".")[1]) for k in state_dict if k.startswith("layers.") and ".self_attn." in k}
    num_layers = len(layer_ids)
    embed = state_dict["layers.0.weight"]
    head = state_dict[f"layers.{num_layers + 1}.weight"]
    norm = "layer" if any(".norm1." in k for k in state_dict) else "rezero"
    return {"in_features": embed.shape[1], "d_model": embed.shape[0], "num_layers": num_layers, "norm": norm,
            "num_classes": head.shape[0], **from_hparams}


PAPER = Paper(
    "Predicting sepsis using deep learning across international sites: a retrospective development and validation "
    "study", arxiv="2107.05230", venue="eClinicalMedicine 62:102124 (2023)",
    code_url="https://github.com/BorgwardtLab/multicenter-sepsis",
)


@register_model("medical/sepsis_transformer", card=ModelCard(
    task="sequence_labelling", paper=PAPER, license="Apache-2.0 (official code, read for facts)",
    num_params=1_628_165, macs=79_128_576, input_shape=(72, 196), output=PerStep(1),
    recipes={"quickstart": "sepsis_quickstart.yaml"},
    notes="The README example configuration (d_model 256, 2 layers, 8 heads, ReZero, dropout 0.5) on the paper's "
          "196 inputs (10 hour-encoding channels + the 186 `small` feature columns); on PhysioNet 2019 files the "
          "data module gives 118 (33 variables x raw/indicator/count + 9 derived scores + 10) and the task builds "
          "the model at that width. Official key layout (layers.N.self_attn.in_proj_weight, "
          "layers.N.residual1.resweight). The official Lightning checkpoint of AttentionModel (ModelCheckpoint of "
          "src/torch/train_model.py) loads as it is: widths, depth and norm from the tensors, heads and dropout from "
          "its hyper_parameters, the BCE loss's loss.pos_weight dropped; a bare state dict loads too. Statics "
          "branch left out (the paper's sweeps ignored statics; a checkpoint trained with statics is refused with "
          "that reason). No public weights (private W&B). The offline "
          "quick start trains on a SIMULATED cohort in the PhysioNet 2019 .psv format (zoo.data.icu).",
), checkpoint_filter=official_checkpoint_filter, kwargs_from_checkpoint=kwargs_from_official)
def sepsis_transformer(**kwargs: Any) -> SepsisTransformer:
    """The README configuration of the official AttentionModel (1,628,165 parameters at 196 inputs)."""
    return SepsisTransformer(**kwargs)

"""TLOB and MLPLOB: mid-price trend (up / stationary / down) from windows of limit-order-book snapshots.

Berti and Kasneci, "TLOB: A Novel Transformer Model with Dual Attention for Price Trend Prediction with Limit
Order Book Data", arXiv 2502.15757 (2025). Facts from the official code, LeonardoBerti00/TLOB (MIT licence,
(c) Leonardo Berti), ``models/tlob.py`` and ``models/mlplob.py``; module and parameter names are the official
ones, so the official checkpoints load as they are (``zoo.create_model("finance/tlob_fi2010",
pretrained="FI-2010_horizon_10_TLOB_seed_42.ckpt")``).

TLOB: BiN -> Linear(F -> H) -> + sinusoidal position embedding -> ``num_layers`` pairs of a temporal and a
feature transformer layer (the last pair shrinks both widths to a quarter) -> flatten -> Linear(n -> n/4) + GELU
while n > 128 -> Linear(-> 3). MLPLOB: the same with MLP-Mixer blocks in place of the transformer layers.

Departures from the official code (fixes, none changes a forward pass on the official weights): the mixing scalars
of BiN stay trained (see ``zoo.blocks.bin_norm``); attention weights are not computed unless asked for; several
horizons can share one model (``num_horizons``, a head of ``num_horizons * num_classes`` logits) - the official code
trains one model per horizon, which is ``num_horizons=1``, the default.

On LOBSTER data the input is the 40 order-book columns followed by the 6 message columns (time, event type, size,
price, direction, depth); the event type (column 41, values 0 limit / 1 cancel / 2 market) goes through
``order_type_embedder`` (an ``nn.Embedding(3, 1)``) whose output the official code detaches, so that embedding
keeps its random initialisation; this is kept (``order_type_column=41``) so that official weights give official
outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.blocks.bin_norm import BiN
from zoo.blocks.dual_attention import AxisTransformerLayer, MixerMLP
from zoo.errors import InputShapeError
from zoo.registry import Classes, ModelCard, Paper, WeightSet, register_model
from zoo.safe_pickle import to_plain

__all__ = ["MLPLOB", "TLOB", "sinusoidal_position_embedding"]

TLOB_PAPER = Paper("TLOB: A Novel Transformer Model with Dual Attention for Price Trend Prediction with Limit "
                   "Order Book Data", arxiv="2502.15757", venue="arXiv 2025",
                   code_url="https://github.com/LeonardoBerti00/TLOB")
CLASS_NAMES = ("up", "stationary", "down")


def sinusoidal_position_embedding(seq_len: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """(seq_len, dim) fixed embedding: even columns sin(pos / base^(2i/dim)), odd columns cos (Vaswani et al.)."""
    if dim % 2:
        raise ValueError(f"a sinusoidal position embedding needs an even width, got {dim}; use sin_embedding=False")
    positions = torch.arange(seq_len, dtype=torch.float32).unsqueeze(1)
    denominators = torch.pow(base, 2 * torch.arange(dim // 2, dtype=torch.float32) / dim)
    embedding = torch.zeros(seq_len, dim)
    embedding[:, 0::2] = torch.sin(positions / denominators)
    embedding[:, 1::2] = torch.cos(positions / denominators)
    return embedding


def shrinking_head(in_features: int, outputs: int) -> nn.ModuleList:
    """Linear(n -> n // 4) + GELU while n > 128, then Linear(n -> outputs) (the official ``final_layers``)."""
    layers = nn.ModuleList()
    while in_features > 128:
        layers.extend([nn.Linear(in_features, in_features // 4), nn.GELU()])
        in_features //= 4
    layers.append(nn.Linear(in_features, outputs))
    return layers


class _LOBModel(nn.Module):
    """What TLOB and MLPLOB share: the LOBSTER event-type embedding, BiN, the head and the classifier protocol."""

    def __init__(self, num_features: int, seq_len: int, hidden_dim: int, num_classes: int, num_horizons: int,
                 order_type_column: int | None):
        super().__init__()
        if seq_len < 4 or hidden_dim < 4:
            raise ValueError(f"seq_len and hidden_dim must be at least 4 (the last pair divides them by 4), got "
                             f"{seq_len} and {hidden_dim}")
        if order_type_column is not None and not 0 <= order_type_column < num_features:
            raise ValueError(f"order_type_column {order_type_column} outside the {num_features} input features")
        self.num_features, self.seq_len, self.hidden_dim = num_features, seq_len, hidden_dim
        self.num_classes, self.num_horizons = num_classes, num_horizons
        self.order_type_column = order_type_column
        self.order_type_embedder = nn.Embedding(3, 1)
        # its output is detached (official code), so it never learns: frozen, it is not an unused trainable
        # parameter, which DDP refuses
        self.order_type_embedder.requires_grad_(False)
        self.norm_layer = BiN(num_features, seq_len)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``x`` is (B, seq_len, num_features)."""
        if x.ndim != 3 or x.shape[1:] != (self.seq_len, self.num_features):
            raise InputShapeError(f"{type(self).__name__} expects windows (batch, {self.seq_len} snapshots, "
                                  f"{self.num_features} features), got {tuple(x.shape)}")

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One window: (seq_len, num_features) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.seq_len, self.num_features)}

    def _embed_order_type(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) with the event type in ``order_type_column`` -> (B, T, F): the other columns, then the
        (detached, as in the official code) embedding of the event type as the last column."""
        if self.order_type_column is None:
            return x
        c = self.order_type_column
        order_type = x[:, :, c].long().clamp(0, 2)
        embedded = self.order_type_embedder(order_type).detach()
        return torch.cat([x[:, :, :c], x[:, :, c + 1:], embedded], dim=2)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T, F) through BiN (which works on (B, F, T))."""
        return self.norm_layer(x.transpose(1, 2)).transpose(1, 2)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, n) flattened features -> logits (B, num_classes), or (B, num_horizons, num_classes)."""
        for layer in self.final_layers:
            features = layer(features)
        if self.num_horizons == 1:
            return features
        return features.view(features.shape[0], self.num_horizons, self.num_classes)

    def get_classifier(self) -> nn.Module:
        return self.final_layers[-1]

    def reset_classifier(self, num_classes: int) -> None:
        old = self.final_layers[-1]
        self.num_classes = num_classes
        self.final_layers[-1] = nn.Linear(old.in_features, num_classes * self.num_horizons,
                                          device=old.weight.device, dtype=old.weight.dtype)


class TLOB(_LOBModel):
    """TLOB (dual-attention transformer over a window of order-book snapshots).

    Args:
        num_features: F, features per snapshot (144 FI-2010 with the hand-made features, 40 order book only,
            46 LOBSTER: 40 order book + 6 message columns).
        seq_len: T, snapshots per window (128 in the paper).
        hidden_dim: H, width after the input projection (the paper sets it to F).
        num_layers: pairs of (temporal, feature) transformer layers.
        num_heads: attention heads (each of width H, or T in the feature layers).
        num_classes: classes per horizon (3: up, stationary, down).
        num_horizons: horizons predicted at once (1 as in the paper: one model per horizon).
        order_type_column: the LOBSTER event-type column embedded by ``order_type_embedder``; None for FI-2010.
        sin_embedding: fixed sinusoidal position embedding (the paper's) or a learnt one.
    """

    def __init__(self, num_features: int = 46, seq_len: int = 128, hidden_dim: int = 46, num_layers: int = 4,
                 num_heads: int = 1, num_classes: int = 3, num_horizons: int = 1,
                 order_type_column: int | None = 41, sin_embedding: bool = True):
        super().__init__(num_features, seq_len, hidden_dim, num_classes, num_horizons, order_type_column)
        self.num_layers, self.num_heads = num_layers, num_heads
        self.emb_layer = nn.Linear(num_features, hidden_dim)
        if sin_embedding:
            self.register_buffer("pos_encoder", sinusoidal_position_embedding(seq_len, hidden_dim), persistent=False)
        else:
            self.pos_encoder = nn.Parameter(torch.randn(1, seq_len, hidden_dim))
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            last = i == num_layers - 1
            self.layers.append(AxisTransformerLayer(hidden_dim, num_heads, hidden_dim // 4 if last else hidden_dim))
            self.layers.append(AxisTransformerLayer(seq_len, num_heads, seq_len // 4 if last else seq_len))
        self.final_layers = shrinking_head((hidden_dim // 4) * (seq_len // 4), num_classes * num_horizons)

    def forward_features(self, x: torch.Tensor, return_attention: bool = False):
        """(B, T, F) -> (B, T/4, H/4) (and with ``return_attention`` the attention weights of every layer)."""
        self.check_input(x)
        x = self.emb_layer(self._normalise(self._embed_order_type(x))) + self.pos_encoder
        attention = []
        for layer in self.layers:  # temporal, feature, temporal, ... with the axes swapped after each
            if return_attention:
                x, weights = layer(x, return_attention=True)
                attention.append(weights)
            else:
                x = layer(x)
            x = x.transpose(1, 2)
        return (x, attention) if return_attention else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) windows -> (B, num_classes) logits, or (B, num_horizons, num_classes)."""
        x = self.forward_features(x)
        return self.forward_head(x.transpose(1, 2).reshape(x.shape[0], -1))  # official order: feature-major


class MLPLOB(_LOBModel):
    """MLPLOB (MLP-Mixer over a window of order-book snapshots): BiN -> Linear(F -> H) -> GELU -> ``num_layers``
    pairs of feature-mixing (H -> 4H -> H) and time-mixing (T -> 4T -> T) blocks, the last pair H -> 2H -> H/4
    and T -> 2T -> T/4 -> the shrinking head. Arguments as :class:`TLOB` (``seq_len`` 384 in the paper)."""

    def __init__(self, num_features: int = 46, seq_len: int = 384, hidden_dim: int = 46, num_layers: int = 3,
                 num_classes: int = 3, num_horizons: int = 1, order_type_column: int | None = 41):
        super().__init__(num_features, seq_len, hidden_dim, num_classes, num_horizons, order_type_column)
        self.num_layers = num_layers
        self.first_layer = nn.Linear(num_features, hidden_dim)
        self.layers = nn.ModuleList([self.first_layer, nn.GELU()])  # the official layout: first_layer is layers.0
        for i in range(num_layers):
            if i != num_layers - 1:
                self.layers.append(MixerMLP(hidden_dim, hidden_dim * 4, hidden_dim))
                self.layers.append(MixerMLP(seq_len, seq_len * 4, seq_len))
            else:
                self.layers.append(MixerMLP(hidden_dim, hidden_dim * 2, hidden_dim // 4))
                self.layers.append(MixerMLP(seq_len, seq_len * 2, seq_len // 4))
        self.final_layers = shrinking_head((hidden_dim // 4) * (seq_len // 4), num_classes * num_horizons)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T/4, H/4)."""
        self.check_input(x)
        x = self._normalise(self._embed_order_type(x))
        for layer in self.layers:  # the official loop swaps the axes after every layer, the GELU included
            x = layer(x).transpose(1, 2)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) windows -> (B, num_classes) logits, or (B, num_horizons, num_classes)."""
        x = self.forward_features(x)
        return self.forward_head(x.reshape(x.shape[0], -1))


# --- official checkpoints: the configuration read off the tensors ---------------------------------------------------
def _layer_indices(state_dict: dict[str, Any]) -> set[int]:
    return {int(k.split(".")[1]) for k in state_dict if k.startswith("layers.") and k.split(".")[1].isdigit()}


def recorded_lob_kwargs(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """Constructor arguments an official ``Engine`` checkpoint records in its ``hyper_parameters`` that the tensors
    do not tell: whether the LOBSTER event type is embedded (``dataset_type``) and the position embedding."""
    hyper_parameters = to_plain((checkpoint or {}).get("hyper_parameters"))
    if not isinstance(hyper_parameters, dict) or "dataset_type" not in hyper_parameters:
        return {}
    kwargs: dict[str, Any] = {"order_type_column": 41 if hyper_parameters["dataset_type"] == "LOBSTER" else None}
    if hyper_parameters.get("model_type") == "TLOB" and "is_sin_emb" in hyper_parameters:
        kwargs["sin_embedding"] = bool(hyper_parameters["is_sin_emb"])
    return kwargs


def tlob_kwargs_from_checkpoint(state_dict: dict[str, Any], checkpoint: dict[str, Any] | None = None
                                ) -> dict[str, Any]:
    """seq_len, num_features, hidden_dim, num_layers and num_heads of a TLOB state dict (and, from an official
    Engine checkpoint, the event-type embedding and position embedding it was trained with)."""
    if "emb_layer.weight" not in state_dict or "norm_layer.B1" not in state_dict:
        return {}
    hidden, features = state_dict["emb_layer.weight"].shape
    q = state_dict.get("layers.0.qkv.q.weight")
    return {"seq_len": int(state_dict["norm_layer.B1"].shape[0]), "num_features": int(features),
            "hidden_dim": int(hidden), "num_layers": len(_layer_indices(state_dict)) // 2,
            **({"num_heads": int(q.shape[0] // q.shape[1])} if q is not None else {}),
            **({"sin_embedding": False} if "pos_encoder" in state_dict else {}),
            **recorded_lob_kwargs(checkpoint)}


def mlplob_kwargs_from_checkpoint(state_dict: dict[str, Any], checkpoint: dict[str, Any] | None = None
                                  ) -> dict[str, Any]:
    """seq_len, num_features, hidden_dim and num_layers of an MLPLOB state dict (and the event-type embedding
    an official Engine checkpoint records)."""
    if "first_layer.weight" not in state_dict or "norm_layer.B1" not in state_dict:
        return {}
    hidden, features = state_dict["first_layer.weight"].shape
    return {"seq_len": int(state_dict["norm_layer.B1"].shape[0]), "num_features": int(features),
            "hidden_dim": int(hidden), "num_layers": (len(_layer_indices(state_dict)) - 1) // 2,  # layers.1: GELU
            **recorded_lob_kwargs(checkpoint)}


# --- registered configurations ----------------------------------------------------------------------------------
_LOB_NOTES = (
    "Labels 0 up, 1 stationary, 2 down (TLOB's order). One model per horizon as in the paper (num_horizons=1); "
    "num_horizons=4 predicts the horizons 10/20/50/100 at once. Fixes: BiN's mixing scalars stay trained (the "
    "official reset re-creates them as CUDA tensors outside the optimiser; in eval a negative one counts as 0.01, "
    "as in the official forward), attention weights only on request. The official Engine's checkpoints load as "
    "they are (EMA weights, event-type embedding read from their hyper-parameters). "
    "Kept as official: the LOBSTER event-type embedding is detached (never trained). The quick start trains on a "
    "SIMULATED LOBSTER-format day (Cont-Stoikov-Talreja 2010 order-book model), not on market data."
)
_FI2010_WEIGHTS = tuple(
    WeightSet(
        name=f"official_fi2010_k{k}", num_classes=3,
        description=f"official TLOB on FI-2010 (144 features, NoAuction z-score, CF_7 train), horizon k={k} "
                    f"({10 * k} events), seed 42; EMA weights of the Lightning checkpoint",
        url=f"https://media.githubusercontent.com/media/LeonardoBerti00/TLOB/main/data/checkpoints/TLOB/"
            f"HuggingFace/FI-2010_horizon_{k}_TLOB_seed_42.ckpt",
        sha256=sha, file_name=f"FI-2010_horizon_{k}_TLOB_seed_42.ckpt", license="MIT",
        download_page="https://huggingface.co/LeonardoBerti/TLOB-stock-price-trend-prediction",
    )
    for k, sha in ((1, "f90706b3df6cfebb855e6a2ff3b8b32ce7c1e3301067ad8ef26c36214214e8ca"),
                   (2, "641014f18977c93c6502a9c21f579d20ce9edc7e3d64b63c90716b5682273c57"),
                   (5, "4d606d22ac0f1fad2238787a30d111af7dc975d0ea23c48a11c4c797db74bf5d"),
                   (10, "bcf32a73fe974b57778d0436132f18a76c3e71f38af2fdc1068f711bc28bcd96"))
)
TASK = "lob_trend"  # zoo.tasks.lob: macro F1, per-class F1, MCC and the majority / always-stationary baselines


def _card(num_params: int, macs: int, input_shape: tuple[int, int], recipes: dict, notes: str,
          weights: tuple[WeightSet, ...] = ()) -> ModelCard:
    return ModelCard(task=TASK, paper=TLOB_PAPER, license="MIT", num_params=num_params, macs=macs,
                     input_shape=input_shape, output=Classes(3), recipes=recipes, weights=weights,
                     notes=notes + " " + _LOB_NOTES)


@register_model("finance/tlob", card=_card(
    1_173_693, 55_330_824, (128, 46), {"quickstart": "tlob_quickstart.yaml", "paper": "tlob_lobster.yaml"},
    "LOBSTER configuration: 40 order-book + 6 message features, hidden 46, window 128, 4 pairs, 1 head."),
    kwargs_from_checkpoint=tlob_kwargs_from_checkpoint)
def tlob(num_classes: int = 3, **kwargs: Any) -> TLOB:
    return TLOB(**{"num_features": 46, "hidden_dim": 46, "order_type_column": 41, "num_classes": num_classes,
                   **kwargs})


@register_model("finance/tlob_fi2010", card=_card(
    2_656_724, 285_827_544, (128, 144), {"paper": "tlob_fi2010.yaml"},
    "FI-2010 configuration of the paper: 144 features (40 order book + 104 hand-made), hidden 144, window 128.",
    _FI2010_WEIGHTS), kwargs_from_checkpoint=tlob_kwargs_from_checkpoint)
def tlob_fi2010(num_classes: int = 3, **kwargs: Any) -> TLOB:
    return TLOB(**{"num_features": 144, "hidden_dim": 144, "order_type_column": None, "num_classes": num_classes,
                   **kwargs})


@register_model("finance/tlob_lob40", card=_card(
    1_135_974, 46_310_640, (128, 40), {"paper": "tlob_fi2010_lob40.yaml"},
    "40 order-book features only (FI-2010 LOB columns as LOBCAST, the paper's BTC set-up), hidden 40."),
    kwargs_from_checkpoint=tlob_kwargs_from_checkpoint)
def tlob_lob40(num_classes: int = 3, **kwargs: Any) -> TLOB:
    return TLOB(**{"num_features": 40, "hidden_dim": 40, "order_type_column": None, "num_classes": num_classes,
                   **kwargs})


@register_model("finance/mlplob", card=_card(
    3_074_003, 128_706_006, (384, 46), {"quickstart": "mlplob_quickstart.yaml", "paper": "mlplob_lobster.yaml"},
    "LOBSTER configuration: 46 features, hidden 46, window 384, 3 pairs of mixing blocks."),
    kwargs_from_checkpoint=mlplob_kwargs_from_checkpoint)
def mlplob(num_classes: int = 3, **kwargs: Any) -> MLPLOB:
    return MLPLOB(**{"num_features": 46, "hidden_dim": 46, "order_type_column": 41, "num_classes": num_classes,
                     **kwargs})


@register_model("finance/mlplob_fi2010", card=_card(
    6_327_908, 511_465_266, (384, 144), {"paper": "mlplob_fi2010.yaml"},
    "FI-2010 configuration of the paper: 144 features, hidden 144, window 384, 3 pairs."),
    kwargs_from_checkpoint=mlplob_kwargs_from_checkpoint)
def mlplob_fi2010(num_classes: int = 3, **kwargs: Any) -> MLPLOB:
    return MLPLOB(**{"num_features": 144, "hidden_dim": 144, "order_type_column": None, "num_classes": num_classes,
                     **kwargs})

"""ReGENN (Spadon, Hong, Brandoli, Matwin, Rodrigues-Jr & Sun, "Pay Attention to Evolution: Time Series
Forecasting with Deep Graph-Evolution Learning", IEEE TPAMI 44(9) 2022, arXiv 2008.12833): forecasting of panels of
multivariate series, (samples, time, variables), through a graph over the variables shared by every sample.

Re-implemented from the paper and the zoo's research notes (the official code is AGPL and was read for facts only).
Forward order for x (B, W, V), W the window and S the horizon ("stride" in the paper):

1. source evolution (Graph Soft Evolution, GSE): a gradient-free co-occurrence adjacency A (V, V) accumulated from
   the training batches; A' = b + A W_adj; the row-wise cosine similarity of A', scaled element-wise
   (``cosine_weights``, ``cosine_bias``), mixes the variables; dropout; a learnable W x W time projection;
2. time encoder: a one-head Transformer encoder layer with the window as its width, over the variables;
3. time gate: an LSTM over the variables mapping the window W to S features (the S future steps);
4. variable sequencer: an LSTM with V units over the S steps, with a residual connection;
5. target evolution: a second GSE layer on (B, S, V) whose adjacency is the source's evolved A' (no time projection);
6. autoregressive highway: a linear W -> S map of the input, added before the output activation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import CheckpointError, InputShapeError
from zoo.registry import Horizons, ModelCard, Paper, register_model

__all__ = ["GraphSoftEvolution", "ReGENN", "regenn"]


def cooccurrence_adjacency(x: Tensor, chunk: int = 32) -> Tensor:
    """The co-occurrence graph of a batch (B, T, V) -> (V, V), as ReGENN builds it: A[i, j] sums x_i over the
    (sample, time) cells where x_j > 0; the diagonal holds the self-loops max(2 A[i, i] - sum_j A[i, j], 0). Built
    per ``chunk`` of samples and summed (the diagonal rule is not linear, so the chunk size matters, as in the paper's
    code, which uses 32)."""
    total = x.new_zeros(x.shape[-1], x.shape[-1])
    for part in torch.split(x, chunk, dim=0):
        mask = (part > 0).to(part.dtype)
        adjacency = torch.einsum("sti,stj->ij", part, mask)
        loops = torch.clamp(2 * adjacency.diagonal() - adjacency.sum(dim=1), min=0)
        total = total + adjacency - torch.diag(adjacency.diagonal()) + torch.diag(loops)
    return total


class GraphSoftEvolution(nn.Module):
    """Graph Soft Evolution over (B, T, V): mixes the variables by the cosine similarity of the evolved adjacency.

    The adjacency ``adjacency`` (a buffer, V x V) is accumulated from training batches without gradient: with
    ``batch_index`` given it takes each training batch once (the first pass over the data: batch i is added when
    i batches have been added before, as the paper's code does with its ``uuid``); without it, every training
    batch is added. Evaluation (``model.eval()``) never changes it. A layer given an ``adjacency`` argument in
    forward uses that instead (the target evolution takes the source's evolved graph).

    Args:
        variables: V.
        time: T of the input; with ``time_dot`` a learnable T x T projection of the time axis follows.
        dropout: before the time projection.
        bias: the bias vectors (``adjacency_bias`` V x 1, ``cosine_bias`` V x V, ``time_bias`` T x 1).
        chunk: samples per co-occurrence graph (32 in the paper's code).
    """

    def __init__(self, variables: int, time: int, time_dot: bool = True, dropout: float = 0.1, bias: bool = True,
                 activation: nn.Module | None = None, chunk: int = 32):
        super().__init__()
        if variables < 2:
            raise ValueError(f"graph evolution needs at least two co-occurring variables, got {variables}")
        self.variables, self.time, self.time_dot, self.chunk = variables, time, time_dot, chunk
        self.adjacency_weights = nn.Parameter(torch.empty(variables, variables))
        self.cosine_weights = nn.Parameter(torch.empty(variables, variables))
        self.adjacency_bias = nn.Parameter(torch.zeros(variables, 1)) if bias else None
        self.cosine_bias = nn.Parameter(torch.zeros(variables, variables)) if bias else None
        self.time_weights = nn.Parameter(torch.empty(time, time)) if time_dot else None
        self.time_bias = nn.Parameter(torch.zeros(time, 1)) if time_dot and bias else None
        self.register_buffer("adjacency", torch.zeros(variables, variables))
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        self.dropout = nn.Dropout(dropout)
        self.activation = activation or nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights, zero biases (as the paper's code)."""
        for weight in (self.adjacency_weights, self.cosine_weights, self.time_weights):
            if weight is not None:
                nn.init.xavier_uniform_(weight)
        for bias in (self.adjacency_bias, self.cosine_bias, self.time_bias):
            if bias is not None:
                nn.init.zeros_(bias)

    @torch.no_grad()
    def observe(self, x: Tensor, batch_index: int | None = None) -> None:
        """Add the co-occurrence graph of the training batch x (B, T, V) to the adjacency (see the class)."""
        if batch_index is not None and batch_index != int(self.batches_seen):
            return
        self.adjacency += cooccurrence_adjacency(x.detach().to(self.adjacency.dtype), self.chunk)
        self.batches_seen += 1

    def evolved_adjacency(self, adjacency: Tensor | None = None) -> Tensor:
        """A' = b + A W_adj, (V, V)."""
        evolved = (self.adjacency if adjacency is None else adjacency) @ self.adjacency_weights
        return evolved if self.adjacency_bias is None else evolved + self.adjacency_bias

    def forward(self, x: Tensor, adjacency: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, T, V) -> (B, T, V) and the evolved adjacency A' (V, V), detached."""
        evolved = self.evolved_adjacency(adjacency)
        unit = F.normalize(evolved, dim=1, eps=1e-12)
        weights = (unit @ unit.T) * self.cosine_weights
        if self.cosine_bias is not None:
            weights = weights + self.cosine_bias
        out = self.activation(self.dropout(x @ weights.T))
        if self.time_weights is not None:
            out = torch.einsum("btv,ts->bsv", out, self.time_weights)
            if self.time_bias is not None:
                out = out + self.time_bias
        return out, evolved.detach()

    def extra_repr(self) -> str:
        return f"variables={self.variables}, time={self.time}, time_dot={self.time_dot}"


class ReGENN(nn.Module):
    """ReGENN: (B, W, V) windows of V co-occurring variables -> (B, S, V) forecasts of all of them.

    Args:
        window: W.
        horizon: S, the number of steps forecast ("stride" in the paper).
        variables: V.
        dropout: of the source evolution, the encoder, after the time gate and the sequencer (0.1).
        bias: the bias vectors of every layer (the counts on the card are with biases).
        encoder: use the time encoder (a TransformerEncoderLayer of width W, one head, FFN 2048: most parameters).
        autoregression: use the linear highway.
        bidirectional_gate / bidirectional_sequencer: bidirectional LSTMs whose two directions are summed.
        output_activation: "relu" (the paper's default: non-negative forecasts, for data scaled into [0, 1]) or
            "identity".
        feedforward: width of the encoder's feed-forward layer (2048, PyTorch's default the paper's code keeps).
        released: compute as the released code does in evaluation: its time encoder (a sequence-first
            TransformerEncoderLayer given (B, V, W)) attends across the samples of the batch, so a forecast depends
            on its batch-mates; and its target evolution uses the graph it stored at the last training batch
            (``target_evolution.adjacency``, read from an official file) instead of the source's current one.
            Only for reproducing official outputs.
    """

    def __init__(self, window: int = 7, horizon: int = 7, variables: int = 3, dropout: float = 0.1,
                 bias: bool = True, encoder: bool = True, autoregression: bool = True,
                 bidirectional_gate: bool = False, bidirectional_sequencer: bool = False,
                 output_activation: str = "relu", feedforward: int = 2048, released: bool = False):
        super().__init__()
        if output_activation not in ("relu", "identity"):
            raise ValueError(f"output_activation must be 'relu' or 'identity', got {output_activation!r}")
        self.window, self.horizon, self.variables = window, horizon, variables
        self.released = released
        self.horizons, self.targets = tuple(range(1, horizon + 1)), variables
        self.source_evolution = GraphSoftEvolution(variables, window, time_dot=True, dropout=dropout, bias=bias)
        self.time_encoder = nn.TransformerEncoderLayer(window, nhead=1, dim_feedforward=feedforward, dropout=dropout,
                                                       batch_first=True) if encoder else None
        self.time_gate = nn.LSTM(window, horizon, batch_first=True, bidirectional=bidirectional_gate, bias=bias)
        self.time_dropout = nn.Dropout(dropout)
        self.variable_sequencer = nn.LSTM(variables, variables, batch_first=True,
                                          bidirectional=bidirectional_sequencer, bias=bias)
        self.variable_dropout = nn.Dropout(dropout)
        self.target_evolution = GraphSoftEvolution(variables, horizon, time_dot=False, dropout=0.0, bias=bias)
        if autoregression:
            self.autoregression = nn.Parameter(torch.empty(window, horizon))
            nn.init.xavier_uniform_(self.autoregression)
            self.autoregression_bias = nn.Parameter(torch.zeros(horizon, 1)) if bias else None
        else:
            self.autoregression = self.autoregression_bias = None
        self.output_activation = nn.ReLU() if output_activation == "relu" else nn.Identity()

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One window: (window, variables) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.window, self.variables)}

    @staticmethod
    def _merge_directions(out: Tensor, lstm: nn.LSTM) -> Tensor:
        if lstm.bidirectional:
            out = out.view(*out.shape[:-1], 2, lstm.hidden_size).sum(-2)
        return out

    def forward(self, x: Tensor, batch_index: int | None = None) -> Tensor:
        """(B, W, V) -> (B, S, V). In training mode the batch also feeds the co-occurrence graph (``batch_index``:
        the index of the batch in the epoch, so that each batch is added once; see :class:`GraphSoftEvolution`)."""
        if x.ndim != 3 or x.shape[1:] != (self.window, self.variables):
            raise InputShapeError(f"ReGENN expects windows of shape (batch, {self.window}, {self.variables}), "
                                  f"got {tuple(x.shape)}")
        if self.training:
            self.source_evolution.observe(x, batch_index)
        h, graph = self.source_evolution(x)  # (B, W, V)
        h = h.transpose(1, 2)  # (B, V, W): the window is the feature axis, the variables the sequence
        if self.time_encoder is not None:
            # released: the official layer is sequence-first, so the batch axis is its sequence
            h = self.time_encoder(h.transpose(0, 1)).transpose(0, 1) if self.released else self.time_encoder(h)
        h, _ = self.time_gate(h)
        h = self.time_dropout(self._merge_directions(h, self.time_gate).transpose(1, 2))  # (B, S, V)
        v, _ = self.variable_sequencer(h)
        h = self.variable_dropout(self._merge_directions(v, self.variable_sequencer)) + h
        out, _ = self.target_evolution(h, adjacency=self.target_evolution.adjacency if self.released else graph)
        if self.autoregression is not None:
            out = out + torch.einsum("bwv,ws->bsv", x, self.autoregression)
            if self.autoregression_bias is not None:
                out = out + self.autoregression_bias
        return self.output_activation(out)


_OFFICIAL_PREFIXES = {"SourceEvolution.": "source_evolution.", "TimeEncoder.": "time_encoder.",
                      "TimeGate.": "time_gate.", "VariableSequencer.": "variable_sequencer.",
                      "TargetEvolution.": "target_evolution."}


def official_to_zoo(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Map a state dict of the paper's code (``SourceEvolution.*``, ``Autoregression.weights`` ...) onto
    :class:`ReGENN`: its frozen zero biases (bias off) and the target layer's unused time projection are dropped;
    the source's ``shared_adjacency`` (the accumulated graph) becomes its ``adjacency`` buffer, and the target's
    ``adjacency`` (the source's evolved graph stored at the last training batch, which the released evaluation uses)
    becomes the target's ``adjacency`` buffer (used only with ``released=True``)."""
    if not any(key.split(".")[0] in {p[:-1] for p in _OFFICIAL_PREFIXES} for key in state_dict):
        return dict(state_dict)
    expected = model.state_dict()
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("Autoregression."):
            name = {"weights": "autoregression", "bias": "autoregression_bias"}[key.split(".", 1)[1]]
        else:
            prefix = next((p for p in _OFFICIAL_PREFIXES if key.startswith(p)), None)
            if prefix is None:
                out[key] = value
                continue
            name = _OFFICIAL_PREFIXES[prefix] + key[len(prefix):]
            source = prefix == "SourceEvolution."
            if name.endswith(".adjacency" if source else ".shared_adjacency"):
                continue  # the source's accumulated graph is shared_adjacency; the target accumulates none
            name = name.replace(".shared_adjacency", ".adjacency")
        if name in expected:
            out[name] = value
    for layer in ("source_evolution", "target_evolution"):
        out.setdefault(f"{layer}.batches_seen", torch.tensor(1, dtype=torch.long))
    return out


_OUTPUT_FUNCTIONS = {"ReLU": "relu", "Identity": "identity"}


def official_kwargs(state_dict: Mapping[str, Tensor], checkpoint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Constructor arguments of an official model: from the ``args_dict`` that ``main.py --save-model`` stores in
    its snapshot (window, stride, bias, autoregression, encoder, bidirectional layers, dropout, output function),
    else read off the tensors of a bare ``model_dict``. Variables come from the adjacency's size.

    Raises:
        CheckpointError: for a configuration the zoo does not build (RNN/GRU gates, no sequencer, ablation mode,
            an evolution activation, an output function other than ReLU/Identity).
    """
    if "SourceEvolution.adjacency_weights" not in state_dict:
        return {}
    kwargs: dict[str, Any] = {"variables": int(state_dict["SourceEvolution.adjacency_weights"].shape[0])}
    args = (checkpoint or {}).get("args_dict")
    if isinstance(args, Mapping):
        unsupported = [f"{name}={args.get(name)!r}" for name, ok in (
            ("gate", args.get("gate") == "LSTM"), ("sequencer", args.get("sequencer") == "LSTM"),
            ("no_sequencer", not args.get("no_sequencer")), ("ablation_mode", not args.get("ablation_mode")),
            ("evolution_function", args.get("evolution_function") is None),
            ("output_function", args.get("output_function", "ReLU") in _OUTPUT_FUNCTIONS)) if not ok]
        if unsupported:
            raise CheckpointError(f"the official snapshot was trained with {', '.join(unsupported)}; the zoo's "
                                  "ReGENN builds LSTM gate and sequencer, graph evolution on, no evolution "
                                  "activation, and a ReLU or identity output")
        kwargs.update(window=int(args["window"]), horizon=int(args["stride"]), bias=bool(args["bias"]),
                      autoregression=bool(args["autoregression"]), encoder=not args.get("no_encoder", False),
                      bidirectional_gate=bool(args["bidirectional_gate"]),
                      bidirectional_sequencer=bool(args["bidirectional_sequencer"]), dropout=float(args["dropout"]),
                      output_activation=_OUTPUT_FUNCTIONS[args.get("output_function", "ReLU")])
        return kwargs
    gate_input = state_dict.get("TimeGate.weight_ih_l0")
    if gate_input is not None:
        kwargs.update(window=int(gate_input.shape[1]), horizon=int(state_dict["TimeGate.weight_hh_l0"].shape[1]),
                      bias="TimeGate.bias_ih_l0" in state_dict,
                      autoregression="Autoregression.weights" in state_dict,
                      encoder=any(k.startswith("TimeEncoder.") for k in state_dict),
                      bidirectional_gate="TimeGate.weight_ih_l0_reverse" in state_dict,
                      bidirectional_sequencer="VariableSequencer.weight_ih_l0_reverse" in state_dict)
    return kwargs


@register_model("timeseries/regenn", checkpoint_filter=official_to_zoo, kwargs_from_checkpoint=official_kwargs,
                card=ModelCard(
    task="forecasting", license="AGPL-3.0 (official code read for facts only; re-implemented)",
    paper=Paper("Pay Attention to Evolution: Time Series Forecasting with Deep Graph-Evolution Learning",
                arxiv="2008.12833", venue="IEEE TPAMI 2022", code_url="https://github.com/gabrielspadon/ReGENN"),
    num_params=31_695, input_shape=(7, 3), output=Horizons(horizons=tuple(range(1, 8)), targets=3),
    recipes={"quickstart": "regenn_macrodata.yaml"},
    notes="Re-implemented from the paper (the official code is AGPL). (W, S, V) = (7, 7, 3) has 31,695 trainable "
          "parameters and (14, 7, 3) 61,417, as the official modules with biases on. Differences from the official "
          "code: its TransformerEncoderLayer is not batch_first, so it attends across the samples of a batch (the "
          "forecast of one sample depends on the others in its batch); here it attends across the variables, as "
          "the paper describes. The co-occurrence adjacency is a buffer, accumulated over the first pass through "
          "the training batches and never changed in evaluation; the target evolution uses the source's evolved "
          "graph at every call (the official layer keeps the one of the last training batch); released=True "
          "computes both as the released code does, to reproduce its outputs. Defaults: bias=True and "
          "autoregression=True build every block of the architecture (the counts above); the official main.py "
          "turns both OFF unless given --bias / --autoregression, so a model matching its default command line "
          "is regenn(bias=False, autoregression=False). main.py's --save-model snapshot ({test_loss, args_dict, "
          "model_dict, trainer_dict, ...}, numpy values inside) loads with pretrained=: window, stride, bias, "
          "autoregression, encoder, bidirectional layers, dropout and output function come from its args_dict. "
          "The paper's data "
          "(COVID-19 per country, PhysioNet 2012, Brazilian weather) is not shipped; the quick start uses the US "
          "macro data of statsmodels.",
))
def regenn(window: int = 7, variables: int = 3, horizon: int = 7, targets: int | None = None, **kwargs) -> ReGENN:
    """ReGENN at (W, S, V) = (7, 7, 3) by default; it forecasts every input variable (targets = variables)."""
    if targets is not None and targets != variables:
        raise ValueError(f"ReGENN forecasts all of its {variables} input variables, got targets={targets}: give the "
                         "data module the same columns as targets and inputs")
    return ReGENN(window=window, horizon=horizon, variables=variables, **kwargs)

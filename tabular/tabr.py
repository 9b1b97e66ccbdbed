"""TabR (Gorishniy et al., "TabR: Tabular Deep Learning Meets Nearest Neighbors", ICLR 2024, arXiv 2307.14338).

A feed-forward network with a retrieval module in the middle, as in the official code (yandex-research/
tabular-dl-tabr ``bin/tabr.py``, MIT): the object is encoded (x, k = K(x)); its ``context_size`` (96) nearest
training objects by L2 distance between keys are retrieved from the *whole* training set, whose keys are computed
by the same encoder (on every training step, so they follow the encoder); their similarities -||k - k_i||^2 go
through a softmax and context dropout, and the values ``E_y(y_i) + T(k - k_i)`` (label embedding plus a
transformation of the key difference, T's last layer without bias) are averaged into x, which the predictor maps
to the output.

Parameter names and shapes follow the official ``Model`` (``linear``, ``blocks0``, ``normalization``,
``label_encoder``, ``K``, ``T``, ``blocks1``, ``head``), with the one-hot encoder and numerical embeddings under
``input``. The numerical embeddings come from ``rtdl_num_embeddings`` (Apache-2.0), whose periodic init is
truncated at 3 sigma (the TabR code's is not).

The model is a plain module: it is handed its candidates (the preprocessed training table and its labels) with
each call; ``zoo.tasks.tabular.TabularTask`` takes them from the data module and stores them in checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zoo.tabular._common import (
    FlatInput,
    NumEmbeddings,
    embedding_no_weight_decay,
    output_size,
    shapes_from_state_dict,
)

from zoo.blocks.retrieval import Backend, Candidates, nearest_neighbors
from zoo.errors import CheckpointError, InputShapeError
from zoo.registry import Classes, ModelCard, Paper, register_model

__all__ = ["Candidates", "TabR", "tabr", "tabr_s"]


def _block(d_main: int, d_block: int, dropout0: float, dropout1: float, prenorm: bool) -> nn.Sequential:
    """[LayerNorm] -> Linear(d -> d_block) -> ReLU -> Dropout -> Linear(d_block -> d) -> Dropout: (B, d) -> (B, d)."""
    return nn.Sequential(
        *([nn.LayerNorm(d_main)] if prenorm else []),
        nn.Linear(d_main, d_block), nn.ReLU(), nn.Dropout(dropout0), nn.Linear(d_block, d_main), nn.Dropout(dropout1),
    )


class TabR(nn.Module):
    """TabR for regression, binary and multiclass classification.

    Args:
        n_num_features / n_bin_features / cat_cardinalities: the table's features (see ``tabular._common``).
        num_classes: 1 regression, 2 binary (one logit), C > 2 multiclass.
        num_embeddings: None, "lr" or "plr" (PLR-lite) for the numerical features; ``d_embedding``,
            ``n_frequencies``, ``frequency_scale`` size them.
        d_main: width d of x and of the keys; ``d_multiplier`` sets the hidden width of the blocks and of T.
        encoder_n_blocks / predictor_n_blocks: residual blocks before and after retrieval.
        mixer_normalization: LayerNorm before K; "auto" = when the encoder has blocks.
        context_dropout: dropout on the retrieval probabilities; dropout0 / dropout1: inside the blocks.
        context_size: m, the neighbours retrieved (96 in the paper).
        retrieval_backend: "auto", "faiss" or "torch" (``zoo.blocks.retrieval``).
        memory_efficient: during training, compute the candidate keys without autograd and recompute only the m
            retrieved ones with it (the official option for large tables); ``candidate_encoding_batch_size``
            encodes the candidates in chunks of that many rows.
    """

    retrieval = True  # the task hands such models their candidates

    def __init__(self, n_num_features: int = 0, n_bin_features: int = 0, cat_cardinalities: Sequence[int] = (),
                 num_classes: int = 1, *, num_embeddings: NumEmbeddings | None = None, d_embedding: int = 32,
                 n_frequencies: int = 48, frequency_scale: float = 0.01, d_main: int = 265,
                 d_multiplier: float = 2.0, encoder_n_blocks: int = 0, predictor_n_blocks: int = 1,
                 mixer_normalization: bool | Literal["auto"] = "auto", context_dropout: float = 0.0,
                 dropout0: float = 0.0, dropout1: float = 0.0, context_size: int = 96,
                 retrieval_backend: Backend = "auto", memory_efficient: bool = False,
                 candidate_encoding_batch_size: int | None = None):
        super().__init__()
        if mixer_normalization == "auto":
            mixer_normalization = encoder_n_blocks > 0
        if encoder_n_blocks == 0 and mixer_normalization:
            raise ValueError("mixer_normalization needs encoder blocks (the official code asserts this too)")
        self.num_classes = num_classes
        self.context_size = context_size
        self.retrieval_backend: Backend = retrieval_backend
        self.memory_efficient = memory_efficient
        self.candidate_encoding_batch_size = candidate_encoding_batch_size
        d_block = int(d_main * d_multiplier)
        self.d_main = d_main

        # E: input, linear, encoder blocks.
        self.input = FlatInput(n_num_features, n_bin_features, cat_cardinalities, num_embeddings, d_embedding,
                               n_frequencies, frequency_scale)
        self.linear = nn.Linear(self.input.d_in, d_main)
        self.blocks0 = nn.ModuleList([_block(d_main, d_block, dropout0, dropout1, i > 0)
                                      for i in range(encoder_n_blocks)])
        # R: keys, label encoder, T, context dropout.
        self.normalization = nn.LayerNorm(d_main) if mixer_normalization else None
        self.label_encoder = self._label_encoder(num_classes)
        self.K = nn.Linear(d_main, d_main)
        self.T = nn.Sequential(nn.Linear(d_main, d_block), nn.ReLU(), nn.Dropout(dropout0),
                               nn.Linear(d_block, d_main, bias=False))
        self.dropout = nn.Dropout(context_dropout)
        # P: predictor blocks and head.
        self.blocks1 = nn.ModuleList([_block(d_main, d_block, dropout0, dropout1, True)
                                      for _ in range(predictor_n_blocks)])
        self.head = nn.Sequential(nn.LayerNorm(d_main), nn.ReLU(), nn.Linear(d_main, output_size(num_classes)))

    def _label_encoder(self, num_classes: int) -> nn.Module:
        """Linear(1 -> d) for regression, init U(+-1/sqrt(2)); Embedding(C, d) for classes, init U(-1, 1)."""
        if num_classes == 1:
            encoder = nn.Linear(1, self.d_main)
            bound = 1 / math.sqrt(2.0)
            nn.init.uniform_(encoder.weight, -bound, bound)
            nn.init.uniform_(encoder.bias, -bound, bound)
        else:
            encoder = nn.Embedding(num_classes, self.d_main)
            nn.init.uniform_(encoder.weight, -1.0, 1.0)
        return encoder

    # --- encoder ------------------------------------------------------------------------------------------------
    def encode(self, x_num: Tensor | None, x_bin: Tensor | None = None, x_cat: Tensor | None = None
               ) -> tuple[Tensor, Tensor]:
        """Features of B objects -> (x (B, d_main), k (B, d_main)): the encoded objects and their keys."""
        x = self.linear(self.input(x_num, x_bin, x_cat))
        for block in self.blocks0:
            x = x + block(x)
        return x, self.K(x if self.normalization is None else self.normalization(x))

    def encode_candidates(self, candidates: Candidates) -> Tensor:
        """Keys (N, d_main) of the candidates, in chunks of ``candidate_encoding_batch_size`` rows when set."""
        n = candidates.size
        chunk = self.candidate_encoding_batch_size or max(1, n)
        keys = [self.encode(*candidates.select(torch.arange(i, min(i + chunk, n), device=candidates.y.device))[:3])[1]
                for i in range(0, n, chunk)]
        return torch.cat(keys) if keys else torch.empty(0, self.d_main, device=candidates.y.device)

    def label_embeddings(self, y: Tensor) -> Tensor:
        """Labels (..., ) -> (..., d_main): float targets through Linear(1 -> d), class indices through Embedding."""
        if self.num_classes == 1:
            return self.label_encoder(y.float()[..., None])
        return self.label_encoder(y.long())

    # --- retrieval ----------------------------------------------------------------------------------------------
    def forward_features(self, x_num: Tensor | None, x_bin: Tensor | None = None, x_cat: Tensor | None = None, *,
                         candidates: Candidates, y: Tensor | None = None, candidate_keys: Tensor | None = None,
                         context_index: Tensor | None = None) -> Tensor:
        """Encode B objects, retrieve their contexts from the candidates and mix them in: -> x (B, d_main).

        Args:
            candidates: N candidates. In training (``y`` given) they must not hold the batch's own rows: the batch
                joins them here, each object excluded from its own context, as in the official code.
            y: (B,) labels of the batch in training; None in evaluation.
            candidate_keys: (N, d_main) keys of the candidates computed beforehand (evaluation: the encoder does
                not change), else they are computed now.
            context_index: (B, m) rows of ``candidates`` to use as contexts instead of searching ("context
                freeze"); the batch does not join the candidates then.
        """
        m = self.context_size
        x, k = self.encode(x_num, x_bin, x_cat)
        batch_size = len(x)
        candidate_y = candidates.y
        if candidate_keys is None:
            grad = torch.is_grad_enabled() and not self.memory_efficient
            with torch.set_grad_enabled(grad):
                candidate_keys = self.encode_candidates(candidates)
        joined = y is not None and context_index is None
        if joined:  # training: the batch joins the candidates, in front, and never retrieves itself
            candidate_keys = torch.cat([k, candidate_keys])
            candidate_y = torch.cat([y.to(candidate_y.dtype), candidate_y])
        if context_index is None:
            available = len(candidate_keys) - (1 if joined else 0)
            if available < m:
                raise InputShapeError(f"TabR retrieves {m} neighbours but has only {available} candidates; "
                                      "lower context_size or use a larger training table")
            exclude = torch.arange(batch_size, device=k.device) if joined else None
            _, context_index = nearest_neighbors(k, candidate_keys, m, exclude=exclude,
                                                 backend=self.retrieval_backend)
        if self.memory_efficient and torch.is_grad_enabled():
            # Keys of the m retrieved objects only, now with autograd.
            pool = candidates if not joined else Candidates(*(
                None if a is None else torch.cat([a, b])
                for a, b in zip((x_num, x_bin, x_cat, y), candidates, strict=True)))
            context = pool.select(context_index.flatten())
            context_k = self.encode(context.x_num, context.x_bin, context.x_cat)[1].view(batch_size, m, -1)
        else:
            context_k = candidate_keys[context_index]  # (B, m, d)
        similarities = (-k.square().sum(-1, keepdim=True) + 2 * (k[:, None] @ context_k.transpose(1, 2)).squeeze(1)
                        - context_k.square().sum(-1))  # (B, m) = -||k - k_i||^2
        probs = self.dropout(F.softmax(similarities, dim=-1))
        values = self.label_embeddings(candidate_y[context_index]) + self.T(k[:, None] - context_k)  # (B, m, d)
        return x + (probs[:, None] @ values).squeeze(1)

    def forward_head(self, x: Tensor) -> Tensor:
        """(B, d_main) -> (B, 1) for regression and binary, (B, C) for multiclass."""
        for block in self.blocks1:
            x = x + block(x)
        return self.head(x)

    def forward(self, x_num: Tensor | None, x_bin: Tensor | None = None, x_cat: Tensor | None = None, *,
                candidates: Candidates, y: Tensor | None = None, candidate_keys: Tensor | None = None,
                context_index: Tensor | None = None) -> Tensor:
        """Features of B objects and N candidates -> (B, 1) or (B, C); see ``forward_features``."""
        return self.forward_head(self.forward_features(x_num, x_bin, x_cat, candidates=candidates, y=y,
                                                       candidate_keys=candidate_keys, context_index=context_index))

    @torch.no_grad()
    def contexts(self, x_num: Tensor | None, x_bin: Tensor | None = None, x_cat: Tensor | None = None, *,
                 candidate_keys: Tensor, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(distances (B, m), indices (B, m)) of the nearest candidates; ``exclude`` (B,) rows never retrieved
        (used to freeze the training contexts)."""
        _, k = self.encode(x_num, x_bin, x_cat)
        return nearest_neighbors(k, candidate_keys, self.context_size, exclude=exclude,
                                 backend=self.retrieval_backend)

    # --- zoo conventions ----------------------------------------------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        """Parameters the TabR code meant to keep out of weight decay: biases, norms, embeddings, label encoder."""
        names = {n for n, p in self.named_parameters() if n.endswith("bias") or p.ndim <= 1}
        names |= {n for n, _ in self.named_parameters() if n.startswith("label_encoder.")}
        for name, module in self.named_modules():
            if isinstance(module, nn.LayerNorm):
                names |= {f"{name}.{n}" for n, _ in module.named_parameters()}
        return names | embedding_no_weight_decay("input.num_embeddings", self.input.num_embeddings)

    def get_classifier(self) -> nn.Module:
        return self.head[-1]

    def reset_classifier(self, num_classes: int) -> None:
        """A new head and label encoder for ``num_classes`` (1 regression, 2 binary, C multiclass)."""
        device = self.K.weight.device
        self.num_classes = num_classes
        self.head[-1] = nn.Linear(self.d_main, output_size(num_classes)).to(device)
        self.label_encoder = self._label_encoder(num_classes).to(device)


def tabr_kwargs_from_checkpoint(state_dict: dict[str, Tensor]) -> dict:
    """Constructor arguments read off a TabR state dict (feature counts, embeddings, widths, block counts)."""
    kwargs = shapes_from_state_dict(state_dict, "input")
    if not kwargs or "K.weight" not in state_dict:
        return {}
    d_main = int(state_dict["K.weight"].shape[0])
    kwargs.update(
        d_main=d_main, d_multiplier=state_dict["T.0.weight"].shape[0] / d_main,
        encoder_n_blocks=len({k.split(".")[1] for k in state_dict if k.startswith("blocks0.")}),
        predictor_n_blocks=len({k.split(".")[1] for k in state_dict if k.startswith("blocks1.")}),
        mixer_normalization="normalization.weight" in state_dict,
    )
    return kwargs


# the official Model's key names (bin/tabr.py) -> the zoo's
_OFFICIAL_PREFIXES = {"one_hot_encoder.": "input.one_hot.", "label_encoder.0.": "label_encoder."}


def _official_embedding_keys(state_dict: Mapping[str, Tensor]) -> dict[str, str]:
    """Official -> zoo names of the numerical embeddings: PLR-lite ``num_embeddings.{0.frequencies, 1.*}`` ->
    ``input.num_embeddings.{periodic.weight, linear.*}``; LR ``num_embeddings.0.*`` ->
    ``input.num_embeddings.linear.*``."""
    plr = "num_embeddings.0.frequencies" in state_dict
    names = {}
    for key in state_dict:
        if key.startswith("num_embeddings."):
            _, index, rest = key.split(".", 2)
            names[key] = ("input.num_embeddings.periodic.weight" if plr and index == "0"
                          else f"input.num_embeddings.linear.{rest}")
    return names


def is_official_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """A state dict of the official ``Model`` (no ``input.`` module, retrieval keys present)."""
    return "K.weight" in state_dict and not any(k.startswith("input.") for k in state_dict)


def official_checkpoint_filter(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename an official ``Model`` state dict (``bin/tabr.py``'s ``checkpoint.pt['model']``) to this model's keys;
    ``input.feature_counts`` (only the zoo records the counts) is taken from the model built for the file."""
    if not is_official_layout(state_dict):
        return state_dict
    renamed = _official_embedding_keys(state_dict)
    out = {}
    for key, value in state_dict.items():
        name = renamed.get(key, key)
        for old, new in _OFFICIAL_PREFIXES.items():
            if name.startswith(old):
                name = new + name[len(old):]
        out[name] = value
    out["input.feature_counts"] = model.input.feature_counts.clone()
    return out


def official_kwargs(state_dict: dict[str, Tensor], checkpoint: Mapping[str, Any] | None = None) -> dict:
    """Constructor arguments of an official TabR file: shapes from the ``model`` tensors (numerical features from
    the embeddings, categorical cardinalities from the one-hot buffer, binary features the rest of the input width,
    classes from the label encoder), dropouts and ``context_size`` from ``report['config']`` that ``bin/tabr.py``
    saves beside them. Zoo files are read by :func:`tabr_kwargs_from_checkpoint`.

    Without numerical embeddings the input width does not tell numerical from binary features: all are taken as
    numerical (pass ``n_num_features`` / ``n_bin_features`` to split them otherwise; the output is the same).
    """
    if not is_official_layout(state_dict):
        return tabr_kwargs_from_checkpoint(state_dict)
    cardinalities = [int(c) for c in state_dict.get("one_hot_encoder.cardinalities", torch.zeros(0)).tolist()]
    d_in = int(state_dict["linear.weight"].shape[1]) - sum(cardinalities)
    kwargs: dict[str, Any] = {"cat_cardinalities": cardinalities}
    if "num_embeddings.0.frequencies" in state_dict:
        if state_dict["num_embeddings.1.weight"].ndim != 2:
            raise CheckpointError("the official file has PLR embeddings with lite=False (a linear layer per feature); "
                                  "the zoo builds PLR-lite, as TabR uses")
        frequencies = state_dict["num_embeddings.0.frequencies"]
        kwargs.update(num_embeddings="plr", n_frequencies=int(frequencies.shape[1]),
                      d_embedding=int(state_dict["num_embeddings.1.weight"].shape[0]))
        n_num = int(frequencies.shape[0])
    elif "num_embeddings.0.weight" in state_dict:
        n_num, d_embedding = (int(n) for n in state_dict["num_embeddings.0.weight"].shape)
        kwargs.update(num_embeddings="lr", d_embedding=d_embedding)
    else:
        n_num = d_in
        kwargs["num_embeddings"] = None
    width = n_num * kwargs.get("d_embedding", 1) if kwargs["num_embeddings"] else n_num
    d_main = int(state_dict["K.weight"].shape[0])
    kwargs.update(
        n_num_features=n_num, n_bin_features=d_in - width, d_main=d_main,
        d_multiplier=state_dict["T.0.weight"].shape[0] / d_main,
        encoder_n_blocks=len({k.split(".")[1] for k in state_dict if k.startswith("blocks0.")}),
        predictor_n_blocks=len({k.split(".")[1] for k in state_dict if k.startswith("blocks1.")}),
        mixer_normalization="normalization.weight" in state_dict,
        num_classes=int(state_dict["label_encoder.0.weight"].shape[0]) if "label_encoder.0.weight" in state_dict
        else 1,
    )
    config = ((checkpoint or {}).get("report") or {}).get("config") or {}
    model = config.get("model") or {}
    for name, value in (("normalization", "LayerNorm"), ("activation", "ReLU")):
        if model.get(name, value) != value:
            raise CheckpointError(f"the official TabR was trained with {name}={model[name]!r}; the zoo builds "
                                  f"{value}")
    kwargs.update({k: model[k] for k in ("context_dropout", "dropout0") if k in model})
    if "dropout1" in model:
        kwargs["dropout1"] = model.get("dropout0", 0.0) if model["dropout1"] == "dropout0" else model["dropout1"]
    if isinstance(model.get("num_embeddings"), Mapping) and "frequency_scale" in model["num_embeddings"]:
        kwargs["frequency_scale"] = model["num_embeddings"]["frequency_scale"]
    if "context_size" in config:
        kwargs["context_size"] = int(config["context_size"])
    return kwargs


_PAPER = Paper(title="TabR: Tabular Deep Learning Meets Nearest Neighbors", arxiv="2307.14338", venue="ICLR 2024",
               code_url="https://github.com/yandex-research/tabular-dl-tabr")
_NOTES = (
    "Default configuration = the paper's tuned model on California housing (8 numerical features, regression); "
    "the data module sets the feature counts and classes of your table. Retrieval: faiss IndexFlatL2 or torch "
    "(retrieval_backend). Recipes: 'default' (bundled diabetes table, intended weight decay: none on biases, norms, "
    "embeddings, label encoder) and 'paper' (the official training protocol, with the official code's weight decay "
    "on every parameter, issue #19). No weights are published. bin/tabr.py's checkpoint.pt (model, optimizer, "
    "random_state, delu ProgressTracker and Timer, report, training_log) loads with pretrained=: its model entry is "
    "renamed to these keys (one_hot_encoder -> input.one_hot, num_embeddings.0/1 -> input.num_embeddings.periodic/"
    "linear, label_encoder.0 -> label_encoder), feature counts and classes come from its tensors, dropouts and "
    "context_size from its report; pass the training table as candidates, as the official evaluation does. "
    "Numerical embeddings: rtdl_num_embeddings "
    "(Apache-2.0)."
)
_RECIPES = {"default": "tabular_diabetes.yaml", "paper": ("tabular_diabetes.yaml", "tabr_paper.yaml")}


@register_model("tabular/tabr", kwargs_from_checkpoint=official_kwargs, checkpoint_filter=official_checkpoint_filter,
                card=ModelCard(
    task="tabular", paper=_PAPER, license="MIT", num_params=271_395, input_shape=(8,), recipes=_RECIPES,
    output=Classes(1), notes=_NOTES + " Defaults: TabR with PLR-lite embeddings, tuned on California "
    "(exp/tabr/california/2-plr-lite-evaluation): 271,395 parameters as in its report.json."))
def tabr(num_classes: int = 1, n_num_features: int = 8, n_bin_features: int = 0,
         cat_cardinalities: Sequence[int] = (), **kwargs) -> TabR:
    """TabR: PLR-lite numerical embeddings (d 64, 96 frequencies), d_main 122, 2 predictor blocks."""
    config = dict(num_embeddings="plr", d_embedding=64, n_frequencies=96, frequency_scale=0.013675285379929491,
                  d_main=122, d_multiplier=2.0, encoder_n_blocks=0, predictor_n_blocks=2,
                  context_dropout=0.16611582749898343, dropout0=0.09432953364047161, dropout1=0.0)
    return TabR(n_num_features, n_bin_features, cat_cardinalities, num_classes, **{**config, **kwargs})


@register_model("tabular/tabr_s", kwargs_from_checkpoint=official_kwargs,
                checkpoint_filter=official_checkpoint_filter, card=ModelCard(
    task="tabular", paper=_PAPER, license="MIT", num_params=832_948, input_shape=(8,), recipes=_RECIPES,
    output=Classes(1), notes=_NOTES + " Defaults: TabR-S (no embeddings, no encoder blocks, 1 predictor "
    "block), tuned on California (exp/tabr/california/0-evaluation): d_main 303, 832,948 parameters."))
def tabr_s(num_classes: int = 1, n_num_features: int = 8, n_bin_features: int = 0,
           cat_cardinalities: Sequence[int] = (), **kwargs) -> TabR:
    """TabR-S: the simple configuration (d_main 303, no embeddings, 0 encoder and 1 predictor block)."""
    config = dict(num_embeddings=None, d_main=303, d_multiplier=2.0, encoder_n_blocks=0, predictor_n_blocks=1,
                  context_dropout=0.23258422826138023, dropout0=0.5508268685197037, dropout1=0.0)
    return TabR(n_num_features, n_bin_features, cat_cardinalities, num_classes, **{**config, **kwargs})

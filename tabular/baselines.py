"""The deep baselines of the TabR paper: MLP, MLP-PLR and FT-Transformer (Gorishniy et al., "Revisiting Deep
Learning Models for Tabular Data", NeurIPS 2021, arXiv 2106.11959; "On Embeddings for Numerical Features in
Tabular Deep Learning", NeurIPS 2022, arXiv 2203.05556).

The backbones are ``rtdl_revisiting_models`` (Apache-2.0) modules; the input side is the TabR code's (``bin/ffn.py``):
numerical features (optionally through PLR-lite embeddings, ``rtdl_num_embeddings``), binary features as they are,
categorical features one-hot. FT-Transformer embeds every feature as a token instead (binary features count as
continuous ones; each categorical feature gets one extra embedding row for categories unseen in training).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rtdl_revisiting_models import MLP, FTTransformer
from torch import Tensor, nn
from zoo.tabular._common import (
    FlatInput,
    NumEmbeddings,
    check_features,
    output_size,
    shapes_from_state_dict,
    table_shape,
)
from zoo.tabular._common import embedding_no_weight_decay as _embedding_no_wd

from zoo.registry import Classes, ModelCard, Paper, register_model

__all__ = ["TabularFTTransformer", "TabularMLP", "ft_transformer", "mlp", "mlp_plr"]


class TabularMLP(nn.Module):
    """MLP on the flat features: Linear -> ReLU -> Dropout, ``n_blocks`` times, then a linear head.

    Args:
        n_num_features / n_bin_features / cat_cardinalities / num_classes: see ``tabular._common``.
        num_embeddings: None (MLP) or "plr" (MLP-PLR, lite) / "lr" for the numerical features.
        n_blocks, d_block, dropout: the MLP.
    """

    def __init__(self, n_num_features: int = 0, n_bin_features: int = 0, cat_cardinalities: Sequence[int] = (),
                 num_classes: int = 1, *, num_embeddings: NumEmbeddings | None = None, d_embedding: int = 32,
                 n_frequencies: int = 48, frequency_scale: float = 0.01, n_blocks: int = 2, d_block: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.input = FlatInput(n_num_features, n_bin_features, cat_cardinalities, num_embeddings, d_embedding,
                               n_frequencies, frequency_scale)
        self.backbone = MLP(d_in=self.input.d_in, d_out=None, n_blocks=n_blocks, d_block=d_block, dropout=dropout)
        self.head = nn.Linear(d_block, output_size(num_classes))
        self.num_features = d_block

    def forward_features(self, x_num: Tensor | None, x_bin: Tensor | None = None, x_cat: Tensor | None = None
                         ) -> Tensor:
        """Features -> (B, d_block)."""
        return self.backbone(self.input(x_num, x_bin, x_cat))

    def forward_head(self, x: Tensor) -> Tensor:
        """(B, d_block) -> (B, 1) or (B, C)."""
        return self.head(x)

    def forward(self, x_num: Tensor | None, x_bin: Tensor | None = None, x_cat: Tensor | None = None) -> Tensor:
        """(B, F_num), (B, F_bin), (B, F_cat) -> (B, 1) for regression and binary, (B, C) for multiclass."""
        return self.forward_head(self.forward_features(x_num, x_bin, x_cat))

    def no_weight_decay(self) -> set[str]:
        names = {n for n, p in self.named_parameters() if p.ndim <= 1}
        return names | _embedding_no_wd("input.num_embeddings", self.input.num_embeddings)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, output_size(num_classes)).to(self.head.weight.device)


class TabularFTTransformer(nn.Module):
    """FT-Transformer (``rtdl_revisiting_models.FTTransformer``): one token per feature plus [CLS], a Transformer
    with ReGLU feed-forward blocks, and the [CLS] token's head.

    Args:
        n_num_features / n_bin_features / cat_cardinalities / num_classes: see ``tabular._common``.
        n_blocks: 1..6 picks the package's default widths and dropouts; other arguments override them
            (``d_block``, ``attention_n_heads``, ``attention_dropout``, ``ffn_dropout``, ``residual_dropout``...).
    """

    def __init__(self, n_num_features: int = 0, n_bin_features: int = 0, cat_cardinalities: Sequence[int] = (),
                 num_classes: int = 1, *, n_blocks: int = 3, **backbone_kwargs):
        super().__init__()
        self.num_classes = num_classes
        self.n_num_features, self.n_bin_features = n_num_features, n_bin_features
        self.n_cat_features = len(cat_cardinalities)
        self.register_buffer("feature_counts", torch.tensor([n_num_features, n_bin_features], dtype=torch.int64))
        self.register_buffer("cardinalities", torch.tensor([int(c) for c in cat_cardinalities], dtype=torch.int64))
        config = {k: v for k, v in FTTransformer.get_default_kwargs(n_blocks).items() if k != "_is_default"}
        config.update(backbone_kwargs)
        self.model = FTTransformer(n_cont_features=n_num_features + n_bin_features,
                                   cat_cardinalities=[int(c) + 1 for c in cat_cardinalities],
                                   d_out=output_size(num_classes), **config)

    def forward(self, x_num: Tensor | None, x_bin: Tensor | None = None, x_cat: Tensor | None = None) -> Tensor:
        """(B, F_num), (B, F_bin), (B, F_cat) -> (B, 1) for regression and binary, (B, C) for multiclass."""
        check_features(x_num, x_bin, x_cat, self.n_num_features, self.n_bin_features, self.n_cat_features)
        continuous = [x for x, n in ((x_num, self.n_num_features), (x_bin, self.n_bin_features)) if n]
        x_cont = torch.cat(continuous, dim=1) if continuous else None
        return self.model(x_cont, x_cat if self.n_cat_features else None)

    def no_weight_decay(self) -> set[str]:
        """The package's zero-decay group: embeddings, [CLS], normalisations and biases."""
        zero = {id(p) for group in self.model.make_parameter_groups() if group.get("weight_decay") == 0.0
                for p in group["params"]}
        return {n for n, p in self.named_parameters() if id(p) in zero}

    def get_classifier(self) -> nn.Module:
        """The last linear layer (after the head's LayerNorm and ReLU)."""
        return self.model.backbone.output.linear

    def reset_classifier(self, num_classes: int) -> None:
        """A new last layer for ``num_classes`` (1 regression, 2 binary, C multiclass)."""
        old = self.model.backbone.output.linear
        self.num_classes = num_classes
        self.model.backbone.output.linear = nn.Linear(old.in_features, output_size(num_classes)).to(old.weight.device)


def _mlp_kwargs_from_checkpoint(state_dict: dict[str, Tensor]) -> dict:
    kwargs = shapes_from_state_dict(state_dict, "input")
    blocks = {k.split(".")[2] for k in state_dict if k.startswith("backbone.blocks.")}
    if kwargs and blocks:
        kwargs.update(n_blocks=len(blocks), d_block=int(state_dict["head.weight"].shape[1]))
    return kwargs


def _ft_kwargs_from_checkpoint(state_dict: dict[str, Tensor]) -> dict:
    counts = state_dict.get("feature_counts")
    if counts is None:
        return {}
    blocks = {k.split(".")[3] for k in state_dict if k.startswith("model.backbone.blocks.")}
    return {**table_shape(counts, state_dict.get("cardinalities")), "n_blocks": len(blocks),
            "d_block": int(state_dict["model.cls_embedding.weight"].shape[-1])}


_REVISITING = Paper(title="Revisiting Deep Learning Models for Tabular Data", arxiv="2106.11959",
                    venue="NeurIPS 2021", code_url="https://github.com/yandex-research/rtdl-revisiting-models")
_EMBEDDINGS = Paper(title="On Embeddings for Numerical Features in Tabular Deep Learning", arxiv="2203.05556",
                    venue="NeurIPS 2022", code_url="https://github.com/yandex-research/rtdl-num-embeddings")
_RECIPES = {"default": "tabular_diabetes.yaml", "paper": ("tabular_diabetes.yaml", "tabr_paper.yaml")}
_NOTES = ("A TabR-paper baseline; default configuration = its tuned model on California housing (8 numerical "
          "features, regression); the data module sets the features and classes of your table. No weights are "
          "published. Backbone from rtdl_revisiting_models (Apache-2.0).")


@register_model("tabular/mlp", kwargs_from_checkpoint=_mlp_kwargs_from_checkpoint, card=ModelCard(
    task="tabular", paper=_REVISITING, license="Apache-2.0", num_params=20_563, macs=20_286, input_shape=(8,),
    recipes=_RECIPES, output=Classes(1),
    notes=_NOTES + " California MLP: 2 blocks of 138 (exp/mlp/california/0-evaluation, 20,563 parameters)."))
def mlp(num_classes: int = 1, n_num_features: int = 8, n_bin_features: int = 0,
        cat_cardinalities: Sequence[int] = (), **kwargs) -> TabularMLP:
    config = dict(n_blocks=2, d_block=138, dropout=0.09478532976433543)
    return TabularMLP(n_num_features, n_bin_features, cat_cardinalities, num_classes, **{**config, **kwargs})


@register_model("tabular/mlp_plr", kwargs_from_checkpoint=_mlp_kwargs_from_checkpoint, card=ModelCard(
    task="tabular", paper=_EMBEDDINGS, license="Apache-2.0", num_params=320_520, macs=350_857, input_shape=(8,),
    recipes=_RECIPES, output=Classes(1),
    notes=_NOTES + " California MLP-PLR(lite): PLR d 49 / 46 frequencies, 1 block of 801 "
    "(exp/mlp/california/plr-lite-evaluation, 320,520 parameters)."))
def mlp_plr(num_classes: int = 1, n_num_features: int = 8, n_bin_features: int = 0,
            cat_cardinalities: Sequence[int] = (), **kwargs) -> TabularMLP:
    config = dict(num_embeddings="plr", d_embedding=49, n_frequencies=46, frequency_scale=0.0693604584419175,
                  n_blocks=1, d_block=801, dropout=0.4363052259392095)
    return TabularMLP(n_num_features, n_bin_features, cat_cardinalities, num_classes, **{**config, **kwargs})


@register_model("tabular/ft_transformer", kwargs_from_checkpoint=_ft_kwargs_from_checkpoint, card=ModelCard(
    task="tabular", paper=_REVISITING, license="Apache-2.0", num_params=894_913, input_shape=(8,), recipes=_RECIPES,
    output=Classes(1), notes=_NOTES.replace("its tuned model", "the package's default 3-block model")))
def ft_transformer(num_classes: int = 1, n_num_features: int = 8, n_bin_features: int = 0,
                   cat_cardinalities: Sequence[int] = (), **kwargs) -> TabularFTTransformer:
    return TabularFTTransformer(n_num_features, n_bin_features, cat_cardinalities, num_classes, **kwargs)

"""DeepSurv (Katzman, Shaham, Cloninger, Bates, Jiang, Kluger 2018, "DeepSurv: personalized treatment recommender
system using a Cox proportional hazards deep neural network", BMC Medical Research Methodology 18:24, arXiv
1606.00931): a fully connected network whose single output is the log-risk of the Cox model, trained with the
negative partial log-likelihood (the survival task's loss). The baseline every survival model is compared with.

Layout as pycox's ``MLPVanilla`` DeepSurv setup (the common re-implementation): per hidden layer Linear, ReLU,
BatchNorm1d, Dropout; a bias-free Linear to one output (a bias would cancel in the partial likelihood).
``hidden=()`` gives the linear Cox model (the zoo's "Cox head"), the same log-risk as lifelines' ``CoxPHFitter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from zoo.errors import InputShapeError
from zoo.registry import ModelCard, Paper, Risk, register_model

GBSG2_FEATURES = 9  # the GBSG2 table of zoo.data.survival: 5 numeric + one-hot horTh, menostat, tgrade


class DeepSurv(nn.Module):
    """Cox MLP. (B, in_features) covariates -> (B,) log-risks.

    Args:
        in_features: number of covariates (linked from the survival table's data module).
        hidden: widths of the hidden layers; () is the linear Cox model.
        dropout: dropout after each hidden layer.
        batch_norm: BatchNorm1d after each hidden activation.
    """

    def __init__(self, in_features: int = GBSG2_FEATURES, hidden: Sequence[int] = (32, 32), dropout: float = 0.1,
                 batch_norm: bool = True):
        super().__init__()
        self.in_features = in_features
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.risk = nn.Linear(width, 1, bias=False)

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.in_features or not x.is_floating_point():
            raise InputShapeError(f"DeepSurv takes float covariates (B, {self.in_features}), got {tuple(x.shape)} "
                                  f"{x.dtype}")

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One patient's covariates: (in_features,) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.in_features,)}

    def forward(self, x: Tensor) -> Tensor:
        """x (B, in_features) -> log-risk (B,)."""
        self.check_input(x)
        return self.risk(self.body(x))[:, 0]


@register_model("medical/deepsurv", card=ModelCard(
    task="survival",
    paper=Paper("DeepSurv: personalized treatment recommender system using a Cox proportional hazards deep neural "
                "network", arxiv="1606.00931", venue="BMC Medical Research Methodology 18:24 (2018)",
                code_url="https://github.com/jaredleekatzman/DeepSurv"),
    license="MIT (official Theano code, read for facts)", num_params=1_536, input_shape=(GBSG2_FEATURES,),
    output=Risk(), recipes={"quickstart": "deepsurv_quickstart.yaml"},
    notes="Re-implemented in PyTorch with pycox's DeepSurv layout (hidden 32-32, ReLU, BatchNorm, dropout 0.1, "
          "bias-free output); the paper tunes depth, width, activation (ReLU/SELU), dropout and L2 per data set. "
          "hidden=() is the linear Cox model. Trained by the survival task (Cox partial likelihood, Efron ties). "
          "Quick start: the real GBSG2 cohort of lifelines (686 patients, 9 covariates after one-hot encoding).",
))
def deepsurv(**kwargs: Any) -> DeepSurv:
    return DeepSurv(**kwargs)

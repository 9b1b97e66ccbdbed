"""ResNLS (Jia, Anaissi & Suleiman, "ResNLS: An Improved Model for Stock Price Forecasting", Computational
Intelligence 2023, arXiv 2312.01020; official code github.com/Yuanzhe-Jia/ResNLS, MIT): a residual 1-D CNN branch
that refines the window of closes, r = x + w * CNN(x) with a learnable scalar w starting at 0, then an LSTM on r and
a linear head for the next close.

This is the design of the paper, not of the released script, which differs in three ways that are NOT copied here:
(1) its forward feeds x instead of r to the LSTM, so the CNN branch and w never receive gradient (the released model
is an LSTM with a linear head); (2) its MSE loss compares a (B, 1) output with a (B,) target, which broadcasts to
(B, B); (3) it fits the min-max scaler on the whole series before splitting (look-ahead). The zoo's forecasting task
fits the scaler on the training part only and uses a per-sample loss.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.errors import InputShapeError
from zoo.registry import Horizons, ModelCard, Paper, register_model

__all__ = ["ResNLS", "resnls", "resnls_lstm"]


class ResidualCNN(nn.Module):
    """The paper's "ResNet" branch over a window of W values: Conv1d(1->C, k3) -> ReLU -> BatchNorm -> Dropout ->
    Conv1d(C->C, k3) -> ReLU -> BatchNorm -> Flatten(C*W) -> Linear(C*W -> W)."""

    def __init__(self, window: int, channels: int = 64, kernel_size: int = 3, dropout: float = 0.1):
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = nn.Conv1d(1, channels, kernel_size, padding=padding)
        self.bn1 = nn.BatchNorm1d(channels)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=padding)
        self.bn2 = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels * window, window)

    def forward(self, x: Tensor) -> Tensor:
        """(B, W) -> (B, W)."""
        h = self.drop(self.bn1(torch.relu(self.conv1(x.unsqueeze(1)))))
        h = self.bn2(torch.relu(self.conv2(h)))
        return self.fc(h.flatten(1))


class ResNLS(nn.Module):
    """ResNLS on windows of one series: (B, W, 1) -> the next value (B, 1, 1).

    The five closes are one W-dimensional vector that the LSTM reads as a sequence of length 1 (as in the paper's
    code); its last hidden state goes through the linear head.

    Args:
        window: W, the number of past values (the paper's best: 5).
        hidden: LSTM width (64).
        channels, kernel_size, dropout: the CNN branch (64, 3, 0.1).
        residual: False drops the CNN branch and w (the LSTM-only ablation; what the released code computes).
    """

    def __init__(self, window: int = 5, hidden: int = 64, channels: int = 64, kernel_size: int = 3,
                 dropout: float = 0.1, residual: bool = True):
        super().__init__()
        if window < 1 or kernel_size % 2 == 0:
            raise ValueError(f"window must be >= 1 and kernel_size odd, got {window} and {kernel_size}")
        self.window, self.horizons, self.targets = window, (1,), 1
        self.cnn = ResidualCNN(window, channels, kernel_size, dropout) if residual else None
        self.w = nn.Parameter(torch.zeros(())) if residual else None
        self.lstm = nn.LSTM(window, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One window: (window, 1) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.window, 1)}

    def refine(self, x: Tensor) -> Tensor:
        """(B, W) -> r = x + w * CNN(x), (B, W); the identity for the LSTM-only ablation."""
        return x if self.cnn is None else x + self.w * self.cnn(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, W, 1) scaled values, oldest first -> (B, 1, 1) the next scaled value."""
        if x.ndim != 3 or x.shape[1:] != (self.window, 1):
            raise InputShapeError(f"ResNLS expects windows of shape (batch, {self.window}, 1), got {tuple(x.shape)}")
        r = self.refine(x[..., 0])
        out, _ = self.lstm(r.unsqueeze(1))  # a sequence of length 1: (B, 1, hidden)
        return self.head(out[:, -1]).view(-1, 1, 1)


# the official module (src/resnls.py's ResNLS): cnn = Sequential(conv, ReLU, BN, Dropout, conv, ReLU, BN, Flatten,
# Linear); its residual scalar is ``weight``, its head ``linear``
_OFFICIAL_NAMES = {"cnn.0.": "cnn.conv1.", "cnn.2.": "cnn.bn1.", "cnn.4.": "cnn.conv2.", "cnn.6.": "cnn.bn2.",
                   "cnn.8.": "cnn.fc.", "linear.": "head."}


def official_checkpoint_filter(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename the official ``ResNLS`` state dict (``torch.save(model.state_dict())``; the released script saves
    none itself) to this model's keys. ``weight`` (1,) becomes ``w`` (); a file trained on CUDA has no ``weight`` (the
    released ``nn.Parameter(...).to(device)`` is then not registered) and gets w = 0, the value it never leaves.
    The LSTM-only ablation (``finance/resnls_lstm``) drops the CNN branch and w, which the released forward never
    uses."""
    if "linear.weight" not in state_dict or "head.weight" in state_dict:
        return state_dict
    out = {}
    for key, value in state_dict.items():
        if key == "weight":
            out["w"] = value.reshape(())
            continue
        for old, new in _OFFICIAL_NAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    if getattr(model, "cnn", None) is None:
        return {k: v for k, v in out.items() if not k.startswith("cnn.") and k != "w"}
    out.setdefault("w", torch.zeros(()))
    return out


def _check_shape(window: int, variables: int, horizon: int, targets: int) -> None:
    if variables != 1 or targets != 1 or horizon != 1:
        raise ValueError("ResNLS forecasts one series one step ahead: it needs variables=1, targets=1, horizon=1, "
                         f"got variables={variables}, targets={targets}, horizon={horizon}; use "
                         "timeseries/mamba_forecaster or timeseries/regenn for several variables or horizons")


_PAPER = Paper("ResNLS: An Improved Model for Stock Price Forecasting", arxiv="2312.01020",
               venue="Computational Intelligence 2023", code_url="https://github.com/Yuanzhe-Jia/ResNLS")
_DIFFERENCES = (
    "Built as the paper describes: the LSTM reads r = x + w * CNN(x) (w learnable, starting at 0). The released "
    "script feeds x to the LSTM (CNN branch and w get no gradient), broadcasts its MSE loss to (B, B) and fits the "
    "min-max scaler on the whole series before splitting; none of that is copied. The official module's state dict "
    "(the script saves none; torch.save(model.state_dict()) of its ResNLS) loads with pretrained=: keys renamed, "
    "its residual scalar `weight` becomes w (0 when absent, as in a file trained on CUDA). It gives the released "
    "outputs when w = 0 (what released training leaves: the scalar gets no gradient) or through "
    "finance/resnls_lstm; with w != 0 this model feeds r, as the paper says, and differs by design. "
    "The paper's data is the SSE "
    "Composite (baostock, 2012-2022, not available offline); the quick start uses the S&P 500 closes shipped with the "
    "`arch` package (1999-2018), windows of 5 closes, one day ahead, a chronological split with the scaler fitted on "
    "the training part only. Persistence (tomorrow = today) is a strong baseline for daily prices: the task reports "
    "it beside the model, and the back-test compares with buy-and-hold."
)


@register_model("finance/resnls", checkpoint_filter=official_checkpoint_filter, card=ModelCard(
    task="forecasting", paper=_PAPER, license="MIT", num_params=32_711, input_shape=(5, 1),
    output=Horizons(horizons=(1,), targets=1), recipes={"quickstart": "resnls_quickstart.yaml",
                                                        "change": ("resnls_quickstart.yaml", "resnls_change.yaml")},
    notes=_DIFFERENCES,
))
def resnls(window: int = 5, variables: int = 1, horizon: int = 1, targets: int = 1, **kwargs) -> ResNLS:
    """ResNLS-5 of the paper (32,711 parameters)."""
    _check_shape(window, variables, horizon, targets)
    return ResNLS(window=window, **kwargs)


@register_model("finance/resnls_lstm", checkpoint_filter=official_checkpoint_filter, card=ModelCard(
    task="forecasting", paper=_PAPER, license="MIT", num_params=18_241, input_shape=(5, 1),
    output=Horizons(horizons=(1,), targets=1), recipes={"quickstart": "resnls_quickstart.yaml",
                                                        "change": ("resnls_quickstart.yaml", "resnls_change.yaml")},
    notes="The LSTM-only ablation of ResNLS (no CNN branch, no w): LSTM(5 -> 64) -> Linear(64 -> 1). It is what the "
          "released ResNLS script effectively trains, since its CNN branch receives no gradient.",
))
def resnls_lstm(window: int = 5, variables: int = 1, horizon: int = 1, targets: int = 1, **kwargs) -> ResNLS:
    """The LSTM-only ablation of ResNLS (18,241 parameters)."""
    _check_shape(window, variables, horizon, targets)
    return ResNLS(window=window, residual=False, **kwargs)

"""The LSTM baseline of the forecasting benchmarks (Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural
Computation 1997): a stacked LSTM over the window, a linear head from the last step to the H x T forecasts."""

from __future__ import annotations

from torch import Tensor, nn

from zoo.errors import InputShapeError
from zoo.registry import Horizons, ModelCard, Paper, register_model

__all__ = ["LSTMForecaster", "lstm_forecaster"]


class LSTMForecaster(nn.Module):
    """(B, W, V) windows -> (B, H, T) forecasts.

    Args:
        variables: V input series; horizon: H; targets: T.
        hidden, layers, dropout: the LSTM (64, 2, 0.1 between layers).
        window: only checked against the input, None to accept any length.
    """

    def __init__(self, variables: int = 1, horizon: int = 1, targets: int = 1, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.1, window: int | None = None):
        super().__init__()
        self.variables, self.horizon, self.window = variables, horizon, window
        self.horizons, self.targets = tuple(range(1, horizon + 1)), targets
        self.lstm = nn.LSTM(variables, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, horizon * targets)

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One window: (window, or any length when None, variables) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.window, self.variables)}

    def forward(self, x: Tensor) -> Tensor:
        """(B, W, V) -> (B, H, T)."""
        if x.ndim != 3 or x.shape[-1] != self.variables or (self.window is not None and x.shape[1] != self.window):
            raise InputShapeError(f"the LSTM forecaster expects windows of shape (batch, "
                                  f"{self.window or 'window'}, {self.variables}), got {tuple(x.shape)}")
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).unflatten(-1, (self.horizon, self.targets))


@register_model("timeseries/lstm", card=ModelCard(
    task="forecasting", license="BSD-3-Clause (torch.nn.LSTM)",
    paper=Paper("Long Short-Term Memory", venue="Neural Computation 1997"),
    num_params=50_497, input_shape=(52, 1), output=Horizons(horizons=(1,), targets=1),
    recipes={"quickstart": "lstm_co2.yaml"},
    notes="A baseline: two LSTM layers of 64 units over the window and a linear head on the last step. The task "
          "reports the persistence (and, with a season, the seasonal-naive) forecast beside every model.",
))
def lstm_forecaster(window: int | None = None, variables: int = 1, horizon: int = 1, targets: int = 1,
                    **kwargs) -> LSTMForecaster:
    """Two-layer LSTM baseline."""
    return LSTMForecaster(variables=variables, horizon=horizon, targets=targets, window=window, **kwargs)

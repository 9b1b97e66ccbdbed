"""A Mamba forecaster: the zoo's Mamba block (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", arXiv 2312.00752; :mod:`zoo.blocks.mamba`) stacked over the window, with a linear horizon head on the last
step's features.

The stack is causal, so the features at step t see the inputs up to t only: :meth:`MambaForecaster.forward_sequence`
gives the forecast made at every step of the window in one parallel pass, and :meth:`MambaForecaster.step` gives the
same forecasts online, one observation at a time, carrying a constant-size state.
"""

from __future__ import annotations

from torch import Tensor, nn

from zoo.blocks.mamba import MambaBlock, MambaState
from zoo.errors import InputShapeError
from zoo.registry import Horizons, ModelCard, Paper, register_model

__all__ = ["MambaForecaster", "mamba_forecaster"]


class MambaForecaster(nn.Module):
    """(B, W, V) windows -> (B, H, T) forecasts of the next H steps of T target series.

    Args:
        variables: V input series per step (targets and covariates).
        horizon: H steps ahead.
        targets: T series forecast.
        dim: width of the embedding and of the Mamba blocks.
        depth: number of :class:`zoo.blocks.mamba.MambaBlock`.
        d_state, d_conv, expand: the Mamba mixer (16, 4, 2).
        drop_path: stochastic depth of the blocks.
        window: only checked against the input (the model runs on any length), None to accept any.
        scan_method: "fast" (chunked) or "reference" scan.
    """

    def __init__(self, variables: int = 1, horizon: int = 1, targets: int = 1, dim: int = 64, depth: int = 2,
                 d_state: int = 16, d_conv: int = 4, expand: float = 2, drop_path: float = 0.0,
                 window: int | None = None, scan_method: str = "fast"):
        super().__init__()
        self.variables, self.horizon, self.window = variables, horizon, window
        self.horizons, self.targets = tuple(range(1, horizon + 1)), targets
        self.embed = nn.Linear(variables, dim)
        self.blocks = nn.ModuleList(
            MambaBlock(dim, norm="rms", drop_path=drop_path, d_state=d_state, d_conv=d_conv, expand=expand,
                       scan_method=scan_method) for _ in range(depth))
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.head = nn.Linear(dim, horizon * targets)

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One window: (window, or any length when None, variables) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.window, self.variables)}

    def _check(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.variables or (self.window is not None and x.shape[1] != self.window):
            length = self.window if self.window is not None else "window"
            raise InputShapeError(f"the Mamba forecaster expects windows of shape (batch, {length}, "
                                  f"{self.variables}), got {tuple(x.shape)}")

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, L, V) -> (B, L, dim) causal features."""
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward_head(self, h: Tensor) -> Tensor:
        """(..., dim) -> (..., H, T)."""
        return self.head(h).unflatten(-1, (self.horizon, self.targets))

    def forward_sequence(self, x: Tensor) -> Tensor:
        """(B, L, V) -> (B, L, H, T): the forecast made at every step from the inputs up to it."""
        if x.ndim != 3 or x.shape[-1] != self.variables:
            raise InputShapeError(f"expected (batch, length, {self.variables}), got {tuple(x.shape)}")
        return self.forward_head(self.forward_features(x))

    def forward(self, x: Tensor) -> Tensor:
        """(B, W, V) -> (B, H, T): the forecast made at the last step of the window."""
        self._check(x)
        return self.forward_head(self.forward_features(x)[:, -1])

    def initial_state(self, batch: int) -> list[MambaState]:
        """The states before the first :meth:`step` (one per block)."""
        return [block.mixer.initial_state(batch) for block in self.blocks]

    def step(self, x: Tensor, state: list[MambaState] | None = None) -> tuple[Tensor, list[MambaState]]:
        """One observation (B, V) and the state -> the forecast from here (B, H, T) and the next state."""
        if x.ndim != 2 or x.shape[-1] != self.variables:
            raise InputShapeError(f"step expects one observation of shape (batch, {self.variables}), "
                                  f"got {tuple(x.shape)}")
        state = self.initial_state(x.shape[0]) if state is None else state
        h, new_state = self.embed(x), []
        for block, block_state in zip(self.blocks, state, strict=True):
            h, block_state = block.step(h, block_state)
            new_state.append(block_state)
        return self.forward_head(self.norm(h)), new_state


@register_model("timeseries/mamba_forecaster", card=ModelCard(
    task="forecasting", license="Apache-2.0 (mamba_ssm; the block is the zoo's own implementation)",
    paper=Paper("Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arxiv="2312.00752",
                venue="COLM 2024", code_url="https://github.com/state-spaces/mamba"),
    num_params=65_665, input_shape=(52, 1), output=Horizons(horizons=(1,), targets=1),
    recipes={"quickstart": "mamba_co2.yaml"},
    notes="Not a model of the Mamba paper itself: the paper's selective-state-space block (zoo.blocks.mamba, "
          "mamba_ssm's parameter names and initialisation) used as a causal forecaster: Linear(V -> 64) embedding, "
          "two pre-norm residual Mamba blocks (d_state 16, d_conv 4, expand 2), RMSNorm, and a linear head from the "
          "last step to the H x T forecasts. Its recurrent step gives online forecasts equal to the parallel ones.",
))
def mamba_forecaster(window: int | None = None, variables: int = 1, horizon: int = 1, targets: int = 1,
                     **kwargs) -> MambaForecaster:
    """Two Mamba blocks of width 64 over the window, a linear horizon head."""
    return MambaForecaster(variables=variables, horizon=horizon, targets=targets, window=window, **kwargs)

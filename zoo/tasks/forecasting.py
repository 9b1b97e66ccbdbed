"""Forecasting: multi-horizon regression of time series, windows (B, W, V) -> the next H steps of T targets
(B, H, T).

Batches are ``(x, y)`` of scaled values (``zoo.data.timeseries.TimeSeriesData``: the targets are the first T input
columns, so ``x[:, -1, :T]`` is the last observation). The loss (MSE, MAE or Huber) is computed on the scaled
values; every metric on the original scale, with the data module's scaler (fitted on the training part only and
linked into the task's arguments, so a checkpoint carries it):

- MAE, RMSE, MAPE (%), sMAPE (%) and MASE (MAE over the mean absolute one-step change of the training part), for
  the model and, on the same windows, the persistence forecast (every future step = the last observation) and,
  with ``season``, the seasonal-naive forecast;
- directional accuracy: the share of (window, horizon, target) cells where the forecast and the actual move the
  same way from the last observation (cells with no actual move left out), beside ``up_share``, the accuracy of
  always forecasting a rise;
- with ``backtest``, the trading back-test of ResNLS (:func:`backtest`): each day go long when the one-step forecast
  is above today's value, otherwise flat (and the long/short variant), with ``trade_cost`` per unit traded,
  against buy-and-hold on the same days.

Figures (MLflow artifacts): forecast vs actual (with persistence) and, with the back-test, the equity curves.
``zoo predict`` writes a CSV table, one row per (window, horizon, target): series, origin (time of the last
input), time (of the forecast step; past the end of the file the series' usual step continues), horizon, target,
value.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from typing_extensions import override

from zoo.data.contracts import ForecastWindows
from zoo.tasks.base import ZooTask, write_csv
from zoo.tasks.gathering import gather_from_ranks
from zoo.tasks.registry import register_task

LOSSES = ("mse", "mae", "huber")


# --- baselines and metrics (arrays on the original scale) ---------------------------------------------------------
def persistence_forecast(last: np.ndarray, horizon: int) -> np.ndarray:
    """(N, T) last observations -> (N, H, T): every future step equals the last observation."""
    return np.repeat(last[:, None, :], horizon, axis=1)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(N, W, T) past values -> (N, H, T): step h repeats the value one season before it,
    ``history[:, W - 1 + h - season * ceil(h / season)]``."""
    window = history.shape[1]
    if season > window:
        raise ValueError(f"the seasonal-naive forecast needs a window of at least the season ({season}), got {window}")
    steps = np.arange(1, horizon + 1)
    return history[:, window - 1 + steps - season * np.ceil(steps / season).astype(int)]


def error_metrics(forecast: np.ndarray, actual: np.ndarray, naive_scale: np.ndarray | None = None
                  ) -> dict[str, float]:
    """MAE, RMSE, MAPE (%, cells with a zero actual left out), sMAPE (%) and, given the per-target
    ``naive_scale`` (T,), MASE (the mean over targets of MAE_t / scale_t) of (N, H, T) arrays."""
    error = forecast - actual
    nonzero = actual != 0
    denominator = np.abs(actual) + np.abs(forecast)
    metrics = {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt(np.square(error).mean())),
        "mape": float(100 * np.mean(np.abs(error[nonzero] / actual[nonzero]))) if nonzero.any() else float("nan"),
        "smape": float(100 * np.mean(np.where(denominator > 0, 2 * np.abs(error) / np.where(denominator > 0,
                                                                                          denominator, 1), 0.0))),
    }
    if naive_scale is not None:
        per_target = np.abs(error).reshape(-1, error.shape[-1]).mean(0) / np.asarray(naive_scale)
        metrics["mase"] = float(per_target.mean())
    return metrics


def directional_accuracy(forecast: np.ndarray, actual: np.ndarray, last: np.ndarray) -> tuple[float, float]:
    """(N, H, T) forecasts and actuals, (N, T) last observations -> (the share of cells whose forecast moves the
    way the actual moves, the share of cells where the actual rises); cells where the actual does not move are left
    out of both."""
    moved = np.sign(actual - last[:, None, :])
    predicted = np.sign(forecast - last[:, None, :])
    keep = moved != 0
    if not keep.any():
        return float("nan"), float("nan")
    return float((predicted[keep] == moved[keep]).mean()), float((moved[keep] > 0).mean())


def max_drawdown(equity: np.ndarray) -> float:
    """The largest fall from a running peak, as a fraction of the peak (the curve starts at 1)."""
    curve = np.r_[1.0, equity]
    return float(np.max(1 - curve / np.maximum.accumulate(curve)))


def backtest(forecast: np.ndarray, today: np.ndarray, tomorrow: np.ndarray, cost: float = 0.0,
             long_short: bool = False, periods_per_year: int = 252) -> dict[str, Any]:
    """The back-test of ResNLS on consecutive days: hold a long position from today's close to tomorrow's when
    the forecast of tomorrow is above today's close, otherwise stay flat (``long_short``: go short instead).

    Args:
        forecast, today, tomorrow: (N,) the one-step forecasts, today's and tomorrow's closes, in time order.
        cost: paid per unit of position changed, as a fraction of the value (0.001 = 10 basis points; entering a
            long from flat costs it once, a switch from long to short twice).
        periods_per_year: for the annualised Sharpe ratio (252 trading days).

    Returns:
        total_return (the cumulative return), sharpe (annualised mean over standard deviation of the daily
        returns, no risk-free rate), max_drawdown, hit_rate (the share of days in the market with a gain),
        exposure (the share of days in the market), trades (position changes) and equity (N,), the value of 1
        invested.
    """
    returns = tomorrow / today - 1
    position = np.where(forecast > today, 1.0, -1.0 if long_short else 0.0)
    turnover = np.abs(np.diff(np.r_[0.0, position]))
    daily = position * returns - cost * turnover
    equity = np.cumprod(1 + daily)
    invested = position != 0
    std = daily.std(ddof=1) if len(daily) > 1 else 0.0
    return {
        "total_return": float(equity[-1] - 1) if len(equity) else 0.0,
        "sharpe": float(daily.mean() / std * np.sqrt(periods_per_year)) if std > 0 else 0.0,
        "max_drawdown": max_drawdown(equity),
        "hit_rate": float((daily[invested] > 0).mean()) if invested.any() else float("nan"),
        "exposure": float(invested.mean()) if len(invested) else 0.0,
        "trades": int((turnover > 0).sum()),
        "equity": equity,
    }


def buy_and_hold(today: np.ndarray, tomorrow: np.ndarray, cost: float = 0.0, periods_per_year: int = 252
                 ) -> dict[str, Any]:
    """Long every day of the same period (one entry cost)."""
    return backtest(np.full(len(today), np.inf), today, tomorrow, cost, False, periods_per_year)


@register_task("forecasting")
class ForecastingTask(ZooTask):
    """Multi-horizon forecasting with metrics on the original scale next to persistence (and seasonal naive).

    Args:
        window, variables, horizon, targets: the shape of the windows (linked from the data module); passed to
            the model's factory.
        loss: "mse", "mae" or "huber" (on the scaled values).
        huber_delta: the Huber loss's threshold (scaled units).
        window_norm: "none", or "last": subtract each window's last observation from its inputs (every variable)
            and add the last target value back to the output, so the model forecasts the change (NLinear's
            normalisation, Zeng et al. 2023; it lets a model trained on one price range forecast another).
        season: the season length of the seasonal-naive baseline (e.g. 52 for weekly data), None for none.
        backtest: run the trading back-test on the one-step forecasts of the first target.
        trade_cost: the back-test's cost per unit of position changed (fraction of the value).
        periods_per_year: steps per year, for the annualised Sharpe ratio.
        target_scaling: [offsets, scales] of the targets (original = scaled * scale + offset), linked from the data.
        naive_scale: the mean absolute one-step change of every target on the training part (MASE's unit), linked.
        target_names: names of the targets (for the prediction table), linked.
        **kwargs: the arguments of ``zoo.tasks.base.ZooTask`` (pretrained, model_kwargs, optimizer, ...).
    """

    monitor = "val/loss"
    monitor_mode = "min"
    data_links = (("window", "window"), ("num_variables", "variables"), ("horizon", "horizon"),
                  ("num_targets", "targets"), ("target_scaling", "target_scaling"), ("naive_scale", "naive_scale"),
                  ("target_names", "target_names"))
    prediction_output = "forecasts.csv"

    def __init__(self, model: str, window: int | None = None, variables: int = 1, horizon: int = 1, targets: int = 1,
                 loss: str = "mse", huber_delta: float = 1.0, window_norm: str = "none", season: int | None = None,
                 backtest: bool = False, trade_cost: float = 0.0, periods_per_year: int = 252,
                 target_scaling: list[list[float]] | None = None, naive_scale: list[float] | None = None,
                 target_names: list[str] | None = None, **kwargs: Any):
        super().__init__(model, **kwargs)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if window_norm not in ("none", "last"):
            raise ValueError(f"window_norm must be 'none' or 'last', got {window_norm!r}")
        if season is not None and window is not None and not 1 <= season <= window:
            raise ValueError(f"season must lie in [1, window={window}] for the seasonal-naive forecast, got {season}")
        if trade_cost < 0:
            raise ValueError(f"trade_cost must be >= 0, got {trade_cost}")
        self.save_hyperparameters()
        shape = {"variables": variables, "horizon": horizon, "targets": targets}
        self.build_model(**({"window": window} if window is not None else {}), **shape)
        self.takes_batch_index = "batch_index" in inspect.signature(self.model.forward).parameters
        offset, scale = target_scaling if target_scaling is not None else ([0.0] * targets, [1.0] * targets)
        if len(offset) != targets or len(scale) != targets:
            raise ValueError(f"target_scaling holds {len(offset)} offsets and {len(scale)} scales for {targets} "
                             "targets")
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32), persistent=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        self.outputs: dict[str, dict[str, list[np.ndarray]]] = {"val": {}, "test": {}}
        self._batch_index: int | None = None

    # --- the model's input and output ---------------------------------------------------------------------------
    def original(self, values: torch.Tensor) -> torch.Tensor:
        """Scaled target values (..., T) -> the original scale."""
        return values * self.scale.to(values) + self.offset.to(values)

    @override
    def forward(self, x: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        """(B, W, V) scaled windows -> (B, H, T) scaled forecasts."""
        model = model or self.model
        t = self.hparams.targets
        last = x[:, -1:, :]
        inputs = x - last if self.hparams.window_norm == "last" else x
        if self.takes_batch_index and model.training:
            out = model(inputs, batch_index=self._batch_index)
        else:
            out = model(inputs)
        return out + last[..., :t] if self.hparams.window_norm == "last" else out

    def loss(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "mae":
            return F.l1_loss(forecast, target)
        if self.hparams.loss == "huber":
            return F.huber_loss(forecast, target, delta=self.hparams.huber_delta)
        return F.mse_loss(forecast, target)

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_index = batch_idx  # ReGENN adds each training batch of the first pass to its graph once

    @override
    def step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        forecast = self(x, self.model if stage == "train" else self.eval_model)
        if forecast.shape != y.shape:
            raise ValueError(f"{self.model_id} forecast {tuple(forecast.shape)} for targets {tuple(y.shape)}: give "
                             "the model the data's window, horizon and number of targets")
        loss = self.loss(forecast, y)
        if stage != "train":
            t = self.hparams.targets
            store = self.outputs[stage]
            for name, value in (("forecast", self.original(forecast)), ("actual", self.original(y)),
                                ("history", self.original(x[..., :t]))):
                store.setdefault(name, []).append(value.detach().float().cpu().numpy())
        return loss

    # --- metrics ------------------------------------------------------------------------------------------------
    def evaluate(self, forecast: np.ndarray, actual: np.ndarray, history: np.ndarray,
                 series: list[str] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
        """The metrics of one stage from (N, H, T) forecasts and actuals and (N, W, T) inputs, original scale; also
        the back-test curves (when on). ``series`` names the series of every window (back-tests run per series,
        their figures are averaged)."""
        hp = self.hparams
        last = history[:, -1]
        naive = np.asarray(hp.naive_scale) if hp.naive_scale is not None else None
        metrics = error_metrics(forecast, actual, naive)
        persistence = persistence_forecast(last, forecast.shape[1])
        metrics |= {f"persistence_{k}": v for k, v in error_metrics(persistence, actual, naive).items()}
        if hp.season:
            seasonal = seasonal_naive_forecast(history, forecast.shape[1], hp.season)
            metrics |= {f"seasonal_naive_{k}": v for k, v in error_metrics(seasonal, actual, naive).items()}
        metrics["directional_accuracy"], metrics["up_share"] = directional_accuracy(forecast, actual, last)
        metrics["mae_vs_persistence"] = metrics["mae"] / metrics["persistence_mae"] \
            if metrics["persistence_mae"] > 0 else float("nan")
        curves: dict[str, Any] = {}
        if hp.backtest:
            if np.any(history[..., 0] <= 0) or np.any(actual[:, 0, 0] <= 0):
                return metrics, curves  # returns need positive prices
            series = series if series is not None else ["0"] * len(forecast)
            groups = {name: np.flatnonzero(np.asarray(series) == name) for name in dict.fromkeys(series)}
            runs: dict[str, list[dict[str, Any]]] = {"backtest": [], "backtest_long_short": [], "buy_and_hold": []}
            args = {"cost": hp.trade_cost, "periods_per_year": hp.periods_per_year}
            for rows in groups.values():
                today, tomorrow, guess = last[rows, 0], actual[rows, 0, 0], forecast[rows, 0, 0]
                runs["backtest"].append(backtest(guess, today, tomorrow, **args))
                runs["backtest_long_short"].append(backtest(guess, today, tomorrow, long_short=True, **args))
                runs["buy_and_hold"].append(buy_and_hold(today, tomorrow, **args))
            for name, results in runs.items():
                for key in ("total_return", "sharpe", "max_drawdown", "hit_rate", "exposure", "trades"):
                    metrics[f"{name}_{key}"] = _mean_of_finite([r[key] for r in results])
                curves[name] = results[0]["equity"]
        return metrics, curves

    def _stage_arrays(self, stage: str) -> dict[str, np.ndarray]:
        store, self.outputs[stage] = self.outputs[stage], {}
        if self.trainer.world_size > 1:
            parts = gather_from_ranks([{name: np.concatenate(p) for name, p in store.items()}], self.trainer.world_size)
            store = {name: [part[name] for part in parts if name in part] for name in {n for p in parts for n in p}}
        return {name: np.concatenate(parts) for name, parts in store.items()}

    @override
    def end_of_epoch(self, stage: str) -> None:
        arrays = self._stage_arrays(stage)
        if self.trainer.sanity_checking or not arrays:
            return
        datamodule = self.datamodule
        series = times = None
        if isinstance(datamodule, ForecastWindows):
            series, times = datamodule.series_ids(stage), datamodule.target_times(stage)
            if len(series) != len(arrays["forecast"]):  # a limited number of batches
                series = times = None
        metrics, curves = self.evaluate(arrays["forecast"], arrays["actual"], arrays["history"], series)
        self.log_dict({f"{stage}/{k}": float(v) for k, v in metrics.items()}, sync_dist=True)  # gathered
        if stage == "test" or (stage == "val" and self.current_epoch == self.trainer.max_epochs - 1):
            names = self.hparams.target_names or [f"target {i}" for i in range(self.hparams.targets)]
            self.log_figure(lambda: forecast_figure(arrays, series, times, names[0], metrics),
                            f"plots/{stage}_forecast.png")
            if curves:
                self.log_figure(lambda: equity_figure(curves, series, times, metrics), f"plots/{stage}_equity.png")

    # --- predictions --------------------------------------------------------------------------------------------
    @override
    def predict_step(self, batch: Any, batch_idx: int) -> np.ndarray:
        return self.original(self(batch[0], self.eval_model)).float().cpu().numpy()

    @override
    def write_predictions(self, predictions: list[Any], datamodule: Any, output: Path) -> str:
        """A CSV table, one row per (window, horizon, target): series, origin, time, horizon, target, value."""
        forecasts = np.concatenate(predictions) if predictions else np.zeros((0, 1, 1))
        n = len(forecasts)
        origins = datamodule.origins("predict") if datamodule is not None else [("0", i) for i in range(n)]
        times = datamodule.target_times("predict") if datamodule is not None else [
            np.arange(i + 1, i + 1 + forecasts.shape[1]) for i in range(n)]
        names = self.hparams.target_names or [str(i) for i in range(forecasts.shape[2])]
        rows = []
        for (series, origin), steps, forecast in zip(origins, times, forecasts, strict=True):
            for h in range(forecast.shape[0]):
                for t, name in enumerate(names):
                    rows.append({"series": series, "origin": _time_text(origin), "time": _time_text(steps[h]),
                                 "horizon": h + 1, "target": name, "value": float(forecast[h, t])})
        return write_csv(rows, Path(output))


def _mean_of_finite(values: list[float]) -> float:
    """The mean of the finite values (NaN when none is: a hit rate with no day in the market)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _time_text(value: Any) -> str:
    if isinstance(value, np.datetime64):
        text = str(np.datetime_as_string(value, unit="s"))
        return text.removesuffix("T00:00:00")
    return str(value.item() if hasattr(value, "item") else value)


# --- figures --------------------------------------------------------------------------------------------------------
def forecast_figure(arrays: dict[str, np.ndarray], series: list[str] | None, times: list[np.ndarray] | None,
                    name: str, metrics: dict[str, float]):
    """The one-step forecasts of the first target of the first series against the actual values and persistence,
    and the MAE per horizon of the model and of persistence."""
    import matplotlib.pyplot as plt

    forecast, actual, last = arrays["forecast"], arrays["actual"], arrays["history"][:, -1]
    rows = np.arange(len(forecast)) if series is None else np.flatnonzero(np.asarray(series) == series[0])
    x = [times[i][0] for i in rows] if times is not None else rows
    figure, (line, bars) = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [3, 1]})
    line.plot(x, actual[rows, 0, 0], color="k", lw=1.2, label="actual")
    line.plot(x, forecast[rows, 0, 0], color="C0", lw=1, label=f"forecast (MAE {metrics['mae']:.4g})")
    line.plot(x, last[rows, 0], color="C1", lw=0.8, ls=":", label=f"persistence (MAE {metrics['persistence_mae']:.4g})")
    title = name if series is None or len(set(series)) == 1 else f"{name}, series {series[0]}"
    line.set(title=f"{title}: one step ahead", ylabel=name)
    line.legend()
    horizons = np.arange(1, forecast.shape[1] + 1)
    model_mae = np.abs(forecast - actual).mean(axis=(0, 2))
    naive_mae = np.abs(last[:, None, :] - actual).mean(axis=(0, 2))
    bars.bar(horizons - 0.2, model_mae, 0.4, label="model")
    bars.bar(horizons + 0.2, naive_mae, 0.4, label="persistence")
    bars.set(xlabel="horizon", ylabel="MAE", title="MAE per horizon", xticks=horizons)
    bars.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def equity_figure(curves: dict[str, np.ndarray], series: list[str] | None, times: list[np.ndarray] | None,
                  metrics: dict[str, float]):
    """Equity curves of the long/flat and long/short strategies and buy-and-hold (the first series)."""
    import matplotlib.pyplot as plt

    n = len(curves["buy_and_hold"])
    rows = np.arange(n) if series is None else np.flatnonzero(np.asarray(series) == series[0])[:n]
    x = [times[i][0] for i in rows] if times is not None else np.arange(n)
    figure, axis = plt.subplots(figsize=(10, 4))
    for key, label in (("backtest", "long when forecast > today"), ("backtest_long_short", "long / short"),
                       ("buy_and_hold", "buy and hold")):
        result = (f"{100 * metrics[f'{key}_total_return']:+.1f} %, Sharpe {metrics[f'{key}_sharpe']:.2f}, "
                  f"max DD {100 * metrics[f'{key}_max_drawdown']:.1f} %")
        axis.plot(x, curves[key], label=f"{label}: {result}")
    axis.axhline(1, color="k", lw=0.6)
    axis.set(ylabel="value of 1 invested", title="back-test on the test days")
    axis.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure

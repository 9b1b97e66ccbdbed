"""Forecasting: the metrics, baselines and back-test on hand-computed cases; a short run of a small LSTM on a real
series (the Mauna Loa CO2 record of statsmodels) against persistence and seasonal naive; the forecast table that
``zoo predict`` writes from a checkpoint, with the scaler the checkpoint carries."""

import csv

import numpy as np
import pytest
import torch

from zoo.tasks.forecasting import (
    ForecastingTask,
    backtest,
    buy_and_hold,
    directional_accuracy,
    error_metrics,
    max_drawdown,
    persistence_forecast,
    seasonal_naive_forecast,
)

torch.set_num_threads(1)


def test_error_metrics_by_hand():
    forecast = np.array([2.0, 4.0, 1.0, 5.0]).reshape(2, 2, 1)
    actual = np.array([1.0, 5.0, 2.0, 4.0]).reshape(2, 2, 1)
    metrics = error_metrics(forecast, actual, naive_scale=np.array([0.5]))
    assert metrics["mae"] == pytest.approx(1.0)
    assert metrics["rmse"] == pytest.approx(1.0)
    assert metrics["mape"] == pytest.approx(100 * (1 / 1 + 1 / 5 + 1 / 2 + 1 / 4) / 4)
    assert metrics["smape"] == pytest.approx(100 * (2 / 3 + 2 / 9 + 2 / 3 + 2 / 9) / 4)
    assert metrics["mase"] == pytest.approx(2.0)
    # RMSE weighs the large error more than MAE does; MASE averages per target over the target's own unit
    metrics = error_metrics(np.array([0.0, 0.0, 4.0, 10.0]).reshape(2, 1, 2), np.array([1.0, 0.0, 1.0, 0.0]).reshape(
        2, 1, 2), naive_scale=np.array([1.0, 10.0]))
    assert metrics["mae"] == pytest.approx((1 + 0 + 3 + 10) / 4)
    assert metrics["rmse"] == pytest.approx(np.sqrt((1 + 0 + 9 + 100) / 4))
    assert metrics["mape"] == pytest.approx(100 * (1 + 3) / 2)  # the zero actuals are left out
    assert metrics["mase"] == pytest.approx(((1 + 3) / 2 / 1.0 + (0 + 10) / 2 / 10.0) / 2)
    assert "mase" not in error_metrics(forecast, actual)


def test_persistence_and_seasonal_naive_forecasts():
    history = np.arange(1.0, 9.0).reshape(1, 8, 1)  # 1 .. 8
    np.testing.assert_array_equal(persistence_forecast(history[:, -1], 3)[0, :, 0], [8, 8, 8])
    # season 4: step h repeats the value one season before it, and the last season again past one season
    np.testing.assert_array_equal(seasonal_naive_forecast(history, 6, 4)[0, :, 0], [5, 6, 7, 8, 5, 6])
    np.testing.assert_array_equal(seasonal_naive_forecast(history, 2, 1)[0, :, 0], [8, 8])
    with pytest.raises(ValueError, match="window of at least the season"):
        seasonal_naive_forecast(history, 1, 9)


def test_directional_accuracy_leaves_out_cells_without_a_move():
    last = np.array([[3.0], [3.0]])
    actual = np.array([1.0, 5.0, 2.0, 3.0]).reshape(2, 2, 1)  # down, up, down, no move
    forecast = np.array([2.0, 2.0, 1.0, 9.0]).reshape(2, 2, 1)  # down (right), down (wrong), down (right), -
    accuracy, up_share = directional_accuracy(forecast, actual, last)
    assert accuracy == pytest.approx(2 / 3)
    assert up_share == pytest.approx(1 / 3)


def test_backtest_on_a_hand_made_price_path():
    closes = np.array([100.0, 110.0, 99.0, 99.0, 108.9])  # +10 %, -10 %, 0 %, +10 %
    today, tomorrow = closes[:-1], closes[1:]
    forecast = np.array([105.0, 100.0, 100.0, 120.0])  # long, flat, long, long
    result = backtest(forecast, today, tomorrow)
    np.testing.assert_allclose(result["equity"], [1.1, 1.1, 1.1, 1.21])
    assert result["total_return"] == pytest.approx(0.21)
    assert (result["trades"], result["exposure"], result["max_drawdown"]) == (3, 0.75, 0.0)
    assert result["hit_rate"] == pytest.approx(2 / 3)  # the flat 0 % day in the market is no gain
    daily = np.array([0.1, 0.0, 0.0, 0.1])
    assert result["sharpe"] == pytest.approx(daily.mean() / daily.std(ddof=1) * np.sqrt(252))

    costly = backtest(forecast, today, tomorrow, cost=0.01)  # paid on entering, leaving and entering again
    assert costly["total_return"] == pytest.approx(1.09 * 0.99 * 0.99 * 1.1 - 1)

    long_short = backtest(forecast, today, tomorrow, long_short=True)  # short on the -10 % day earns 10 %
    assert long_short["total_return"] == pytest.approx(1.1 ** 3 - 1)
    assert long_short["exposure"] == 1.0
    assert backtest(forecast, today, tomorrow, cost=0.01, long_short=True)["total_return"] == pytest.approx(
        1.09 * 1.08 * 0.98 * 1.1 - 1)  # a switch from long to short turns over two units

    hold = buy_and_hold(today, tomorrow)
    assert hold["total_return"] == pytest.approx(1.1 * 0.9 * 1.0 * 1.1 - 1)
    assert hold["max_drawdown"] == pytest.approx(0.1)  # from 1.1 down to 0.99
    assert hold["trades"] == 1
    assert max_drawdown(np.array([0.5, 1.5, 0.75])) == pytest.approx(0.5)  # below the start counts too


def test_flat_all_along_has_no_hit_rate_and_no_warning():
    import warnings

    today = np.array([100.0, 101.0])
    task = ForecastingTask("finance/resnls", window=5, backtest=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics, curves = task.evaluate(np.array([[[90.0]], [[90.0]]]), np.array([[[101.0]], [[102.0]]]),
                                        np.tile(today[:, None, None], (1, 5, 1)))
    assert np.isnan(metrics["backtest_hit_rate"]) and metrics["backtest_exposure"] == 0.0
    assert metrics["backtest_total_return"] == 0.0
    assert metrics["buy_and_hold_total_return"] == pytest.approx(102 / 100 - 1)
    assert set(curves) == {"backtest", "backtest_long_short", "buy_and_hold"}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="loss must be one of mse, mae, huber"):
        ForecastingTask("timeseries/lstm", loss="l2")
    with pytest.raises(ValueError, match=r"season must lie in \[1, window=24\]"):
        ForecastingTask("timeseries/lstm", window=24, season=52)
    with pytest.raises(ValueError, match="window_norm"):
        ForecastingTask("timeseries/lstm", window_norm="mean")
    with pytest.raises(ValueError, match="2 offsets and 2 scales for 1 targets"):
        ForecastingTask("timeseries/lstm", target_scaling=[[0.0, 0.0], [1.0, 1.0]])
    task = ForecastingTask("timeseries/lstm", window=8, horizon=2)
    with pytest.raises(ValueError, match=r"forecast \(4, 2, 1\) for targets \(4, 3, 1\)"):
        task.step((torch.randn(4, 8, 1), torch.randn(4, 3, 1)), "val")


def test_window_norm_last_forecasts_the_change():
    """With window_norm "last" a window shifted by c is forecast shifted by c: the model sees only the changes."""
    torch.manual_seed(0)
    task = ForecastingTask("timeseries/lstm", window=8, horizon=3, window_norm="last").eval()
    x = torch.randn(4, 8, 1)
    with torch.no_grad():
        torch.testing.assert_close(task(x + 5.0), task(x) + 5.0)
        plain = ForecastingTask("timeseries/lstm", window=8, horizon=3).eval()
        assert not torch.allclose(plain(x + 5.0), plain(x) + 5.0, atol=1e-3)


def test_metrics_are_on_the_original_scale():
    task = ForecastingTask("timeseries/lstm", window=4, horizon=1, target_scaling=[[100.0], [10.0]],
                           naive_scale=[2.0])
    forecast, actual = torch.tensor([[[0.5]]]), torch.tensor([[[0.3]]])
    torch.testing.assert_close(task.original(forecast), torch.tensor([[[105.0]]]))
    metrics, _ = task.evaluate(task.original(forecast).numpy(), task.original(actual).numpy(),
                               task.original(torch.zeros(1, 4, 1)).numpy())
    assert metrics["mae"] == pytest.approx(2.0)  # |105 - 103|, not |0.5 - 0.3|
    assert metrics["mase"] == pytest.approx(1.0)
    assert metrics["persistence_mae"] == pytest.approx(3.0)  # the last input, 100, against 103
    assert metrics["mae_vs_persistence"] == pytest.approx(2 / 3)


# --- a short run on a real series ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def co2_run(tmp_path_factory, learning):
    import lightning as L
    from zoo.data.timeseries import TimeSeriesData, _embedded_frame

    root = tmp_path_factory.mktemp("co2")
    path = root / "co2.csv"
    _embedded_frame("co2").to_csv(path, index=False)  # weekly Mauna Loa CO2 1958-2001, 59 missing weeks
    L.seed_everything(learning.seed)
    data = TimeSeriesData(path=str(path), target="co2", window=52, horizon=4, missing="interpolate",
                          scaler="standard", batch_size=64)
    task = ForecastingTask("timeseries/lstm", window=52, horizon=4, window_norm="last", season=52,
                           target_scaling=data.target_scaling, naive_scale=data.naive_scale,
                           target_names=data.target_names, model_kwargs={"hidden": 16, "layers": 1},
                           optimizer=learning.optimizer(3e-3))
    trainer = L.Trainer(max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root)
    trainer.fit(task, data)
    results = trainer.test(task, data, verbose=False)[0]
    return trainer, task, data, results, root


def test_a_small_lstm_beats_persistence_and_seasonal_naive_on_co2(co2_run):
    _, _, _, results, _ = co2_run
    assert all(np.isfinite(v) for v in results.values())
    # a month ahead, the seasonal cycle is worth learning: persistence misses it, seasonal naive misses the trend
    assert results["test/mae"] < 0.9 * results["test/persistence_mae"], results
    assert results["test/mae"] < results["test/seasonal_naive_mae"]
    assert results["test/mase"] < results["test/persistence_mase"]
    assert 0.3 < results["test/persistence_mae"] < 2.0  # ppm: the metrics are on the original scale
    assert results["test/directional_accuracy"] > 0.6
    assert results["test/rmse"] >= results["test/mae"]


def test_predict_writes_the_forecast_table_from_a_checkpoint(co2_run, tmp_path):
    from zoo.data.timeseries import TimeSeriesData

    trainer, task, data, _, root = co2_run
    ckpt = root / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = ForecastingTask.load_from_checkpoint(ckpt)
    torch.testing.assert_close(loaded.scale, task.scale)
    torch.testing.assert_close(loaded.offset, task.offset)
    saved = torch.load(ckpt, weights_only=False)["datamodule_hyper_parameters"]
    # new data only: the last 60 weeks, shifted by 10 ppm, read with the checkpoint's scaler (no training file)
    frame = data.panel.times[0][-60:], data.panel.values[0][-60:, 0] + 10.0
    new = tmp_path / "new.csv"
    new.write_text("date,co2\n" + "".join(f"{str(t)[:10]},{v:.2f}\n" for t, v in zip(*frame, strict=True)))
    fresh = TimeSeriesData(**{**saved, "path": str(new)})
    assert fresh.schema == data.schema and fresh.panel is None  # nothing is refitted
    predictions = trainer.predict(loaded, datamodule=fresh)
    output = tmp_path / "forecasts.csv"
    assert loaded.write_predictions(predictions, fresh, output) == f"wrote {9 * 4} predictions to {output}"
    rows = list(csv.DictReader(output.open()))
    assert list(rows[0]) == ["series", "origin", "time", "horizon", "target", "value"]
    assert [r["horizon"] for r in rows[:4]] == ["1", "2", "3", "4"] and {r["target"] for r in rows} == {"co2"}
    last = rows[-4:]  # the last window ends at the last week of the file: its forecasts lie past the end
    assert last[0]["origin"] == "2001-12-29"
    assert [r["time"] for r in last] == ["2002-01-05", "2002-01-12", "2002-01-19", "2002-01-26"]
    values = np.array([float(r["value"]) for r in rows])
    assert np.all(np.abs(values - 381) < 10)  # about the new level (371 + 10 ppm), on the original scale


def test_regenn_graph_takes_each_training_batch_of_the_first_epoch_once(tmp_path):
    """The task hands ReGENN the batch index, so its co-occurrence graph sums the first pass over the training
    batches only; later epochs, validation and testing leave it as it is."""
    import lightning as L
    from zoo.data.timeseries import TimeSeriesData, _embedded_frame

    _embedded_frame("macrodata").to_csv(tmp_path / "macro.csv", index=False)
    L.seed_everything(0)
    data = TimeSeriesData(path=str(tmp_path / "macro.csv"), target=["realgdp", "realcons", "realinv"], window=7,
                          horizon=7, split_on="targets", batch_size=32)
    task = ForecastingTask("timeseries/regenn", window=7, horizon=7, variables=3, targets=3,
                           target_scaling=data.target_scaling, naive_scale=data.naive_scale,
                           model_kwargs={"feedforward": 32})
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(task, data)
    graph = task.model.source_evolution
    batches = len(data.train_dataloader())
    assert batches == len(data.dataset("train")) // 32 == 4  # full batches of 32 (the last partial one dropped)
    assert int(graph.batches_seen) == batches
    adjacency = graph.adjacency.clone()
    assert adjacency.abs().sum() > 0
    results = trainer.test(task, data, verbose=False)[0]
    assert torch.equal(graph.adjacency, adjacency) and int(graph.batches_seen) == batches
    assert np.isfinite(results["test/mae"]) and results["test/persistence_mae"] > 0

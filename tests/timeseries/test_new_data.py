"""A trained ResNLS checkpoint meets another price file: ``zoo test --data.test_path`` evaluates every window of it
alone (the training file is gone; the checkpoint's min-max scaler and columns are used) and the RMSE it reports
equals the RMSE, by hand, of the forecasts ``zoo predict`` writes for the same file against the prices that
followed; a file without the trained column is named with both sides."""

from __future__ import annotations

import csv

import lightning as L
import numpy as np
import pytest
import torch
from zoo.data.timeseries import TimeSeriesData, _embedded_frame

from zoo.errors import DataError
from zoo.tasks.forecasting import ForecastingTask

torch.set_num_threads(1)


@pytest.fixture
def checkpoint(small_runs, tmp_path):
    prices = _embedded_frame("sp500")[["Date", "Close"]]
    train_file, new_file = tmp_path / "train.csv", tmp_path / "new.csv"
    prices.iloc[:1200].to_csv(train_file, index=False)
    prices.iloc[4000:4300].to_csv(new_file, index=False)  # years later, at another price level
    L.seed_everything(0)
    data = TimeSeriesData(path=str(train_file), target="close", window=5, horizon=1, batch_size=64)
    task = ForecastingTask("finance/resnls", window=5, variables=data.num_variables, horizon=1,
                           targets=data.num_targets, target_scaling=data.target_scaling, naive_scale=data.naive_scale,
                           target_names=data.target_names,
                           optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}})
    ckpt, saved = small_runs.fit_and_save(task, data)
    train_file.unlink()
    return ckpt, saved, prices.iloc[4000:4300]["Close"].to_numpy(), new_file


def test_resnls_evaluates_another_file_and_forecasts_it(small_runs, checkpoint, tmp_path):
    ckpt, saved, close, new_file = checkpoint
    data = TimeSeriesData(**{**saved, "test_path": str(new_file)})
    task = ForecastingTask.load_from_checkpoint(ckpt, weights_only=True)
    (result,) = small_runs.trainer().test(task, datamodule=data, ckpt_path=ckpt, weights_only=True, verbose=False)
    assert data.evaluation_line("test") == f"data: 295 windows of 5 -> 1 steps from 1 series in {new_file} " \
                                           "(all of it)"
    assert data.panel is None  # the training file was not read
    forecast = TimeSeriesData(**{**saved, "predict_path": str(new_file)})
    predictions = small_runs.trainer().predict(task, datamodule=forecast, ckpt_path=ckpt, weights_only=True)
    task.write_predictions(predictions, forecast, tmp_path / "forecasts.csv")
    with open(tmp_path / "forecasts.csv") as f:
        values = np.array([float(row["value"]) for row in csv.DictReader(f)])
    assert len(values) == 296  # every window, the last one forecasting the day after the file
    rmse = np.sqrt(np.mean((values[:-1] - close[5:]) ** 2))
    assert result["test/rmse"] == pytest.approx(rmse, rel=1e-4)
    persistence = np.sqrt(np.mean((close[4:-1] - close[5:]) ** 2))
    assert result["test/persistence_rmse"] == pytest.approx(persistence, rel=1e-5)


def test_a_file_without_the_trained_column_is_named(checkpoint, tmp_path):
    _, saved, close, _ = checkpoint
    (tmp_path / "other.csv").write_text("Date,Open\n" + "".join(f"2020-01-{d:02d},{v}\n"
                                                                for d, v in enumerate(close[:20], 1)))
    with pytest.raises(DataError, match=r"other\.csv: no column 'Close'; the columns are Open"):
        TimeSeriesData(**{**saved, "test_path": str(tmp_path / "other.csv")}).setup("test")

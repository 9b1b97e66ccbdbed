"""Time-series data: the formats, windows, chronological splits without look-ahead, and clear errors."""

import numpy as np
import pandas as pd
import pytest
import torch
from zoo.data.timeseries import TimeSeriesData, window_starts

from zoo.errors import DataError


def write_prices(path, n=120, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=n).strftime("%Y-%m-%d"),
                          "open": close * 0.99, "close": close, "volume": rng.integers(1000, 2000, n)})
    frame.to_csv(path, index=False)
    return frame


def test_csv_windows_hold_the_right_values(tmp_path):
    frame = write_prices(tmp_path / "prices.csv")
    data = TimeSeriesData(path=str(tmp_path / "prices.csv"), target="Close", covariates=["volume"], window=5,
                          horizon=2, stride=3, scaler="none", val_fraction=0.2, test_fraction=0.2)
    data.setup("fit")
    assert (data.num_variables, data.num_targets, data.target_names) == (2, 1, ["close"])
    x, y = data.dataset("train")[0]
    _, start = data._index["train"][0]
    assert x.shape == (5, 2) and y.shape == (2, 1)
    assert torch.allclose(x[:, 0].double(), torch.tensor(frame.close.to_numpy()[start:start + 5]), rtol=1e-6)
    assert torch.allclose(x[:, 1].double(), torch.tensor(frame.volume.to_numpy()[start:start + 5], dtype=float))
    assert torch.allclose(y[:, 0].double(), torch.tensor(frame.close.to_numpy()[start + 5:start + 7]), rtol=1e-6)
    assert np.all(np.diff(data._index["train"][:, 1]) == 3)
    # the test part is steps 96..119; stride-3 windows end on its last step, so the first starts at 98
    assert data.origins("test")[0][1] == np.datetime64(frame.date[98 + 4])
    assert data.series_ids("test")[0] == "prices"  # a table of one series is named after its file


def test_no_window_straddles_two_splits_and_the_gap_is_left_out():
    starts = window_starts(20, 5, 2, 1)
    assert starts[0] == 0 and starts[-1] + 5 + 2 == 20
    assert len(window_starts(6, 5, 2, 1)) == 0


def test_changing_the_test_part_changes_neither_the_scaler_nor_the_training_windows(tmp_path):
    frame = write_prices(tmp_path / "a.csv")
    frame.loc[96:, "close"] *= 10  # the test part (last 20 %) and only it
    frame.to_csv(tmp_path / "b.csv", index=False)
    a, b = (TimeSeriesData(path=str(tmp_path / f"{n}.csv"), target="close", gap=3, val_fraction=0.2,
                           test_fraction=0.2) for n in "ab")
    for data in (a, b):
        data.setup("fit")
    assert a.schema == b.schema
    train_a, train_b = a.dataset("train"), b.dataset("train")
    assert len(train_a) == len(train_b)
    assert all(torch.equal(train_a[i][0], train_b[i][0]) and torch.equal(train_a[i][1], train_b[i][1])
               for i in range(len(train_a)))
    assert not torch.equal(a.dataset("test")[0][1], b.dataset("test")[0][1])
    # the gap: 3 steps between the last training target and the first validation input
    last_train = a._index["train"][-1, 1] + 5 + 1
    assert a._index["val"][0, 1] - last_train == 3


def test_long_panel_and_saved_tensor(tmp_path):
    rows = [{"id": f"s{i}", "time": t, "a": i + t, "b": 2 * t} for i in range(3) for t in range(30)]
    pd.DataFrame(rows).to_csv(tmp_path / "panel.csv", index=False)
    data = TimeSeriesData(path=str(tmp_path / "panel.csv"), id_column="id", window=4, horizon=2, scaler="none",
                          val_fraction=0.2, test_fraction=0.2)
    data.setup("fit")
    assert data.panel.ids == ["s0", "s1", "s2"] and data.target_names == ["a", "b"]
    assert len({s for s, _ in data._index["train"]}) == 3
    assert len(data.dataset("test")) == 3  # each series' test part is its last 6 steps: one window of 4 + 2
    x, y = data.dataset("test")[0]
    assert x.shape == (4, 2) and y.shape == (2, 2)
    assert torch.equal(x[:, 0], torch.arange(24, 28.0)) and torch.equal(y[:, 1], 2 * torch.arange(28, 30.0))
    assert data.series_ids("test") == ["s0", "s1", "s2"]
    with pytest.raises(DataError, match=r"val part of every one of the 3 series has 3 steps or fewer"):
        TimeSeriesData(path=str(tmp_path / "panel.csv"), id_column="id", window=4, horizon=2).setup("fit")

    tensor = torch.rand(5, 40, 3)
    torch.save(tensor, tmp_path / "panel.pt")
    with pytest.raises(DataError, match=r"val part of every one of the 5 series has 8 steps.*--data.split_on targets"):
        TimeSeriesData(path=str(tmp_path / "panel.pt"), window=7, horizon=7, test_fraction=0.2,
                       val_fraction=0.2).setup("fit")
    # ReGENN's protocol: the held-out final steps are forecast from the inputs before them
    data = TimeSeriesData(path=str(tmp_path / "panel.pt"), window=7, horizon=7, test_fraction=0.2, val_fraction=0.2,
                          split_on="targets", scaler="none")
    data.setup("fit")
    assert (data.num_variables, data.num_targets, len(data.panel.ids)) == (3, 3, 5)
    assert data.dataset("train")[0][0].shape == (7, 3)
    assert len(data.dataset("test")) == 5 * 2  # test steps 32..39: targets 32..38 and 33..39
    x, y = data.dataset("test")[0]
    assert torch.allclose(x, tensor[0, 25:32]) and torch.allclose(y, tensor[0, 32:39])
    assert data._index["train"][:, 1].max() + 14 <= 24  # training windows inside the training steps 0..23


def test_bad_series_are_answered(tmp_path):
    frame = write_prices(tmp_path / "ok.csv", n=40)
    bad = frame.copy()
    bad.loc[7, "date"], bad.loc[8, "date"] = frame.date[8], frame.date[7]
    bad.to_csv(tmp_path / "unsorted.csv", index=False)
    with pytest.raises(DataError, match=r"unsorted.csv: times are not sorted: line 10"):
        TimeSeriesData(path=str(tmp_path / "unsorted.csv"), target="close")
    TimeSeriesData(path=str(tmp_path / "unsorted.csv"), target="close", sort=True, window=3)  # sorted on request
    bad = frame.copy()
    bad.loc[5, "date"] = frame.date[4]
    bad.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(DataError, match=r"duplicated time 2020-01-07.* lines 6 and 7"):
        TimeSeriesData(path=str(tmp_path / "dup.csv"), target="close")
    bad = frame.copy().astype({"close": object})
    bad.loc[11, "close"] = "n/a!"
    bad.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(DataError, match=r"text.csv, line 13, column 'close': 'n/a!' is not a number"):
        TimeSeriesData(path=str(tmp_path / "text.csv"), target="close")
    bad = frame.copy()
    bad.loc[[3, 9], "close"] = np.nan
    bad.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(DataError, match=r"2 missing values in close \(first at lines 5, 11\).*--data.missing"):
        TimeSeriesData(path=str(tmp_path / "nan.csv"), target="close")
    filled = TimeSeriesData(path=str(tmp_path / "nan.csv"), target="close", missing="ffill", scaler="none", window=3)
    assert filled.panel.values[0][3, 0] == frame.close[2]
    with pytest.raises(DataError, match=r"ok.csv: the val part has 4 steps, fewer than window 5 \+ horizon 1"):
        TimeSeriesData(path=str(tmp_path / "ok.csv"), target="close").setup("fit")
    with pytest.raises(DataError, match="no column 'price'"):
        TimeSeriesData(path=str(tmp_path / "ok.csv"), target="price")


def test_embedded_sp500_is_written_once_as_csv(tmp_path):
    data = TimeSeriesData()
    data.setup("fit")
    assert "S&P 500" in data.describe() and data.target_names == ["Close"]
    assert (tmp_path / "cache" / "timeseries" / "sp500.csv").is_file()
    assert len(data.dataset("train")) > 3000 and data.dataset("train")[0][0].shape == (5, 1)


def test_prediction_uses_the_fitted_scaler_without_the_training_file(tmp_path):
    write_prices(tmp_path / "train.csv")
    trained = TimeSeriesData(path=str(tmp_path / "train.csv"), target="close")
    write_prices(tmp_path / "new.csv", n=20, seed=1)
    (tmp_path / "train.csv").unlink()
    data = TimeSeriesData(path=str(tmp_path / "new.csv"), schema=trained.schema)
    data.setup("predict")
    (x,) = data.dataset("predict")[0]
    new = pd.read_csv(tmp_path / "new.csv")
    offset, scale = trained.schema["offset"][0], trained.schema["scale"][0]
    assert torch.allclose(x[:, 0].double(), torch.tensor((new.close[:5].to_numpy() - offset) / scale), atol=1e-6)
    assert len(data.dataset("predict")) == 16 and data.origins("predict")[-1][1] == np.datetime64(new.date.iloc[-1])

"""ResNLS: the paper's design (the LSTM reads the residual-refined window), its counts and its input checks."""

import pytest
import torch
from zoo.finance.resnls import resnls, resnls_lstm

from zoo.errors import InputShapeError


def test_parameter_counts_of_the_paper_and_the_ablation():
    model = resnls()
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model) == 32_711
    assert (count(model.cnn), count(model.lstm), count(model.head), model.w.numel()) == (14_469, 18_176, 65, 1)
    assert count(resnls_lstm()) == 18_241
    assert float(model.w.detach()) == 0.0  # w starts at 0: the model starts as the LSTM on the raw window


def test_cnn_branch_and_w_receive_gradient():
    """The released code feeds x to the LSTM, so its CNN branch never learns; here the LSTM reads r = x + w CNN(x)."""
    torch.manual_seed(0)
    model = resnls()
    x, y = torch.randn(16, 5, 1), torch.randn(16, 1, 1)
    torch.nn.functional.mse_loss(model(x), y).backward()
    assert model.w.grad is not None and model.w.grad.abs() > 0
    # with w = 0 the CNN's gradient is w * (...) = 0; one step moves w, then the CNN learns too
    with torch.no_grad():
        model.w.fill_(0.5)
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.cnn.parameters())


def test_output_shape_and_bad_inputs():
    model = resnls().eval()
    assert model(torch.randn(3, 5, 1)).shape == (3, 1, 1)
    with pytest.raises(InputShapeError, match=r"\(batch, 5, 1\)"):
        model(torch.randn(3, 5))
    with pytest.raises(ValueError, match="one series one step ahead"):
        resnls(variables=3)
    assert resnls(window=10)(torch.randn(2, 10, 1)).shape == (2, 1, 1)


@pytest.mark.slow
def test_quick_start_trains_backtests_and_predicts(tmp_path):
    """`zoo train finance/resnls` offline on the S&P 500 closes of `arch`, as the card gives it: the paper's recipe
    (50 epochs), metrics on prices next to persistence, the back-test against buy-and-hold, the plots; then
    `zoo predict` on new closes with the checkpoint's scaler."""
    import csv
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    from mlflow import MlflowClient

    zoo_command = str(Path(sys.executable).with_name("zoo"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a 32k-parameter model: one thread is the fastest
    result = subprocess.run([zoo_command, "train", "finance/resnls", "--trainer.enable_progress_bar", "false"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=1800, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train 4020, val 498, test 498" in result.stdout  # 5,031 days, windows of 5, 80/10/10 in time order
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    metrics = run.data.metrics
    assert run.info.status == "FINISHED"
    # persistence on the test days (2017-01 .. 2018-12) and buy-and-hold over them are facts of the data
    assert metrics["test/persistence_mae"] == pytest.approx(13.76, abs=0.01)
    assert metrics["test/buy_and_hold_total_return"] == pytest.approx(0.101, abs=0.001)
    # the model learns prices (a 1-epoch model is ~200 points off) but, honestly, does not beat persistence
    assert np.isfinite(metrics["test/mae"]) and metrics["test/mae"] < 2.5 * metrics["test/persistence_mae"]
    assert 0.3 < metrics["test/directional_accuracy"] < 0.7
    for key in ("backtest_total_return", "backtest_sharpe", "backtest_max_drawdown", "backtest_long_short_sharpe"):
        assert np.isfinite(metrics[f"test/{key}"])
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/test_forecast.png", "plots/test_equity.png"} <= plots

    best = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints" / "best.ckpt"
    closes = (tmp_path / "cache" / "timeseries" / "sp500.csv").read_text().splitlines()
    (tmp_path / "new.csv").write_text("\n".join([closes[0], *closes[-30:]]) + "\n")  # the last 30 days only
    (tmp_path / "cache" / "timeseries" / "sp500.csv").unlink()  # no access to the training file
    result = subprocess.run([zoo_command, "predict", "--ckpt", str(best), "--data.path", "new.csv", "--output",
                             "forecasts.csv", "--trainer.enable_progress_bar", "false"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "forecasts.csv").open()))
    assert len(rows) == 26 and rows[-1]["origin"] == "2018-12-31" and rows[-1]["horizon"] == "1"
    assert rows[-1]["time"] == "2019-01-01" and rows[0]["series"] == "new"  # the next business day
    assert all(2000 < float(r["value"]) < 3200 for r in rows)  # index points, not scaled values

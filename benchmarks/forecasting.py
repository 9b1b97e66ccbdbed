"""Forecasters side by side on the same chronological splits (in-process, one thread, best-on-validation weights):
ResNLS and its LSTM-only ablation, the LSTM and the Mamba forecaster on the S&P 500 closes of ``arch``; the LSTM
and Mamba on weekly Mauna Loa CO2 (52 -> 4 weeks); ReGENN, LSTM and Mamba on US macro data (7 -> 7 quarters).
Each test row carries the model's MAE/RMSE/MASE next to persistence and seasonal naive on the same windows.

    python -m benchmarks.forecasting [RUN_INDEX ...]     # one JSON line per run; results/forecasting.md
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from zoo.data.timeseries import TimeSeriesData

from zoo.tasks.forecasting import ForecastingTask

SERIES = {
    "sp500": {"data": {"dataset": "sp500", "target": "Close", "window": 5, "horizon": 1, "scaler": "minmax",
                       "batch_size": 64}, "task": {"backtest": True}, "epochs": 50},
    "co2": {"data": {"dataset": "co2", "target": "co2", "window": 52, "horizon": 4, "missing": "interpolate",
                     "scaler": "standard", "batch_size": 64}, "task": {"season": 52}, "epochs": 10},
    "macrodata": {"data": {"dataset": "macrodata", "target": ["realgdp", "realcons", "realinv"], "window": 7,
                           "horizon": 7, "split_on": "targets", "scaler": "standard", "batch_size": 32},
                  "task": {"season": 4}, "epochs": 30},
}
LAST = {"window_norm": "last"}
RUNS = [
    ("sp500", "finance/resnls", {}), ("sp500", "finance/resnls", LAST),
    ("sp500", "finance/resnls_lstm", {}), ("sp500", "finance/resnls_lstm", LAST),
    ("sp500", "timeseries/lstm", LAST), ("sp500", "timeseries/mamba_forecaster", LAST),
    ("co2", "timeseries/lstm", LAST), ("co2", "timeseries/mamba_forecaster", LAST),
    ("macrodata", "timeseries/regenn", {**LAST, "loss": "mae", "model_kwargs": {"output_activation": "identity"}}),
    ("macrodata", "timeseries/lstm", {**LAST, "loss": "mae"}),
    ("macrodata", "timeseries/mamba_forecaster", {**LAST, "loss": "mae"}),
]


def run(name: str, model_id: str, extra: dict) -> dict:
    spec = SERIES[name]
    L.seed_everything(0, verbose=False)
    data = TimeSeriesData(**spec["data"])
    task = ForecastingTask(model_id, window=data.window, horizon=data.horizon, variables=data.num_variables,
                           targets=data.num_targets, target_scaling=data.target_scaling,
                           naive_scale=data.naive_scale, **spec["task"], **extra,
                           optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}})
    start = time.time()
    with tempfile.TemporaryDirectory() as root:
        best = ModelCheckpoint(dirpath=root, monitor="val/loss", mode="min")
        trainer = L.Trainer(max_epochs=spec["epochs"], logger=False, callbacks=[best], enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=root)
        trainer.fit(task, data)
        result = trainer.test(task, data, ckpt_path="best", verbose=False)[0]
    row = {k.split("/", 1)[1]: round(float(v), 4) for k, v in result.items()}
    row.update(series=name, model=model_id, extra=extra, seconds=round(time.time() - start, 1),
               params=sum(p.numel() for p in task.model.parameters()))
    return row


def main(selected: list[str]) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    for index, (name, model_id, extra) in enumerate(RUNS):
        if not selected or str(index) in selected:
            print(json.dumps(run(name, model_id, extra)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The timeseries quick starts as the cards give them (`zoo train MODEL`, offline, on statsmodels' real series):
each beats the persistence forecast on its test part (slow: 1-3 minutes each on 2 cores)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient


@pytest.mark.slow
@pytest.mark.parametrize(("model_id", "described"), [
    ("timeseries/lstm", "windows of 52 -> 4 ahead"),
    ("timeseries/mamba_forecaster", "windows of 52 -> 4 ahead"),
    ("timeseries/regenn", "windows of 7 -> 7 ahead"),
])
def test_quick_start_beats_persistence(tmp_path, model_id, described):
    zoo_command = str(Path(sys.executable).with_name("zoo"))
    result = subprocess.run([zoo_command, "train", model_id, "--trainer.enable_progress_bar", "false"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=1800, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert described in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    metrics = run.data.metrics
    assert all(np.isfinite(metrics[f"test/{k}"]) for k in ("mae", "rmse", "mape", "smape", "mase"))
    assert metrics["test/mae"] < 0.9 * metrics["test/persistence_mae"], metrics
    assert metrics["test/mae"] < metrics["test/seasonal_naive_mae"]
    assert metrics["test/mase"] < metrics["test/persistence_mase"]
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/test_forecast.png" in plots

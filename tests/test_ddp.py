"""Every task kind trains under DDP: two CPU processes (gloo) started by Lightning's own `ddp` strategy, one MLflow
run, and metrics over a whole split gathered from both processes (slow: each run starts two interpreters)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
         "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false"]
KINDS = {  # task kind: the model and the flags that keep its run small
    "image_classification": ("vision/eca_resnet18", ["--data.image_size", "16"]),
    "detection": ("vision/yolo9tr", ["--data.image_size", "128"]),
    "image_restoration": ("vision/dea_net", ["--data.crop_size", "32"]),
    "audio classification": ("audio/ssast_tiny_patch",
                             ["--model.model_kwargs", '{"input_tdim": 96, "depth": 2, "fstride": 16, "tstride": 16}']),
    "masked_pretraining": ("audio/ssast_tiny_patch_pretrain",
                           ["--model.model_kwargs", '{"input_tdim": 128, "depth": 2}']),
    "tabular": ("tabular/mlp", []),
    "forecasting": ("finance/resnls", []),
    "lob_trend": ("finance/mlplob", []),
    "sequence_labelling": ("medical/sepsis_gru", ["--data.num_patients", "40"]),
    "survival": ("medical/deepsurv", ["--data.dataset", "rossi", "--trainer.limit_test_batches", "1.0",
                                      "--data.batch_size", "32"]),
}


def ddp_train(cwd, model_id: str, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ZOO_FAULT")}
    command = [sys.executable, "-m", "zoo.cli", "train", model_id, *SHORT, *flags, "--trainer.strategy", "ddp",
               "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_trains_under_ddp_into_one_run(kind, tmp_path):
    model_id, flags = KINDS[kind]
    result = ddp_train(tmp_path, model_id, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])  # one, not one per process
    assert run.info.status == "FINISHED"
    assert any(k.startswith("test/") for k in run.data.metrics) or kind == "masked_pretraining", run.data.metrics


@pytest.mark.slow
def test_survival_metrics_under_ddp_cover_the_whole_test_split(tmp_path):
    """The C-index of a DDP run is that of the whole test split (both processes' patients), as one process
    computes it from the same checkpoint, not either process's half."""
    model_id, flags = KINDS["survival"]
    result = ddp_train(tmp_path, model_id, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    best = f"{run.info.artifact_uri.removeprefix('file://')}/checkpoints/best.ckpt"
    import lightning as L
    from zoo.data.survival import SurvivalTableData

    from zoo.tasks.survival import SurvivalTask

    data = SurvivalTableData(dataset="rossi", batch_size=32)  # the run's data: the same seeded split
    task = SurvivalTask.load_from_checkpoint(best, weights_only=True)
    single = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False).test(task, data,
                                                                                                 verbose=False)[0]
    # Lightning's evaluation sampler pads the odd-sized split with one repeated patient: C-indices agree closely
    assert run.data.metrics["test/c_index"] == pytest.approx(single["test/c_index"], abs=0.01)

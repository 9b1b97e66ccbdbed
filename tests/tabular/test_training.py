"""Training on real bundled tables beats a trivial predictor clearly; a checkpoint alone predicts new rows; every
DDP rank retrieves from the whole training table."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from zoo.data.tabular import TabularData

from zoo.tasks.tabular import TabularTask


def fit(model_id: str, data: TabularData, epochs: int, lr: float = 1e-3, **task_kwargs
        ) -> tuple[TabularTask, dict[str, float]]:
    """Train, then test the best checkpoint by the validation score (as ``zoo train`` does)."""
    L.seed_everything(0, verbose=False)
    task = TabularTask(model_id, num_classes=data.num_classes, feature_shapes=data.feature_shapes,
                       class_names=data.class_names, target_scaling=data.target_scaling,
                       optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": lr, "weight_decay": 1e-5}},
                       **task_kwargs)
    best = ModelCheckpoint(dirpath="checkpoints", monitor=task.monitor, mode=task.monitor_mode)
    trainer = L.Trainer(max_epochs=epochs, logger=False, callbacks=[best], enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(task, datamodule=data)
    return task, trainer.test(task, datamodule=data, ckpt_path="best", verbose=False)[0]


def test_tabr_s_regression_beats_predicting_the_mean(learning):
    data = TabularData(dataset="diabetes", batch_size=32, seed=0)
    _, metrics = fit("tabular/tabr_s", data, epochs=10, lr=learning.lr(2e-3),
                     model_kwargs={"d_main": 64, "context_size": 32, "dropout0": 0.1, "context_dropout": 0.1})
    test_y = data.split_tensors("test").y * data.target_scaling[1] + data.target_scaling[0]
    train_mean = data.target_scaling[0]
    baseline = float(((test_y - train_mean) ** 2).mean().sqrt())
    # Diabetes is noisy: the best models reach R2 ~0.3-0.5 on it; the mean predictor has R2 <= 0.
    assert metrics["test/rmse"] < 0.9 * baseline, (metrics, baseline)
    assert metrics["test/r2"] > 0.15


def test_tabr_binary_beats_the_majority_class(learning):
    data = TabularData(dataset="breast_cancer", batch_size=64, seed=0)
    _, metrics = fit("tabular/tabr", data, epochs=4, lr=learning.lr(2e-3),
                     model_kwargs={"d_main": 32, "context_size": 16, "d_embedding": 8, "n_frequencies": 16})
    labels = data.split_tensors("test").y
    majority = float((labels == labels.mode().values).float().mean())
    assert metrics["test/acc"] > max(0.9, majority + 0.2), (metrics, majority)
    # 0.942 since the data module orders each epoch with the run's EpochSampler (as `zoo train` always did; 0.974
    # with torch's global shuffle before); a constant score gives 0.5
    assert metrics["test/roc_auc"] > 0.93 and "test/f1_macro" in metrics


def test_mlp_multiclass_and_context_freeze(learning):
    data = TabularData(dataset="wine", batch_size=32, seed=0)
    _, metrics = fit("tabular/mlp", data, epochs=15, lr=learning.lr(1e-3))
    labels = data.split_tensors("test").y
    majority = float((labels == labels.mode().values).float().mean())  # wine's largest class: 0.4
    assert metrics["test/acc"] > max(0.8, majority + 0.3), (metrics, majority)
    task, metrics = fit("tabular/tabr_s", data, epochs=6, lr=learning.lr(1e-3), freeze_contexts_after_epochs=2,
                        model_kwargs={"d_main": 32, "context_size": 16})
    assert task._frozen_contexts is not None and task._frozen_contexts.shape == (len(data.split_tensors("train")), 16)
    rows = torch.arange(len(task._frozen_contexts))[:, None]
    assert not (task._frozen_contexts == rows).any()  # frozen contexts exclude the object itself too
    assert metrics["test/acc"] > 0.8


def test_candidates_are_the_whole_training_table_not_the_loader_shard():
    """The DDP mechanism at unit level: the task takes its candidates from the data module's full training table,
    whatever rows the (distributed) loader of a rank yields; batch indices are rows of that full table."""
    data = TabularData(dataset="iris", batch_size=8, seed=0)
    data.setup("fit")
    task = TabularTask("tabular/tabr_s", num_classes=3, feature_shapes=data.feature_shapes,
                       class_names=data.class_names, model_kwargs={"d_main": 16, "context_size": 8})
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    task.trainer = trainer
    trainer.datamodule = data
    task.setup("fit")
    table = data.train_table()
    assert task.candidates().size == len(table)
    sampler = torch.utils.data.DistributedSampler(table, num_replicas=2, rank=1, shuffle=True, seed=0)
    shard = data.train_table().__getitems__(list(sampler))
    assert len(shard["index"]) < len(table)
    assert torch.equal(table.x_num[shard["index"]], shard["x_num"])  # indices address the full table
    batch = {k: v[:8] for k, v in shard.items()}
    assert torch.isfinite(task._loss(task._train_outputs(batch), batch["y"]))


def test_zoo_train_then_predict_from_the_checkpoint_alone(tmp_path):
    from zoo.cli import main

    rng = np.random.default_rng(0)
    n = 160
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "kind": rng.choice(["x", "y", "z"], n)})
    frame["y"] = 3 * frame["a"] - frame["b"] + (frame["kind"] == "x") * 2 + rng.normal(scale=0.1, size=n)
    frame.to_csv(tmp_path / "table.csv", index=False)
    assert main(["train", "tabular/tabr_s", "--data.path", str(tmp_path / "table.csv"), "--data.target", "y",
                 "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
                 "--model.model_kwargs", '{"d_main": 32, "context_size": 16}']) == 0
    best = glob.glob("mlruns/*/*/artifacts/checkpoints/best.ckpt")
    assert len(best) == 1
    new = frame.drop(columns="y").head(9)
    new.to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "table.csv").unlink()  # the checkpoint must carry everything prediction needs
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--ckpt", best[0], "--data.path", str(tmp_path / "new.csv"), "--output", str(out),
                 "--trainer.enable_progress_bar", "false"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["row"] for r in rows] == [str(i) for i in range(9)]
    assert all(np.isfinite(float(r["prediction"])) for r in rows)
    checkpoint = torch.load(best[0], weights_only=True)
    assert len(checkpoint["tabular_candidates"]["y"]) > 90 and "transform.quantiles" in checkpoint["TabularData"]
    assert Path(best[0]).is_file()

    # README: TabR needs its training rows at inference: its logged model (a pyfunc) keeps them beside the weights
    import mlflow
    from mlflow import MlflowClient

    import zoo

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (logged,) = client.search_logged_models([client.get_experiment_by_name("zoo").experiment_id])
    assert logged.model_type == "pyfunc"
    mlflow.set_tracking_uri(client.tracking_uri)
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{logged.model_id}", dst_path=str(tmp_path / "m")))
    assert (folder / "model.safetensors").is_file() and (folder / "MLmodel").is_file()
    assert (folder / "candidates.safetensors").is_file()
    reference = zoo.create_model("tabular/tabr_s", pretrained=best[0])
    loaded = zoo.create_model("tabular/tabr_s", pretrained=str(folder))
    for key, value in reference.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


DDP_SCRIPT = """
import json, sys
import lightning as L
from zoo.data.tabular import TabularData
from zoo.tasks.tabular import TabularTask


class Record(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        rows = len(trainer.train_dataloader.sampler)
        with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
            json.dump({"world": trainer.world_size, "candidates": pl_module.candidates().size, "loader_rows": rows,
                       "table_rows": len(trainer.datamodule.train_table())}, f)


if __name__ == "__main__":
    data = TabularData(dataset="iris", batch_size=16, seed=0)
    task = TabularTask("tabular/tabr_s", num_classes=3, feature_shapes=data.feature_shapes,
                       class_names=data.class_names, model_kwargs={"d_main": 16, "context_size": 8})
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, callbacks=[Record()])
    trainer.fit(task, datamodule=data)
"""


def test_ddp_spawn_every_rank_retrieves_from_the_whole_table(tmp_path):
    """Two CPU processes (gloo): each rank's loader holds half the rows, its candidates all of them."""
    import json
    import subprocess
    import sys

    script = tmp_path / "ddp_check.py"
    script.write_text(DDP_SCRIPT)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=root, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["world"] == 2
        assert rank["candidates"] == rank["table_rows"] > rank["loader_rows"]

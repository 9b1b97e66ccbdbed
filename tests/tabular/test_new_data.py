"""A trained TabR checkpoint meets another table: ``zoo test --data.test_path`` evaluates every row of it alone
(the training table is gone; schema, quantile transform and candidates come from the checkpoint) and the accuracy
it reports equals the share of rows whose most probable predicted class is the true one; ``zoo predict`` scores
rows without the target column; rows that do not fit are named."""

from __future__ import annotations

import csv

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_wine
from zoo.data.tabular import TabularData

from zoo.errors import DataError
from zoo.tasks.tabular import TabularTask

torch.set_num_threads(1)
TRAINER = dict(max_epochs=3)  # Trainer arguments of this file's small runs


@pytest.fixture
def checkpoint(small_runs, tmp_path):
    """(checkpoint, the data module arguments it keeps, the rows it never saw as a frame)."""
    wine = load_wine(as_frame=True).frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    wine["target"] = wine["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    train_file = tmp_path / "train.csv"
    wine.iloc[:130].to_csv(train_file, index=False)
    L.seed_everything(0)
    data = TabularData(str(train_file), target="target", batch_size=32)
    task = TabularTask("tabular/tabr", num_classes=data.num_classes, feature_shapes=data.feature_shapes,
                       class_names=data.class_names, target_scaling=data.target_scaling,
                       model_kwargs={"context_size": 16},
                       optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-3}})
    ckpt, saved = small_runs.fit_and_save(task, data, **TRAINER)
    train_file.unlink()
    return ckpt, saved, wine.iloc[130:].reset_index(drop=True)


def _predict(small_runs, ckpt, saved, rows: pd.DataFrame, tmp_path) -> list[dict[str, str]]:
    rows.to_csv(tmp_path / "rows.csv", index=False)
    data = TabularData(**{**saved, "predict_path": str(tmp_path / "rows.csv")})
    task = TabularTask.load_from_checkpoint(ckpt, weights_only=True)
    predictions = small_runs.trainer(**TRAINER).predict(task, datamodule=data, ckpt_path=ckpt, weights_only=True)
    assert data.evaluation_line("predict") == f"data: {len(rows)} rows in {tmp_path / 'rows.csv'} (all of it)"
    task.write_predictions(predictions, data, tmp_path / "predictions.csv")
    with open(tmp_path / "predictions.csv") as f:
        return list(csv.DictReader(f))


def test_tabr_evaluates_another_table_and_predicts_rows_without_target(small_runs, checkpoint, tmp_path):
    ckpt, saved, new = checkpoint
    new.to_csv(tmp_path / "new.csv", index=False)
    data = TabularData(**{**saved, "test_path": str(tmp_path / "new.csv")})
    task = TabularTask.load_from_checkpoint(ckpt, weights_only=True)
    trainer = small_runs.trainer(**TRAINER)
    (result,) = trainer.test(task, datamodule=data, ckpt_path=ckpt, weights_only=True, verbose=False)
    assert data.evaluation_line("test") == f"data: {len(new)} rows in {tmp_path / 'new.csv'} (all of it)"
    shuffled = new.drop(columns=["target"]).iloc[:, ::-1]  # no target, other column order
    predicted = _predict(small_runs, ckpt, saved, shuffled, tmp_path)
    assert len(predicted) == len(new)
    accuracy = np.mean([row["label"] == truth for row, truth in zip(predicted, new["target"], strict=True)])
    assert result["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert accuracy > 0.5  # well past the majority class (about 0.4): the candidates came with the checkpoint


def test_rows_that_do_not_fit_the_trained_table_are_named(checkpoint, tmp_path):
    ckpt, saved, new = checkpoint
    new.drop(columns=["alcohol", "hue"]).to_csv(tmp_path / "short.csv", index=False)
    data = TabularData(**{**saved, "test_path": str(tmp_path / "short.csv")})
    data.setup("test")
    data.load_state_dict(torch.load(ckpt, weights_only=True)["TabularData"])
    with pytest.raises(DataError, match=r"short\.csv: lacks the feature columns alcohol, hue the model was "
                                        r"trained with \(columns: malic_acid, "):
        data.split_tensors("test")
    new.assign(target=new.target.replace("barbera", "nebbiolo")).to_csv(tmp_path / "other.csv", index=False)
    data = TabularData(**{**saved, "test_path": str(tmp_path / "other.csv")})
    data.setup("test")
    data.load_state_dict(torch.load(ckpt, weights_only=True)["TabularData"])
    with pytest.raises(DataError, match=r"other\.csv: row \d+, target 'target': 'nebbiolo' is not one of the "
                                        r"classes the model was trained with \(barbera, barolo, grignolino\)"):
        data.split_tensors("test")

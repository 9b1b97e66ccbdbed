"""Tabular data: every source format, the paper's preprocessing, and a clear error for every bad table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from zoo.data.tabular import TabularData

from zoo.errors import DataError


def mixed_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.normal(40, 10, n), "income": rng.lognormal(10, 1, n), "smoker": rng.choice(["yes", "no"], n),
        "city": rng.choice(["paris", "rome", "oslo"], n), "rooms": rng.integers(1, 6, n),
        "price": rng.normal(100, 20, n),
    })


def batch_of(data: TabularData, split: str) -> dict[str, torch.Tensor]:
    data.setup("fit")
    loader = {"train": data.train_dataloader, "val": data.val_dataloader, "test": data.test_dataloader}[split]()
    return next(iter(loader))


def test_bundled_tables():
    for name, task, classes in [("diabetes", "regression", 1), ("breast_cancer", "binclass", 2),
                                ("wine", "multiclass", 3), ("iris", "multiclass", 3)]:
        data = TabularData(dataset=name)
        assert data.task_type == task and data.num_classes == classes
    data = TabularData(dataset="wine", batch_size=16)
    batch = batch_of(data, "train")
    assert batch["x_num"].shape == (16, 13) and batch["y"].dtype == torch.int64
    assert data.feature_shapes == {"n_num_features": 13, "n_bin_features": 0, "cat_cardinalities": []}
    sizes = [len(data.split_tensors(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 178 and sizes[0] > sizes[1] > 0


def test_csv_kinds_splits_and_preprocessing(tmp_path):
    frame = mixed_frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = TabularData(str(tmp_path / "t.csv"), target="price", seed=3)
    schema = data.schema
    assert schema["num_columns"] == ["age", "income", "rooms"] and schema["bin_columns"] == ["smoker"]
    assert schema["cat_columns"] == ["city"] and schema["categories"] == [["oslo", "paris", "rome"]]
    assert data.task_type == "regression" and data.feature_shapes["cat_cardinalities"] == [3]
    data.setup("fit")
    train = data.split_tensors("train")
    # Standardised target, quantile-normal features (fitted on the training rows only).
    assert abs(float(train.y.mean())) < 1e-5 and abs(float(train.y.std(unbiased=False)) - 1) < 1e-4
    assert abs(float(train.x_num[:, 1].mean())) < 0.2 and float(train.x_num[:, 1].std()) > 0.8
    assert set(train.x_bin.unique().tolist()) <= {0.0, 1.0} and train.x_cat.dtype == torch.int64
    mean, std = data.target_scaling
    raw = frame.loc[data._frames["train"].index, "price"] if False else data._frames["train"]["price"]
    torch.testing.assert_close(train.y * std + mean, torch.tensor(raw.to_numpy(), dtype=torch.float32))
    assert torch.equal(batch_of(data, "val")["index"], torch.arange(len(data.split_tensors("val"))))


def test_two_valued_numbers_stay_numerical(tmp_path):
    """A 0/1 column of the training rows may hold a 2 elsewhere (scikit-learn's digits do): numbers are never
    taken as binary; text with two values and booleans are."""
    frame = mixed_frame()
    frame["flag"] = [0, 1] * 60
    frame["ok"] = [True, False, False] * 40
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = TabularData(str(tmp_path / "t.csv"), target="price")
    assert "flag" in data.schema["num_columns"]
    assert data.schema["bin_columns"] == ["smoker", "ok"]
    digits = TabularData(dataset="digits")
    digits.setup("fit")
    assert digits.feature_shapes["n_num_features"] == 64 and len(digits.split_tensors("test")) > 300


def test_quantile_transform_is_the_papers():
    from sklearn.preprocessing import QuantileTransformer

    data = TabularData(dataset="diabetes", seed=0)
    data.setup("fit")
    x = data._features(data._frames["train"], "")[0]
    noise = (1e-3 / np.maximum(x.std(0, keepdims=True), 1e-3)) * np.random.default_rng(0).standard_normal(x.shape)
    reference = QuantileTransformer(output_distribution="normal", n_quantiles=max(min(len(x) // 30, 1000), 10),
                                    subsample=1_000_000_000, random_state=0).fit(x + noise)
    np.testing.assert_allclose(data.split_tensors("train").x_num.numpy(), reference.transform(x), rtol=1e-5,
                               atol=1e-5)


def test_parquet_and_fixed_split_column(tmp_path):
    frame = mixed_frame()
    frame["split"] = ["train"] * 80 + ["val"] * 20 + ["test"] * 20
    frame["price"] = np.where(frame["price"] > 100, "high", "low")
    frame.to_parquet(tmp_path / "t.parquet")
    data = TabularData(str(tmp_path / "t.parquet"), target="price", split_column="split")
    assert data.task_type == "binclass" and data.class_names == ["high", "low"]
    data.setup("fit")
    assert [len(data.split_tensors(s)) for s in ("train", "val", "test")] == [80, 20, 20]
    assert "split" not in data.schema["num_columns"] + data.schema["cat_columns"]


def test_val_and_test_files(tmp_path):
    frame = mixed_frame(150)
    frame[:100].to_csv(tmp_path / "train.csv", index=False)
    frame[100:125].to_csv(tmp_path / "val.csv", index=False)
    frame[125:].to_csv(tmp_path / "test.csv", index=False)
    data = TabularData(str(tmp_path / "train.csv"), target="price", val_path=str(tmp_path / "val.csv"),
                       test_path=str(tmp_path / "test.csv"))
    data.setup("fit")
    assert [len(data.split_tensors(s)) for s in ("train", "val", "test")] == [100, 25, 25]


def write_benchmark_dir(root, task="multiclass"):
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, n in (("train", 60), ("val", 20), ("test", 20)):
        np.save(root / f"X_num_{split}.npy", rng.normal(size=(n, 3)).astype(np.float32))
        np.save(root / f"X_bin_{split}.npy", rng.integers(0, 2, (n, 2)).astype(np.float32))
        np.save(root / f"X_cat_{split}.npy", rng.choice(np.array(["a", "b", "c"]), (n, 1)))
        y = rng.integers(0, 3, n).astype(np.int64) if task == "multiclass" else rng.normal(size=n).astype(np.float32)
        np.save(root / f"Y_{split}.npy", y)
    (root / "info.json").write_text(json.dumps({"task_type": task, "name": "toy"}))
    (root / "READY").touch()


def test_tabr_benchmark_directory(tmp_path):
    write_benchmark_dir(tmp_path / "toy")
    data = TabularData(str(tmp_path / "toy"))
    assert data.task_type == "multiclass" and data.class_names == ["0", "1", "2"]
    assert data.feature_shapes == {"n_num_features": 3, "n_bin_features": 2, "cat_cardinalities": [3]}
    data.setup("fit")
    assert [len(data.split_tensors(s)) for s in ("train", "val", "test")] == [60, 20, 20]
    write_benchmark_dir(tmp_path / "reg", task="regression")
    assert TabularData(str(tmp_path / "reg")).task_type == "regression"


def test_predict_rows_without_target_from_the_schema_alone(tmp_path):
    frame = mixed_frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    trained = TabularData(str(tmp_path / "t.csv"), target="price")
    trained.setup("fit")
    state = trained.state_dict()
    new = frame.drop(columns=["price"]).head(7)
    new.loc[0, "city"] = "lima"  # a category never seen in training
    new.to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "t.csv").unlink()  # prediction must not need the training file
    restored = TabularData(str(tmp_path / "new.csv"), target="price", schema=trained.hparams["schema"])
    restored.setup("predict")
    restored.load_state_dict(state)
    batch = next(iter(restored.predict_dataloader()))
    assert batch["x_num"].shape == (7, 3) and batch["x_cat"][0, 0] == 3  # unknown -> code "cardinality"
    expected = trained.split_tensors("train").x_num[:0]  # same transform: compare on a row of the training file
    assert expected.shape[1] == 3
    unfitted = TabularData(str(tmp_path / "new.csv"), target="price", schema=trained.hparams["schema"])
    unfitted.setup("predict")
    with pytest.raises(DataError, match="no fitted preprocessing"):
        unfitted.predict_dataloader()


# --- bad tables ---------------------------------------------------------------------------------------------------
def test_missing_target_lists_the_columns(tmp_path):
    mixed_frame().to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"no target column 'cost'; columns: age, income, smoker, city, rooms, price"):
        TabularData(str(tmp_path / "t.csv"), target="cost")
    with pytest.raises(DataError, match="name the target column"):
        TabularData(str(tmp_path / "t.csv"))


def test_non_numeric_value_names_file_row_and_column(tmp_path):
    frame = mixed_frame().astype({"age": object})
    frame.loc[41, "age"] = "forty"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t\.csv: row 42, column 'age': 'forty' is not a number"):
        data = TabularData(str(tmp_path / "t.csv"), target="price", test_fraction=0.0, val_fraction=0.01)
        data.setup("fit")
        data.split_tensors("train")
        data.split_tensors("val")
    frame = mixed_frame()
    frame.to_csv(tmp_path / "ok.csv", index=False)
    data = TabularData(str(tmp_path / "ok.csv"), target="price")
    data.setup("fit")
    new = frame.drop(columns="price").head(5).astype({"income": object})
    new.loc[2, "income"] = "unknown"
    new.to_csv(tmp_path / "new.csv", index=False)
    predict = TabularData(str(tmp_path / "new.csv"), target="price", schema=data.hparams["schema"])
    predict.setup("predict")
    predict.load_state_dict(data.state_dict())
    with pytest.raises(DataError, match=r"new\.csv: row 3, column 'income': 'unknown' is not a number"):
        predict.predict_dataloader()


def test_class_seen_only_at_test_time(tmp_path):
    frame = mixed_frame()
    frame["label"] = ["a", "b"] * 60
    frame["split"] = ["train"] * 80 + ["val"] * 20 + ["test"] * 20
    frame.loc[110, "label"] = "zebra"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="test split has classes never seen in training: zebra"):
        TabularData(str(tmp_path / "t.csv"), target="label", split_column="split", drop_columns=["price"])


def test_empty_split(tmp_path):
    frame = mixed_frame()
    frame["split"] = ["train"] * 100 + ["val"] * 20
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = TabularData(str(tmp_path / "t.csv"), target="price", split_column="split")
    assert not data.has_test_split
    frame["split"] = ["val"] * 100 + ["test"] * 20
    frame.to_csv(tmp_path / "no_train.csv", index=False)
    with pytest.raises(DataError, match=r"no_train\.csv: the train split is empty"):
        TabularData(str(tmp_path / "no_train.csv"), target="price", split_column="split")
    frame.head(0).to_csv(tmp_path / "empty_val.csv", index=False)
    with pytest.raises(DataError, match=r"empty_val\.csv has no rows"):
        TabularData(str(tmp_path / "t.csv"), target="price", val_path=str(tmp_path / "empty_val.csv"))
    data = TabularData(str(tmp_path / "t.csv"), target="price", split_column=None, test_fraction=0.0)
    data.setup("fit")
    assert not data.has_test_split
    with pytest.raises(DataError, match=r"t\.csv: the test split is empty"):
        data.split_tensors("test")
    pd.DataFrame({"x": [], "y": []}).to_csv(tmp_path / "nothing.csv", index=False)
    with pytest.raises(DataError, match="has no rows"):
        TabularData(str(tmp_path / "nothing.csv"), target="y")


def test_other_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        TabularData(str(tmp_path / "missing.csv"), target="y")
    with pytest.raises(DataError, match="unknown bundled table"):
        TabularData(dataset="titanic")
    with pytest.raises(DataError, match=r"--data\.eval_batch_size must be a positive number of rows, got -3"):
        TabularData(eval_batch_size=-3)
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(DataError, match="unknown table format"):
        TabularData(str(tmp_path / "notes.json"), target="y")
    frame = mixed_frame()
    frame.loc[5, "age"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="row 6, column 'age': missing value"):
        data = TabularData(str(tmp_path / "t.csv"), target="price", split_column=None, test_fraction=0.0,
                           val_fraction=0.01, seed=0)
        data.setup("fit")
        for split in ("train", "val"):
            data.split_tensors(split)
    (tmp_path / "bad").mkdir()
    with pytest.raises(DataError, match=r"no info\.json"):
        TabularData(str(tmp_path / "bad"))

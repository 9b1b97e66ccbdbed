"""The pieces of the tabular data module on their own: readers and splits, the typed schema, the fitted
preprocessing and its state dict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from zoo.data.splits import random_split
from zoo.data.tabular import TabularData
from zoo.data.tabular_io import read_splits
from zoo.data.tabular_preprocessing import TablePreprocessing
from zoo.data.tabular_schema import TableSchema, infer_schema

from zoo.errors import DataError


def frame(n: int = 90, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "flag": rng.choice(["on", "off"], n),
                         "colour": rng.choice(["red", "blue", "green"], n), "label": rng.choice(["a", "b"], n)})


def test_schema_inference_and_its_dict_round_trip():
    train = frame()
    schema = infer_schema({"train": train}, "label", {"train": "t.csv"}, "auto", (None, None, None))
    assert isinstance(schema, TableSchema) and schema.task_type == "binclass"
    assert (schema.num_columns, schema.bin_columns, schema.cat_columns) == (("x",), ("flag",), ("colour",))
    assert schema.bin_values == (("off", "on"),) and schema.categories == (("blue", "green", "red"),)
    assert schema.class_names == ("a", "b") and schema.num_classes == 2
    assert schema.feature_shapes == {"n_num_features": 1, "n_bin_features": 1, "cat_cardinalities": [3]}
    as_dict = schema.to_dict()
    assert as_dict["categories"] == [["blue", "green", "red"]] and schema["cat_columns"] == ["colour"]
    assert TableSchema.from_dict(as_dict) == schema
    with pytest.raises(AttributeError):
        schema.target = "x"  # frozen
    older = {k: v for k, v in as_dict.items() if k != "num_policy"}  # a schema saved before num_policy existed
    assert TableSchema.from_dict(older).num_policy == "quantile"
    with pytest.raises(DataError, match="task_type"):
        TableSchema(target="y", task_type="ranking")


@pytest.mark.parametrize("policy", ["quantile", "standard", "none"])
def test_preprocessing_state_dict_round_trip(policy):
    rows = frame(150)
    schema = infer_schema({"train": rows[:100]}, "label", {"train": "t.csv"}, "auto", (None, None, None), policy)
    fitted = TablePreprocessing(schema, seed=1).fit(rows[:100])
    restored = TablePreprocessing(schema)
    restored.load_state_dict({k: v.clone() for k, v in fitted.state_dict().items()})
    a, b = fitted.transform(rows[100:], "new.csv"), restored.transform(rows[100:], "new.csv")
    for name in ("x_num", "x_bin", "x_cat", "y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert all(k.startswith("transform.") for k in fitted.state_dict())
    assert (len(fitted.state_dict()) == 0) == (policy == "none")
    with pytest.raises(DataError, match="not fitted"):
        TablePreprocessing(schema).transform(rows, "new.csv")


def test_preprocessing_is_fitted_on_the_training_split_only():
    data = TabularData(dataset="diabetes", num_policy="standard", seed=0)
    data.setup("fit")
    train = data._features(data._frames["train"], "")[0]
    state = data.state_dict()
    np.testing.assert_allclose(state["transform.mean"].numpy(), train.mean(0))


def test_random_split_goes_through_the_shared_helper(tmp_path):
    rows = frame(120)
    rows.to_csv(tmp_path / "t.csv", index=False)
    table = read_splits(path=str(tmp_path / "t.csv"), target="label", dataset="", seed=4)
    labels = rows["label"].to_numpy()
    outer = random_split(120, 0.0, 0.2, seed=4, stratify=labels)
    inner = random_split(len(outer.train), 0.0, 0.25, seed=4, stratify=labels[outer.train])
    assert list(table.frames["test"].index) == list(outer.test)
    assert list(table.frames["val"].index) == list(outer.train[inner.test])
    assert list(table.frames["train"].index) == list(outer.train[inner.train])

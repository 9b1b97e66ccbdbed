"""`--data.folds K --data.fold i` in every data module that splits one pool itself: image folders, tables, ICU
patients (survival cohorts: tests/data/test_survival.py). Every example is tested in exactly one fold; data that
comes split is refused with the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from zoo.data.icu import SepsisData
from zoo.data.images import ImageClassificationData
from zoo.data.tabular import TabularData

from zoo.errors import DataError


def test_image_folder_folds_test_every_image_once(tmp_path, make_digit_folder):
    root = make_digit_folder(tmp_path / "digits", classes=(0, 1, 2), per_class=12)
    tested = []
    for fold in range(3):
        data = ImageClassificationData(root=str(root), folds=3, fold=fold, image_size=8, batch_size=4)
        data.setup("fit")
        parts = [set(map(str, s.paths)) for s in (data.train_set, data.val_set, data.test_set)]
        assert not (parts[2] & (parts[0] | parts[1])) and sum(map(len, parts)) == 36
        assert sorted(np.bincount(data.test_set.labels).tolist()) == [4, 4, 4]  # stratified by class
        tested += parts[2]
    assert len(tested) == len(set(tested)) == 36


def test_image_folders_that_come_split_refuse_folds(tmp_path, make_digit_folder):
    for split in ("train", "val"):
        make_digit_folder(tmp_path / "split" / split, classes=(0, 1), per_class=4)
    data = ImageClassificationData(root=str(tmp_path / "split"), folds=3, fold=0, image_size=8)
    with pytest.raises(DataError, match="has its own train/ and val/ folders, so there is nothing to cross-validate"):
        data.setup("fit")


def test_table_folds_test_every_row_once_and_a_split_column_refuses_them(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "y": np.repeat(["a", "b", "c"], 20)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    tested = []
    for fold in range(4):
        data = TabularData(str(tmp_path / "t.csv"), target="y", folds=4, fold=fold)
        test = data._frames["test"]
        assert len(test) == 15 and sorted(test["y"].value_counts().tolist()) == [5, 5, 5]
        assert not set(test.index) & set(data._frames["train"].index)
        tested += list(test.index)
    assert sorted(tested) == list(range(60))
    frame.assign(part=["train"] * 40 + ["val"] * 10 + ["test"] * 10).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match="is split by its column 'part'"):
        TabularData(str(tmp_path / "s.csv"), target="y", split_column="part", folds=4, fold=0)


def test_icu_folds_keep_patients_whole_and_test_each_once():
    tested = []
    for fold in range(3):
        data = SepsisData(num_patients=30, folds=3, fold=fold)
        data.setup("fit")
        names = {n: {p["patient"] for p in d.patients} for n, d in data.datasets.items()}
        assert not names["test"] & (names["train"] | names["val"])
        tested += sorted(names["test"])
    assert len(tested) == len(set(tested)) == 30
    with pytest.raises(DataError, match=r"--data.fold must be in 0\.\.2"):
        SepsisData(num_patients=30, folds=3, fold=3)

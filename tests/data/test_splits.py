"""k-fold splits: every row tested once, groups kept whole, classes stratified, bad folds named."""

from __future__ import annotations

import numpy as np
import pytest
from zoo.data.splits import fold_split, random_or_fold_split

from zoo.errors import DataError


def test_every_row_is_tested_in_exactly_one_fold_and_never_trained_on_there():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    splits = [fold_split(100, 5, k, val=0.1, seed=3, stratify=labels) for k in range(5)]
    np.testing.assert_array_equal(np.sort(np.concatenate([s.test for s in splits])), np.arange(100))
    for split in splits:
        parts = [set(split.train), set(split.val), set(split.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(split.train) + len(split.val) + len(split.test) == 100
        assert len(split.test) == 20 and 8 <= len(split.val) <= 12
        assert np.bincount(labels[split.test]).tolist() == [10, 6, 4]  # stratified: the class shares of the pool


def test_patients_stay_whole_across_folds():
    groups = np.repeat(np.arange(30), 4)  # 30 patients, 4 rows each
    outcome = np.repeat(np.arange(30) % 3 == 0, 4)
    for k in range(3):
        split = fold_split(len(groups), 3, k, val=0.1, groups=groups, stratify=outcome)
        assert not set(groups[split.test]) & (set(groups[split.train]) | set(groups[split.val]))
        assert len(set(groups[split.test])) == 10


def test_folds_one_is_the_random_split_and_bad_folds_are_named():
    assert len(random_or_fold_split(50, 0.1, 0.2, seed=0).test) == 10
    with pytest.raises(DataError, match=r"--data.fold must be in 0\.\.2 for --data.folds 3, got 3"):
        random_or_fold_split(50, 0.1, 0.2, folds=3, fold=3)
    with pytest.raises(DataError, match=r"--data\.folds must be at least 1"):
        random_or_fold_split(50, 0.1, 0.2, folds=0)
    with pytest.raises(DataError, match="4 rows are too few for 5 folds"):
        fold_split(4, 5, 0, val=0.1)

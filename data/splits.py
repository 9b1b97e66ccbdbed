"""Train/validation/test splits, from one place for every kind of data.

- :func:`random_split`: random, optionally stratified by a label (classification);
- :func:`grouped_split`: no group (patient, subject, speaker) in two splits, optionally stratified by a
  group-level label (e.g. whether the patient ever develops sepsis);
- :func:`chronological_split`: in time order, with a gap of ``gap`` steps left out between the parts so that no
  window straddles two splits (no look-ahead; fit every statistic on ``train`` only);
- :func:`given_split`: the split named per row by the data itself (a split column, list files);
- :func:`fold_split`: fold ``fold`` of a k-fold cross-validation as the test part (optionally stratified, and by
  group), the validation part cut from the other folds: ``zoo train MODEL --data.folds K`` runs every fold.

Each returns a :class:`Split` of sorted integer index arrays into the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split

from zoo.errors import DataError

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


class Split(NamedTuple):
    """Row indices of each part (sorted int64 arrays)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> str:
        return f"train {len(self.train)}, val {len(self.val)}, test {len(self.test)}"


def _check_fractions(val: float, test: float) -> None:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"split fractions must be in [0, 1) and leave rows for training: val {val}, test {test}")


def _two_way(index: np.ndarray, fraction: float, seed: int, stratify: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray]:
    if fraction == 0:
        return index, index[:0]
    try:
        return train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError:  # too few members of a class for a stratified split of this size
        if stratify is None:
            raise
        return train_test_split(index, test_size=fraction, random_state=seed)


def random_split(n: int, val: float, test: float, seed: int = 0, stratify: Sequence | None = None) -> Split:
    """Random split of ``n`` rows: test first, then validation from the rest (stratified by ``stratify``)."""
    _check_fractions(val, test)
    if n < 3:
        raise DataError(f"{n} rows are too few to split into train/val/test")
    labels = None if stratify is None else np.asarray(stratify)
    rest, test_idx = _two_way(np.arange(n), test, seed, labels)
    share = val / (1 - test) if val else 0.0
    train_idx, val_idx = _two_way(rest, share, seed, None if labels is None else labels[rest])
    return Split(np.sort(train_idx), np.sort(val_idx), np.sort(test_idx))


def grouped_split(groups: Sequence, val: float, test: float, seed: int = 0,
                  stratify: Sequence | None = None) -> Split:
    """Split whole groups: every row of a group lands in the same part.

    Args:
        groups: (N,) group id of each row.
        stratify: (N,) label of each row, constant within a group (the group's outcome), to stratify by.
    """
    inverse, count, group_labels = _groups_of(groups, stratify)
    return _rows_of_groups(random_split(count, val, test, seed, group_labels), inverse)


def _groups_of(groups: Sequence, stratify: Sequence | None) -> tuple[np.ndarray, int, np.ndarray | None]:
    """(N,) index of each row's group among the sorted group ids, the number of groups, and each group's label
    (None without ``stratify``), checked to be the same for every row of a group."""
    names, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    if stratify is None:
        return inverse, len(names), None
    labels = np.asarray(stratify)
    group_labels = labels[first]
    if not np.array_equal(labels, group_labels[inverse]):
        raise DataError("the stratification label must be the same for every row of a group")
    return inverse, len(names), group_labels


def _rows_of_groups(parts: Split, inverse: np.ndarray) -> Split:
    """A split of groups as a split of their rows."""
    return Split(*(np.flatnonzero(np.isin(inverse, part)) for part in parts))


def chronological_split(n: int, val: float, test: float, gap: int = 0) -> Split:
    """The first rows train, the next validate, the last test, leaving ``gap`` rows out before val and test."""
    _check_fractions(val, test)
    n_test, n_val = round(n * test), round(n * val)
    n_train = n - n_val - n_test - gap * ((n_val > 0) + (n_test > 0))
    if n_train < 1:
        raise DataError(f"{n} time steps are too few for val {val}, test {test} and a gap of {gap}")
    train = np.arange(n_train)
    val_start = n_train + (gap if n_val else 0)
    val_idx = np.arange(val_start, val_start + n_val)
    test_start = val_start + n_val + (gap if n_test else 0)
    return Split(train, val_idx, np.arange(test_start, test_start + n_test))


def given_split(names: Sequence[str], source: str = "the split column") -> Split:
    """Rows marked train / val (valid, validation) / test, e.g. by a split column or list files."""
    lowered = [str(name).strip().lower() for name in names]
    unknown = sorted(set(lowered) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"{source} holds {', '.join(map(repr, unknown[:5]))}; expected train, val (valid) or test")
    parts = np.array([SPLIT_NAMES[name] for name in lowered])
    return Split(*(np.flatnonzero(parts == part) for part in ("train", "val", "test")))


def check_fold(folds: int, fold: int) -> None:
    """``--data.folds`` at least 1 (1: no cross-validation) and ``--data.fold`` one of its folds."""
    if folds < 1:
        raise DataError(f"--data.folds must be at least 1 (1: one random split, no cross-validation), got {folds}")
    if folds > 1 and not 0 <= fold < folds:
        raise DataError(f"--data.fold must be in 0..{folds - 1} for --data.folds {folds}, got {fold}")


def fold_split(n: int, folds: int, fold: int, val: float, seed: int = 0, stratify: Sequence | None = None,
               groups: Sequence | None = None) -> Split:
    """Fold ``fold`` of a seeded ``folds``-fold partition of ``n`` rows is the test part; the validation part is
    cut from the other folds (``val`` of all rows, stratified like the folds), the rest trains. Every row is
    tested in exactly one fold.

    Args:
        stratify: (N,) label to stratify the folds by (classes, survival events).
        groups: (N,) group id of each row (patient): whole groups go to one part, and ``stratify`` must then be
            constant within a group.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    check_fold(folds, fold)
    if folds == 1:
        raise DataError("fold_split needs --data.folds of at least 2")
    if groups is not None:
        inverse, count, group_labels = _groups_of(groups, stratify)
        return _rows_of_groups(fold_split(count, folds, fold, val, seed, group_labels), inverse)
    if n < folds:
        raise DataError(f"{n} rows are too few for {folds} folds")
    labels = None if stratify is None else np.asarray(stratify)
    index = np.arange(n)
    stratified = labels is not None and np.unique(labels, return_counts=True)[1].min() >= folds
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if stratified else \
        KFold(folds, shuffle=True, random_state=seed)
    rest, test_idx = list(splitter.split(index, labels if stratified else None))[fold]
    share = min(val / (1 - 1 / folds), 0.5) if val else 0.0
    inner_train, inner_val = _two_way(rest, share, seed, None if labels is None else labels[rest])
    return Split(np.sort(inner_train), np.sort(inner_val), np.sort(test_idx))


def random_or_fold_split(n: int, val: float, test: float, seed: int = 0, stratify: Sequence | None = None,
                         groups: Sequence | None = None, folds: int = 1, fold: int = 0) -> Split:
    """:func:`fold_split` when ``folds`` > 1, else the random (grouped when ``groups``) split with ``test``."""
    check_fold(folds, fold)
    if folds > 1:
        return fold_split(n, folds, fold, val, seed, stratify, groups)
    if groups is not None:
        return grouped_split(groups, val, test, seed, stratify)
    return random_split(n, val, test, seed, stratify)

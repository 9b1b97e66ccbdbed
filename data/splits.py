"""Train/validation/test splits, from one place for every kind of data.

- :func:`random_split`: random, optionally stratified by a label (classification);
- :func:`grouped_split`: no group (patient, subject, speaker) in two splits, optionally stratified by a
  group-level label (e.g. whether the patient ever develops sepsis);
- :func:`chronological_split`: in time order, with a gap of ``gap`` steps left out between the parts so that no
  window straddles two splits (no look-ahead; fit every statistic on ``train`` only);
- :func:`given_split`: the split named per row by the data itself (a split column, list files).

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
    groups = np.asarray(groups)
    names, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    group_labels = None
    if stratify is not None:
        labels = np.asarray(stratify)
        group_labels = labels[first]
        if not np.array_equal(labels, group_labels[inverse]):
            raise DataError("the stratification label must be the same for every row of a group")
    parts = random_split(len(names), val, test, seed, group_labels)
    rows = [np.flatnonzero(np.isin(inverse, part)) for part in parts]
    return Split(*rows)


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

"""Reading tables into train/val/test frames: CSV / TSV / parquet files, the TabR benchmark directory format and
scikit-learn's bundled tables (see ``zoo.data.tabular`` for the formats).

:func:`read_splits` reads the source a data module names and splits it (a split column, val/test files, the
benchmark's fixed splits, or a seeded random split through ``zoo.data.splits``, stratified by class);
:func:`read_prediction_rows` reads the rows ``zoo predict`` is given. Frames keep the file's row numbers as their
index, so that a bad value found later names the row a user can find; every error is a ``DataError`` naming the
file (and row, column).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from zoo.data.splits import fold_split, given_split, random_split
from zoo.data.tabular_schema import TaskType, target_task

from zoo.errors import DataError

SPLITS = ("train", "val", "test")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def _bundled() -> dict[str, tuple[Callable[[], Any], str]]:
    from sklearn import datasets

    return {
        "diabetes": (datasets.load_diabetes, "regression"),
        "breast_cancer": (datasets.load_breast_cancer, "binclass"),
        "wine": (datasets.load_wine, "multiclass"),
        "iris": (datasets.load_iris, "multiclass"),
        "digits": (datasets.load_digits, "multiclass"),
    }


# --- one file or folder -------------------------------------------------------------------------------------------
def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV / TSV / parquet file as a DataFrame; unreadable or empty files raise DataError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"table {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise DataError(f"{path}: unknown table format {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")
    except (ValueError, OSError, ImportError, pd.errors.ParserError) as err:
        raise DataError(f"cannot read table {path}: {err}") from None
    if frame.empty:
        raise DataError(f"table {path} has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def bundled_table(name: str) -> tuple[pd.DataFrame, str, str]:
    """(frame with a "target" column, target name, task type) of a table bundled with scikit-learn."""
    tables = _bundled()
    if name not in tables:
        raise DataError(f"unknown bundled table {name!r}; bundled: {', '.join(tables)}")
    loader, task = tables[name]
    bunch = loader()
    frame = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
    target = bunch.target
    if task != "regression":
        names = [str(n) for n in bunch.target_names] if hasattr(bunch, "target_names") else None
        target = np.asarray(names, dtype=object)[target] if names is not None else target
    frame["target"] = target
    return frame, "target", task


def read_benchmark_dir(path: Path) -> tuple[dict[str, pd.DataFrame], str, str]:
    """The TabR benchmark format: per-split frames (columns num_i, bin_i, cat_i, target), the target name and task."""
    info_file = path / "info.json"
    if not info_file.is_file():
        raise DataError(f"{path} is not a TabR dataset directory: it has no info.json")
    try:
        task = json.loads(info_file.read_text())["task_type"]
    except (json.JSONDecodeError, KeyError) as err:
        raise DataError(f"{info_file}: expected JSON with a 'task_type' field: {err}") from None
    if task not in ("regression", "binclass", "multiclass"):
        raise DataError(f"{info_file}: task_type {task!r} is not regression, binclass or multiclass")
    frames = {}
    for split in SPLITS:
        y_file = path / f"Y_{split}.npy"
        if not y_file.is_file():
            raise DataError(f"{path} lacks {y_file.name} (every split needs X_*_{split}.npy and Y_{split}.npy)")
        y = np.load(y_file, allow_pickle=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"{y_file}: labels must be 1-D, got shape {y.shape}")
        columns: dict[str, Any] = {}
        for kind in ("num", "bin", "cat"):
            x_file = path / f"X_{kind}_{split}.npy"
            if not x_file.is_file():
                continue
            x = np.load(x_file, allow_pickle=kind == "cat")
            if x.ndim != 2 or len(x) != len(y):
                raise DataError(f"{x_file}: expected ({len(y)}, features), got shape {x.shape}")
            for j in range(x.shape[1]):
                columns[f"{kind}_{j}"] = x[:, j].astype(str) if kind == "cat" else x[:, j]
        if not columns:
            raise DataError(f"{path} has no X_num/X_bin/X_cat_{split}.npy")
        frame = pd.DataFrame(columns)
        frame["target"] = y
        frames[split] = frame
    return frames, "target", task


def read_prediction_rows(path: str | None) -> tuple[pd.DataFrame, str]:
    """(rows, source name) for ``zoo predict``: a table file, or the test split of a benchmark directory."""
    if path is None:
        raise DataError("zoo predict needs --data.path: the table (.csv, .tsv, .parquet) of rows to predict")
    path = Path(path).expanduser()
    if path.is_dir():
        frames, _, _ = read_benchmark_dir(path)
        return frames["test"], str(path / "X_*_test.npy")
    return read_table(path), str(path)


# --- a source, split ----------------------------------------------------------------------------------------------
@dataclass
class TableSplits:
    """A source read and split.

    Attributes:
        frames: "train", "val", "test" frames (test may be empty), indexed by the file's row numbers.
        target: the target column.
        sources: per split, the file it came from (for error messages).
        task_hint: the task type the source or the user names ("auto" when neither does).
        kinds: the (numerical, binary, categorical) columns a benchmark directory's file names fix; else None.
    """

    frames: dict[str, pd.DataFrame]
    target: str
    sources: dict[str, str]
    task_hint: TaskType
    kinds: tuple[list[str], list[str], list[str]] | None = None


def _read_source(path: str | None, target: str | None, dataset: str, task_type: TaskType, val_path: str | None,
                 test_path: str | None) -> tuple[pd.DataFrame | dict[str, pd.DataFrame], TableSplits]:
    """The frames as read (one frame still to split, or per-split frames) and what is known of the source."""
    if path is None:
        frame, target, task = bundled_table(dataset)
        sources = dict.fromkeys(SPLITS, f"scikit-learn's {dataset} table")
        return frame, TableSplits({}, target, sources, task if task_type == "auto" else task_type)
    file = Path(path).expanduser()
    if file.is_dir():
        frames, target, task = read_benchmark_dir(file)
        columns = list(frames["train"].columns)  # the files say which features are which
        kinds = tuple([c for c in columns if c.startswith(f"{kind}_")] for kind in ("num", "bin", "cat"))
        sources = {s: str(file / f"X_*_{s}.npy") for s in SPLITS}
        return frames, TableSplits({}, target, sources, task if task_type == "auto" else task_type, kinds)
    if not target:
        raise DataError(f"{file}: name the target column with --data.target (columns: "
                        f"{', '.join(read_table(file).columns)})")
    frame = read_table(file)
    sources = dict.fromkeys(SPLITS, str(file))
    if not (val_path or test_path):
        return frame, TableSplits({}, target, sources, task_type)
    frames = {"train": frame}
    for split, other in (("val", val_path), ("test", test_path)):
        if other:
            frames[split] = read_table(other)
            sources[split] = str(other)
    return frames, TableSplits({}, target, sources, task_type)


def _check_target(frame: pd.DataFrame, target: str, source: str) -> None:
    if target not in frame.columns:
        raise DataError(f"{source}: no target column {target!r}; columns: {', '.join(frame.columns)}")
    if frame[target].isna().any():
        row = int(np.flatnonzero(frame[target].isna().to_numpy())[0])
        raise DataError(f"{source}: row {row + 1}: the target {target!r} is missing")


def _stratify(frame: pd.DataFrame, target: str, task_hint: TaskType) -> np.ndarray | None:
    """(n,) class labels to stratify by, or None for a regression target or a class of a single row."""
    if target_task(frame[target], task_hint) == "regression":
        return None
    labels = frame[target].astype(str).to_numpy()
    return labels if pd.Series(labels).value_counts().min() >= 2 else None


def _cut(frame: pd.DataFrame, fraction: float, seed: int, table: TableSplits, source: str
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, part): a seeded random ``fraction`` of the rows split off (``zoo.data.splits.random_split``)."""
    if not 0 < fraction < 1:
        raise DataError(f"split fraction must be in (0, 1), got {fraction}")
    if len(frame) < 3:
        raise DataError(f"{source}: {len(frame)} rows are too few to split")
    split = random_split(len(frame), val=0.0, test=fraction, seed=seed,
                         stratify=_stratify(frame, table.target, table.task_hint))
    return frame.iloc[split.train], frame.iloc[split.test]


def _split_one_frame(frame: pd.DataFrame, table: TableSplits, split_column: str | None, val_fraction: float,
                     test_fraction: float, seed: int, folds: int = 1, fold: int = 0) -> dict[str, pd.DataFrame]:
    """One frame into train/val/test: by its split column (validation cut from training when it names none), by
    fold ``fold`` of ``folds`` (k-fold cross-validation, stratified by class), or at random: the test part first,
    then the validation part of the rest."""
    source = table.sources["train"]
    if folds > 1:
        if split_column:
            raise DataError(f"--data.folds {folds}: {source} is split by its column {split_column!r}; folds split "
                            "one table without a split column")
        labels = _stratify(frame, table.target, table.task_hint)
        split = fold_split(len(frame), folds, fold, val_fraction, seed, stratify=labels)
        return {s: frame.iloc[rows] for s, rows in zip(SPLITS, split, strict=True)}
    if split_column:
        if split_column not in frame.columns:
            raise DataError(f"{source}: no split column {split_column!r}; columns: {', '.join(frame.columns)}")
        split = given_split(frame[split_column].to_numpy(), source=f"{source}: split column {split_column!r}")
        frames = {s: frame.iloc[rows].drop(columns=[split_column]) for s, rows in zip(SPLITS, split, strict=True)}
        if len(frames["val"]) == 0 and len(frames["train"]) > 0:
            frames["train"], frames["val"] = _cut(frames["train"], val_fraction, seed, table, source)
        return frames
    rest, test = (frame, frame.iloc[:0]) if test_fraction == 0 else _cut(frame, test_fraction, seed, table, source)
    train, val = _cut(rest, val_fraction / (1 - test_fraction), seed, table, source)
    return {"train": train, "val": val, "test": test}


def read_splits(*, path: str | None, target: str | None, dataset: str, task_type: TaskType = "auto",
                split_column: str | None = None, val_path: str | None = None, test_path: str | None = None,
                val_fraction: float = 0.2, test_fraction: float = 0.2, drop_columns: Sequence[str] | None = None,
                seed: int = 0, folds: int = 1, fold: int = 0) -> TableSplits:
    """Read the source (``path``: a table file or a benchmark directory; None: the bundled ``dataset``) and split
    it into train/val/test (the arguments are those of ``TabularData``). Empty train or val splits, and a test
    file without rows, raise DataError."""
    read, table = _read_source(path, target, dataset, task_type, val_path, test_path)
    if isinstance(read, pd.DataFrame):
        _check_target(read, table.target, table.sources["train"])
        frames = _split_one_frame(read, table, split_column, val_fraction, test_fraction, seed, folds, fold)
    else:
        if folds > 1:
            raise DataError(f"--data.folds {folds}: {table.sources['train']} comes with its own splits "
                            f"({', '.join(read)}); folds split one table (--data.path FILE)")
        for split, frame in read.items():
            _check_target(frame, table.target, table.sources[split])
        frames = dict(read)
        if "val" not in frames:
            frames["train"], frames["val"] = _cut(frames["train"], val_fraction, seed, table, table.sources["train"])
    drop = set(drop_columns or [])
    # no reset_index: the index stays the file's row number, so an error names the row the user can find
    table.frames = {s: f.drop(columns=[c for c in f.columns if c in drop]) for s, f in frames.items()}
    for split in ("train", "val"):
        if len(table.frames.get(split, ())) == 0:
            raise DataError(f"{table.sources.get(split, '?')}: the {split} split is empty")
    if "test" in table.frames and len(table.frames["test"]) == 0 and test_path:
        raise DataError(f"{table.sources.get('test', '?')}: the test split is empty")
    return table

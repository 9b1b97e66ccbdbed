"""The schema of a table: which columns are features of which kind, the target and its task, and the vocabularies
(binary values, categories, classes) and target scaling seen in the training rows.

:func:`infer_schema` derives a :class:`TableSchema` from the training split (checking the other splits' classes);
the schema travels in checkpoints as the data module's ``schema`` hyperparameter, in the plain-dict form of
:meth:`TableSchema.to_dict` (checkpoints are loaded with ``weights_only=True``), and comes back with
:meth:`TableSchema.from_dict`.

The value parsers here (:func:`numeric_values`, :func:`as_strings`) are shared with the preprocessing: a value that
is not a number raises ``DataError`` naming the file, the row (the file's row number, which the frames keep as
their index through splits) and the column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import pandas as pd

from zoo.errors import DataError

TaskType = Literal["auto", "regression", "binclass", "multiclass"]
TASK_TYPES = ("regression", "binclass", "multiclass")
MAX_AUTO_CLASSES = 20  # an integer-valued target with at most this many values is taken as classes


# --- values -------------------------------------------------------------------------------------------------------
def numeric_values(values: pd.Series, column: str, source: str) -> np.ndarray:
    """A column as (n,) float64; a value that is not a number raises DataError naming the file, row and column."""
    converted = pd.to_numeric(values, errors="coerce")

    def file_row(position: int) -> int:  # the frames keep the file's row numbers as their index through splits
        label = values.index[position]
        return int(label) + 1 if isinstance(label, (int, np.integer)) else position + 1

    bad = converted.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: row {file_row(row)}, column {column!r}: {values.iloc[row]!r} is not a number "
                        "(name the column in cat_columns if it is categorical)")
    if converted.isna().any():
        row = int(np.flatnonzero(converted.isna().to_numpy())[0])
        raise DataError(f"{source}: row {file_row(row)}, column {column!r}: missing value in a numerical column "
                        "(fill it in, or name the column in cat_columns)")
    array = converted.to_numpy(dtype=np.float64)
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array))[0])
        raise DataError(f"{source}: row {file_row(row)}, column {column!r}: {array[row]} is not finite")
    return array


def as_strings(values: pd.Series) -> np.ndarray:
    """Category values as an (n,) object array of strings; floats that are whole numbers lose their ".0", missing
    values are "<NA>"."""
    def text(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "<NA>"
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)
    return np.asarray([text(v) for v in values.tolist()], dtype=object)


def _mostly_numeric(values: pd.Series) -> bool:
    present = values.dropna()
    if present.empty:
        return False
    parsed = pd.to_numeric(present, errors="coerce")
    return parsed.notna().mean() >= 0.95


def class_order(values: pd.Series) -> list[str]:
    """The distinct values as strings, in numerical order when they are numbers, else in text order."""
    unique = values.dropna().unique()
    try:
        unique = sorted(unique, key=float)
    except (TypeError, ValueError):
        unique = sorted(unique, key=str)
    return [str(v) for v in as_strings(pd.Series(unique))]


# --- inference ----------------------------------------------------------------------------------------------------
def infer_column_kinds(frame: pd.DataFrame, target: str, num_columns: Sequence[str] | None,
                       bin_columns: Sequence[str] | None, cat_columns: Sequence[str] | None,
                       source: str) -> tuple[list[str], list[str], list[str]]:
    """(numerical, binary, categorical) feature columns: those named, the others inferred.

    Inference: booleans, and text with exactly two values -> binary; numbers (or values of which at least 95% are
    numbers, so that a stray typo is reported rather than turning the column categorical) -> numerical, even with
    two values (a 0/1 column seen in training may hold a 2 in new rows); anything else -> categorical.
    """
    named = {"num": list(num_columns or []), "bin": list(bin_columns or []), "cat": list(cat_columns or [])}
    for kind, columns in named.items():
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{source}: {kind}_columns names columns the table lacks: {', '.join(missing)}; "
                            f"columns: {', '.join(frame.columns)}")
    taken = {c for columns in named.values() for c in columns}
    if target in taken:
        raise DataError(f"the target {target!r} is also named as a feature column")
    every_kind_named = num_columns is not None and bin_columns is not None and cat_columns is not None
    for column in frame.columns:
        if column == target or column in taken or every_kind_named:  # every kind named: others are left out
            continue
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or (
                not pd.api.types.is_numeric_dtype(values) and values.nunique() == 2 and not values.isna().any()
                and not _mostly_numeric(values)):
            named["bin"].append(column)
        elif pd.api.types.is_numeric_dtype(values) or _mostly_numeric(values):
            named["num"].append(column)
        else:
            named["cat"].append(column)
    if not any(named.values()):
        raise DataError(f"{source}: no feature columns besides the target {target!r}")
    return named["num"], named["bin"], named["cat"]


def target_task(values: pd.Series, task_type: TaskType) -> str:
    """The task of a target column: ``task_type`` unless "auto"; then classes for text, booleans and integers
    with at most ``MAX_AUTO_CLASSES`` values (binclass for two), else regression."""
    if task_type != "auto":
        return task_type
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "binclass" if values.nunique() == 2 else "multiclass"
    numbers = values.to_numpy(dtype=np.float64)
    if np.all(np.mod(numbers, 1) == 0) and values.nunique() <= MAX_AUTO_CLASSES:
        return "binclass" if values.nunique() == 2 else "multiclass"
    return "regression"


# --- the schema ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableSchema:
    """What a model trained on the table needs to read new rows of it.

    Attributes:
        target: the target column.
        task_type: "regression", "binclass" or "multiclass".
        num_columns / bin_columns / cat_columns: the feature columns by kind, in model input order.
        bin_values: per binary column, its two values as strings (0, 1 in that order; a column with a single value
            in training gets "<none>" as its 0).
        categories: per categorical column, its training categories (ordinal code = position; an unseen category
            gets the code ``len(categories)``).
        class_names: the classes in label order (empty for regression).
        y_mean / y_std: the regression target's training mean and std (0, 1 for classes); the task predicts
            standardised targets.
        num_policy: the numerical transform: "quantile", "standard" or "none".
    """

    target: str
    task_type: str
    num_columns: tuple[str, ...] = ()
    bin_columns: tuple[str, ...] = ()
    cat_columns: tuple[str, ...] = ()
    bin_values: tuple[tuple[str, ...], ...] = ()
    categories: tuple[tuple[str, ...], ...] = ()
    class_names: tuple[str, ...] = ()
    y_mean: float = 0.0
    y_std: float = 1.0
    num_policy: str = "quantile"

    def __post_init__(self) -> None:
        nested = {"bin_values", "categories"}
        for name in ("num_columns", "bin_columns", "cat_columns", "bin_values", "categories", "class_names"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(tuple(v) for v in value) if name in nested else tuple(value))
        object.__setattr__(self, "y_mean", float(self.y_mean))
        object.__setattr__(self, "y_std", float(self.y_std))
        if self.task_type not in TASK_TYPES:
            raise DataError(f"table schema: task_type {self.task_type!r} is not one of {', '.join(TASK_TYPES)}")
        if len(self.bin_values) != len(self.bin_columns) or len(self.categories) != len(self.cat_columns):
            raise DataError("table schema: bin_values / categories do not match bin_columns / cat_columns")

    # --- the checkpoint form --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, schema: Mapping[str, Any] | TableSchema) -> TableSchema:
        """The schema from its dict form (the ``schema`` hyperparameter); keys it lacks take their defaults."""
        if isinstance(schema, TableSchema):
            return schema
        missing = [k for k in ("target", "task_type") if k not in schema]
        if missing:
            raise DataError(f"table schema lacks {', '.join(missing)}: {dict(schema)}")
        return cls(**{f.name: schema[f.name] for f in fields(cls) if f.name in schema})

    def to_dict(self) -> dict[str, Any]:
        """The dict form, of lists, strings and floats (what checkpoints and config files hold)."""
        nested = {"bin_values", "categories"}
        return {f.name: ([list(v) for v in getattr(self, f.name)] if f.name in nested
                         else list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple)
                         else getattr(self, f.name)) for f in fields(self)}

    def __getitem__(self, key: str) -> Any:
        """``schema["num_columns"]``: an entry of the dict form (the schema was a dict before it was typed)."""
        return self.to_dict()[key]

    # --- what the task is linked to -------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """1 for regression, else the number of classes."""
        return 1 if self.task_type == "regression" else len(self.class_names)

    @property
    def feature_shapes(self) -> dict[str, Any]:
        """The model's data-dependent constructor arguments."""
        return {"n_num_features": len(self.num_columns), "n_bin_features": len(self.bin_columns),
                "cat_cardinalities": [len(c) for c in self.categories]}

    @property
    def feature_columns(self) -> list[str]:
        return [*self.num_columns, *self.bin_columns, *self.cat_columns]


def infer_schema(frames: Mapping[str, pd.DataFrame], target: str, sources: Mapping[str, str], task_hint: TaskType,
                 kinds: tuple[Sequence[str] | None, Sequence[str] | None, Sequence[str] | None],
                 num_policy: str = "quantile") -> TableSchema:
    """The schema of the training split ``frames["train"]``: column kinds (``kinds`` = the named numerical,
    binary and categorical columns, None to infer), vocabularies, classes and target scaling. Classes of the
    val/test splits that training never saw raise DataError."""
    train, source = frames["train"], sources["train"]
    num, binary, cat = infer_column_kinds(train, target, *kinds, source)
    task = target_task(train[target], task_hint)
    bin_values = []
    for column in binary:
        values = class_order(train[column])
        if len(values) > 2:
            raise DataError(f"{source}: binary column {column!r} has {len(values)} values: {values[:5]}")
        bin_values.append(values if len(values) == 2 else ["<none>", *values])
    categories = [sorted(set(as_strings(train[c]))) for c in cat]
    y_mean, y_std, classes = 0.0, 1.0, []
    if task == "regression":
        y = numeric_values(train[target], target, source)
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
    else:
        classes = class_order(train[target])
        if len(classes) < 2:
            raise DataError(f"{source}: the training split has a single class ({classes})")
        if task == "binclass" and len(classes) != 2:
            raise DataError(f"{source}: task_type binclass but the target has {len(classes)} classes")
        known = set(classes)
        for split in ("val", "test"):
            frame = frames.get(split)
            if frame is None or len(frame) == 0:
                continue
            unseen = sorted(set(as_strings(frame[target])) - known)
            if unseen:
                raise DataError(f"{sources[split]}: the {split} split has classes never seen in training: "
                                f"{', '.join(unseen[:10])} (training classes: {', '.join(classes[:20])})")
    return TableSchema(target=target, task_type=task, num_columns=num, bin_columns=binary, cat_columns=cat,
                       bin_values=bin_values, categories=categories, class_names=classes, y_mean=y_mean,
                       y_std=y_std, num_policy=num_policy)

"""The covariate encoding of a survival table, fitted once and kept with the run.

:class:`CovariateEncoding` turns the covariate columns of a table into a standardised (n, F) float32 matrix:
numerical columns as they are, categorical columns one-hot encoded with the first category dropped (as
``pandas.get_dummies(drop_first=True)``, the numerical columns first, then the dummies), every feature standardised
with the mean and standard deviation of the training part. It travels in checkpoints as the plain dict of
:meth:`CovariateEncoding.to_dict` (the data module's ``encoding`` argument), so new patients are encoded exactly
as the training patients were, with no access to the training file: an unknown category, a missing column or a
numerical column holding text is a ``DataError`` naming the file, the column and the line.

A column is numerical when its values are numbers, or when at least 95% of them are, so that a typo (``'seventy'``
in an age column) is reported instead of silently turning the column categorical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zoo.errors import DataError

__all__ = ["CovariateEncoding", "line_of"]

NUMERIC_SHARE = 0.95  # a column with at least this share of numbers is numerical; its other values are errors


def line_of(source: str, position: int) -> str:
    """Where data row ``position`` (0-based) is in ``source``: "line N" of a text table (header on line 1), else
    "row N"."""
    return f"row {position + 1}" if str(source).endswith((".parquet", ".pq")) else f"line {position + 2}"


def _is_numerical(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        return True
    present = values.dropna()
    return not present.empty and pd.to_numeric(present, errors="coerce").notna().mean() >= NUMERIC_SHARE


def _text(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class CovariateEncoding:
    """Columns -> standardised features (see the module docstring).

    Attributes:
        numerical: the numerical columns, in table order.
        categories: categorical column -> its categories (sorted text; the first is the dropped reference).
        mean / std: (F,) statistics of the training part, F = len(numerical) + sum(len(c) - 1).
    """

    numerical: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def columns(self) -> list[str]:
        """Every covariate column the encoding reads."""
        return [*self.numerical, *self.categories]

    @property
    def features(self) -> list[str]:
        """The F feature names: the numerical columns, then ``<column>_<category>`` dummies."""
        return [*self.numerical, *(f"{c}_{v}" for c, values in self.categories.items() for v in values[1:])]

    # --- fitting ------------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: Sequence[str], train_rows: np.ndarray, source: str
            ) -> CovariateEncoding:
        """Column kinds and categories from the whole file, mean/std from its rows ``train_rows`` only."""
        numerical = tuple(c for c in columns if _is_numerical(frame[c]))
        categories = {c: tuple(sorted({_text(v) for v in frame[c].dropna()})) for c in columns if c not in numerical}
        unencoded = cls(numerical, categories, (), ())
        x = unencoded.raw(frame, source)[train_rows]
        if len(x) == 0:
            raise DataError(f"{source}: the training part is empty")
        return cls(numerical, categories, tuple(x.mean(0).tolist()), tuple((x.std(0) + 1e-6).tolist()))

    # --- applying -----------------------------------------------------------------------------------------------
    def raw(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        """(n, F) float64 features before standardisation; a frame that does not fit raises DataError."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"{source}: no covariate column {', '.join(map(repr, missing))}: the model was trained "
                            f"on {', '.join(self.columns)}; this file has {', '.join(map(str, frame.columns))}")
        parts = [self._numbers(frame[c], c, source) for c in self.numerical]
        for column, values in self.categories.items():
            text = frame[column]
            known = {v: i for i, v in enumerate(values)}
            codes = np.full(len(text), -1)
            for i, value in enumerate(text.tolist()):
                if value is None or (isinstance(value, float) and np.isnan(value)):
                    raise DataError(f"{source}: {line_of(source, i)}, column {column!r}: missing value")
                code = known.get(_text(value))
                if code is None:
                    raise DataError(f"{source}: {line_of(source, i)}, column {column!r}: {value!r} is not one of "
                                    f"the categories the model was trained with ({', '.join(values)})")
                codes[i] = code
            parts.extend((codes == k).astype(np.float64) for k in range(1, len(values)))
        return np.stack(parts, 1) if parts else np.zeros((len(frame), 0))

    def transform(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        """(n, F) float32 standardised features of ``frame`` (read from ``source``, named in errors)."""
        return ((self.raw(frame, source) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    @staticmethod
    def _numbers(values: pd.Series, column: str, source: str) -> np.ndarray:
        converted = pd.to_numeric(values, errors="coerce")
        bad = converted.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = values.iloc[i]
            what = "missing value" if pd.isna(value) else f"{value!r} is not a number"
            raise DataError(f"{source}: {line_of(source, i)}, column {column!r}: {what} in a numerical covariate")
        return converted.to_numpy(np.float64)

    # --- the checkpointed form ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"numerical": list(self.numerical), "categories": {c: list(v) for c, v in self.categories.items()},
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, encoding: dict[str, Any]) -> CovariateEncoding:
        try:
            made = cls(tuple(encoding["numerical"]), {c: tuple(v) for c, v in encoding["categories"].items()},
                       tuple(float(m) for m in encoding["mean"]), tuple(float(s) for s in encoding["std"]))
        except (KeyError, TypeError, AttributeError) as err:
            raise DataError(f"--data.encoding is not a covariate encoding (numerical, categories, mean, std): "
                            f"{err}") from None
        if not len(made.mean) == len(made.std) == len(made.features):
            raise DataError(f"--data.encoding has {len(made.mean)} means and {len(made.std)} standard deviations "
                            f"for {len(made.features)} features")
        return made

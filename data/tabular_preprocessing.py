"""The preprocessing of a table, fitted on its training rows, as in the TabR code (``lib/data.py``).

:class:`TablePreprocessing` turns frames into model inputs by the :class:`~zoo.data.tabular_schema.TableSchema`:

- numerical features through the fitted transform of ``schema.num_policy``: "quantile" is scikit-learn's
  QuantileTransformer (normal output, n_quantiles = clip(n_train // 30, 10, 1000), fitted on the training rows
  plus Gaussian noise of std 1e-3 / max(std_j, 1e-3), seeded), "standard" the training mean and std, "none" the
  identity;
- binary features to 0/1 by the schema's two values; categorical features to ordinal codes by the schema's
  categories (an unseen category gets the code ``cardinality``);
- the regression target standardised by the schema's training mean and std; class names to class indices (-1
  for a class never seen or a missing target column).

Its ``state_dict`` holds the fitted numerical transform as tensors (``transform.quantiles`` /
``transform.references``, or ``transform.mean`` / ``transform.scale``); the vocabularies and target scaling are in
the schema. Schema + state dict rebuild the preprocessing of a trained run with no access to its training rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import QuantileTransformer
from torch.utils.data import Dataset
from zoo.data.tabular_schema import TableSchema, as_strings, numeric_values

from zoo.errors import DataError

NumPolicy = Literal["quantile", "standard", "none"]
STATE_PREFIX = "transform."


class TableTensors(Dataset):
    """A preprocessed split in memory: ``x_num`` (N, F_num) float32, ``x_bin`` (N, F_bin) float32, ``x_cat``
    (N, F_cat) int64, ``y`` (N,) float32 (standardised regression target) or int64 (class index).

    ``dataset[[i, j, ...]]`` (``__getitems__``) gives a whole batch dict of those keys plus ``index`` (B,) int64,
    the rows of this split.
    """

    def __init__(self, x_num: torch.Tensor, x_bin: torch.Tensor, x_cat: torch.Tensor, y: torch.Tensor):
        self.x_num, self.x_bin, self.x_cat, self.y = x_num, x_bin, x_cat, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return {"x_num": self.x_num[index], "x_bin": self.x_bin[index], "x_cat": self.x_cat[index],
                "y": self.y[index], "index": index}


class TablePreprocessing:
    """Frames -> :class:`TableTensors` by a schema and a numerical transform fitted on the training rows.

    Args:
        schema: the table's schema (column kinds, vocabularies, target scaling, ``num_policy``).
        seed: seed of the quantile-fit noise.
    """

    def __init__(self, schema: TableSchema, seed: int = 0):
        self.schema, self.seed = schema, seed
        self.numeric: dict[str, torch.Tensor] = {}  # the fitted numerical transform
        self.fitted = False

    # --- fitting --------------------------------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, source: str = "the training table") -> TablePreprocessing:
        """Fit the numerical transform on the training rows (the paper's quantile transform with fit noise)."""
        x = self.features(train, source)[0]
        policy = self.schema.num_policy
        if x.shape[1] == 0 or policy == "none":
            self.numeric = {}
        elif policy == "standard":
            std = x.std(0)
            self.numeric = {"mean": torch.from_numpy(x.mean(0)), "scale": torch.from_numpy(np.where(std > 0, std, 1.0))}
        else:
            stds = np.std(x, axis=0, keepdims=True)
            noise = np.random.default_rng(self.seed).standard_normal(x.shape)
            noisy = x + (1e-3 / np.maximum(stds, 1e-3)) * noise
            quantile = QuantileTransformer(output_distribution="normal",
                                           n_quantiles=max(min(len(x) // 30, 1000), 10), subsample=1_000_000_000,
                                           random_state=self.seed).fit(noisy)
            self.numeric = {"quantiles": torch.from_numpy(quantile.quantiles_),
                            "references": torch.from_numpy(quantile.references_)}
        self.fitted = True
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The fitted numerical transform, as tensors (checkpoints are loaded with ``weights_only=True``)."""
        return {f"{STATE_PREFIX}{k}": v for k, v in self.numeric.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` (other keys are ignored); the preprocessing is then fitted."""
        self.numeric = {k.removeprefix(STATE_PREFIX): v for k, v in state_dict.items() if k.startswith(STATE_PREFIX)}
        self.fitted = True

    # --- applying -------------------------------------------------------------------------------------------------
    def features(self, frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw numerical (n, F_num) float64 (not yet transformed), binary (n, F_bin) float32 and categorical
        (n, F_cat) int64 arrays; a column or value that does not fit the schema raises DataError."""
        schema = self.schema
        missing = [c for c in schema.feature_columns if c not in frame.columns]
        if missing:
            raise DataError(f"{source}: lacks the feature columns {', '.join(missing)} the model was trained with "
                            f"(columns: {', '.join(frame.columns)})")
        n = len(frame)
        num = np.stack([numeric_values(frame[c], c, source) for c in schema.num_columns], 1) \
            if schema.num_columns else np.zeros((n, 0))
        binary = np.zeros((n, len(schema.bin_columns)), dtype=np.float32)
        for j, (column, values) in enumerate(zip(schema.bin_columns, schema.bin_values, strict=True)):
            text = as_strings(frame[column])
            unknown = sorted(set(text) - set(values))
            if unknown:
                raise DataError(f"{source}: binary column {column!r} holds {unknown[:3]}, not one of {list(values)}")
            binary[:, j] = text == values[1]
        cat = np.zeros((n, len(schema.cat_columns)), dtype=np.int64)
        for j, (column, categories) in enumerate(zip(schema.cat_columns, schema.categories, strict=True)):
            codes = {c: i for i, c in enumerate(categories)}
            cat[:, j] = [codes.get(v, len(categories)) for v in as_strings(frame[column])]
        return num, binary, cat

    def transform_numeric(self, x: np.ndarray) -> np.ndarray:
        """(n, F_num) raw numerical features -> (n, F_num) transformed by the fitted transform."""
        if "quantiles" in self.numeric:
            quantiles = self.numeric["quantiles"].numpy()
            transformer = QuantileTransformer(output_distribution="normal", n_quantiles=len(quantiles))
            transformer.quantiles_, transformer.references_ = quantiles, self.numeric["references"].numpy()
            transformer.n_quantiles_, transformer.n_features_in_ = len(quantiles), quantiles.shape[1]
            return transformer.transform(x)
        if "mean" in self.numeric:
            return (x - self.numeric["mean"].numpy()) / self.numeric["scale"].numpy()
        return x

    def labels(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        """(n,) standardised regression targets (NaN without a target column) or int64 class indices (-1 for an
        unknown class or no target column)."""
        schema, target = self.schema, self.schema.target
        if target not in frame.columns:
            return np.full(len(frame), np.nan if schema.task_type == "regression" else -1)
        if schema.task_type == "regression":
            return (numeric_values(frame[target], target, source) - schema.y_mean) / schema.y_std
        index = {c: i for i, c in enumerate(schema.class_names)}
        return np.asarray([index.get(v, -1) for v in as_strings(frame[target])], dtype=np.int64)

    def transform(self, frame: pd.DataFrame, source: str) -> TableTensors:
        """A frame as model inputs and labels (see :class:`TableTensors`); needs a fitted preprocessing."""
        if not self.fitted:
            raise DataError("the tabular preprocessing is not fitted: fit it on the training table or load the "
                            "state dict of a trained run")
        num, binary, cat = self.features(frame, source)
        y = self.labels(frame, source)
        y_tensor = torch.as_tensor(y, dtype=torch.float32 if self.schema.task_type == "regression" else torch.int64)
        return TableTensors(torch.as_tensor(self.transform_numeric(num), dtype=torch.float32),
                            torch.from_numpy(binary), torch.from_numpy(cat), y_tensor)

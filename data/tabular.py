"""Tables: CSV and parquet files with a target column, the TabR benchmark directory format, and scikit-learn's
bundled tables (the offline default), preprocessed the way the TabR paper does it.

Sources (``path``):

- a ``.csv`` / ``.tsv`` / ``.parquet`` file with a ``target`` column. Splits: a ``split_column`` holding
  train/val/test, or ``val_path`` / ``test_path`` files, or a seeded random split (stratified for classes);
- a TabR benchmark directory: ``X_num_{train,val,test}.npy``, ``X_bin_*.npy``, ``X_cat_*.npy``, ``Y_*.npy`` and
  ``info.json`` (``task_type`` regression / binclass / multiclass), with its fixed splits;
- nothing: a table bundled with scikit-learn (``dataset``: diabetes, breast_cancer, wine, iris, digits).

Columns are numerical, binary (two values) or categorical, inferred from the data or named by ``num_columns``,
``bin_columns``, ``cat_columns``. Preprocessing, fitted on the training split only, as in the TabR code
(``lib/data.py``): numerical features through scikit-learn's QuantileTransformer (normal output, n_quantiles =
clip(n_train // 30, 10, 1000), fitted on the training rows plus Gaussian noise of std 1e-3 / max(std_j, 1e-3));
binary features to 0/1; categorical features to ordinal codes (the model one-hot encodes them; a category unseen in
training gets the code ``cardinality``); regression targets standardised (metrics are computed on the original
scale by the task).

What prediction needs travels in checkpoints without pickled objects: the table's schema (column kinds,
categories, classes, target scaling) as the ``schema`` hyperparameter, and the fitted quantiles as the data
module's ``state_dict`` (tensors). ``zoo predict --ckpt CKPT --data.path new.csv`` then reads new rows, with or
without the target column, with no access to the training file.

Batches are dicts: ``x_num`` (B, F_num) float32, ``x_bin`` (B, F_bin) float32, ``x_cat`` (B, F_cat) int64,
``y`` (B,) float32 (standardised regression target) or int64 (class index; -1 when unknown), ``index`` (B,) int64
row of the split (the training row, used by TabR to keep an object out of its own context).

The pieces, each in its own module (their names are re-exported here):

- ``zoo.data.tabular_io``: readers (files, benchmark directories, bundled tables) and the train/val/test split
  through ``zoo.data.splits``;
- ``zoo.data.tabular_schema``: :class:`TableSchema`, the typed schema, and its inference from the training rows;
- ``zoo.data.tabular_preprocessing``: :class:`TablePreprocessing`, fitted on the training rows, with a
  ``state_dict``, and :class:`TableTensors`, a preprocessed split;
- this module: :class:`TabularData`, the data module that composes them (a
  :class:`~zoo.data.base.ZooDataModule`: its loaders are the base class's, reading :meth:`TabularData.split_tensors`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from zoo.data.base import ZooDataModule
from zoo.data.splits import check_fold
from zoo.data.tabular_io import (
    SPLITS,
    TABLE_SUFFIXES,
    TableSplits,
    bundled_table,
    read_benchmark_dir,
    read_prediction_rows,
    read_splits,
    read_table,
)
from zoo.data.tabular_preprocessing import NumPolicy, TablePreprocessing, TableTensors
from zoo.data.tabular_schema import MAX_AUTO_CLASSES, TableSchema, TaskType, infer_column_kinds, infer_schema

from zoo.errors import DataError

__all__ = ["MAX_AUTO_CLASSES", "SPLITS", "TABLE_SUFFIXES", "NumPolicy", "TablePreprocessing", "TableSchema",
           "TableSplits", "TableTensors", "TabularData", "TaskType", "bundled_table", "infer_column_kinds",
           "read_benchmark_dir", "read_table"]


def _whole_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch  # TableTensors.__getitems__ already returns a collated batch


class TabularData(ZooDataModule):
    """Tabular batches for ``zoo.tasks.tabular.TabularTask`` (see the module docstring for sources and
    preprocessing).

    Args:
        path: a table file (.csv, .tsv, .parquet) or a TabR dataset directory; None for the bundled ``dataset``.
            For ``zoo predict`` it is the file of rows to predict.
        target: the target column of a table file.
        dataset: the bundled table used when ``path`` is None.
        task_type: "auto" (classes for text, booleans and integers with few values; else regression), or forced.
        num_columns / bin_columns / cat_columns: feature columns by kind (inferred when not given; when all three
            are given, other columns are left out).
        drop_columns: columns to leave out (ids, leaks).
        split_column: a column holding train/val/test for each row (fixed splits in one file).
        val_path / test_path: fixed validation / test tables with the same columns.
        val_fraction / test_fraction: random split sizes when there are no fixed splits.
        folds / fold: k-fold cross-validation of one table: fold ``fold`` of ``folds`` (stratified by class) is the
            test part (``zoo train MODEL --data.folds K`` runs every fold).
        num_policy: "quantile" (the paper's), "standard" or "none".
        batch_size / eval_batch_size: rows per training / evaluation batch (every row is kept: no partial
            training batch is dropped).
        num_workers: loader processes.
        seed: seed of the random split, of the quantile-fit noise and of the shuffling.
        schema: the fitted schema of a trained run (``TableSchema.to_dict``); set by the data module itself and
            restored from checkpoints.

    Attributes:
        schema: the :class:`TableSchema`; ``hparams["schema"]`` holds its dict form.
        preprocessing: the :class:`TablePreprocessing`, fitted on the training split when first needed, or
            restored by ``load_state_dict``.
    """

    def __init__(self, path: str | None = None, target: str | None = None, dataset: str = "diabetes",
                 task_type: TaskType = "auto", num_columns: list[str] | None = None,
                 bin_columns: list[str] | None = None, cat_columns: list[str] | None = None,
                 drop_columns: list[str] | None = None, split_column: str | None = None,
                 val_path: str | None = None, test_path: str | None = None, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, num_policy: NumPolicy = "quantile", batch_size: int = 256,
                 eval_batch_size: int = 1024, num_workers: int = 0, seed: int = 0, schema: dict | None = None,
                 folds: int = 1, fold: int = 0):
        super().__init__(batch_size, num_workers, seed)
        check_fold(folds, fold)
        self.save_hyperparameters()
        self.eval_batch_size = eval_batch_size
        self._frames: dict[str, pd.DataFrame] | None = None  # "train", "val", "test", once read
        self._sources: dict[str, str] = {}
        self._tensors: dict[str, TableTensors] = {}
        self.predict_frame: pd.DataFrame | None = None
        self._predict_source = ""
        if schema is None:
            table = self._read_splits()
            kinds = table.kinds or (num_columns, bin_columns, cat_columns)
            fitted = infer_schema(table.frames, table.target, table.sources, table.task_hint, kinds, num_policy)
            self.hparams["schema"] = fitted.to_dict()
            schema = fitted
        self.schema = TableSchema.from_dict(schema)
        self.preprocessing = TablePreprocessing(self.schema, seed=seed)

    # --- what the task is linked to -----------------------------------------------------------------------------
    @property
    def task_type(self) -> str:
        return self.schema.task_type

    @property
    def num_classes(self) -> int:
        """1 for regression, else the number of classes."""
        return self.schema.num_classes

    @property
    def class_names(self) -> list[str] | None:
        return None if self.task_type == "regression" else list(self.schema.class_names)

    @property
    def feature_shapes(self) -> dict[str, Any]:
        """The model's data-dependent constructor arguments."""
        return self.schema.feature_shapes

    @property
    def target_scaling(self) -> list[float] | None:
        """[mean, std] of the regression target in training (predictions are y * std + mean)."""
        return [self.schema.y_mean, self.schema.y_std] if self.task_type == "regression" else None

    @property
    def has_test_split(self) -> bool:
        frames = self._frames
        return frames is None or len(frames.get("test", ())) > 0

    # --- reading, preprocessing ---------------------------------------------------------------------------------
    def _read_splits(self) -> TableSplits:
        hp = self.hparams
        table = read_splits(path=hp.path, target=hp.target, dataset=hp.dataset, task_type=hp.task_type,
                            split_column=hp.split_column, val_path=hp.val_path, test_path=hp.test_path,
                            val_fraction=hp.val_fraction, test_fraction=hp.test_fraction,
                            drop_columns=hp.drop_columns, seed=hp.seed, folds=hp.folds, fold=hp.fold)
        self._frames, self._sources = table.frames, table.sources
        return table

    def _ensure_fitted(self) -> None:
        if self.preprocessing.fitted:
            return
        if self._frames is None:
            raise DataError("the tabular data module has no fitted preprocessing: it is restored from the "
                            "checkpoint (zoo predict --ckpt ...) or fitted on the training table")
        self.preprocessing.fit(self._frames["train"], self._sources["train"])
        self._tensors.clear()

    def _features(self, frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw numerical (n, F_num) float64, binary (n, F_bin) float32 and categorical (n, F_cat) int64 arrays."""
        return self.preprocessing.features(frame, source)

    def state_dict(self) -> dict[str, Any]:
        """The fitted numerical transform, as tensors (checkpoints are loaded with ``weights_only=True``)."""
        self._ensure_fitted()
        return self.preprocessing.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.preprocessing.load_state_dict(state_dict)
        self._tensors.clear()

    def split_tensors(self, split: str) -> TableTensors:
        """A preprocessed split ("train", "val", "test" or "predict")."""
        if split not in self._tensors:
            if split == "predict":
                if self.predict_frame is None:
                    raise DataError("no rows to predict: call setup('predict') with --data.path set to the table")
                frame, source = self.predict_frame, self._predict_source
            else:
                if self._frames is None:
                    self._read_splits()
                frame, source = self._frames[split], self._sources[split]
            if len(frame) == 0:  # before the transform, whose scikit-learn error would not name the split
                raise DataError(f"{source}: the {split} split is empty")
            self._ensure_fitted()
            self._tensors[split] = self.preprocessing.transform(frame, source)
        return self._tensors[split]

    def train_table(self) -> TableTensors:
        """The whole preprocessed training table: TabR's candidates, on every rank under DDP."""
        return self.split_tensors("train")

    # --- Lightning hooks ----------------------------------------------------------------------------------------
    collate_fn = staticmethod(_whole_batch)
    drop_last = False

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self.predict_frame, self._predict_source = read_prediction_rows(self.hparams.path)
            self._tensors.pop("predict", None)
        elif self._frames is None:
            self._read_splits()

    def split_dataset(self, split: str) -> TableTensors:
        return self.split_tensors(split)

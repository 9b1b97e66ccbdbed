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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import QuantileTransformer
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataError

TaskType = Literal["auto", "regression", "binclass", "multiclass"]
NumPolicy = Literal["quantile", "standard", "none"]
SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
MAX_AUTO_CLASSES = 20  # an integer-valued target with at most this many values is taken as classes


def _bundled() -> dict[str, tuple[Callable[[], Any], str]]:
    from sklearn import datasets

    return {
        "diabetes": (datasets.load_diabetes, "regression"),
        "breast_cancer": (datasets.load_breast_cancer, "binclass"),
        "wine": (datasets.load_wine, "multiclass"),
        "iris": (datasets.load_iris, "multiclass"),
        "digits": (datasets.load_digits, "multiclass"),
    }




# --- reading ------------------------------------------------------------------------------------------------------
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


# --- schema -------------------------------------------------------------------------------------------------------
def _numeric(values: pd.Series, column: str, source: str) -> np.ndarray:
    """A column as float64; a value that is not a number raises DataError naming the file, row and column."""
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


def _as_strings(values: pd.Series) -> np.ndarray:
    """Category values as strings; floats that are whole numbers lose their ".0", missing values are "<NA>"."""
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
    explicit = any(v is not None for v in (num_columns, bin_columns, cat_columns))
    for column in frame.columns:
        if column == target or column in taken:
            continue
        if explicit and num_columns is not None and bin_columns is not None and cat_columns is not None:
            continue  # every kind named: other columns are left out
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


def _target_task(values: pd.Series, task_type: TaskType) -> str:
    if task_type != "auto":
        return task_type
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "binclass" if values.nunique() == 2 else "multiclass"
    numbers = values.to_numpy(dtype=np.float64)
    if np.all(np.mod(numbers, 1) == 0) and values.nunique() <= MAX_AUTO_CLASSES:
        return "binclass" if values.nunique() == 2 else "multiclass"
    return "regression"


def _class_order(values: pd.Series) -> list[str]:
    unique = values.dropna().unique()
    try:
        unique = sorted(unique, key=float)
    except (TypeError, ValueError):
        unique = sorted(unique, key=str)
    return [str(v) for v in _as_strings(pd.Series(unique))]


# --- datasets -----------------------------------------------------------------------------------------------------
class TableTensors(Dataset):
    """A preprocessed split in memory. ``dataset[[i, j, ...]]`` gives a whole batch dict (see the module docs)."""

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


def _whole_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch  # __getitems__ already returns a collated batch


class TabularData(L.LightningDataModule):
    """Tabular batches for ``zoo.tasks.TabularTask`` (see the module docstring for sources and preprocessing).

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
        num_policy: "quantile" (the paper's), "standard" or "none".
        batch_size / eval_batch_size: rows per training / evaluation batch.
        seed: seed of the random split and of the quantile-fit noise.
        schema: the fitted schema of a trained run; set by the data module itself and restored from checkpoints.
    """

    def __init__(self, path: str | None = None, target: str | None = None, dataset: str = "diabetes",
                 task_type: TaskType = "auto", num_columns: list[str] | None = None,
                 bin_columns: list[str] | None = None, cat_columns: list[str] | None = None,
                 drop_columns: list[str] | None = None, split_column: str | None = None,
                 val_path: str | None = None, test_path: str | None = None, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, num_policy: NumPolicy = "quantile", batch_size: int = 256,
                 eval_batch_size: int = 1024, num_workers: int = 0, seed: int = 0, schema: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self._frames: dict[str, pd.DataFrame] | None = None
        self._sources: dict[str, str] = {}
        self._transform: dict[str, torch.Tensor] = {}
        self._tensors: dict[str, TableTensors] = {}
        self.predict_frame: pd.DataFrame | None = None
        if schema is None:
            self._frames = self._read_splits()
            schema = self._fit_schema(self._frames)
            self.hparams["schema"] = schema
        self.schema = schema

    # --- what the task is linked to -----------------------------------------------------------------------------
    @property
    def task_type(self) -> str:
        return self.schema["task_type"]

    @property
    def num_classes(self) -> int:
        """1 for regression, else the number of classes."""
        return 1 if self.task_type == "regression" else len(self.schema["class_names"])

    @property
    def class_names(self) -> list[str] | None:
        return None if self.task_type == "regression" else list(self.schema["class_names"])

    @property
    def feature_shapes(self) -> dict[str, Any]:
        """The model's data-dependent constructor arguments."""
        return {"n_num_features": len(self.schema["num_columns"]), "n_bin_features": len(self.schema["bin_columns"]),
                "cat_cardinalities": [len(c) for c in self.schema["categories"]]}

    @property
    def target_scaling(self) -> list[float] | None:
        """[mean, std] of the regression target in training (predictions are y * std + mean)."""
        return [self.schema["y_mean"], self.schema["y_std"]] if self.task_type == "regression" else None

    @property
    def has_test_split(self) -> bool:
        frames = self._frames
        return frames is None or len(frames.get("test", ())) > 0

    # --- reading and splitting ----------------------------------------------------------------------------------
    def _source_frames(self) -> tuple[dict[str, pd.DataFrame] | pd.DataFrame, str]:
        hp = self.hparams
        if hp.path is None:
            frame, target, task = bundled_table(hp.dataset)
            self._sources = dict.fromkeys(SPLITS, f"scikit-learn's {hp.dataset} table")
            self._task_hint = task if hp.task_type == "auto" else hp.task_type
            return frame, target
        path = Path(hp.path).expanduser()
        if path.is_dir():
            frames, target, task = read_benchmark_dir(path)
            self._sources = {s: str(path / f"X_*_{s}.npy") for s in SPLITS}
            columns = list(frames["train"].columns)  # the files say which features are which
            self._kinds = tuple([c for c in columns if c.startswith(f"{kind}_")] for kind in ("num", "bin", "cat"))
            self._task_hint = task if hp.task_type == "auto" else hp.task_type
            return frames, target
        self._task_hint = hp.task_type
        if not hp.target:
            raise DataError(f"{path}: name the target column with --data.target (columns: "
                            f"{', '.join(read_table(path).columns)})")
        frame = read_table(path)
        self._sources = dict.fromkeys(SPLITS, str(path))
        if hp.val_path or hp.test_path:
            frames = {"train": frame}
            for split, file in (("val", hp.val_path), ("test", hp.test_path)):
                if file:
                    frames[split] = read_table(file)
                    self._sources[split] = str(file)
            return frames, hp.target
        return frame, hp.target

    def _check_target(self, frame: pd.DataFrame, target: str, source: str) -> None:
        if target not in frame.columns:
            raise DataError(f"{source}: no target column {target!r}; columns: {', '.join(frame.columns)}")
        if frame[target].isna().any():
            row = int(np.flatnonzero(frame[target].isna().to_numpy())[0])
            raise DataError(f"{source}: row {row + 1}: the target {target!r} is missing")

    def _read_splits(self) -> dict[str, pd.DataFrame]:
        hp = self.hparams
        frames, target = self._source_frames()
        self._target = target
        if isinstance(frames, pd.DataFrame):
            self._check_target(frames, target, self._sources["train"])
            frames = self._split(frames, target)
        else:
            for split, frame in frames.items():
                self._check_target(frame, target, self._sources[split])
            if "val" not in frames:
                rest = self._random_split(frames["train"], target, hp.val_fraction, hp.seed)
                frames = {**frames, "train": rest[0], "val": rest[1]}
        drop = set(hp.drop_columns or [])
        # no reset_index: the index stays the file's row number, so an error names the row the user can find
        frames = {s: f.drop(columns=[c for c in f.columns if c in drop]) for s, f in frames.items()}
        for split in ("train", "val"):
            if len(frames.get(split, ())) == 0:
                raise DataError(f"{self._sources.get(split, '?')}: the {split} split is empty")
        if "test" in frames and len(frames["test"]) == 0 and hp.test_path:
            raise DataError(f"{self._sources.get('test', '?')}: the test split is empty")
        return frames

    def _stratify(self, frame: pd.DataFrame, target: str) -> np.ndarray | None:
        if _target_task(frame[target], self._task_hint) == "regression":
            return None
        labels = frame[target].astype(str).to_numpy()
        return labels if pd.Series(labels).value_counts().min() >= 2 else None

    def _random_split(self, frame: pd.DataFrame, target: str, fraction: float, seed: int
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not 0 < fraction < 1:
            raise DataError(f"split fraction must be in (0, 1), got {fraction}")
        if len(frame) < 3:
            raise DataError(f"{self._sources['train']}: {len(frame)} rows are too few to split")
        try:
            a, b = train_test_split(np.arange(len(frame)), test_size=fraction, random_state=seed,
                                    stratify=self._stratify(frame, target))
        except ValueError:  # too few rows of a class for a stratified split of this size
            a, b = train_test_split(np.arange(len(frame)), test_size=fraction, random_state=seed)
        return frame.iloc[np.sort(a)], frame.iloc[np.sort(b)]

    def _split(self, frame: pd.DataFrame, target: str) -> dict[str, pd.DataFrame]:
        hp = self.hparams
        if hp.split_column:
            if hp.split_column not in frame.columns:
                raise DataError(f"{self._sources['train']}: no split column {hp.split_column!r}; columns: "
                                f"{', '.join(frame.columns)}")
            names = frame[hp.split_column].astype(str).str.strip().str.lower()
            unknown = sorted(set(names) - set(SPLIT_NAMES))
            if unknown:
                raise DataError(f"{self._sources['train']}: split column {hp.split_column!r} holds "
                                f"{', '.join(map(repr, unknown[:5]))}; expected train, val (valid) or test")
            splits = names.map(SPLIT_NAMES)
            frames = {s: frame[splits == s].drop(columns=[hp.split_column]) for s in SPLITS}
            if len(frames["val"]) == 0 and len(frames["train"]) > 0:
                frames["train"], frames["val"] = self._random_split(frames["train"], target, hp.val_fraction,
                                                                    hp.seed)
            return frames
        rest, test = (frame, frame.iloc[:0]) if hp.test_fraction == 0 else \
            self._random_split(frame, target, hp.test_fraction, hp.seed)
        train, val = self._random_split(rest, target, hp.val_fraction / (1 - hp.test_fraction), hp.seed)
        return {"train": train, "val": val, "test": test}

    # --- schema and preprocessing -------------------------------------------------------------------------------
    def _fit_schema(self, frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
        hp, target, train = self.hparams, self._target, frames["train"]
        source = self._sources["train"]
        kinds = getattr(self, "_kinds", None) or (hp.num_columns, hp.bin_columns, hp.cat_columns)
        num, binary, cat = infer_column_kinds(train, target, *kinds, source)
        task = _target_task(train[target], self._task_hint)
        schema: dict[str, Any] = {"target": target, "task_type": task, "num_columns": num, "bin_columns": binary,
                                  "cat_columns": cat, "bin_values": [], "categories": [], "class_names": [],
                                  "y_mean": 0.0, "y_std": 1.0, "num_policy": hp.num_policy}
        for column in binary:
            values = _class_order(train[column])
            if len(values) > 2:
                raise DataError(f"{source}: binary column {column!r} has {len(values)} values: {values[:5]}")
            schema["bin_values"].append(values if len(values) == 2 else ["<none>", *values])
        schema["categories"] = [sorted(set(_as_strings(train[c]))) for c in cat]
        if task == "regression":
            y = _numeric(train[target], target, source)
            schema["y_mean"], schema["y_std"] = float(y.mean()), float(y.std()) or 1.0
        else:
            classes = _class_order(train[target])
            if len(classes) < 2:
                raise DataError(f"{source}: the training split has a single class ({classes})")
            if task == "binclass" and len(classes) != 2:
                raise DataError(f"{source}: task_type binclass but the target has {len(classes)} classes")
            schema["class_names"] = classes
            known = set(classes)
            for split in ("val", "test"):
                frame = frames.get(split)
                if frame is None or len(frame) == 0:
                    continue
                unseen = sorted(set(_as_strings(frame[target])) - known)
                if unseen:
                    raise DataError(f"{self._sources[split]}: the {split} split has classes never seen in training: "
                                    f"{', '.join(unseen[:10])} (training classes: {', '.join(classes[:20])})")
        return schema

    def _fit_transform(self) -> None:
        """Fit the numerical transform on the training split (the paper's quantile transform with fit noise)."""
        policy = self.schema.get("num_policy", "quantile")
        x = self._features(self._frames["train"], self._sources["train"])[0]
        if x.shape[1] == 0 or policy == "none":
            self._transform = {}
            return
        if policy == "standard":
            self._transform = {"mean": torch.from_numpy(x.mean(0)),
                               "scale": torch.from_numpy(np.where(x.std(0) > 0, x.std(0), 1.0))}
            return
        seed = self.hparams.seed
        stds = np.std(x, axis=0, keepdims=True)
        noisy = x + (1e-3 / np.maximum(stds, 1e-3)) * np.random.default_rng(seed).standard_normal(x.shape)
        quantile = QuantileTransformer(output_distribution="normal", n_quantiles=max(min(len(x) // 30, 1000), 10),
                                       subsample=1_000_000_000, random_state=seed).fit(noisy)
        self._transform = {"quantiles": torch.from_numpy(quantile.quantiles_),
                           "references": torch.from_numpy(quantile.references_)}
        self._tensors.clear()

    def _apply_transform(self, x: np.ndarray) -> np.ndarray:
        if "quantiles" in self._transform:
            quantiles = self._transform["quantiles"].numpy()
            transformer = QuantileTransformer(output_distribution="normal", n_quantiles=len(quantiles))
            transformer.quantiles_, transformer.references_ = quantiles, self._transform["references"].numpy()
            transformer.n_quantiles_, transformer.n_features_in_ = len(quantiles), quantiles.shape[1]
            return transformer.transform(x)
        if "mean" in self._transform:
            return (x - self._transform["mean"].numpy()) / self._transform["scale"].numpy()
        return x

    def state_dict(self) -> dict[str, Any]:
        """The fitted numerical transform, as tensors (checkpoints are loaded with ``weights_only=True``)."""
        self._ensure_fitted()
        return {f"transform.{k}": v for k, v in self._transform.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._transform = {k.removeprefix("transform."): v for k, v in state_dict.items()
                           if k.startswith("transform.")}
        self._fitted = True
        self._tensors.clear()

    def _ensure_fitted(self) -> None:
        if getattr(self, "_fitted", False):
            return
        if self._frames is None:
            raise DataError("the tabular data module has no fitted preprocessing: it is restored from the "
                            "checkpoint (zoo predict --ckpt ...) or fitted on the training table")
        self._fit_transform()
        self._fitted = True

    def _features(self, frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw numerical (n, F_num) float64, binary (n, F_bin) float32 and categorical (n, F_cat) int64 arrays."""
        schema = self.schema
        columns = schema["num_columns"] + schema["bin_columns"] + schema["cat_columns"]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{source}: lacks the feature columns {', '.join(missing)} the model was trained with "
                            f"(columns: {', '.join(frame.columns)})")
        n = len(frame)
        num = np.stack([_numeric(frame[c], c, source) for c in schema["num_columns"]], 1) \
            if schema["num_columns"] else np.zeros((n, 0))
        binary = np.zeros((n, len(schema["bin_columns"])), dtype=np.float32)
        for j, (column, values) in enumerate(zip(schema["bin_columns"], schema["bin_values"], strict=True)):
            text = _as_strings(frame[column])
            unknown = sorted(set(text) - set(values))
            if unknown:
                raise DataError(f"{source}: binary column {column!r} holds {unknown[:3]}, not one of {values}")
            binary[:, j] = text == values[1]
        cat = np.zeros((n, len(schema["cat_columns"])), dtype=np.int64)
        for j, (column, categories) in enumerate(zip(schema["cat_columns"], schema["categories"], strict=True)):
            codes = {c: i for i, c in enumerate(categories)}
            cat[:, j] = [codes.get(v, len(categories)) for v in _as_strings(frame[column])]
        return num, binary, cat

    def _labels(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        schema, target = self.schema, self.schema["target"]
        if target not in frame.columns:
            return np.full(len(frame), np.nan if schema["task_type"] == "regression" else -1)
        if schema["task_type"] == "regression":
            return (_numeric(frame[target], target, source) - schema["y_mean"]) / schema["y_std"]
        index = {c: i for i, c in enumerate(schema["class_names"])}
        return np.asarray([index.get(v, -1) for v in _as_strings(frame[target])], dtype=np.int64)

    def _to_tensors(self, frame: pd.DataFrame, source: str) -> TableTensors:
        self._ensure_fitted()
        num, binary, cat = self._features(frame, source)
        y = self._labels(frame, source)
        y_tensor = torch.as_tensor(y, dtype=torch.float32 if self.task_type == "regression" else torch.int64)
        return TableTensors(torch.as_tensor(self._apply_transform(num), dtype=torch.float32),
                            torch.from_numpy(binary), torch.from_numpy(cat), y_tensor)

    def split_tensors(self, split: str) -> TableTensors:
        """A preprocessed split ("train", "val", "test" or "predict")."""
        if split not in self._tensors:
            if split == "predict":
                if self.predict_frame is None:
                    raise DataError("no rows to predict: call setup('predict') with --data.path set to the table")
                self._tensors[split] = self._to_tensors(self.predict_frame, self._predict_source)
            else:
                if self._frames is None:
                    self._frames = self._read_splits()
                self._tensors[split] = self._to_tensors(self._frames[split], self._sources[split])
        return self._tensors[split]

    def train_table(self) -> TableTensors:
        """The whole preprocessed training table: TabR's candidates, on every rank under DDP."""
        return self.split_tensors("train")

    # --- Lightning hooks ----------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
        elif self._frames is None:
            self._frames = self._read_splits()

    def _setup_predict(self) -> None:
        hp = self.hparams
        if hp.path is None:
            raise DataError("zoo predict needs --data.path: the table (.csv, .tsv, .parquet) of rows to predict")
        path = Path(hp.path).expanduser()
        if path.is_dir():
            frames, _, _ = read_benchmark_dir(path)
            self.predict_frame, self._predict_source = frames["test"], str(path / "X_*_test.npy")
        else:
            self.predict_frame, self._predict_source = read_table(path), str(path)
        self._tensors.pop("predict", None)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        tensors = self.split_tensors(split)
        if len(tensors) == 0:
            raise DataError(f"{self._sources.get(split, split)}: the {split} split is empty")
        size = self.hparams.batch_size if shuffle else self.hparams.eval_batch_size
        workers = self.hparams.num_workers
        return DataLoader(tensors, batch_size=size, shuffle=shuffle, collate_fn=_whole_batch, num_workers=workers,
                          persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)

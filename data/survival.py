"""Survival data: time-to-event tables for any survival model, and the multimodal layout of BioFusionNet.

- :class:`SurvivalTableData`: a CSV/parquet table with a time column, an event column (1 event, 0 censored) and
  covariate columns (numeric, or categories one-hot encoded). Offline default: a real cohort that ships with
  lifelines (``dataset``: "gbsg2" German Breast Cancer Study Group 2, 686 patients, days; "rossi" recidivism,
  432 released prisoners, weeks), written once as CSV into the cache and read back by the same reader.
- :class:`MultimodalSurvivalData`: the cBioPortal-style ``survival_data.csv`` (PATIENT_ID, OS_STATUS, OS_MONTHS),
  ``gene_expression.csv`` (PATIENT_ID + genes), ``clinical_data.csv`` (PATIENT_ID, Grade, Age, LN_Status,
  Tumor_Size; the released files' ``LN_Status_new`` / ``Tumor_Size_new`` names are accepted too) and
  ``features/<extractor>/<PATIENT_ID>.pt`` tensors of shape (N, 384) per extractor (at most 500 patches are
  kept). Offline default: the REAL GBSG2 cohort's survival and clinical variables (grade III, age > 50, any
  positive node, tumour > 20 mm), with SIMULATED gene expression and patch features (no real slides or RNA can be
  had offline; they are drawn to carry a weak signal of the real hormone-receptor values), said in a README.txt.

Splits are per patient, stratified by the event indicator (``zoo.data.splits``); ``folds`` > 1 with ``fold``
gives the paper's k-fold cross-validation (the test part is fold ``fold``). Scalers are fitted on the training
part only, and travel with the run as data-module arguments (the table's covariate encoding,
``zoo.data.survival_covariates``; the multimodal patch and gene statistics): ``zoo test --data.test_path`` /
``--data.test_root`` evaluates every subject of another file or folder and ``zoo predict --data.predict_path`` /
``--data.predict_root`` scores new subjects without outcomes, neither reading the training data.
Batches are dicts: ``inputs`` (list of tensors, in the model's input order), ``time`` (B,) and ``event`` (B,)
(absent for new subjects without outcomes), optional ``mask`` (B, N) for padded patches, ``id`` (list of str).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from zoo.data.base import ZooDataModule, cache_root
from zoo.data.splits import Split, random_or_fold_split
from zoo.data.survival_covariates import CovariateEncoding

from zoo.errors import DataError

LIFELINES_COHORTS = {"gbsg2": ("load_gbsg2", "time", "cens", "days"),
                     "rossi": ("load_rossi", "week", "arrest", "weeks")}
CLINICAL_COLUMNS = ("Grade", "Age", "LN_Status", "Tumor_Size")
EXTRACTORS = ("dino33m", "dino2m", "mocov3")
FEATURE_WIDTH = 384
MAX_PATCHES = 500


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value.item() if hasattr(value, "item") else value)


def check_survival(time: pd.Series, event: pd.Series, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Times must be present and >= 0, events 0 or 1; the first bad row is named (1-based data row)."""
    t = pd.to_numeric(time, errors="coerce")
    bad = t.isna() | (t < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: row {row + 1}: time {_shown(time.iloc[row])} is missing or negative")
    e = pd.to_numeric(event, errors="coerce")
    bad = ~e.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: row {row + 1}: event {_shown(event.iloc[row])} is not 0 or 1")
    return t.to_numpy(np.float32), e.to_numpy(np.float32)


def default_horizons(time: np.ndarray, event: np.ndarray) -> list[float]:
    """Quartiles of the event times: where time-dependent AUC has cases and controls on any cohort."""
    return [float(q) for q in np.quantile(time[event > 0], [0.25, 0.5, 0.75])]


class _Rows(Dataset):
    """Subjects: their inputs, and their time and event when known (None: prediction of new subjects)."""

    def __init__(self, inputs: list[np.ndarray], time, event, ids):
        self.inputs, self.time, self.event, self.ids = inputs, time, event, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"inputs": [torch.as_tensor(x[i]) for x in self.inputs], "id": str(self.ids[i])}
        if self.time is not None:
            item["time"], item["event"] = torch.tensor(self.time[i]), torch.tensor(self.event[i])
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the rows; patch sets of different lengths are zero-padded with a mask (B, N). Rows without
    outcomes (new subjects) give a batch without ``time`` and ``event``."""
    batch: dict[str, Any] = {"id": [it["id"] for it in items]}
    if "time" in items[0]:
        batch["time"] = torch.stack([it["time"] for it in items])
        batch["event"] = torch.stack([it["event"] for it in items])
    inputs = []
    for k in range(len(items[0]["inputs"])):
        parts = [it["inputs"][k] for it in items]
        if parts[0].ndim == 2:  # a set of patches
            n = max(p.shape[0] for p in parts)
            padded = parts[0].new_zeros(len(parts), n, parts[0].shape[1])
            mask = torch.zeros(len(parts), n, dtype=torch.bool)
            for i, p in enumerate(parts):
                padded[i, : len(p)], mask[i, : len(p)] = p, True
            inputs.append(padded)
            batch["mask"] = mask
        else:
            inputs.append(torch.stack(parts))
    batch["inputs"] = inputs
    return batch


class _SurvivalBase(ZooDataModule):
    in_memory = True
    source = ""
    collate_fn = staticmethod(collate)
    train_time: np.ndarray | None = None  # None: no training part read (evaluation or prediction of other data)
    train_event: np.ndarray | None = None
    horizons: list[float] | None = None
    split: Split | None = None
    given_horizons: list[float] | None = None

    def _datasets(self, inputs, time, event, ids, split: Split) -> None:
        self.split = split
        self.train_time, self.train_event = time[split.train], event[split.train]
        self.horizons = self.given_horizons or default_horizons(self.train_time, self.train_event)
        self.sets = {name: _Rows([x[idx] for x in inputs], time[idx], event[idx], ids[idx])
                     for name, idx in zip(("train", "val", "test"), split, strict=True)}
        self.sources = dict.fromkeys(("train", "val", "test"), self.source)

    def split_dataset(self, split: str) -> _Rows:
        """The subjects of ``split``; without a prediction file, predictions are made for the test subjects."""
        if split == "predict" and "predict" not in self.sets:
            split = "test"
        if split not in self.sets:
            raise DataError(f"{type(self).__name__} has no {split} subjects: it read only "
                            f"{', '.join(self.sets) or 'nothing'} ({self.source})")
        return self.sets[split]

    def baseline_dataloader(self):
        """The training part in order, unshuffled: the Breslow baseline hazard and censoring weights."""
        return self.loader(self.sets["train"], shuffle=False, collate_fn=collate)

    predict_flag = "--data.predict_path FILE"

    def evaluation_line(self, split: str) -> str:
        """What ``split`` ("val", "test", "predict") holds, in one line: the file or folder, subjects, events, and
        which split when it is the run's own data."""
        own_predict = split == "predict" and "predict" not in self.sets
        rows = self.split_dataset(split)
        key = "test" if own_predict else split
        where = self.sources.get(key, self.source)
        counts = f"{len(rows)} subjects" + (f", {int(rows.event.sum())} events" if rows.event is not None else
                                            ", outcomes not given")
        if where != self.source or self.split is None:
            return f"data: {counts} in {where} (all of it)"
        line = f"data: {'validation' if key == 'val' else key} split of {self.source}, {counts}"
        return line + (f" (no {self.predict_flag}: the run's own test split is predicted)" if own_predict else "")

    # --- what a module provides --------------------------------------------------------------------------------------
    test_location: str | None = None  # a file or folder evaluated whole by `zoo test`
    predict_location: str | None = None  # a file or folder of subjects predicted by `zoo predict`

    def _read_training(self) -> None:
        """Read the run's own data, split it, fit the preprocessing on its training part unless restored."""
        raise NotImplementedError

    def _file_rows(self, location: str, outcomes: bool) -> _Rows:
        """Every subject of ``location`` with the run's preprocessing; time and event needed when ``outcomes``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Read what ``stage`` needs: the test file or folder alone for "test" and the prediction one alone for
        "predict" when the preprocessing is the run's; else the run's own data, split."""
        if stage == "predict" and self.predict_location:
            self.sets["predict"] = self._file_rows(self.predict_location, outcomes=False)
            self.sources["predict"] = str(self.predict_location)
            return
        if stage == "test" and self.test_location and "test" not in self.sets:
            self.sets["test"] = self._file_rows(self.test_location, outcomes=True)
            self.sources["test"] = str(self.test_location)
            self.horizons = self.given_horizons
            return
        if stage in ("test", "predict") and "test" in self.sets:
            return
        if "train" not in self.sets:
            self._read_training()

    def _own_test_replaced(self) -> None:
        """With a test file or folder, it is the test part of a training run too."""
        if self.test_location and self.hparams.folds <= 1:
            self.sets["test"] = self._file_rows(self.test_location, outcomes=True)
            self.sources["test"] = str(self.test_location)

    def describe(self) -> str:
        s = self.sets
        events = int(sum(float(d.event.sum()) for d in s.values() if d.event is not None))
        total = sum(len(d) for d in s.values())
        sizes = ", ".join(f"{name} {len(d)}" for name, d in s.items())
        return (f"{self.source}: {total} subjects, {events} events; {sizes}; inputs {self.model_inputs_desc}; "
                f"horizons {self.horizons}")


class SurvivalTableData(_SurvivalBase):
    """A survival table.

    Args:
        path: CSV/parquet file; None: the lifelines cohort ``dataset`` (written once to the cache as CSV).
        time_column / event_column: names (defaults: the cohort's, else "time" / "event").
        covariates: columns to use; None: every other column except ``id_column``.
        val / test: fractions of subjects; ``folds`` / ``fold``: k-fold cross-validation instead of a test share.
        horizons: times for the time-dependent AUC (default: quartiles of the training event times).
        test_path: a table evaluated whole by ``zoo test`` (every row, no split; time and event needed); in
            training it is the test part and ``path`` is split into training and validation only.
        predict_path: a table of subjects predicted whole by ``zoo predict`` (time and event not needed); without
            it the test part of ``path`` is predicted.
        encoding: the covariate encoding fitted on the training part
            (:meth:`~zoo.data.survival_covariates.CovariateEncoding.to_dict`); set by the module itself, restored
            from checkpoints, so that other files are encoded as the training file was.
    """

    def __init__(self, path: str | None = None, dataset: str = "gbsg2", time_column: str | None = None,
                 event_column: str | None = None, covariates: list[str] | None = None, id_column: str | None = None,
                 val: float = 0.15, test: float = 0.2, folds: int = 1, fold: int = 0,
                 horizons: list[float] | None = None, test_path: str | None = None, predict_path: str | None = None,
                 encoding: dict[str, Any] | None = None, batch_size: int = 64, num_workers: int | None = None,
                 seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        if path is None:
            if dataset not in LIFELINES_COHORTS:
                raise DataError(f"--data.dataset must be one of {', '.join(LIFELINES_COHORTS)}, got {dataset!r}")
            _, t_col, e_col, unit = LIFELINES_COHORTS[dataset]
            time_column, event_column = time_column or t_col, event_column or e_col
            self.source = f"lifelines {dataset} (real cohort, time in {unit})"
        else:
            self.source = str(path)
        self.path = path
        self.test_location, self.predict_location = test_path, predict_path
        self.time_column, self.event_column = time_column or "time", event_column or "event"
        self.given_horizons = horizons
        self.sets: dict[str, _Rows] = {}
        self.sources: dict[str, str] = {}
        if encoding is None:  # a training run: fit the encoding on the training part
            self._read_training()
        else:  # a trained run's encoding: other files are read when a stage needs them
            self.encoding = CovariateEncoding.from_dict(encoding)
        width = len(self.encoding.features)
        self.model_inputs = {"in_features": width}
        self.model_inputs_desc = f"{width} covariates"

    # --- reading ------------------------------------------------------------------------------------------------
    def _frame(self, path: str | None) -> tuple[pd.DataFrame, str]:
        if path is None:
            return _read_table(self.write_cohort(self.hparams.dataset)), self.source
        return _read_table(Path(path).expanduser()), str(path)

    def _outcomes(self, frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        for column in (self.time_column, self.event_column):
            if column not in frame.columns:
                raise DataError(f"{source}: no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
        return check_survival(frame[self.time_column], frame[self.event_column], source)

    def _ids(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        column = self.hparams.id_column
        if column is None:
            return np.arange(len(frame)).astype(str)
        if column not in frame.columns:
            raise DataError(f"{source}: no id column {column!r}; columns: {', '.join(map(str, frame.columns))}")
        return frame[column].astype(str).to_numpy()

    def _read_training(self) -> None:
        """Read ``path``, split it, fit the encoding on its training part (unless restored) and encode it."""
        hp = self.hparams
        frame, source = self._frame(self.path)
        for column in hp.covariates or []:
            if column not in frame.columns:
                raise DataError(f"{source}: no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
        time, event = self._outcomes(frame, source)
        ids = self._ids(frame, source)
        split = random_or_fold_split(len(event), hp.val, 0.0 if hp.test_path and hp.folds <= 1 else hp.test,
                                     hp.seed, event, folds=hp.folds, fold=hp.fold)
        if hp.encoding is None:
            names = hp.covariates or [c for c in frame.columns
                                      if c not in (self.time_column, self.event_column, hp.id_column)]
            self.encoding = CovariateEncoding.fit(frame, names, split.train, source)
            self.hparams["encoding"] = self.encoding.to_dict()  # kept with the run (checkpoints record it)
        self.feature_names = self.encoding.features
        self.scaler = {"mean": list(self.encoding.mean), "std": list(self.encoding.std)}
        self._datasets([self.encoding.transform(frame, source)], time, event, ids, split)
        self._own_test_replaced()

    def _file_rows(self, path: str, outcomes: bool) -> _Rows:
        """Every row of ``path``, encoded with the run's encoding; time and event required when ``outcomes``,
        else read when both columns are there."""
        frame, source = self._frame(path)
        if len(frame) == 0:
            raise DataError(f"{source}: no rows")
        known = outcomes or {self.time_column, self.event_column} <= set(frame.columns)
        time, event = self._outcomes(frame, source) if known else (None, None)
        return _Rows([self.encoding.transform(frame, source)], time, event, self._ids(frame, source))

    @staticmethod
    def write_cohort(dataset: str) -> Path:
        """Write the lifelines cohort once as CSV into the cache (the real on-disk form) and return the path."""
        folder = cache_root() / "survival" / dataset
        path = folder / f"{dataset}.csv"
        if not path.is_file():
            import lifelines.datasets

            folder.mkdir(parents=True, exist_ok=True)
            getattr(lifelines.datasets, LIFELINES_COHORTS[dataset][0])().to_csv(path, index=False)
            (folder / "README.txt").write_text(f"{dataset}: real cohort shipped with lifelines "
                                               "(lifelines.datasets), written here unchanged.\n")
        return path


# --- the multimodal layout ---------------------------------------------------------------------------------------
def _status(values: pd.Series, source: str) -> pd.Series:
    """cBioPortal "1:DECEASED" / "0:LIVING" or plain 0/1."""
    return values.map(lambda v: str(v).split(":")[0].strip() if pd.notna(v) else v)


def read_multimodal(root: Path, extractors: tuple[str, ...] = EXTRACTORS, max_patches: int = MAX_PATCHES,
                    genes: list[str] | None = None, outcomes: bool = True
                    ) -> tuple[list[str], list[np.ndarray], np.ndarray, np.ndarray, np.ndarray | None,
                               np.ndarray | None]:
    """Read the layout under ``root``; returns ids, per-patient (N, 384 * E) features, genes, clinical, time,
    event. Every patient must be in every modality (the missing ones are listed).

    Args:
        genes: the gene columns to read, in this order (a trained run's); None: every column of the file.
        outcomes: whether ``survival_data.csv`` is needed; without it (new patients to predict) the patients are
            those of ``clinical_data.csv`` and time and event are None.
    """
    has_outcomes = outcomes or (root / "survival_data.csv").is_file()
    gene_table = _read_table(root / "gene_expression.csv")
    clinical = _read_table(root / "clinical_data.csv").rename(
        columns={"LN_Status_new": "LN_Status", "Tumor_Size_new": "Tumor_Size"})  # the released files' names
    survival = _read_table(root / "survival_data.csv") if has_outcomes else None
    needed = [("gene_expression.csv", gene_table, ("PATIENT_ID",)),
              ("clinical_data.csv", clinical, ("PATIENT_ID", *CLINICAL_COLUMNS))]
    if survival is not None:
        needed.insert(0, ("survival_data.csv", survival, ("PATIENT_ID", "OS_STATUS", "OS_MONTHS")))
    for name, frame, columns in needed:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{root / name}: missing columns {', '.join(missing)}")
    if genes is not None:
        absent = [g for g in genes if g not in gene_table.columns]
        if absent:
            raise DataError(f"{root / 'gene_expression.csv'}: lacks {len(absent)} of the {len(genes)} genes the model "
                            f"was trained with ({', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}); "
                            f"it has {len(gene_table.columns) - 1} genes")
    frame_of_ids = survival if survival is not None else clinical
    listed = "survival_data.csv" if survival is not None else "clinical_data.csv"
    ids = frame_of_ids["PATIENT_ID"].astype(str).tolist()
    tables = {"gene_expression.csv": set(gene_table["PATIENT_ID"].astype(str)),
              "clinical_data.csv": set(clinical["PATIENT_ID"].astype(str))}
    tables.update({f"features/{e}/": {p.stem for p in (root / "features" / e).glob("*.pt")} for e in extractors})
    for where, present in tables.items():
        absent = [i for i in ids if i not in present]
        if absent:
            raise DataError(f"{root / where}: {len(absent)} patients of {listed} are missing: "
                            f"{', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}")
    time = event = None
    if survival is not None:
        time, event = check_survival(survival["OS_MONTHS"] / 12.0, _status(survival["OS_STATUS"], ""),
                                     str(root / "survival_data.csv"))
    gene_matrix = gene_table.set_index(gene_table["PATIENT_ID"].astype(str)).drop(columns="PATIENT_ID").loc[ids]
    if genes is not None:
        gene_matrix = gene_matrix[list(genes)]
    clin = clinical.set_index(clinical["PATIENT_ID"].astype(str))[list(CLINICAL_COLUMNS)].loc[ids]
    features = []
    for pid in ids:
        parts = []
        for extractor in extractors:
            path = root / "features" / extractor / f"{pid}.pt"
            tensor = torch.load(path, weights_only=True)
            if tensor.ndim != 2 or tensor.shape[1] != FEATURE_WIDTH:
                raise DataError(f"{path}: features of shape {tuple(tensor.shape)}; expected (N, {FEATURE_WIDTH})")
            parts.append(tensor[:max_patches].float())
        if len({len(p) for p in parts}) != 1:
            raise DataError(f"{root / 'features'}: patient {pid} has {[len(p) for p in parts]} patches across "
                            "the extractors; every extractor must see the same patches")
        features.append(torch.cat(parts, dim=1).numpy())
    return (ids, features, gene_matrix.to_numpy(np.float32), clin.to_numpy(np.float32), time, event)


class _Ragged:
    """Per-patient patch arrays indexable by an index array (numpy-style) and by an int."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.arrays[index]
        return _Ragged([self.arrays[i] for i in index])


class MultimodalSurvivalData(_SurvivalBase):
    """BioFusionNet's multimodal layout (see the module docstring); ``root`` None: the offline default (real
    GBSG2 survival and clinical data, simulated genes and patch features). Time in years (OS_MONTHS / 12).

    ``test_root``: a folder of the same layout evaluated whole by ``zoo test`` (every patient, ``root`` not read;
    in training it is the test part). ``predict_root``: a folder of patients ``zoo predict`` scores
    (``survival_data.csv`` not needed); None: the test part. ``statistics``: the patch and gene mean/std fitted on
    the training part and the gene columns ({"genes", "gene_mean", "gene_std", "patch_mean", "patch_std"}); set
    by the module, restored from checkpoints, so other patients are normalised as the training ones were."""

    def __init__(self, root: str | None = None, val: float = 0.15, test: float = 0.2, folds: int = 1,
                 fold: int = 0, horizons: list[float] | None = None, max_patches: int = MAX_PATCHES,
                 test_root: str | None = None, predict_root: str | None = None,
                 statistics: dict[str, list] | None = None, batch_size: int = 12, num_workers: int | None = None,
                 seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        if root is None:
            root = str(self.write_default())
            self.source = "GBSG2 survival + clinical (real, lifelines) with SIMULATED genes and patch features"
        else:
            self.source = str(root)
        self.root, self.max_patches = root, max_patches
        self.test_location, self.predict_location = test_root, predict_root
        self.predict_flag = "--data.predict_root FOLDER"
        self.given_horizons = horizons
        self.sets: dict[str, _Rows] = {}
        self.sources: dict[str, str] = {}
        self.statistics = statistics
        if statistics is None:
            self._read_training()
        elif not {"genes", "gene_mean", "gene_std", "patch_mean", "patch_std"} <= set(statistics):
            raise DataError("--data.statistics needs genes, gene_mean, gene_std, patch_mean and patch_std, got "
                            f"{', '.join(statistics)}")
        width, genes = len(self.statistics["patch_mean"]), len(self.statistics["genes"])
        self.model_inputs = {"gene_features": genes, "clinical_features": len(CLINICAL_COLUMNS)}
        self.model_inputs_desc = f"patches (<= {max_patches}, {width}), genes {genes}, clinical {len(CLINICAL_COLUMNS)}"

    def _normalised(self, features: list[np.ndarray], genes: np.ndarray) -> tuple[_Ragged, np.ndarray]:
        st = self.statistics
        p_mean, p_std = np.asarray(st["patch_mean"]), np.asarray(st["patch_std"])
        if features and features[0].shape[1] != len(p_mean):
            raise DataError(f"patch features of width {features[0].shape[1]}; the model was trained on {len(p_mean)}")
        patches = _Ragged([((f - p_mean) / p_std).astype(np.float32) for f in features])
        return patches, ((genes - np.asarray(st["gene_mean"])) / np.asarray(st["gene_std"])).astype(np.float32)

    def _read_training(self) -> None:
        hp = self.hparams
        genes_read = None if self.statistics is None else list(self.statistics["genes"])
        ids, features, genes, clinical, time, event = read_multimodal(Path(self.root), max_patches=self.max_patches,
                                                                      genes=genes_read)
        split = random_or_fold_split(len(event), hp.val, 0.0 if self.test_location and hp.folds <= 1 else hp.test,
                                     hp.seed, event, folds=hp.folds, fold=hp.fold)
        if self.statistics is None:  # fitted on the training part only, and kept with the run
            train_patches = np.concatenate([features[i] for i in split.train])
            names = [str(c) for c in _read_table(Path(self.root) / "gene_expression.csv").columns
                     if c != "PATIENT_ID"]
            self.statistics = {"genes": names,
                               "gene_mean": genes[split.train].mean(0).tolist(),
                               "gene_std": (genes[split.train].std(0) + 1e-6).tolist(),
                               "patch_mean": train_patches.mean(0).tolist(),
                               "patch_std": (train_patches.std(0) + 1e-6).tolist()}
            self.hparams["statistics"] = self.statistics
        patches, genes = self._normalised(features, genes)
        self._datasets([patches, genes, clinical], time, event, np.asarray(ids), split)
        self._own_test_replaced()

    def _file_rows(self, location: str, outcomes: bool) -> _Rows:
        ids, features, genes, clinical, time, event = read_multimodal(
            Path(location), max_patches=self.max_patches, genes=list(self.statistics["genes"]), outcomes=outcomes)
        patches, genes = self._normalised(features, genes)
        return _Rows([patches, genes, clinical], time, event, np.asarray(ids))

    @staticmethod
    def write_default(patches: int = 8, n_genes: int = 138) -> Path:
        """Write the offline default once into the cache in the real layout and return its folder."""
        folder = cache_root() / "survival" / "biofusionnet_gbsg2"
        if (folder / "README.txt").is_file():
            return folder
        import lifelines.datasets

        cohort = lifelines.datasets.load_gbsg2()
        rng = np.random.default_rng(0)
        ids = [f"GBSG2-{i:04d}" for i in range(len(cohort))]
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"PATIENT_ID": ids, "OS_STATUS": [f"{c}:{'DECEASED' if c else 'LIVING'}" for c in cohort.cens],
                      "OS_MONTHS": cohort.time / 30.4375}).to_csv(folder / "survival_data.csv", index=False)
        pd.DataFrame({"PATIENT_ID": ids, "Subtype": "unknown", "Grade": (cohort.tgrade == "III").astype(int),
                      "Age": (cohort.age > 50).astype(int), "LN_Status_new": (cohort.pnodes > 0).astype(int),
                      "Tumor_Size_new": (cohort.tsize > 20).astype(int)}).to_csv(folder / "clinical_data.csv",
                                                                                  index=False)
        receptors = np.log1p(cohort[["progrec", "estrec"]].to_numpy(float))
        receptors = (receptors - receptors.mean(0)) / receptors.std(0)
        loadings = rng.normal(0, 1, (2, n_genes)) * (rng.random(n_genes) < 0.2)  # a fifth of the genes informative
        genes = np.exp(2 + 0.5 * (receptors @ loadings + rng.normal(0, 1, (len(ids), n_genes))))
        pd.DataFrame(genes, columns=[f"GENE{j:03d}" for j in range(n_genes)]).assign(PATIENT_ID=ids)[
            ["PATIENT_ID", *[f"GENE{j:03d}" for j in range(n_genes)]]].to_csv(folder / "gene_expression.csv",
                                                                             index=False)
        directions = rng.normal(0, 1, (len(EXTRACTORS), 2, FEATURE_WIDTH))
        for e, extractor in enumerate(EXTRACTORS):
            out = folder / "features" / extractor
            out.mkdir(parents=True, exist_ok=True)
            for i, pid in enumerate(ids):
                signal = receptors[i] @ directions[e] * 0.3
                feats = signal[None, :] + rng.normal(0, 1, (patches, FEATURE_WIDTH))
                torch.save(torch.tensor(feats, dtype=torch.float32), out / f"{pid}.pt")
        (folder / "README.txt").write_text(
            "BioFusionNet offline default, in the released layout.\n"
            "REAL: survival (GBSG2 time/cens, lifelines.datasets.load_gbsg2; OS_MONTHS = days / 30.4375) and the 4\n"
            "clinical variables binarised from GBSG2 (Grade = tgrade III, Age > 50, LN_Status_new = pnodes > 0,\n"
            "Tumor_Size_new = tsize > 20 mm).\n"
            f"SIMULATED: gene_expression.csv ({n_genes} log-normal genes, a fifth loaded on the real log\n"
            f"progesterone/oestrogen receptor values) and features/<extractor>/<id>.pt ({patches} patches x 384 per\n"
            "extractor, Gaussian noise plus a weak receptor signal). No real slides or RNA ship offline.\n")
        return folder

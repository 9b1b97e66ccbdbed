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
part only. Batches are dicts: ``inputs`` (list of tensors, in the model's input order), ``time`` (B,), ``event``
(B,), optional ``mask`` (B, N) for padded patches, ``id`` (list of str).
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
    def __init__(self, inputs: list[np.ndarray], time, event, ids):
        self.inputs, self.time, self.event, self.ids = inputs, time, event, ids

    def __len__(self) -> int:
        return len(self.time)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"inputs": [torch.as_tensor(x[i]) for x in self.inputs], "time": torch.tensor(self.time[i]),
                "event": torch.tensor(self.event[i]), "id": str(self.ids[i])}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the rows; patch sets of different lengths are zero-padded with a mask (B, N)."""
    batch: dict[str, Any] = {"time": torch.stack([it["time"] for it in items]),
                             "event": torch.stack([it["event"] for it in items]), "id": [it["id"] for it in items]}
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

    def _datasets(self, inputs, time, event, ids, split: Split) -> None:
        self.split = split
        self.train_time, self.train_event = time[split.train], event[split.train]
        self.horizons = self.given_horizons or default_horizons(self.train_time, self.train_event)
        self.sets = {name: _Rows([x[idx] for x in inputs], time[idx], event[idx], ids[idx])
                     for name, idx in zip(("train", "val", "test"), split, strict=True)}

    def split_dataset(self, split: str) -> _Rows:
        """The subjects of ``split``; predictions are made for the test subjects."""
        return self.sets["test" if split == "predict" else split]

    def baseline_dataloader(self):
        """The training part in order, unshuffled: the Breslow baseline hazard and censoring weights."""
        return self.loader(self.sets["train"], shuffle=False, collate_fn=collate)

    def describe(self) -> str:
        s = self.sets
        events = int(sum(float(d.event.sum()) for d in s.values()))
        total = sum(len(d) for d in s.values())
        return (f"{self.source}: {total} subjects, {events} events; train {len(s['train'])}, val {len(s['val'])}, "
                f"test {len(s['test'])}; inputs {self.model_inputs_desc}; horizons {self.horizons}")


class SurvivalTableData(_SurvivalBase):
    """A survival table.

    Args:
        path: CSV/parquet file; None: the lifelines cohort ``dataset`` (written once to the cache as CSV).
        time_column / event_column: names (defaults: the cohort's, else "time" / "event").
        covariates: columns to use; None: every other column except ``id_column``.
        val / test: fractions of subjects; ``folds`` / ``fold``: k-fold cross-validation instead of a test share.
        horizons: times for the time-dependent AUC (default: quartiles of the training event times).
    """

    def __init__(self, path: str | None = None, dataset: str = "gbsg2", time_column: str | None = None,
                 event_column: str | None = None, covariates: list[str] | None = None, id_column: str | None = None,
                 val: float = 0.15, test: float = 0.2, folds: int = 1, fold: int = 0,
                 horizons: list[float] | None = None, batch_size: int = 64, num_workers: int | None = None,
                 seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        if path is None:
            if dataset not in LIFELINES_COHORTS:
                raise DataError(f"--data.dataset must be one of {', '.join(LIFELINES_COHORTS)}, got {dataset!r}")
            _, t_col, e_col, unit = LIFELINES_COHORTS[dataset]
            path = str(self.write_cohort(dataset))
            time_column, event_column = time_column or t_col, event_column or e_col
            self.source = f"lifelines {dataset} (real cohort, time in {unit})"
        else:
            self.source = str(path)
        self.time_column, self.event_column = time_column or "time", event_column or "event"
        frame = _read_table(Path(path))
        for column in (self.time_column, self.event_column, *(covariates or [])):
            if column not in frame.columns:
                raise DataError(f"{path}: no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
        time, event = check_survival(frame[self.time_column], frame[self.event_column], str(path))
        ids = frame[id_column].astype(str).to_numpy() if id_column else np.arange(len(frame)).astype(str)
        names = covariates or [c for c in frame.columns if c not in (self.time_column, self.event_column, id_column)]
        features = pd.get_dummies(frame[names], drop_first=True, dtype=np.float32)
        if features.isna().any().any():
            row = int(np.flatnonzero(features.isna().any(axis=1).to_numpy())[0])
            raise DataError(f"{path}: row {row + 1}: missing covariate values")
        x = features.to_numpy(np.float32)
        split = random_or_fold_split(len(event), val, test, seed, event, folds=folds, fold=fold)
        mean, std = x[split.train].mean(0), x[split.train].std(0) + 1e-6  # training part only
        self.feature_names = list(features.columns)
        self.scaler = {"mean": mean.tolist(), "std": std.tolist()}
        self.given_horizons = horizons
        self.model_inputs = {"in_features": x.shape[1]}
        self.model_inputs_desc = f"{x.shape[1]} covariates"
        self._datasets([(x - mean) / std], time, event, ids, split)

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


def read_multimodal(root: Path, extractors: tuple[str, ...] = EXTRACTORS, max_patches: int = MAX_PATCHES
                    ) -> tuple[list[str], list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the layout under ``root``; returns ids, per-patient (N, 384 * E) features, genes, clinical, time,
    event. Every patient must be in every modality (the missing ones are listed)."""
    survival = _read_table(root / "survival_data.csv")
    genes = _read_table(root / "gene_expression.csv")
    clinical = _read_table(root / "clinical_data.csv").rename(
        columns={"LN_Status_new": "LN_Status", "Tumor_Size_new": "Tumor_Size"})  # the released files' names
    for name, frame, needed in (("survival_data.csv", survival, ("PATIENT_ID", "OS_STATUS", "OS_MONTHS")),
                                ("gene_expression.csv", genes, ("PATIENT_ID",)),
                                ("clinical_data.csv", clinical, ("PATIENT_ID", *CLINICAL_COLUMNS))):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"{root / name}: missing columns {', '.join(missing)}")
    ids = survival["PATIENT_ID"].astype(str).tolist()
    tables = {"gene_expression.csv": set(genes["PATIENT_ID"].astype(str)),
              "clinical_data.csv": set(clinical["PATIENT_ID"].astype(str))}
    tables.update({f"features/{e}/": {p.stem for p in (root / "features" / e).glob("*.pt")} for e in extractors})
    for where, present in tables.items():
        absent = [i for i in ids if i not in present]
        if absent:
            raise DataError(f"{root / where}: {len(absent)} patients of survival_data.csv are missing: "
                            f"{', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}")
    time, event = check_survival(survival["OS_MONTHS"] / 12.0, _status(survival["OS_STATUS"], ""),
                                 str(root / "survival_data.csv"))
    gene_matrix = genes.set_index(genes["PATIENT_ID"].astype(str)).drop(columns="PATIENT_ID").loc[ids]
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
    GBSG2 survival and clinical data, simulated genes and patch features). Time in years (OS_MONTHS / 12)."""

    def __init__(self, root: str | None = None, val: float = 0.15, test: float = 0.2, folds: int = 1,
                 fold: int = 0, horizons: list[float] | None = None, max_patches: int = MAX_PATCHES,
                 batch_size: int = 12, num_workers: int | None = None, seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        if root is None:
            root = str(self.write_default())
            self.source = "GBSG2 survival + clinical (real, lifelines) with SIMULATED genes and patch features"
        else:
            self.source = str(root)
        ids, features, genes, clinical, time, event = read_multimodal(Path(root), max_patches=max_patches)
        split = random_or_fold_split(len(event), val, test, seed, event, folds=folds, fold=fold)
        train_patches = np.concatenate([features[i] for i in split.train])
        p_mean, p_std = train_patches.mean(0), train_patches.std(0) + 1e-6  # training part only
        g_mean, g_std = genes[split.train].mean(0), genes[split.train].std(0) + 1e-6
        patches = _Ragged([((f - p_mean) / p_std).astype(np.float32) for f in features])
        self.given_horizons = horizons
        self.model_inputs = {"gene_features": genes.shape[1], "clinical_features": clinical.shape[1]}
        self.model_inputs_desc = (f"patches (<= {max_patches}, {features[0].shape[1]}), genes {genes.shape[1]}, "
                                  f"clinical {clinical.shape[1]}")
        self._datasets([patches, ((genes - g_mean) / g_std).astype(np.float32), clinical], time, event,
                       np.asarray(ids), split)

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

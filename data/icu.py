"""ICU time series for hour-by-hour sepsis prediction: the PhysioNet/CinC 2019 challenge files, their hourly
features, and a simulated cohort in the same format as the offline default.

The files (Reyna et al., Crit Care Med 2020; PhysioNet ``challenge-2019``): one pipe-separated ``pNNNNNN.psv`` per
patient, in ``training_setA/`` and ``training_setB/`` (or any folder tree), a header line with the 41 columns of
:data:`COLUMNS` (40 variables + ``SepsisLabel``), one row per ICU hour, ``NaN`` where nothing was measured.
``SepsisLabel`` is 1 from 6 hours before the Sepsis-3 onset on (the challenge's shift), 0 before, all 0 for
patients who never develop sepsis. Files without the label column (the challenge's test input) are read for
prediction.

Hourly features as the official multicenter-sepsis ``small`` set builds them, on the 33 variables PhysioNet shares
with the harmonised set (:data:`VARIABLES`, SaO2 merged into O2Sat by the row mean as the official loader does):
the raw value (NaN if not measured this hour), a missingness indicator (1 = not measured), the cumulative number
of measurements, and 9 derived scores computed on forward-filled (last observation carried forward) values:
shock index, BUN/creatinine, PaO2/FiO2 (PhysioNet has no PaO2: always missing), a partial SOFA (coagulation,
liver, cardiovascular from MAP, renal; no respiratory, CNS or vasopressor data), SOFA deterioration (an increase
of >= 2 over the last 24 h), qSOFA (respiratory rate and systolic pressure; no mental status), septic shock (MAP
< 65 and lactate > 2; no vasopressors), MEWS (no consciousness score) and SIRS (temperature, heart rate,
respiration or PaCO2, white cells; no band forms): 108 columns. Age, gender, unit and hospital admission time are
statics, which the paper's models ignore. Batches also carry the 10-channel sinusoidal encoding of the ICU hour
(``ICULOS``), so the model input is 10 + 108 = 118 wide.

The z-scoring (mean and standard deviation of every non-indicator column over the training patients' hours,
NaN -> 0 afterwards) is fitted here on the training split only and applied by the task, which keeps the statistics
in its checkpoint so that prediction on new files needs no training data.

Splits are by patient (:func:`zoo.data.splits.grouped_split`), stratified by whether the patient develops sepsis.

The offline default (no ``root``) is a SIMULATED cohort written once into ``cache_root() / "icu_sepsis_simulated"``
in exactly this format and read back by the same reader: hourly vitals measured most hours, temperature every few
hours, blood gases and labs once or twice a day, each patient with their own baseline and autocorrelated noise; a
minority develop sepsis, their heart rate, respiration, temperature, blood pressure, lactate, white cells, platelets,
creatinine and bilirubin drifting over the 12 hours before onset (and labs ordered more often), while some
non-septic patients have transient stress episodes (fever, tachycardia) that fool the SIRS criteria. It is not
patient data and says so in its README.txt and in :meth:`SepsisData.describe`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter
from torch.utils.data import Dataset
from zoo.data.base import ZooDataModule, cache_root
from zoo.data.splits import check_fold, random_or_fold_split

from zoo.errors import DataError

COLUMNS = (
    "HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2",
    "BaseExcess", "HCO3", "FiO2", "pH", "PaCO2", "SaO2", "AST", "BUN", "Alkalinephos", "Calcium", "Chloride",
    "Creatinine", "Bilirubin_direct", "Glucose", "Lactate", "Magnesium", "Phosphate", "Potassium",
    "Bilirubin_total", "TroponinI", "Hct", "Hgb", "PTT", "WBC", "Fibrinogen", "Platelets",
    "Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS", "SepsisLabel",
)
LABEL = "SepsisLabel"
COL = {name: i for i, name in enumerate(COLUMNS)}

# PhysioNet name -> harmonised name of the multicenter-sepsis code (config/variables.json), in its order
VARIABLES = {
    "HR": "hr", "O2Sat": "o2sat", "Temp": "temp", "SBP": "sbp", "MAP": "map", "DBP": "dbp", "Resp": "resp",
    "EtCO2": "etco2", "FiO2": "fio2", "BaseExcess": "be", "HCO3": "bicar", "pH": "ph", "PaCO2": "pco2",
    "Chloride": "cl", "Magnesium": "mg", "Phosphate": "phos", "Potassium": "k", "AST": "ast", "BUN": "bun",
    "Alkalinephos": "alp", "Calcium": "ca", "Creatinine": "crea", "Bilirubin_direct": "bildir", "Glucose": "glu",
    "Lactate": "lact", "Bilirubin_total": "bili", "TroponinI": "tri", "Hct": "hct", "Hgb": "hgb", "PTT": "ptt",
    "WBC": "wbc", "Fibrinogen": "fgn", "Platelets": "plt",
}
DERIVED = ("ShockIndex", "bun/cr", "po2/fio2", "SOFA", "SOFAdeterioration", "qSOFA", "SepticShock", "MEWS", "SIRS")
FEATURE_NAMES = tuple(
    [f"{v}_raw" for v in VARIABLES.values()] + [f"{v}_indicator" for v in VARIABLES.values()]
    + [f"{v}_count" for v in VARIABLES.values()] + [f"{d}_derived" for d in DERIVED]
)
NUM_VARIABLES = len(VARIABLES)
INDICATORS = slice(NUM_VARIABLES, 2 * NUM_VARIABLES)
HOUR_CHANNELS = 10
SIMULATED_NAME = "icu_sepsis_simulated"


# --- reading and writing the challenge files -----------------------------------------------------------------
def _parse_slowly(path: Path, lines: list[str], names: Sequence[str]) -> np.ndarray:
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split("|")
        if len(cells) != len(names):
            raise DataError(f"{path}, line {number}: {len(cells)} cells, the header has {len(names)} columns")
        row = []
        for name, cell in zip(names, cells, strict=True):
            try:
                row.append(float(cell))
            except ValueError:
                raise DataError(f"{path}, line {number}, column {name}: {cell!r} is not a number "
                                f"(missing values are written NaN)") from None
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(names))


def read_psv(path: str | Path, require_label: bool = True) -> np.ndarray:
    """One patient's file -> (hours, 41) float64 in :data:`COLUMNS` order, NaN where missing.

    A file without ``SepsisLabel`` (the challenge's test input) is read when ``require_label`` is False; its
    label column is then all NaN.

    Raises:
        DataError: an empty file, a header that is not the challenge's columns (the missing and extra names are
            listed), a non-numeric cell (file, line, column), a ``SepsisLabel`` outside {0, 1} or one that goes
            back from 1 to 0.
    """
    path = Path(path)
    text = path.read_text()
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: empty patient file (expected a header line and one row per ICU hour)")
    names = [name.strip() for name in lines[0].split("|")]
    expected = list(COLUMNS) if require_label or LABEL in names else list(COLUMNS[:-1])
    if names != expected:
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing)}")
        if extra:
            detail.append(f"unexpected {', '.join(extra)}")
        if not detail:
            detail.append("the columns are in another order")
        raise DataError(f"{path}, line 1: the header is not the PhysioNet 2019 challenge's {len(expected)} columns "
                        f"({'; '.join(detail)})")
    if len(lines) < 2 or not any(line.strip() for line in lines[1:]):
        raise DataError(f"{path}: empty patient file (a header but no hourly rows)")
    try:
        values = np.loadtxt(lines[1:], delimiter="|", dtype=np.float64, ndmin=2)
        if values.shape[1] != len(names):
            raise ValueError
    except ValueError:
        values = _parse_slowly(path, lines, names)
    if len(names) == len(COLUMNS) - 1:
        values = np.concatenate([values, np.full((len(values), 1), np.nan)], axis=1)
    label = values[:, -1]
    if LABEL in names:
        bad = np.flatnonzero(~np.isin(label, (0.0, 1.0)))
        if len(bad):
            raise DataError(f"{path}, line {bad[0] + 2}, column {LABEL}: {float(label[bad[0]])}; "
                            "the label must be 0 or 1")
        back = np.flatnonzero(np.diff(label) < 0)
        if len(back):
            raise DataError(f"{path}, line {back[0] + 3}, column {LABEL}: the label goes back from 1 to 0; "
                            "it must stay 1 from 6 hours before onset on")
    return values


def write_psv(path: str | Path, values: np.ndarray) -> None:
    """Write (hours, 41) values as a challenge file (pipe-separated, a header line, NaN for missing)."""
    lines = ["|".join(COLUMNS)]
    for row in values:
        lines.append("|".join("NaN" if math.isnan(v) else f"{v:.5g}" for v in row))
    Path(path).write_text("\n".join(lines) + "\n")


def find_patient_files(root: str | Path) -> list[Path]:
    """Every ``.psv`` file under ``root`` (``training_setA/``, ``training_setB/`` or any tree), sorted."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder (expected PhysioNet 2019 .psv files, e.g. training_setA/)")
    files = sorted(root.rglob("*.psv")) if root.is_dir() else [root]
    if not files:
        raise DataError(f"{root}: no .psv files (expected one pNNNNNN.psv per patient, e.g. in training_setA/)")
    return files


# --- features --------------------------------------------------------------------------------------------------
def forward_fill(values: np.ndarray) -> np.ndarray:
    """Last observation carried forward along axis 0 (NaN until the first measurement)."""
    mask = ~np.isnan(values)
    index = np.where(mask, np.arange(len(values))[:, None], 0)
    np.maximum.accumulate(index, axis=0, out=index)
    filled = values[index, np.arange(values.shape[1])[None, :]]
    filled[~np.maximum.accumulate(mask, axis=0)] = np.nan
    return filled


def _bands(x: np.ndarray, edges: Sequence[float], points: Sequence[float]) -> np.ndarray:
    """points[i] where edges[i-1] <= x < edges[i] (len(points) == len(edges) + 1); 0 where x is NaN."""
    out = np.asarray(points, dtype=np.float64)[np.searchsorted(np.asarray(edges), np.nan_to_num(x), side="right")]
    return np.where(np.isnan(x), 0.0, out)


def sirs_score(temp: np.ndarray, hr: np.ndarray, resp: np.ndarray, pco2: np.ndarray, wbc: np.ndarray) -> np.ndarray:
    """The SIRS criteria met (0-4): temperature > 38 or < 36 C, heart rate > 90, respiration > 20 or PaCO2 < 32
    mmHg, white cells > 12 or < 4 (10^3/uL); a missing value meets nothing (band forms are not recorded)."""
    with np.errstate(invalid="ignore"):
        return ((temp > 38) | (temp < 36)).astype(float) + (hr > 90) + ((resp > 20) | (pco2 < 32)) \
            + ((wbc > 12) | (wbc < 4))


def derived_scores(filled: dict[str, np.ndarray]) -> np.ndarray:
    """The 9 derived columns (hours, 9) from forward-filled variables (harmonised names)."""
    v = filled
    with np.errstate(invalid="ignore", divide="ignore"):
        shock_index = v["hr"] / v["sbp"]
        bun_cr = v["bun"] / v["crea"]
        po2_fio2 = np.full_like(v["hr"], np.nan)  # PhysioNet 2019 records no PaO2
        sofa = (_bands(v["plt"], [20, 50, 100, 150], [4, 3, 2, 1, 0])
                + _bands(v["bili"], [1.2, 2.0, 6.0, 12.0], [0, 1, 2, 3, 4])
                + _bands(v["map"], [70], [1, 0])
                + _bands(v["crea"], [1.2, 2.0, 3.5, 5.0], [0, 1, 2, 3, 4]))
        window_min = sliding_window_view(np.concatenate([np.full(24, np.inf), sofa]), 25).min(axis=1)
        sofa_deterioration = (sofa - window_min >= 2).astype(float)
        qsofa = (v["resp"] >= 22).astype(float) + (v["sbp"] <= 100)
        septic_shock = ((v["map"] < 65) & (v["lact"] > 2)).astype(float)
        mews = (_bands(v["sbp"], [71, 81, 101, 200], [3, 2, 1, 0, 2])
                + _bands(v["hr"], [40, 51, 101, 111, 130], [2, 1, 0, 1, 2, 3])
                + _bands(v["resp"], [9, 15, 21, 30], [2, 0, 1, 2, 3])
                + _bands(v["temp"], [35, 38.5], [2, 0, 2]))
        sirs = sirs_score(v["temp"], v["hr"], v["resp"], v["pco2"], v["wbc"])
    return np.stack([shock_index, bun_cr, po2_fio2, sofa, sofa_deterioration, qsofa, septic_shock, mews, sirs], 1)


def hourly_features(values: np.ndarray) -> np.ndarray:
    """(hours, 41) challenge rows -> (hours, 108) features, unnormalised (NaN where not measured / undefined):
    33 raw values, 33 missingness indicators, 33 cumulative counts, 9 derived scores (:data:`FEATURE_NAMES`)."""
    raw = np.stack([values[:, COL[name]] for name in VARIABLES], axis=1)
    o2 = list(VARIABLES).index("O2Sat")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an hour with neither O2Sat nor SaO2
        raw[:, o2] = np.nanmean(np.stack([values[:, COL["O2Sat"]], values[:, COL["SaO2"]]]), axis=0)
    measured = ~np.isnan(raw)
    filled = forward_fill(raw)
    derived = derived_scores({harmonised: filled[:, i] for i, harmonised in enumerate(VARIABLES.values())})
    return np.concatenate([raw, (~measured).astype(float), np.cumsum(measured, axis=0), derived], axis=1)


def hour_encoding(hours: np.ndarray, channels: int = HOUR_CHANNELS, min_timescale: float = 1.0,
                  max_timescale: float = 500.0) -> np.ndarray:
    """The official 10-channel sinusoidal encoding of the ICU hour: (hours,) -> (hours, channels), sines then
    cosines of ``hour / timescale`` for ``channels // 2`` timescales spaced geometrically from 1 h to 500 h."""
    n = channels // 2
    inv = min_timescale * np.exp(-np.arange(n) * math.log(max_timescale / min_timescale) / (n - 1))
    scaled = np.asarray(hours, dtype=np.float64)[:, None] * inv[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1)


def fit_normaliser(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation over all hours of ``features`` (the training patients), NaN
    ignored; indicator columns keep mean 0, std 1 (they stay 0/1); a constant or never-measured column gets std 1."""
    rows = np.concatenate(features, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column never measured in training
        mean, std = np.nanmean(rows, axis=0), np.nanstd(rows, axis=0)
    mean[INDICATORS], std[INDICATORS] = 0.0, 1.0
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


# --- the simulated cohort --------------------------------------------------------------------------------------
# name: (population mean, between-patient sd, hourly noise sd, AR(1) coefficient, measurements per hour,
#        change at full sepsis, low, high)
_SIM = {
    "HR": (84, 12, 4, 0.8, 0.92, 7, 30, 220), "O2Sat": (97, 1.5, 1.0, 0.7, 0.90, -2.5, 60, 100),
    "Temp": (36.9, 0.35, 0.2, 0.8, 0.30, 0.6, 32, 42), "SBP": (122, 15, 6, 0.8, 0.85, -9, 50, 240),
    "MAP": (82, 10, 4, 0.8, 0.88, -6, 30, 160), "DBP": (63, 8, 4, 0.8, 0.85, -9, 20, 130),
    "Resp": (18, 3, 2, 0.7, 0.88, 3, 4, 60), "EtCO2": (33, 4, 2, 0.8, 0.05, -3, 10, 70),
    "BaseExcess": (0, 2.5, 1, 0.9, 0.06, -4, -25, 20), "HCO3": (24, 2.5, 1, 0.9, 0.07, -4, 8, 45),
    "FiO2": (0.45, 0.1, 0.05, 0.9, 0.10, 0.1, 0.21, 1.0), "pH": (7.39, 0.04, 0.02, 0.9, 0.08, -0.07, 6.9, 7.7),
    "PaCO2": (40, 5, 2, 0.9, 0.07, -5, 15, 90), "SaO2": (96, 2, 1, 0.8, 0.04, -2, 60, 100),
    "AST": (60, 30, 5, 0.95, 0.02, 50, 5, 3000), "BUN": (22, 10, 1, 0.95, 0.05, 9, 2, 150),
    "Alkalinephos": (95, 30, 3, 0.95, 0.02, 10, 10, 800), "Calcium": (8.3, 0.6, 0.2, 0.9, 0.05, -0.4, 5, 12),
    "Chloride": (105, 4, 1, 0.9, 0.05, 1, 80, 130), "Creatinine": (1.2, 0.5, 0.05, 0.95, 0.05, 0.8, 0.2, 12),
    "Bilirubin_direct": (0.4, 0.3, 0.05, 0.95, 0.01, 0.5, 0.0, 20), "Glucose": (130, 30, 10, 0.7, 0.15, 25, 40, 600),
    "Lactate": (1.4, 0.5, 0.2, 0.9, 0.04, 1.6, 0.3, 20), "Magnesium": (2.0, 0.2, 0.1, 0.9, 0.06, 0, 0.8, 4),
    "Phosphate": (3.5, 0.8, 0.2, 0.9, 0.05, 0.5, 0.5, 10), "Potassium": (4.1, 0.4, 0.2, 0.8, 0.09, 0.1, 2, 8),
    "Bilirubin_total": (0.9, 0.6, 0.1, 0.95, 0.02, 1.3, 0.1, 40), "TroponinI": (0.3, 0.5, 0.05, 0.95, 0.01, 0.5, 0, 50),
    "Hct": (31, 5, 1, 0.95, 0.09, -2, 15, 55), "Hgb": (10.4, 1.7, 0.3, 0.95, 0.08, -0.7, 5, 18),
    "PTT": (35, 8, 2, 0.9, 0.03, 9, 18, 150), "WBC": (11, 4, 0.6, 0.95, 0.065, 3, 0.2, 60),
    "Fibrinogen": (300, 90, 10, 0.95, 0.01, 70, 40, 1000), "Platelets": (200, 70, 6, 0.95, 0.06, -50, 5, 900),
}
_LABS_ORDERED_MORE = ("Lactate", "WBC", "Platelets", "Creatinine", "Bilirubin_total", "BUN", "pH", "BaseExcess",
                      "HCO3", "PaCO2")
_STRESS = {"HR": 18, "Temp": 1.0, "Resp": 5, "WBC": 4, "Glucose": 20}


def simulate_patient(rng: np.random.Generator, septic: bool) -> np.ndarray:
    """One simulated stay as (hours, 41) challenge rows (label shifted 6 h before onset, as the challenge's)."""
    if septic:
        onset = int(rng.integers(10, 60))                 # row of the Sepsis-3 onset (hour onset + 1)
        hours = onset + int(rng.integers(2, 25))
    else:
        onset, hours = None, int(rng.integers(12, 72))
    t = np.arange(hours)
    drift = np.zeros(hours)
    if septic:
        severity = rng.uniform(0.3, 1.3)
        drift = severity * np.clip((t - (onset - 12)) / 12, 0, 1.25)
    stress = np.zeros(hours)
    if rng.random() < 0.6:               # a transient non-infectious stress response
        start, length = int(rng.integers(0, hours)), int(rng.integers(4, 16))
        stress[start: start + length] = rng.uniform(0.6, 1.4)
    hypothermic = septic and rng.random() < 0.2
    rows = np.full((hours, len(COLUMNS)), np.nan)
    for name, (mean, between, noise, ar, rate, change, low, high) in _SIM.items():
        level = mean + between * rng.standard_normal()
        shocks = noise * rng.standard_normal(hours)
        shocks[0] /= math.sqrt(1 - ar**2)  # start in the stationary distribution
        eps = lfilter([1.0], [1.0, -ar], shocks)  # AR(1): eps[i] = ar * eps[i - 1] + shock[i]
        delta = -change if (hypothermic and name == "Temp") else change
        series = level + eps + delta * drift + _STRESS.get(name, 0.0) * stress
        probability = np.full(hours, rate)
        if septic and name in _LABS_ORDERED_MORE:
            probability = np.minimum(1.0, rate * (1 + 1.5 * np.clip(drift, 0, 1)))
        measured = rng.random(hours) < probability
        rows[measured, COL[name]] = np.clip(series[measured], low, high)
    rows[:, COL["Age"]] = round(float(rng.uniform(18, 90)), 2)
    rows[:, COL["Gender"]] = float(rng.random() < 0.56)
    if rng.random() < 0.6:
        unit = float(rng.random() < 0.5)
        rows[:, COL["Unit1"]], rows[:, COL["Unit2"]] = unit, 1.0 - unit
    rows[:, COL["HospAdmTime"]] = round(-float(rng.exponential(20.0)), 2)
    rows[:, COL["ICULOS"]] = t + 1
    rows[:, COL[LABEL]] = 0.0
    if septic:
        rows[max(0, onset - 6):, COL[LABEL]] = 1.0
    return rows


def write_simulated_cohort(folder: str | Path, num_patients: int = 1000, septic_fraction: float = 0.12,
                           seed: int = 0) -> Path:
    """Write a simulated cohort as ``folder/training_setA/pNNNNNN.psv`` (once: an existing complete folder is
    kept) with a README.txt that says it is simulated. Returns ``folder``."""
    folder = Path(folder)
    if (folder / "README.txt").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    rng = np.random.default_rng(seed)
    septic = rng.permutation(num_patients) < round(septic_fraction * num_patients)
    (work / "training_setA").mkdir()
    for i in range(num_patients):
        write_psv(work / "training_setA" / f"p{i + 1:06d}.psv", simulate_patient(rng, bool(septic[i])))
    (work / "README.txt").write_text(
        f"SIMULATED ICU cohort, not patient data: {num_patients} stays, {int(septic.sum())} of them septic, written by "
        "zoo.data.icu.write_simulated_cohort in the PhysioNet/CinC 2019 challenge format (one pipe-separated "
        ".psv per patient, 40 variables + SepsisLabel, one row per ICU hour, NaN for missing; SepsisLabel 1 from "
        "6 h before onset). Vitals, labs, measurement rates and the drift before onset are simulated; use the real "
        "challenge files (physionet.org/content/challenge-2019) with --data.root for real results.\n")
    try:
        os.replace(work, folder)
    except OSError:  # another process wrote it first
        shutil.rmtree(work, ignore_errors=True)
    return folder


# --- datasets and the data module ------------------------------------------------------------------------------
class PatientDataset(Dataset):
    """Patients as dicts: ``features`` (T, 108) unnormalised (NaN where missing), ``time`` (T, 10) the hour
    encoding, ``labels`` (T,) SepsisLabel (NaN when unknown), ``sirs`` (T,) the SIRS score, ``patient`` the file
    stem."""

    def __init__(self, patients: Sequence[dict[str, Any]]):
        self.patients = list(patients)

    def __len__(self) -> int:
        return len(self.patients)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.patients[index]


def pad_patients(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad to the longest stay: ``features`` (B, T, F) float32 (NaN padding), ``time`` (B, T, 10), ``labels``
    (B, T) (NaN on padded or unlabelled hours: masked), ``sirs`` (B, T), ``lengths`` (B,) int64, ``patient``
    (list of names)."""
    lengths = torch.tensor([len(p["labels"]) for p in batch], dtype=torch.int64)
    steps = int(lengths.max())

    def pad(key: str, value: float) -> torch.Tensor:
        first = batch[0][key]
        out = torch.full((len(batch), steps, *first.shape[1:]), value, dtype=torch.float32)
        for i, p in enumerate(batch):
            out[i, : len(p[key])] = torch.as_tensor(p[key], dtype=torch.float32)
        return out

    return {"features": pad("features", math.nan), "time": pad("time", 0.0), "labels": pad("labels", math.nan),
            "sirs": pad("sirs", 0.0), "lengths": lengths, "patient": [p["patient"] for p in batch]}


def load_patient(path: Path, require_label: bool = True) -> dict[str, Any]:
    values = read_psv(path, require_label=require_label)
    features = hourly_features(values)
    hours = values[:, COL["ICULOS"]]
    hours = np.where(np.isnan(hours), np.arange(1, len(values) + 1), hours)
    return {"patient": path.stem, "features": features.astype(np.float32),
            "time": hour_encoding(hours).astype(np.float32), "labels": values[:, -1].astype(np.float32),
            "sirs": features[:, FEATURE_NAMES.index("SIRS_derived")].astype(np.float32)}


class SepsisData(ZooDataModule):
    """PhysioNet 2019 sepsis data: patient files -> padded hourly sequences with per-hour labels.

    Args:
        root: a folder of ``.psv`` patient files (``training_setA/``, ``training_setB/``, ...); None: the simulated
            cohort (written once into the cache).
        val / test: fractions of patients in the validation and test splits (by patient, stratified by outcome).
        folds / fold: k-fold cross-validation by patient: fold ``fold`` of ``folds`` is the test part
            (``zoo train MODEL --data.folds K`` runs every fold).
        num_patients: size of the simulated cohort (ignored with ``root``).
        batch_size / num_workers / seed: as :class:`zoo.data.base.ZooDataModule`.
        eval_batch_size: patients per validation, test and prediction batch.

    Attributes after ``setup``: ``feature_mean`` / ``feature_std`` (108,) fitted on the training hours,
    ``positive_fraction`` (share of labelled training hours that are positive), ``in_features`` = 118.

    Example:
        >>> data = SepsisData(num_patients=200)
        >>> data.setup("fit"); batch = next(iter(data.train_dataloader()))
        >>> batch["features"].shape[-1], batch["time"].shape[-1]
        (108, 10)
    """

    in_memory = True
    in_features = HOUR_CHANNELS + len(FEATURE_NAMES)
    collate_fn = staticmethod(pad_patients)

    def __init__(self, root: str | None = None, val: float = 0.1, test: float = 0.1, num_patients: int = 1000,
                 batch_size: int = 16, eval_batch_size: int = 64, num_workers: int | None = None, seed: int = 0,
                 folds: int = 1, fold: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        check_fold(folds, fold)
        self.folds, self.fold = folds, fold
        if num_patients < 20:
            raise DataError(f"--data.num_patients must be at least 20, got {num_patients}")
        self.root, self.val, self.test = root, val, test
        self.num_patients, self.eval_batch_size = num_patients, eval_batch_size
        self.simulated = root is None
        self.datasets: dict[str, PatientDataset] = {}
        self.feature_mean: np.ndarray | None = None
        self.feature_std: np.ndarray | None = None
        self.positive_fraction: float | None = None
        self.feature_names = FEATURE_NAMES

    def source(self) -> Path:
        if self.root is not None:
            return Path(self.root)
        return write_simulated_cohort(cache_root() / SIMULATED_NAME / f"n{self.num_patients}",
                                      num_patients=self.num_patients)

    def prepare_data(self) -> None:
        self.source()

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            files = find_patient_files(self.source())
            self.datasets["predict"] = PatientDataset([load_patient(f, require_label=False) for f in files])
            return
        if "train" in self.datasets:
            return
        files = find_patient_files(self.source())
        patients = [load_patient(f) for f in files]
        septic = np.array([bool(np.nansum(p["labels"]) > 0) for p in patients])
        split = random_or_fold_split(len(patients), self.val, self.test, self.seed, stratify=septic,
                                     groups=[p["patient"] for p in patients], folds=self.folds, fold=self.fold)
        for name, index in zip(("train", "val", "test"), split, strict=True):
            self.datasets[name] = PatientDataset([patients[i] for i in index])
        train = self.datasets["train"].patients
        self.feature_mean, self.feature_std = fit_normaliser([p["features"] for p in train])
        labels = np.concatenate([p["labels"] for p in train])
        labels = labels[~np.isnan(labels)]
        self.positive_fraction = float(labels.mean()) if len(labels) else 0.0
        self.septic_counts = {n: int(sum(np.nansum(p["labels"]) > 0 for p in d.patients))
                              for n, d in self.datasets.items()}

    def split_dataset(self, split: str) -> PatientDataset:
        if split == "predict" and "predict" not in self.datasets:
            self.setup("predict")
        return self.datasets[split]

    def describe(self) -> str:
        source = (f"SIMULATED ICU cohort in the PhysioNet 2019 .psv format ({self.num_patients} patients, "
                  f"{self.source()})" if self.simulated else f"PhysioNet 2019 .psv files in {self.root}")
        if "train" not in self.datasets:
            return f"{source}; {self.in_features} inputs per hour"
        sizes = ", ".join(f"{n} {len(d)} ({self.septic_counts[n]} septic)" for n, d in self.datasets.items()
                          if n != "predict")
        return (f"{source}: patients {sizes}; {self.in_features} inputs per hour (10 hour encoding + "
                f"{len(FEATURE_NAMES)} features); {100 * self.positive_fraction:.1f}% positive training hours")

"""Time series for forecasting: windows of the past (B, window, variables) -> the next ``horizon`` steps of the
target series (B, horizon, targets).

Formats read (``--data.path``):

- a CSV/TSV table with a time column (``--data.time_column``, by default the column called date, time, timestamp
  or datetime, any case) and one or many value columns (OHLCV files of prices among them); ``--data.target close``
  picks the series to forecast (any case), ``--data.covariates`` extra input columns;
- a long-format panel, one row per (series, time): ``--data.id_column id`` and the value columns;
- a saved (samples, time, variables) tensor (``.pt``/``.pth`` via ``torch.save``, or ``.npy``), as ReGENN's
  datasets are distributed; ``--data.target`` then takes variable indices (default: all).

The inputs of a window are the targets first, then the covariates, so ``x[:, -1, :targets]`` is the last observed
value of every target (the persistence forecast). Each series is split in time (:func:`zoo.data.splits.
chronological_split`, with ``--data.gap`` steps left out between the parts) and windows lie wholly inside one part:
no window straddles two splits. With ``--data.split_on targets`` a validation or test window belongs to the part that
holds its forecast steps and its inputs may reach back into the part before (the held-out final steps of ReGENN's
protocol, for short series); training windows stay inside the training part either way. The scaler (standard,
min-max, max-abs or none, per variable) is fitted on the training part only; it travels with the run as the
``schema`` hyperparameter, so ``zoo predict --ckpt CKPT --data.predict_path new.csv`` and ``zoo test --ckpt CKPT
--data.test_path other.csv`` (every window of it) scale new data the same way without the training file.

The offline defaults are real series that ship inside installed packages, written once into
``cache_root() / "timeseries"`` as CSV files and read back by the same reader: ``sp500`` (daily S&P 500 OHLCV
1999-2018 from the ``arch`` package), ``co2`` (weekly Mauna Loa CO2 1958-2001), ``sunspots`` (yearly 1700-2008)
and ``macrodata`` (quarterly US macro data 1959-2009), the last three from ``statsmodels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from zoo.data.base import ZooDataModule, cache_root
from zoo.data.splits import chronological_split

from zoo.errors import DataError

__all__ = ["DATASETS", "Panel", "TimeSeriesData", "WindowDataset", "future_times", "read_panel", "read_table",
           "read_tensor", "window_starts"]

Scaler = Literal["standard", "minmax", "max", "none"]
Missing = Literal["error", "ffill", "interpolate", "drop"]
SplitOn = Literal["windows", "targets"]
TIME_NAMES = ("date", "time", "timestamp", "datetime")
DATASETS = {  # name -> (file, default targets, time column, what it is)
    "sp500": ("sp500.csv", ["Close"], "Date", "S&P 500 daily OHLCV 1999-01-04..2018-12-31 (arch.data.sp500)"),
    "co2": ("co2.csv", ["co2"], "date", "Mauna Loa weekly CO2 (ppm) 1958-2001 (statsmodels.datasets.co2)"),
    "sunspots": ("sunspots.csv", ["SUNACTIVITY"], "YEAR", "yearly sunspot numbers 1700-2008 (statsmodels)"),
    "macrodata": ("macrodata.csv", ["realgdp", "realcons", "realinv"], "date",
                  "US quarterly macro data 1959Q1-2009Q3 (statsmodels.datasets.macrodata)"),
}


class Panel:
    """Series of one layout: ``values[i]`` (T_i, V) float64 of series ``ids[i]``, ``times[i]`` (T_i,) labels."""

    def __init__(self, values: list[np.ndarray], times: list[np.ndarray], ids: list[str], columns: list[str],
                 source: str):
        self.values, self.times, self.ids, self.columns, self.source = values, times, ids, columns, source

    def select(self, columns: list[str]) -> Panel:
        index = [self.columns.index(c) for c in columns]
        return Panel([v[:, index] for v in self.values], self.times, self.ids, columns, self.source)


# --- readers ------------------------------------------------------------------------------------------------------
def _find_column(frame: pd.DataFrame, name: str, path: Path, what: str) -> str:
    matches = [c for c in frame.columns if str(c).lower() == str(name).lower()]
    if not matches:
        raise DataError(f"{path}: no {what} column {name!r}; the columns are {', '.join(map(str, frame.columns))}")
    return matches[0]


def _numeric(frame: pd.DataFrame, columns: list[str], path: Path, line_of: np.ndarray) -> np.ndarray:
    out = np.empty((len(frame), len(columns)))
    for j, column in enumerate(columns):
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}, line {line_of[i]}, column {column!r}: {raw.iloc[i]!r} is not a number "
                            f"({int(bad.sum())} such cells in this column)")
        out[:, j] = values.to_numpy(dtype=float)
    return out


def _parse_times(raw: pd.Series, path: Path, column: str, line_of: np.ndarray) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(raw):
        return raw.to_numpy()
    times = pd.to_datetime(raw, errors="coerce")
    if times.isna().any():
        i = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise DataError(f"{path}, line {line_of[i]}, column {column!r}: cannot read {raw.iloc[i]!r} as a time")
    return times.to_numpy()


def _check_order(times: np.ndarray, path: Path, line_of: np.ndarray, label: str = "") -> None:
    if len(times) < 2:
        return
    step = times[1:] - times[:-1]
    zero = step == step.dtype.type(0)
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        raise DataError(f"{path}{label}: duplicated time {times[i + 1]} on lines {line_of[i]} and {line_of[i + 1]} "
                        f"({int(zero.sum())} duplicates)")
    back = step < step.dtype.type(0)
    if back.any():
        i = int(np.flatnonzero(back)[0])
        raise DataError(f"{path}{label}: times are not sorted: line {line_of[i + 1]} ({times[i + 1]}) comes after "
                        f"line {line_of[i]} ({times[i]}); sort the file, or pass --data.sort true")


def read_table(path: str | Path, time_column: str | None = "auto", id_column: str | None = None,
               sort: bool = False) -> Panel:
    """A CSV/TSV of one series (a time column and value columns) or a long panel (with ``id_column``).

    Raises:
        DataError: unreadable file, unknown columns, non-numeric cells, unreadable, duplicated or unsorted times
            (the file and its line are named).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, sep=None if path.suffix.lower() in (".tsv", ".txt") else ",", engine="python")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: cannot read the table: {err}") from err
    if frame.empty:
        raise DataError(f"{path}: the table has no rows")
    if time_column == "auto":
        time_column = next((c for c in frame.columns if str(c).lower() in TIME_NAMES), None)
    elif time_column is not None:
        time_column = _find_column(frame, time_column, path, "time")
    if id_column is not None:
        id_column = _find_column(frame, id_column, path, "id")
    line_of = np.arange(len(frame)) + 2  # the header is line 1
    times = (_parse_times(frame[time_column], path, time_column, line_of) if time_column
             else np.arange(len(frame)))
    columns = [c for c in frame.columns if c not in (time_column, id_column)]
    ids = frame[id_column].astype(str).to_numpy() if id_column else np.full(len(frame), path.stem)  # one series
    if sort:
        order = np.lexsort((times, ids))
        frame, times, ids, line_of = frame.iloc[order], times[order], ids[order], line_of[order]
    values_all = _numeric(frame, columns, path, line_of)
    values, time_list, names = [], [], []
    for name in dict.fromkeys(ids):  # series in order of first appearance
        rows = np.flatnonzero(ids == name)
        _check_order(times[rows], path, line_of[rows], f" (series {name!r})" if id_column else "")
        values.append(values_all[rows])
        time_list.append(times[rows])
        names.append(str(name))
    return Panel(values, time_list, names, [str(c) for c in columns], str(path))


def read_tensor(path: str | Path) -> Panel:
    """A saved (samples, time, variables) tensor (``torch.save`` .pt/.pth, or .npy), as ReGENN's datasets."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        data = np.load(path) if path.suffix == ".npy" else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: cannot read a tensor: {err}") from err
    array = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: expected a numeric (samples, time, variables) tensor, got shape {array.shape} "
                        f"and dtype {array.dtype}")
    array = array.astype(np.float64)
    return Panel(list(array), [np.arange(array.shape[1])] * len(array), [str(i) for i in range(len(array))],
                 [str(i) for i in range(array.shape[2])], str(path))


def read_panel(path: str | Path, time_column: str | None = "auto", id_column: str | None = None,
               sort: bool = False) -> Panel:
    """Any of the supported formats, chosen by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".pt", ".pth", ".npy"):
        return read_tensor(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return read_table(path, time_column, id_column, sort)
    raise DataError(f"{path}: unsupported file type {suffix!r}: give a .csv/.tsv table or a .pt/.pth/.npy tensor")


# --- the embedded defaults ----------------------------------------------------------------------------------------
def _embedded_frame(name: str) -> pd.DataFrame:
    if name == "sp500":
        try:
            from arch.data import sp500
        except ImportError as err:
            raise DataError("the offline S&P 500 series ships with the `arch` package: pip install arch") from err
        frame = sp500.load()
        frame.index = frame.index.strftime("%Y-%m-%d")
        return frame.rename_axis("Date").reset_index()
    try:
        import statsmodels.api as sm
    except ImportError as err:
        raise DataError(f"the offline {name} series ships with `statsmodels`: pip install statsmodels") from err
    frame = getattr(sm.datasets, name).load_pandas().data
    if name == "co2":
        frame.index = frame.index.strftime("%Y-%m-%d")
        return frame.rename_axis("date").reset_index()
    if name == "macrodata":
        dates = pd.PeriodIndex.from_fields(year=frame.year.astype(int), quarter=frame.quarter.astype(int), freq="Q")
        return pd.concat([pd.Series(dates.start_time.strftime("%Y-%m-%d"), name="date"),
                          frame.drop(columns=["year", "quarter"])], axis=1)
    return frame.assign(YEAR=frame.YEAR.astype(int))


def embedded_path(name: str) -> Path:
    """Write the embedded series ``name`` once as CSV under the cache folder and return its path."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; the embedded series are {', '.join(DATASETS)}")
    folder = cache_root() / "timeseries"
    path = folder / DATASETS[name][0]
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        frame = _embedded_frame(name)
        tmp = path.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
        (folder / "README.txt").write_text(
            "Real series copied from installed packages for the zoo's forecasting quick starts:\n"
            + "".join(f"  {file}: {what}\n" for file, _, _, what in DATASETS.values()))
    return path


# --- windows ------------------------------------------------------------------------------------------------------
class WindowDataset(Dataset):
    """Windows of scaled series: item i -> (x (window, V) float32, y (horizon, T) float32); prediction windows
    (``horizon=0`` targets) give x only.

    ``index`` rows are (series, start): x = series[start : start + window], y = the next ``horizon`` steps of the
    first ``targets`` columns.
    """

    def __init__(self, series: list[np.ndarray], index: np.ndarray, window: int, horizon: int, targets: int,
                 with_targets: bool = True):
        self.series = [torch.as_tensor(s, dtype=torch.float32) for s in series]
        self.index, self.window, self.horizon, self.targets = index, window, horizon, targets
        self.with_targets = with_targets

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        series, start = self.index[i]
        s = self.series[series]
        x = s[start:start + self.window]
        if not self.with_targets:
            return (x,)
        return x, s[start + self.window:start + self.window + self.horizon, :self.targets]


def window_starts(length: int, window: int, horizon: int, stride: int) -> np.ndarray:
    """Starts of the windows (inputs and targets) that fit in ``length`` steps, every ``stride`` steps, aligned so
    the last one ends at the last step."""
    last = length - window - horizon
    return np.arange(last % stride, last + 1, stride) if last >= 0 else np.zeros(0, dtype=int)


class TimeSeriesData(ZooDataModule):
    """Forecasting windows from a table, a long panel or a (samples, time, variables) tensor.

    Args:
        path: the file (.csv/.tsv table or panel, .pt/.pth/.npy tensor); None reads the embedded ``dataset``.
        dataset: embedded series when ``path`` is None: sp500, co2, sunspots, macrodata.
        target: the column(s) to forecast (names, any case; indices for tensors); None: the dataset's default, or
            every value column.
        covariates: more input columns (known past values), after the targets in the window.
        time_column: the time column ("auto": date/time/timestamp/datetime if present; None: row order).
        id_column: the series id column of a long panel.
        sort: sort the rows by (id, time) instead of rejecting unsorted files.
        missing: missing values: "error" (count and first lines named), "ffill", "interpolate" or "drop" (rows).
        window / horizon / stride: past steps per window, steps forecast, steps between window starts.
        val_fraction / test_fraction / gap: the chronological split of every series (gap: steps left out
            between the parts).
        split_on: "windows" (every window wholly inside one part) or "targets" (validation and test windows hold
            their forecast steps in the part, their inputs may lie before it).
        scaler: "standard", "minmax" ([0, 1] on training), "max" (divide by the training max |x|), "none"; per
            variable, fitted on the training part of every series only.
        schema: the fitted columns and scaler of a trained run (set by the module, restored from checkpoints).
        test_path: a file whose every window is the test split (``zoo test --ckpt CKPT --data.test_path new.csv``
            evaluates it alone, scaled with the checkpoint's scaler, without reading ``path``).
        predict_path: the file ``zoo predict`` forecasts from (every window, the last one's forecasts past its
            end); None: ``path``.
    """

    in_memory = True

    def __init__(self, path: str | None = None, dataset: str = "sp500", target: str | list[str] | None = None,
                 covariates: list[str] | None = None, time_column: str | None = "auto", id_column: str | None = None,
                 sort: bool = False, missing: Missing = "error", window: int = 5, horizon: int = 1, stride: int = 1,
                 val_fraction: float = 0.1, test_fraction: float = 0.1, gap: int = 0, split_on: SplitOn = "windows",
                 scaler: Scaler = "minmax", batch_size: int = 64, num_workers: int | None = 0, seed: int = 0,
                 schema: dict | None = None, test_path: str | None = None, predict_path: str | None = None):
        super().__init__(batch_size, num_workers, seed)
        if window < 1 or horizon < 1 or stride < 1 or gap < 0:
            raise DataError(f"--data.window, --data.horizon and --data.stride must be >= 1 and --data.gap >= 0, got "
                            f"{window}, {horizon}, {stride} and {gap}")
        if scaler not in ("standard", "minmax", "max", "none"):
            raise DataError(f"--data.scaler must be standard, minmax, max or none, got {scaler!r}")
        if split_on not in ("windows", "targets"):
            raise DataError(f"--data.split_on must be windows or targets, got {split_on!r}")
        if missing not in ("error", "ffill", "interpolate", "drop"):
            raise DataError(f"--data.missing must be error, ffill, interpolate or drop, got {missing!r}")
        self.save_hyperparameters()
        self.window, self.horizon, self.stride = window, horizon, stride
        self._datasets: dict[str, WindowDataset] = {}
        self._index: dict[str, np.ndarray] = {}
        self.panel: Panel | None = None
        self.test_panel: Panel | None = None  # the panel of test_path, when the test split is that file
        if schema is None:
            self.panel = self._read()
            schema = self._fit_schema(self.panel)
            self.hparams["schema"] = schema
        self.schema = schema

    # --- what the task is linked to -------------------------------------------------------------------------------
    @property
    def num_variables(self) -> int:
        return len(self.schema["columns"])

    @property
    def num_targets(self) -> int:
        return len(self.schema["targets"])

    @property
    def target_names(self) -> list[str]:
        return list(self.schema["targets"])

    @property
    def target_scaling(self) -> list[list[float]]:
        """[offsets, scales] of the targets: original = scaled * scale + offset."""
        t = self.num_targets
        return [self.schema["offset"][:t], self.schema["scale"][:t]]

    @property
    def naive_scale(self) -> list[float]:
        """Mean absolute one-step change of every target over the training parts (original scale): MASE's unit."""
        return list(self.schema["naive_scale"])

    # --- reading --------------------------------------------------------------------------------------------------
    def _source(self) -> tuple[Path, list[str] | None, str | None]:
        hp = self.hparams
        if hp.path is not None:
            return Path(hp.path).expanduser(), None, hp.time_column
        _, targets, time_column, _ = DATASETS.get(hp.dataset, (None, None, None, None))
        return embedded_path(hp.dataset), targets, time_column

    def _read(self, path: Path | None = None) -> Panel:
        hp = self.hparams
        source, default_targets, time_column = self._source()
        path = path or source
        panel = read_panel(path, time_column, hp.id_column, hp.sort)
        schema = getattr(self, "schema", None)
        if schema is not None:
            columns = schema["columns"]
        else:
            targets = hp.target if hp.target is not None else default_targets
            targets = [targets] if isinstance(targets, (str, int)) else list(targets or panel.columns)
            columns = [self._column(panel, c) for c in [*targets, *(hp.covariates or [])]]
            if len(set(columns)) != len(columns):
                raise DataError(f"{path}: a column is both a target and a covariate: {columns}")
        missing = [c for c in columns if c not in panel.columns]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r}; the columns are {', '.join(panel.columns)}")
        return self._fill(panel.select(columns))

    @staticmethod
    def _column(panel: Panel, name: str | int) -> str:
        if str(name) in panel.columns:
            return str(name)
        matches = [c for c in panel.columns if c.lower() == str(name).lower()]
        if not matches:
            raise DataError(f"{panel.source}: no column {name!r}; the columns are {', '.join(panel.columns)}")
        return matches[0]

    def _fill(self, panel: Panel) -> Panel:
        how = self.hparams.missing
        values, times = [], []
        for v, t, name in zip(panel.values, panel.times, panel.ids, strict=True):
            nan = np.isnan(v)
            if nan.any() and how == "error":
                rows = np.flatnonzero(nan.any(1))
                where = ", ".join(str(r + 2) for r in rows[:5]) if len(panel.ids) == 1 else \
                    f"series {name!r}, steps {', '.join(map(str, rows[:5]))}"
                raise DataError(f"{panel.source}: {int(nan.sum())} missing values in {', '.join(panel.columns)} "
                                f"(first at lines {where}); pass --data.missing ffill, interpolate or drop")
            if nan.any() and how == "drop":
                keep = ~nan.any(1)
                v, t = v[keep], t[keep]
            elif nan.any():
                frame = pd.DataFrame(v)
                frame = frame.ffill() if how == "ffill" else frame.interpolate(limit_direction="forward")
                v = frame.bfill().to_numpy()  # a leading gap takes the first observation
            values.append(v)
            times.append(t)
        return Panel(values, times, panel.ids, panel.columns, panel.source)

    # --- splitting and scaling ------------------------------------------------------------------------------------
    def _parts(self, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hp = self.hparams
        return chronological_split(length, hp.val_fraction, hp.test_fraction, hp.gap)

    def _fit_schema(self, panel: Panel) -> dict[str, Any]:
        hp = self.hparams
        train = np.concatenate([v[self._parts(len(v)).train] for v in panel.values])
        if hp.scaler == "standard":
            offset, scale = train.mean(0), train.std(0)
        elif hp.scaler == "minmax":
            offset, scale = train.min(0), train.max(0) - train.min(0)
        elif hp.scaler == "max":
            offset, scale = np.zeros(train.shape[1]), np.abs(train).max(0)
        else:
            offset, scale = np.zeros(train.shape[1]), np.ones(train.shape[1])
        scale = np.where(scale > 0, scale, 1.0)
        t = len(panel.columns) - len(hp.covariates or [])
        diffs = [np.abs(np.diff(v[self._parts(len(v)).train][:, :t], axis=0)) for v in panel.values]
        naive = np.concatenate(diffs).mean(0) if sum(len(d) for d in diffs) else np.ones(t)
        return {"columns": list(panel.columns), "targets": list(panel.columns[:t]), "scaler": hp.scaler,
                "offset": offset.tolist(), "scale": scale.tolist(),
                "naive_scale": np.where(naive > 0, naive, 1).tolist()}

    def scale(self, values: np.ndarray) -> np.ndarray:
        return (values - np.asarray(self.schema["offset"])) / np.asarray(self.schema["scale"])

    def _build(self) -> None:
        if "train" in self._datasets:
            return
        if self.panel is None:
            self.panel = self._read()
        series, index = [], {"train": [], "val": [], "test": []}
        self.short: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        hp = self.hparams
        lengths: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        for i, v in enumerate(self.panel.values):
            series.append(self.scale(v))
            for name, part in zip(("train", "val", "test"), self._parts(len(v)), strict=True):
                lengths[name].append(len(part))
                reach = self.window if name != "train" and hp.split_on == "targets" else 0
                back = min(reach, int(part[0]) if len(part) else 0)  # inputs taken from before the part
                if len(part) + back < self.window + self.horizon:
                    self.short[name].append(self.panel.ids[i])
                    continue
                starts = window_starts(len(part) + back, self.window, self.horizon, self.stride) + part[0] - back
                index[name].extend((i, s) for s in starts)
        fractions = {"train": 1.0, "val": hp.val_fraction, "test": hp.test_fraction}
        for name, rows in index.items():
            if not rows and fractions[name] > 0:
                longest = max(lengths[name])
                which = "" if len(self.panel.ids) == 1 else f" of every one of the {len(self.panel.ids)} series"
                raise DataError(f"{self.panel.source}: the {name} part{which} has {longest} steps"
                                f"{' or fewer' if which else ''}, fewer than window {self.window} + horizon "
                                f"{self.horizon}, so it holds no window; lower --data.window/--data.horizon or give "
                                f"the part a larger fraction (--data.val_fraction / --data.test_fraction)"
                                + ("" if name == "train" or hp.split_on == "targets" else
                                   ", or let its windows' inputs reach into the part before (--data.split_on "
                                   "targets)"))
        t = self.num_targets
        for name, rows in index.items():
            if name == "test" and self.test_panel is not None:
                continue  # the test split is the test file
            array = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
            self._index[name] = array
            self._datasets[name] = WindowDataset(series, array, self.window, self.horizon, t)

    def _build_test_file(self) -> None:
        """Every window of ``test_path`` (with all its forecast steps inside the series) is the test split,
        scaled with the run's scaler."""
        panel = self._read(Path(self.hparams.test_path).expanduser())
        series, rows = [], []
        for i, v in enumerate(panel.values):
            series.append(self.scale(v))
            if len(v) >= self.window + self.horizon:
                rows.extend((i, s) for s in window_starts(len(v), self.window, self.horizon, self.stride))
        if not rows:
            raise DataError(f"{panel.source}: no series has window {self.window} + horizon {self.horizon} = "
                            f"{self.window + self.horizon} steps (longest: {max(len(v) for v in panel.values)})")
        self.test_panel = panel
        self._index["test"] = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        self._datasets["test"] = WindowDataset(series, self._index["test"], self.window, self.horizon,
                                               self.num_targets)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        if self.hparams.test_path and self.test_panel is None:
            self._build_test_file()
        if stage != "test" or not self.hparams.test_path:  # a test file alone needs no training file
            self._build()

    def _setup_predict(self) -> None:
        hp = self.hparams
        path = hp.predict_path or hp.path
        panel = self._read(Path(path).expanduser()) if path else self._read()
        series, rows = [], []
        for i, v in enumerate(panel.values):
            series.append(self.scale(v))
            last = len(v) - self.window
            if last < 0:
                raise DataError(f"{panel.source}: series {panel.ids[i]!r} has {len(v)} steps, fewer than the "
                                f"window of {self.window}")
            rows.extend((i, s) for s in range(0, last + 1))
        self.predict_panel = panel
        self._index["predict"] = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        self._datasets["predict"] = WindowDataset(series, self._index["predict"], self.window, self.horizon,
                                                  self.num_targets, with_targets=False)

    def dataset(self, split: str) -> WindowDataset:
        if split in self._datasets:
            return self._datasets[split]
        if split == "test" and self.hparams.test_path:
            self._build_test_file()
        elif split == "predict":
            if "predict" not in self._datasets:
                self._setup_predict()
        else:
            self._build()
        return self._datasets[split]

    def origins(self, split: str) -> list[tuple[str, Any]]:
        """(series id, time of the last input step) of every window of ``split``, in loader order."""
        panel = self.split_panel(split)
        return [(panel.ids[i], panel.times[i][s + self.window - 1]) for i, s in self._index[split]]

    def target_times(self, split: str) -> list[np.ndarray]:
        """The times of the ``horizon`` forecast steps of every window of ``split``, in loader order; steps past
        the end of a series (the future, at prediction) continue its time axis at its usual step."""
        panel = self.split_panel(split)
        out = []
        for i, s in self._index[split]:
            times = panel.times[i]
            first = s + self.window
            known = times[first:first + self.horizon]
            if len(known) < self.horizon:
                known = np.concatenate([known, future_times(times, self.horizon - len(known))])
            out.append(known)
        return out

    def series_ids(self, split: str) -> list[str]:
        """The series id of every window of ``split``, in loader order."""
        panel = self.split_panel(split)
        return [panel.ids[i] for i in self._index[split][:, 0]]

    def split_panel(self, split: str) -> Panel:
        """The series the windows of ``split`` are cut from."""
        if split == "predict":
            return self.predict_panel
        return self.test_panel if split == "test" and self.test_panel is not None else self.panel

    def split_dataset(self, split: str) -> WindowDataset:
        return self.dataset(split)

    def evaluation_line(self, split: str) -> str:
        """What ``split`` ("val", "test", "predict") holds, in one line: the file, series, windows, which part."""
        windows = len(self.dataset(split))
        panel = self.split_panel(split)
        counts = f"{windows} windows of {self.window} -> {self.horizon} steps from {len(panel.ids)} series"
        if split != "predict" and panel is self.panel:
            return f"data: {'validation' if split == 'val' else split} split of {panel.source}, {counts}"
        future = "; the last windows forecast past its end" if split == "predict" else ""
        return f"data: {counts} in {panel.source} (all of it{future})"

    @property
    def has_test_split(self) -> bool:
        return self.hparams.test_fraction > 0 or bool(self.hparams.test_path)

    def describe(self) -> str:
        hp = self.hparams
        self._build()
        source = DATASETS[hp.dataset][3] if hp.path is None and hp.dataset in DATASETS else self.panel.source
        sizes = ", ".join(f"{name} {len(self._datasets[name])}" for name in ("train", "val", "test"))
        short = "; ".join(f"{len(ids)} series too short for a {name} window ({', '.join(ids[:3])}"
                          f"{', ...' if len(ids) > 3 else ''})" for name, ids in self.short.items() if ids)
        steps = sum(len(v) for v in self.panel.values)
        return (f"{source}: {len(self.panel.ids)} series, {steps} steps; windows of {self.window} -> {self.horizon} "
                f"ahead (stride {self.stride}, gap {hp.gap}): {sizes}; targets {', '.join(self.target_names)}; "
                f"inputs {self.num_variables}; {hp.scaler} scaler fitted on the training part"
                + (f"; {short}" if short else ""))


def split_lengths(length: int, val: float, test: float, gap: int = 0) -> Sequence[int]:
    """Sizes of the train / val / test parts of a series of ``length`` steps."""
    return [len(p) for p in chronological_split(length, val, test, gap)]


def future_times(times: np.ndarray, count: int) -> np.ndarray:
    """``count`` times after the end of ``times``: the calendar frequency pandas infers from the last steps
    (business days, weeks, quarters...), else the median step."""
    if np.issubdtype(np.asarray(times).dtype, np.datetime64):
        index = pd.DatetimeIndex(times[-30:])
        freq = pd.infer_freq(index) if len(index) >= 3 else None
        if freq is not None:
            return pd.date_range(index[-1], periods=count + 1, freq=freq)[1:].to_numpy()
    step = 1 if len(times) < 2 else np.median(np.diff(np.asarray(times)[-30:]))
    return np.asarray(times)[-1] + step * np.arange(1, count + 1)

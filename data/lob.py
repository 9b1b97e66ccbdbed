"""Limit-order-book windows for mid-price trend classification (TLOB, MLPLOB, DeepLOB).

Three sources, one data module (:class:`LOBData`):

- ``dataset="simulated"`` (the offline default): one LOBSTER-format day (message + orderbook CSV pair, 10 levels)
  SIMULATED by the Cont, Stoikov and Talreja (2010) order-book model ("A Stochastic Model for Order Book
  Dynamics", Operations Research 58(3)): unit limit orders arrive at distance i ticks from the opposite best quote
  with Poisson rate k / i^alpha, market orders with rate mu, and each resting order at distance i is cancelled with
  rate theta(i) (the paper's fitted values). Queue imbalance at the best quotes carries real information about the
  next mid-price move in this model. Written once in ``cache_root() / "lob_simulated"`` with a README.txt, then read
  by the same LOBSTER reader as user data.
- ``dataset="lobster"``: LOBSTER day files ``TICKER_DATE_34200000_57600000_{message,orderbook}_10.csv`` under
  ``root``, preprocessed as TLOB does (LeonardoBerti00/TLOB ``preprocessing/lobster.py``, MIT): event types 2, 5,
  6, 7 dropped; optional sampling every N shares or every T seconds; order id dropped; inter-event times; prices
  in dollars; order depth in ticks from the same-side best quote; executions' direction flipped; event types
  remapped to 0 limit, 1 cancel, 2 market; z-scores with statistics of the training part only (one mean/std for
  all book prices, one for all sizes, one per message column), kept as the ``normalisation`` argument so a
  checkpoint evaluates (``--data.test_root``) and predicts (``--data.predict_root``) other days with them.
  Days split 80/10/10 in time (one day: its events).
- ``dataset="fi2010"``: the FI-2010 benchmark text files (149 rows x N columns), NoAuction z-score, the standard
  split (``Train_Dst_NoAuction_ZScore_CF_7`` split 80/20 in time into train and validation; test = the ``Test_``
  files of CF_7, CF_8, CF_9); the 40 LOB rows or all 144 features; the file's labels for the horizon (rows 144-148
  for 10, 20, 30, 50, 100 events), minus one as both TLOB and LOBCAST do.

Labels (TLOB, ``utils/utils_data.labeling``): m- = mean mid-price of the last ``smooth`` (10) snapshots of the
window, m+ = the same mean ``horizon`` snapshots later, pct = (m+ - m-) / m-, alpha = mean(|pct|) / 2 over the split;
0 up (pct > alpha), 1 stationary, 2 down (pct < -alpha).
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from zoo.data.base import ZooDataModule, cache_root
from zoo.data.splits import chronological_split

from zoo.errors import DataError

__all__ = ["LOBData", "WindowDataset", "preprocess_lobster", "read_fi2010", "read_lobster_day", "simulate_cst_day",
           "tlob_labels"]

CLASS_NAMES = ["up", "stationary", "down"]
LEVELS = 10
DUMMY_PRICE = 9_999_999_999
FI2010_HORIZON_ROWS = {10: 144, 20: 145, 30: 146, 50: 147, 100: 148}
MESSAGE_COLUMNS = ("time", "event_type", "order_id", "size", "price", "direction")


# --- readers -----------------------------------------------------------------------------------------------------
def _read_numeric_csv(path: Path, columns: int, delimiter: str | None = ",") -> np.ndarray:
    """A headerless numeric table; DataError naming the file and line for a wrong field count or a non-number."""
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f) if delimiter == "," else (line.split() for line in f)
        for line_number, fields in enumerate(reader, start=1):
            if not fields:
                continue
            if len(fields) != columns:
                raise DataError(f"{path}, line {line_number}: {len(fields)} fields, expected {columns}")
            try:
                rows.append([float(v) for v in fields])
            except ValueError:
                bad = next(v for v in fields if not _is_number(v))
                raise DataError(f"{path}, line {line_number}: non-numeric field {bad!r}") from None
    if not rows:
        raise DataError(f"{path} is empty")
    return np.asarray(rows, dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_lobster_day(message_path: str | Path, orderbook_path: str | Path,
                     levels: int = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """One LOBSTER day: messages (N, 6) [time, event type, order id, size, price (USD x 10,000), direction] and
    the book after each message (N, 4 * levels) [ask price, ask size, bid price, bid size per level].

    Raises:
        DataError: row counts that differ, wrong field counts, non-numeric fields (file and line named), a crossed
            book (best ask <= best bid) or a dummy price at the best level.
    """
    message_path, orderbook_path = Path(message_path), Path(orderbook_path)
    messages = _read_numeric_csv(message_path, 6)
    book = _read_numeric_csv(orderbook_path, 4 * levels)
    if len(messages) != len(book):
        raise DataError(f"{message_path.name} has {len(messages)} rows but {orderbook_path.name} has {len(book)}; "
                        "a LOBSTER message file and its orderbook file have one row per event each")
    ask, bid = book[:, 0], book[:, 2]
    for name, column in (("best ask", ask), ("best bid", bid)):
        dummy = np.flatnonzero(np.abs(column) >= DUMMY_PRICE)
        if len(dummy):
            raise DataError(f"{orderbook_path}, line {dummy[0] + 1}: dummy price at the {name} (an empty side of the "
                            "book); the first level must be quoted on both sides")
    crossed = np.flatnonzero(ask <= bid)
    if len(crossed):
        i = crossed[0]
        raise DataError(f"{orderbook_path}, line {i + 1}: crossed book, best ask {ask[i]:.0f} <= best bid {bid[i]:.0f}")
    return messages, book


def read_fi2010(path: str | Path) -> np.ndarray:
    """An FI-2010 text file: (149, N), one column per snapshot (rows 0-39 the 10 levels as ask price, ask volume,
    bid price, bid volume; 40-143 hand-made features; 144-148 labels 1/2/3 for k = 1, 2, 3, 5, 10)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such FI-2010 file: {path}")
    with open(path) as f:
        first = f.readline().split()
    data = _read_numeric_csv(path, len(first), delimiter=None)
    if data.shape[0] != 149:
        raise DataError(f"{path}: {data.shape[0]} rows, but an FI-2010 file has 149 (40 LOB + 104 features + 5 "
                        "label rows) with one column per snapshot")
    return data


# --- TLOB preprocessing and labels -------------------------------------------------------------------------------
def preprocess_lobster(messages: np.ndarray, book: np.ndarray, sampling: str = "none", quantity: int = 500,
                       seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """TLOB's message/orderbook processing of one day -> (messages (n, 6) [inter-event time, event type 0/1/2,
    size, price USD, direction, depth ticks], book (n, 40) with prices in USD). Not yet normalised."""
    keep = ~np.isin(messages[:, 1], (2, 5, 6, 7))
    messages, book = messages[keep], book[keep]
    if sampling == "quantity":
        cumulative = np.cumsum(messages[:, 3])
        keep = cumulative % quantity < messages[:, 3]
    elif sampling == "time":
        bucket = np.floor(messages[:, 0] / seconds)
        keep = np.r_[True, bucket[1:] != bucket[:-1]]
    elif sampling == "none":
        keep = np.ones(len(messages), dtype=bool)
    else:
        raise DataError(f"--data.sampling must be 'none', 'quantity' or 'time', got {sampling!r}")
    messages, book = messages[keep], book[keep]
    if len(messages) < 3:
        raise DataError(f"only {len(messages)} events left after filtering and sampling")
    time = np.r_[messages[0, 0] - 34200.0, np.diff(messages[:, 0])]
    event, size, price, direction = messages[:, 1], messages[:, 3], messages[:, 4], messages[:, 5]
    index = np.arange(len(messages))
    previous = np.where(event == 1, index, np.maximum(index - 1, 0))
    depth = np.where(direction == 1, (book[previous, 2] - price) // 100, (price - book[previous, 0]) // 100)
    depth = np.maximum(depth, 0)
    direction = direction * np.where(event == 4, -1, 1)
    event_type = np.select([event == 1, event == 3, event == 4], [0, 1, 2], 0)
    out = np.stack([time, event_type, size, price / 10_000, direction, depth], axis=1)[1:]
    book = book[1:].copy()
    book[:, 0::2] /= 10_000
    return out, book


def tlob_labels(mid: np.ndarray, horizon: int, smooth: int = 10) -> np.ndarray:
    """TLOB labels of every start j: mean mid over [j, j + smooth) vs over [j + horizon, j + horizon + smooth);
    (len(mid) - horizon - smooth + 1,) in {0 up, 1 stationary, 2 down} with alpha = mean(|pct|) / 2."""
    smooth = min(smooth, horizon)
    if len(mid) < horizon + smooth:
        raise DataError(f"{len(mid)} snapshots are too few for horizon {horizon} (and smoothing {smooth})")
    means = np.convolve(mid, np.ones(smooth) / smooth, mode="valid")  # means[j] = mean(mid[j : j + smooth])
    past, future = means[:-horizon], means[horizon:]
    pct = (future - past) / past
    alpha = np.abs(pct).mean() / 2
    return np.where(pct < -alpha, 2, np.where(pct > alpha, 0, 1)).astype(np.int64)


class WindowDataset(Dataset):
    """Window i = rows [i, i + seq_len) of ``x`` (N, F), labelled ``y[i]``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seq_len: int):
        if len(y) < 1 or len(y) + seq_len - 1 > len(x):
            raise DataError(f"a window of {seq_len} snapshots does not fit this split ({len(x)} snapshots, "
                            f"{len(y)} labels); use a shorter --data.seq_len or more data")
        self.x, self.y, self.seq_len = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y), seq_len

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i:i + self.seq_len], self.y[i]


# --- the simulated default ---------------------------------------------------------------------------------------
CST_PARAMETERS = {"k": 1.92, "alpha": 0.52, "mu": 0.94,
                  "theta": (0.71, 0.81, 0.68, 0.56, 0.47, 0.47, 0.40, 0.37, 0.30, 0.27)}


def simulate_cst_day(folder: str | Path, events: int = 40_000, seed: int = 0, ticker: str = "SIMCST",
                     date: str = "2012-06-21", start_price: int = 1_000_000, lot: int = 100) -> tuple[Path, Path]:
    """Write a LOBSTER-format day simulated by the Cont-Stoikov-Talreja (2010) model; returns the two paths.

    Unit orders of ``lot`` shares on a 1-cent grid (100 in LOBSTER price units); limit orders at distance
    i = 1..10 ticks from the opposite best quote (rate k / i^alpha per side), market orders (rate mu per side),
    cancellation of each resting order at distance i (rate theta(i)); rates per second as fitted in the paper.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    p = CST_PARAMETERS
    distance = np.arange(1, LEVELS + 1)
    limit_rate = p["k"] / distance ** p["alpha"]
    theta = np.asarray(p["theta"])
    # queues[side][price] = resting orders (0 ask, 1 bid), started 5 orders deep at 10 levels each side
    asks = {start_price + 100 * i: 5 for i in range(1, LEVELS + 1)}
    bids = {start_price - 100 * i: 5 for i in range(0, LEVELS)}
    time, order_id = 34200.0, 1
    message_rows, book_rows = [], []

    def snapshot() -> list[int]:
        ask_prices, bid_prices = sorted(asks)[:LEVELS], sorted(bids, reverse=True)[:LEVELS]
        row = []
        for level in range(LEVELS):
            a = ask_prices[level] if level < len(ask_prices) else None
            b = bid_prices[level] if level < len(bid_prices) else None
            row += [a if a else DUMMY_PRICE, asks[a] * lot if a else 0, b if b else -DUMMY_PRICE,
                    bids[b] * lot if b else 0]
        return row

    while len(message_rows) < events:
        best_ask, best_bid = min(asks), max(bids)
        ask_depth = [asks.get(best_bid + 100 * i, 0) for i in distance]  # asks at distance i from the best bid
        bid_depth = [bids.get(best_ask - 100 * i, 0) for i in distance]
        cancel_ask, cancel_bid = theta * ask_depth, theta * bid_depth
        rates = np.concatenate([limit_rate, limit_rate, [p["mu"], p["mu"]], cancel_ask, cancel_bid])
        total = rates.sum()
        time += rng.exponential(1 / total)
        choice = rng.choice(len(rates), p=rates / total)
        if choice < LEVELS:  # sell limit order at best_bid + i ticks
            price, direction, event = best_bid + 100 * distance[choice], -1, 1
            asks[price] = asks.get(price, 0) + 1
        elif choice < 2 * LEVELS:  # buy limit order
            price, direction, event = best_ask - 100 * distance[choice - LEVELS], 1, 1
            bids[price] = bids.get(price, 0) + 1
        elif choice < 2 * LEVELS + 2:  # market order: executes one resting order at the opposite best
            if choice == 2 * LEVELS:  # market buy hits the best ask (resting sell order: direction -1)
                if len(asks) == 1 and asks[best_ask] == 1:
                    continue
                price, direction, event = best_ask, -1, 4
                asks[price] -= 1
            else:
                if len(bids) == 1 and bids[best_bid] == 1:
                    continue
                price, direction, event = best_bid, 1, 4
                bids[price] -= 1
        else:  # cancellation of a resting order
            i = choice - 2 * LEVELS - 2
            if i < LEVELS:
                price, direction, event, side = best_bid + 100 * distance[i], -1, 3, asks
            else:
                price, direction, event, side = best_ask - 100 * distance[i - LEVELS], 1, 3, bids
            if len(side) == 1 and side[price] == 1:
                continue
            side[price] -= 1
        for side in (asks, bids):
            if side.get(price) == 0:
                del side[price]
        message_rows.append([round(time, 9), event, order_id, lot, price, direction])
        order_id += 1
        book_rows.append(snapshot())
    stem = f"{ticker}_{date}_34200000_57600000"
    message_path, orderbook_path = folder / f"{stem}_message_10.csv", folder / f"{stem}_orderbook_10.csv"
    np.savetxt(message_path, np.asarray(message_rows), delimiter=",", fmt=["%.9f"] + ["%d"] * 5)
    np.savetxt(orderbook_path, np.asarray(book_rows, dtype=np.int64), delimiter=",", fmt="%d")
    (folder / "README.txt").write_text(
        "SIMULATED limit-order-book day in the LOBSTER format (not market data).\n"
        "Cont, Stoikov and Talreja (2010), 'A Stochastic Model for Order Book Dynamics', Operations Research 58(3):\n"
        f"Poisson limit orders (k={p['k']}, alpha={p['alpha']}), market orders (mu={p['mu']}) and cancellations\n"
        f"(theta={list(p['theta'])}) per level, unit orders of {lot} shares, 1-cent ticks; {events} events, "
        f"seed {seed}.\nWritten by zoo.data.lob.simulate_cst_day.\n")
    return message_path, orderbook_path


# --- the data module ---------------------------------------------------------------------------------------------
BOOK_GROUPS = (tuple(range(0, 40, 2)), tuple(range(1, 40, 2)))  # every book price, every book size
MESSAGE_GROUPS = ((0,), (2,), (3,), (5,))  # inter-event time, size, price, depth


def fit_zscore(train: np.ndarray, columns: Sequence[Sequence[int]]) -> list[list[float]]:
    """[mean, std] of every group of columns of ``train`` (one pair per group, as TLOB normalises)."""
    stats = []
    for group in columns:
        mean, std = float(train[:, list(group)].mean()), float(train[:, list(group)].std())
        stats.append([mean, std if std > 0 else 1.0])
    return stats


def apply_zscore(array: np.ndarray, columns: Sequence[Sequence[int]], stats: Sequence[Sequence[float]]
                 ) -> np.ndarray:
    """``array`` with every group of columns z-scored by its [mean, std] of ``stats``."""
    out = array.copy()
    for group, (mean, std) in zip(columns, stats, strict=True):
        out[:, list(group)] = (out[:, list(group)] - mean) / std
    return out


class LOBData(ZooDataModule):
    """Windows of order-book snapshots labelled with the mid-price trend at one horizon.

    Args:
        dataset: "simulated" (offline default), "lobster" or "fi2010".
        root: the folder of the LOBSTER day files or of the FI-2010 text files (searched recursively).
        horizon: snapshots ahead (10, 20, 50, 100; FI-2010 also 30).
        seq_len: snapshots per window (128 TLOB, 384 MLPLOB, 100 DeepLOB).
        features: "all" (LOBSTER: 40 book + 6 message columns; FI-2010: 144) or "lob" (the 40 book columns).
        sampling / sampling_quantity / sampling_seconds: LOBSTER sampling ("none", "quantity": every N shares,
            "time": the first event of every T seconds).
        simulated_events: events of the simulated day.
        val / test: fractions of a single LOBSTER day (several days are split 80/10/10 by day).
        test_root: a folder of LOBSTER day files (or FI-2010 text files) evaluated whole by ``zoo test``: every
            labelled window of its days, normalised with the run's statistics, ``root`` not read. Labels follow
            TLOB's protocol on that data (alpha from its own price changes, as for every split).
        predict_root: a folder of day files ``zoo predict`` scores, every window (the last ``horizon`` ones, whose
            future is not in the files, too); None: the test windows of the run's own data.
        normalisation: the z-score statistics of the training part ({"book": [[mean, std] of prices, of sizes],
            "message": [[mean, std] per message column]}); set by the module, restored from checkpoints.
        train_class_counts: windows per class in the training part (the majority baseline on other data); set by
            the module, restored from checkpoints.
    """

    in_memory = True
    num_classes = 3
    class_names = CLASS_NAMES

    def __init__(self, dataset: str = "simulated", root: str | None = None, horizon: int = 10, seq_len: int = 128,
                 features: str = "all", sampling: str = "none", sampling_quantity: int = 500,
                 sampling_seconds: float = 1.0, simulated_events: int = 40_000, val: float = 0.1, test: float = 0.1,
                 batch_size: int = 128, num_workers: int | None = None, seed: int = 0, test_root: str | None = None,
                 predict_root: str | None = None, normalisation: dict[str, list[list[float]]] | None = None,
                 train_class_counts: list[int] | None = None):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        if dataset not in ("simulated", "lobster", "fi2010"):
            raise DataError(f"--data.dataset must be 'simulated', 'lobster' or 'fi2010', got {dataset!r}")
        if features not in ("all", "lob"):
            raise DataError(f"--data.features must be 'all' or 'lob', got {features!r}")
        horizons = FI2010_HORIZON_ROWS if dataset == "fi2010" else (10, 20, 50, 100)
        if horizon not in horizons:
            known = ", ".join(map(str, horizons))
            raise DataError(f"horizon {horizon} is not labelled for {dataset}; horizons: {known}")
        if dataset != "simulated" and root is None:
            raise DataError(f"--data.dataset {dataset} needs --data.root (the folder of its files)")
        self.dataset, self.root, self.horizon, self.seq_len, self.features = dataset, root, horizon, seq_len, features
        self.sampling, self.sampling_quantity, self.sampling_seconds = sampling, sampling_quantity, sampling_seconds
        self.simulated_events, self.val, self.test = simulated_events, val, test
        self.eval_batch_size = batch_size * 4
        self.splits: dict[str, WindowDataset] = {}
        self.sources: dict[str, str] = {}
        self.normalisation = normalisation
        self.train_class_counts = train_class_counts

    # -- sources
    def _lobster_days(self, folder: Path) -> list[tuple[Path, Path]]:
        messages = sorted(folder.rglob("*_message_*.csv"))
        if not messages:
            raise DataError(f"no LOBSTER message files (*_message_10.csv) under {folder}")
        pairs = []
        for m in messages:
            o = m.with_name(m.name.replace("_message_", "_orderbook_"))
            if not o.is_file():
                raise DataError(f"{m} has no orderbook file beside it (expected {o.name})")
            pairs.append((m, o))
        return pairs

    def _simulated_folder(self) -> Path:
        folder = cache_root() / "lob_simulated" / f"cst_{self.simulated_events}_seed0"
        if not (folder / "README.txt").is_file():
            # written beside and renamed into place: processes that start together (DDP) never read half a file
            staging = folder.with_name(f".{folder.name}.{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            simulate_cst_day(staging, events=self.simulated_events, seed=0)
            try:
                os.replace(staging, folder)
            except OSError:  # another process put its copy there first: the same seeded day
                if not (folder / "README.txt").is_file():
                    raise
                shutil.rmtree(staging, ignore_errors=True)
        return folder

    def _lobster_split_arrays(self, folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
        days = [preprocess_lobster(*read_lobster_day(m, o), self.sampling, self.sampling_quantity,
                                   self.sampling_seconds) for m, o in self._lobster_days(folder)]
        if len(days) >= 3:  # split by days, as TLOB (int-rounded 80/10/10)
            n_train = int(len(days) * 0.8)
            n_val = max(1, int(len(days) * 0.1))
            groups = [days[:n_train], days[n_train:n_train + n_val], days[n_train + n_val:]]
            return [(np.concatenate([d[0] for d in g]), np.concatenate([d[1] for d in g])) for g in groups]
        messages = np.concatenate([d[0] for d in days])
        book = np.concatenate([d[1] for d in days])
        split = chronological_split(len(messages), self.val, self.test)
        return [(messages[idx], book[idx]) for idx in split]

    def _lobster_windows(self, folder: Path) -> dict[str, WindowDataset]:
        arrays = self._lobster_split_arrays(folder)
        if self.normalisation is None:  # fitted on the training part only, and kept with the run
            self.normalisation = {"book": fit_zscore(arrays[0][1], BOOK_GROUPS),
                                  "message": fit_zscore(arrays[0][0], MESSAGE_GROUPS)}
            self.hparams["normalisation"] = self.normalisation
        return {name: self._labelled_windows(message, book, name)
                for name, (message, book) in zip(("train", "val", "test"), arrays, strict=True)}

    def _labelled_windows(self, messages: np.ndarray, book: np.ndarray, name: str, every: bool = False
                          ) -> WindowDataset:
        """Windows of one part, normalised with the run's statistics and labelled by TLOB's rule; ``every``: also
        the last ``horizon`` windows, whose label is unknown (-1), for prediction."""
        label = tlob_labels((book[:, 0] + book[:, 2]) / 2, self.horizon)
        stats = self.normalisation
        book = apply_zscore(book, BOOK_GROUPS, stats["book"])
        x = book if self.features == "lob" else np.concatenate(
            [book, apply_zscore(messages, MESSAGE_GROUPS, stats["message"])], axis=1)
        n = len(x) - self.horizon - self.seq_len + 1  # windows with a label
        offset = self.seq_len - min(10, self.horizon)
        if n < 1:
            raise DataError(f"the {name} split has {len(x)} snapshots: too few for windows of {self.seq_len} "
                            f"and horizon {self.horizon}")
        y = label[offset:offset + n]
        if every:
            y = np.concatenate([y, np.full(len(x) - self.seq_len + 1 - n, -1, dtype=np.int64)])
        return WindowDataset(x, y, self.seq_len)

    def _folder_windows(self, folder: Path, name: str, every: bool = False) -> WindowDataset:
        """Every window of the files under ``folder`` (its days joined in order; FI-2010: every text file)."""
        if self.dataset == "fi2010":
            files = sorted(folder.rglob("*.txt"))
            if not files:
                raise DataError(f"no FI-2010 text files (*.txt) under {folder}")
            part = np.hstack([read_fi2010(f) for f in files])
            rows = 40 if self.features == "lob" else 144
            y = part[FI2010_HORIZON_ROWS[self.horizon], self.seq_len - 1:].astype(np.int64) - 1
            return WindowDataset(part[:rows].T, y, self.seq_len)
        if self.normalisation is None:
            raise DataError(f"{folder}: LOB windows are normalised with the statistics of a trained run's training "
                            "part; give --data.normalisation or use the checkpoint (zoo test|predict --ckpt)")
        days = [preprocess_lobster(*read_lobster_day(m, o), self.sampling, self.sampling_quantity,
                                   self.sampling_seconds) for m, o in self._lobster_days(folder)]
        return self._labelled_windows(np.concatenate([d[0] for d in days]), np.concatenate([d[1] for d in days]),
                                      name, every)

    def _fi2010_windows(self, folder: Path) -> dict[str, WindowDataset]:
        def find(name: str) -> Path:
            hits = sorted(folder.rglob(name))
            if not hits:
                raise DataError(f"{name} not found under {folder} (the FI-2010 NoAuction z-score files)")
            return hits[0]

        train_file = read_fi2010(find("Train_Dst_NoAuction_ZScore_CF_7.txt"))
        test = np.hstack([read_fi2010(find(f"Test_Dst_NoAuction_ZScore_CF_{k}.txt")) for k in (7, 8, 9)])
        cut = int(train_file.shape[1] * 0.8)
        rows = 40 if self.features == "lob" else 144
        label_row = FI2010_HORIZON_ROWS[self.horizon]
        out = {}
        for name, part in (("train", train_file[:, :cut]), ("val", train_file[:, cut:]), ("test", test)):
            y = part[label_row, self.seq_len - 1:].astype(np.int64) - 1  # the label of each window's last column
            out[name] = WindowDataset(part[:rows].T, y, self.seq_len)
        return out

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        statistics_known = self.dataset == "fi2010" or self.normalisation is not None
        if stage == "predict" and hp.predict_root:
            if not statistics_known:
                self._own_splits()
            self.splits["predict"] = self._folder_windows(Path(hp.predict_root), "predict", every=True)
            self.sources["predict"] = str(hp.predict_root)
            return
        if stage == "test" and hp.test_root and statistics_known and "test" not in self.splits:
            self._test_root_windows()  # a trained run's statistics: the test folder alone
            return
        self._own_splits()

    def _own_splits(self) -> None:
        if "train" in self.splits:
            return
        if self.dataset == "fi2010":
            own = self._fi2010_windows(Path(self.root))
            source = f"FI-2010 NoAuction z-score in {self.root}"
        else:
            folder = self._simulated_folder() if self.dataset == "simulated" else Path(self.root)
            own = self._lobster_windows(folder)
            source = str(folder)
        if self.hparams.test_root:
            own.pop("test")
        self.splits.update(own)
        self.sources.update(dict.fromkeys(own, source))
        if self.train_class_counts is None:  # kept with the run: the majority baseline of other data
            self.train_class_counts = np.bincount(own["train"].y.numpy(), minlength=3).tolist()
            self.hparams["train_class_counts"] = self.train_class_counts
        if self.hparams.test_root and "test" not in self.splits:
            self._test_root_windows()

    def _test_root_windows(self) -> None:
        self.splits["test"] = self._folder_windows(Path(self.hparams.test_root), "test")
        self.sources["test"] = str(self.hparams.test_root)

    @property
    def num_features(self) -> int:
        return {"lob": 40}.get(self.features, 144 if self.dataset == "fi2010" else 46)

    def describe(self) -> str:
        self.setup()
        source = {"simulated": "SIMULATED LOBSTER-format day (Cont-Stoikov-Talreja 2010 model)",
                  "lobster": f"LOBSTER files in {self.root}", "fi2010": f"FI-2010 NoAuction z-score in {self.root}"}
        sizes = "/".join(str(len(self.splits[s])) for s in ("train", "val", "test"))
        counts = np.bincount(self.splits["train"].y.numpy(), minlength=3)
        return (f"{source[self.dataset]}: train/val/test {sizes} windows of {self.seq_len} x {self.num_features}, "
                f"horizon {self.horizon}, classes up/stationary/down (train {counts.tolist()})")

    def split_dataset(self, split: str) -> WindowDataset:
        """The windows of ``split``; without ``predict_root``, predictions are made on the test windows."""
        if split == "predict" and "predict" not in self.splits:
            split = "test"
        if split not in self.splits:
            self.setup(split)
        return self.splits[split]

    def evaluation_line(self, split: str) -> str:
        """What ``split`` ("val", "test", "predict") holds, in one line: the source, the windows, which part."""
        own_predict = split == "predict" and "predict" not in self.splits
        windows = self.split_dataset(split)
        key = "test" if own_predict else split
        counts = f"{len(windows)} windows of {self.seq_len} x {self.num_features}"
        if (split == "predict" and not own_predict) or (split == "test" and self.hparams.test_root):
            return f"data: {counts} in {self.sources[key]} (all of it)"
        line = f"data: {'validation' if key == 'val' else key} split of {self.sources[key]}, {counts}"
        return line + (" (no --data.predict_root FOLDER: the run's own test split is predicted)" if own_predict
                       else "")

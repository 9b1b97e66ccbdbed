"""LOB data: TLOB labels on a hand-made mid-price path, the LOBSTER and FI-2010 readers on files in the real
formats, TLOB's preprocessing, and bad input answered with the file and line."""

from __future__ import annotations

import numpy as np
import pytest
from zoo.data.lob import (
    LOBData,
    WindowDataset,
    preprocess_lobster,
    read_fi2010,
    read_lobster_day,
    simulate_cst_day,
    tlob_labels,
)

from zoo.errors import DataError


def test_tlob_labels_on_a_known_path():
    mid = np.r_[np.full(20, 100.0), np.linspace(100, 110, 20), np.full(20, 110.0), np.linspace(110, 100, 20)]
    labels = tlob_labels(mid, horizon=10, smooth=10)
    assert len(labels) == len(mid) - 10 - 10 + 1
    assert labels[0] == 1  # flat -> flat
    assert labels[15] == 0  # rising ahead: up
    assert labels[55] == 2  # falling ahead: down


def test_simulated_day_reads_back_and_preprocesses(tmp_path):
    message, orderbook = simulate_cst_day(tmp_path, events=600, seed=1)
    assert "SIMULATED" in (tmp_path / "README.txt").read_text()
    messages, book = read_lobster_day(message, orderbook)
    assert messages.shape == (600, 6) and book.shape == (600, 40)
    assert (book[:, 0] > book[:, 2]).all()
    out, book_usd = preprocess_lobster(messages, book)
    assert out.shape[1] == 6 and len(out) == len(book_usd) == 599
    assert set(np.unique(out[:, 1])) <= {0, 1, 2} and (out[:, 5] >= 0).all()
    assert book_usd[0, 0] < 1000  # dollars


def test_lobster_errors_name_file_and_line(tmp_path):
    message, orderbook = simulate_cst_day(tmp_path, events=50, seed=2)
    lines = orderbook.read_text().splitlines()
    orderbook.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="has 50 rows but"):
        read_lobster_day(message, orderbook)
    fields = lines[3].split(",")
    fields[0], fields[2] = fields[2], fields[0]  # crossed at line 4
    orderbook.write_text("\n".join([*lines[:3], ",".join(fields), *lines[4:]]) + "\n")
    with pytest.raises(DataError, match=r"line 4: crossed book"):
        read_lobster_day(message, orderbook)
    text = message.read_text().splitlines()
    text[6] = text[6].replace(",1,", ",x,", 1) if ",1," in text[6] else "34200.1,x,1,100,1000000,1"
    message.write_text("\n".join(text) + "\n")
    orderbook.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 7: non-numeric field 'x'"):
        read_lobster_day(message, orderbook)


def test_fi2010_reader_and_split(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("Train_Dst_NoAuction_ZScore_CF_7.txt", 200), *((f"Test_Dst_NoAuction_ZScore_CF_{k}.txt", 60)
                                                                  for k in (7, 8, 9))):
        data = rng.normal(size=(149, n))
        data[144:] = rng.integers(1, 4, size=(5, n))
        np.savetxt(tmp_path / name, data)
    d = LOBData(dataset="fi2010", root=str(tmp_path), horizon=100, seq_len=10, features="lob")
    d.setup()
    assert [len(d.splits[s]) for s in ("train", "val", "test")] == [151, 31, 171]
    x, y = d.splits["train"][0]
    assert x.shape == (10, 40) and 0 <= int(y) <= 2
    bad = tmp_path / "bad.txt"
    np.savetxt(bad, rng.normal(size=(100, 5)))
    with pytest.raises(DataError, match="100 rows"):
        read_fi2010(bad)
    with pytest.raises(DataError, match="horizon 7 is not labelled"):
        LOBData(dataset="fi2010", root=str(tmp_path), horizon=7)


def test_window_longer_than_a_split():
    with pytest.raises(DataError, match="does not fit"):
        WindowDataset(np.zeros((5, 3)), np.zeros(3, dtype=np.int64), seq_len=10)

"""PhysioNet 2019 sepsis files: the reader and its errors, hourly features, patient splits, the simulated cohort."""

import math

import numpy as np
import pytest
import torch
from zoo.data.icu import (
    COLUMNS,
    FEATURE_NAMES,
    LABEL,
    SepsisData,
    find_patient_files,
    forward_fill,
    hour_encoding,
    hourly_features,
    pad_patients,
    read_psv,
    sirs_score,
    write_psv,
    write_simulated_cohort,
)

from zoo.errors import DataError

torch.set_num_threads(1)
HEADER = "|".join(COLUMNS)


def rows(hours=5, label_from=None):
    values = np.full((hours, len(COLUMNS)), np.nan)
    values[:, COLUMNS.index("HR")] = 80 + np.arange(hours)
    values[:, COLUMNS.index("ICULOS")] = np.arange(1, hours + 1)
    values[:, -1] = 0
    if label_from is not None:
        values[label_from:, -1] = 1
    return values


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_simulated_cohort(tmp_path_factory.mktemp("icu") / "cohort", num_patients=120, seed=1)


def test_round_trip_of_a_challenge_file(tmp_path):
    values = rows(6, label_from=3)
    values[2, COLUMNS.index("Lactate")] = 2.5
    (tmp_path / "training_setA").mkdir()
    write_psv(tmp_path / "training_setA" / "p000001.psv", values)
    text = (tmp_path / "training_setA" / "p000001.psv").read_text().splitlines()
    assert text[0] == HEADER and text[1].split("|")[1] == "NaN"
    np.testing.assert_array_equal(read_psv(tmp_path / "training_setA" / "p000001.psv"), values)
    assert [f.name for f in find_patient_files(tmp_path)] == ["p000001.psv"]


def test_a_file_without_the_label_reads_for_prediction(tmp_path):
    path = tmp_path / "p1.psv"
    path.write_text("|".join(COLUMNS[:-1]) + "\n" + "|".join(["70"] + ["NaN"] * 39) + "\n")
    values = read_psv(path, require_label=False)
    assert values.shape == (1, 41) and math.isnan(values[0, -1]) and values[0, 0] == 70
    with pytest.raises(DataError, match="missing SepsisLabel"):
        read_psv(path)


@pytest.mark.parametrize("header, message", [
    (HEADER.replace("|Lactate", ""), "missing Lactate"),
    (HEADER + "|Extra", "unexpected Extra"),
    (HEADER.replace("HR|O2Sat", "O2Sat|HR"), "another order"),
])
def test_a_wrong_header_lists_the_names(tmp_path, header, message):
    path = tmp_path / "p1.psv"
    path.write_text(header + "\n" + "|".join(["1"] * len(header.split("|"))) + "\n")
    with pytest.raises(DataError, match=rf"p1.psv, line 1: .*{message}"):
        read_psv(path)


def test_bad_cells_and_labels_name_file_line_and_column(tmp_path):
    path = tmp_path / "p2.psv"
    write_psv(path, rows(4))
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("82", "eighty-two", 1)
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"p2.psv, line 4, column HR: 'eighty-two' is not a number"):
        read_psv(path)
    values = rows(4)
    values[2, -1] = 2
    write_psv(path, values)
    with pytest.raises(DataError, match=rf"line 4, column {LABEL}: 2.0; the label must be 0 or 1"):
        read_psv(path)
    values = rows(4, label_from=1)
    values[3, -1] = 0
    write_psv(path, values)
    with pytest.raises(DataError, match="line 5, column SepsisLabel: the label goes back from 1 to 0"):
        read_psv(path)


def test_empty_files_and_folders_are_refused(tmp_path):
    (tmp_path / "empty.psv").write_text("")
    with pytest.raises(DataError, match=r"empty\.psv: empty patient file"):
        read_psv(tmp_path / "empty.psv")
    (tmp_path / "header.psv").write_text(HEADER + "\n")
    with pytest.raises(DataError, match=r"header\.psv: empty patient file"):
        read_psv(tmp_path / "header.psv")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"no \.psv files"):
        find_patient_files(tmp_path / "none")


def test_hourly_features_raw_indicator_count_and_derived():
    values = rows(4)
    values[:, COLUMNS.index("HR")] = [95, np.nan, 80, np.nan]
    values[:, COLUMNS.index("Temp")] = [38.5, np.nan, np.nan, 36.5]
    values[:, COLUMNS.index("O2Sat")] = [np.nan, 96, 98, np.nan]
    values[:, COLUMNS.index("SaO2")] = [np.nan, 94, np.nan, 90]
    features = hourly_features(values)
    assert features.shape == (4, 108) and len(FEATURE_NAMES) == 108
    col = FEATURE_NAMES.index
    np.testing.assert_array_equal(features[:, col("hr_raw")], [95, np.nan, 80, np.nan])
    np.testing.assert_array_equal(features[:, col("hr_indicator")], [0, 1, 0, 1])
    np.testing.assert_array_equal(features[:, col("hr_count")], [1, 1, 2, 2])
    np.testing.assert_array_equal(features[:, col("o2sat_raw")], [np.nan, 95, 98, 90])  # SaO2 merged by the mean
    # SIRS on carried-forward values: fever + tachycardia, then fever only, then nothing, then nothing
    np.testing.assert_array_equal(features[:, col("SIRS_derived")], [2, 2, 1, 0])
    np.testing.assert_array_equal(forward_fill(np.array([[np.nan], [1.0], [np.nan]]))[:, 0], [np.nan, 1, 1])
    assert sirs_score(*(np.array([v]) for v in (35.5, 91, 18, 30, 13)))[0] == 4


def test_hour_encoding_matches_the_models():
    from zoo.medical.sepsis_transformer import hour_encoding as model_encoding

    hours = np.arange(1, 50, dtype=float)
    np.testing.assert_allclose(hour_encoding(hours), model_encoding(torch.tensor(hours)).numpy(), atol=1e-6)


def test_the_simulated_cohort_looks_like_the_challenge(cohort):
    assert "SIMULATED" in (cohort / "README.txt").read_text()
    patients = [read_psv(f) for f in find_patient_files(cohort)]
    assert len(patients) == 120
    septic = [p for p in patients if p[:, -1].any()]
    assert 0.05 < len(septic) / len(patients) < 0.25
    for p in septic:  # shifted label: 1 from 6 h before onset to the end, and onset at least 10 h in
        first = int(np.argmax(p[:, -1]))
        assert p[first:, -1].all() and first >= 4
    rows_all = np.concatenate(patients)
    measured = ~np.isnan(rows_all)
    assert measured[:, COLUMNS.index("HR")].mean() > 0.85
    assert 0.15 < measured[:, COLUMNS.index("Temp")].mean() < 0.5
    assert measured[:, COLUMNS.index("Lactate")].mean() < 0.15
    assert measured[:, COLUMNS.index("ICULOS")].all()


def test_patient_splits_statistics_from_train_and_padded_batches(cohort):
    data = SepsisData(root=str(cohort), val=0.2, test=0.2, batch_size=8)
    data.setup("fit")
    names = {n: {p["patient"] for p in d.patients} for n, d in data.datasets.items()}
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    assert all(data.septic_counts[n] >= 1 for n in ("train", "val", "test"))
    train_rows = np.concatenate([p["features"] for p in data.datasets["train"].patients])
    hr = FEATURE_NAMES.index("hr_raw")
    assert data.feature_mean[hr] == pytest.approx(np.nanmean(train_rows[:, hr]), rel=1e-5)
    ind = FEATURE_NAMES.index("hr_indicator")
    assert data.feature_mean[ind] == 0 and data.feature_std[ind] == 1
    assert 0 < data.positive_fraction < 0.3
    batch = next(iter(data.train_dataloader()))
    lengths = batch["lengths"]
    assert batch["features"].shape == (8, int(lengths.max()), 108) and batch["time"].shape[-1] == 10
    short = int(lengths.argmin())
    assert torch.isnan(batch["labels"][short, lengths[short]:]).all()
    assert not torch.isnan(batch["labels"][short, : lengths[short]]).any()
    assert "septic" in data.describe() and data.in_features == 118


def test_the_default_is_simulated_and_written_once(tmp_path):
    data = SepsisData(num_patients=40)
    data.prepare_data()
    first = sorted(data.source().rglob("*.psv"))[0].read_text()
    data.setup("fit")
    assert "SIMULATED" in data.describe() and len(data.datasets["train"]) == 32
    assert sorted(data.source().rglob("*.psv"))[0].read_text() == first


def test_collate_pads_with_nan_labels():
    patient = {"features": np.zeros((3, 108), np.float32), "time": np.zeros((3, 10), np.float32),
               "labels": np.array([0, 0, 1], np.float32), "sirs": np.zeros(3, np.float32), "patient": "p1"}
    other = {**patient, "features": np.zeros((5, 108), np.float32), "time": np.zeros((5, 10), np.float32),
             "labels": np.zeros(5, np.float32), "sirs": np.zeros(5, np.float32), "patient": "p2"}
    batch = pad_patients([patient, other])
    assert batch["lengths"].tolist() == [3, 5] and batch["patient"] == ["p1", "p2"]
    assert torch.isnan(batch["labels"][0, 3:]).all() and torch.isnan(batch["features"][0, 3:]).all()

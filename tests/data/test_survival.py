"""Survival data: a real lifelines cohort through the CSV reader, per-patient stratified and k-fold splits, the
scaler fitted on training rows only, BioFusionNet's multimodal layout (the released column names, padded patch
sets with a mask), and named errors for bad times, events, columns, missing patients and wrong feature widths."""

import numpy as np
import pandas as pd
import pytest
import torch
from zoo.data.survival import MultimodalSurvivalData, SurvivalTableData, collate, read_multimodal

from zoo.errors import DataError


def test_gbsg2_cohort_reads_splits_and_scales_on_training_rows():
    data = SurvivalTableData(dataset="gbsg2", batch_size=32)
    sizes = {k: len(v) for k, v in data.sets.items()}
    assert sum(sizes.values()) == 686 and sizes["test"] == pytest.approx(0.2 * 686, abs=1)
    assert data.model_inputs == {"in_features": 9}  # 5 numeric + one-hot horTh, menostat and tgrade (x2)
    train_x = data.sets["train"].inputs[0]
    np.testing.assert_allclose(train_x.mean(0), 0, atol=1e-4)  # standardised with training statistics only
    events = {k: float(v.event.mean()) for k, v in data.sets.items()}
    assert max(events.values()) - min(events.values()) < 0.05  # stratified by event
    batch = next(iter(data.train_dataloader()))
    assert batch["inputs"][0].shape == (32, 9) and batch["time"].shape == batch["event"].shape == (32,)
    assert len(data.horizons) == 3 and data.horizons == sorted(data.horizons)


def test_k_fold_test_parts_cover_every_patient_once():
    tests = [SurvivalTableData(dataset="rossi", folds=5, fold=k).split.test for k in range(5)]
    joined = np.sort(np.concatenate(tests))
    np.testing.assert_array_equal(joined, np.arange(432))
    with pytest.raises(DataError, match=r"fold must be in 0\.\.4"):
        SurvivalTableData(dataset="rossi", folds=5, fold=5)


@pytest.mark.parametrize("column, value, message", [
    ("time", -1.0, "row 3: time -1.0 is missing or negative"),
    ("time", np.nan, "row 3: time nan is missing or negative"),
    ("event", 2, "row 3: event 2 is not 0 or 1"),
])
def test_bad_survival_values_are_named(tmp_path, column, value, message):
    frame = pd.DataFrame({"time": np.arange(1.0, 11.0), "event": [1, 0] * 5, "x": np.arange(10.0)})
    frame.loc[2, column] = value
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=message):
        SurvivalTableData(str(tmp_path / "t.csv"))
    with pytest.raises(DataError, match="no column 'days'"):
        SurvivalTableData(str(tmp_path / "t.csv"), time_column="days")


def _layout(root, ids=("A", "B", "C", "D", "E", "F"), patches=(3, 5, 2, 4, 3, 6), width=384, released_names=True):
    rng = np.random.default_rng(0)
    pd.DataFrame({"PATIENT_ID": ids, "OS_STATUS": ["1:DECEASED", "0:LIVING"] * (len(ids) // 2),
                  "OS_MONTHS": np.linspace(12, 72, len(ids))}).to_csv(root / "survival_data.csv", index=False)
    genes = pd.DataFrame(rng.normal(size=(len(ids), 138)), columns=[f"G{i}" for i in range(138)])
    genes.insert(0, "PATIENT_ID", ids)
    genes.to_csv(root / "gene_expression.csv", index=False)
    ln, size = ("LN_Status_new", "Tumor_Size_new") if released_names else ("LN_Status", "Tumor_Size")
    pd.DataFrame({"PATIENT_ID": ids, "Subtype": "LumA", "Grade": 1, "Age": 0, ln: 1, size: 0}).to_csv(
        root / "clinical_data.csv", index=False)
    for extractor in ("dino33m", "dino2m", "mocov3"):
        (root / "features" / extractor).mkdir(parents=True, exist_ok=True)
        for pid, n in zip(ids, patches, strict=True):
            torch.save(torch.randn(n, width), root / "features" / extractor / f"{pid}.pt")
    return root


def test_multimodal_layout_with_the_released_column_names(tmp_path):
    ids, features, genes, clinical, time, event = read_multimodal(_layout(tmp_path))
    assert ids == list("ABCDEF") and [f.shape for f in features][:2] == [(3, 1152), (5, 1152)]
    assert genes.shape == (6, 138) and clinical.shape == (6, 4)
    np.testing.assert_allclose(time, np.linspace(1, 6, 6), rtol=1e-6)  # months -> years
    np.testing.assert_array_equal(event, [1, 0] * 3)
    items = [{"inputs": [torch.tensor(f), torch.tensor(g), torch.tensor(c)], "time": torch.tensor(t),
              "event": torch.tensor(e), "id": i}
             for i, f, g, c, t, e in zip(ids, features, genes, clinical, time, event, strict=True)][:2]
    batch = collate(items)
    assert batch["inputs"][0].shape == (2, 5, 1152)
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["inputs"][0][0, 3:].abs().sum() == 0


def test_multimodal_data_module_links_the_model_inputs(tmp_path):
    data = MultimodalSurvivalData(str(_layout(tmp_path, released_names=False)), val=0.2, test=0.2, batch_size=2)
    assert data.model_inputs == {"gene_features": 138, "clinical_features": 4}
    assert sum(len(s) for s in data.sets.values()) == 6


def test_missing_patients_and_wrong_widths_are_named(tmp_path):
    root = _layout(tmp_path)
    (root / "features" / "dino2m" / "C.pt").unlink()
    with pytest.raises(DataError, match=r"features/dino2m: 1 patients of survival_data.csv are missing: C"):
        read_multimodal(root)
    torch.save(torch.randn(4, 256), root / "features" / "dino2m" / "C.pt")
    with pytest.raises(DataError, match=r"C.pt: features of shape \(4, 256\); expected \(N, 384\)"):
        read_multimodal(root)
    genes = pd.read_csv(root / "gene_expression.csv")
    genes[genes.PATIENT_ID != "E"].to_csv(root / "gene_expression.csv", index=False)
    with pytest.raises(DataError, match=r"gene_expression\.csv: 1 patients of survival_data\.csv are missing: E"):
        read_multimodal(root)


def test_the_offline_default_says_what_is_real_and_what_is_simulated(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    folder = MultimodalSurvivalData.write_default(patches=2, n_genes=8)
    readme = (folder / "README.txt").read_text()
    assert "REAL: survival (GBSG2" in readme and "SIMULATED: gene_expression.csv" in readme
    survival = pd.read_csv(folder / "survival_data.csv")
    assert len(survival) == 686 and survival.OS_STATUS.str.contains("DECEASED").sum() == 299

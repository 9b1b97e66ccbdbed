"""A trained BioFusionNet checkpoint meets other patients: ``zoo test --data.test_root`` evaluates every patient of
another folder in the released layout (the training folder is not read; the patch and gene statistics of the
training part travel as the data module's ``statistics``) and the C-index it reports equals lifelines' on the
risks ``zoo predict`` gives for the same patients from a folder without ``survival_data.csv``."""

from __future__ import annotations

import csv
import shutil

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from lifelines.utils import concordance_index
from zoo.data.survival import MultimodalSurvivalData

from zoo.errors import DataError
from zoo.tasks.survival import SurvivalTask

torch.set_num_threads(1)
TRAINER = dict(num_sanity_val_steps=0)  # Trainer arguments of this file's small runs


def write_layout(root, n: int, seed: int, genes: int = 20, outcomes: bool = True):
    """``n`` patients in the released layout: patches and genes carry a weak signal of a hidden risk."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    ids = [f"P{seed}-{i:03d}" for i in range(n)]
    risk = rng.normal(size=n)
    months = rng.exponential(60 * np.exp(-risk))
    if outcomes:
        pd.DataFrame({"PATIENT_ID": ids, "OS_STATUS": [f"{e}:x" for e in rng.integers(0, 2, n) | (risk > 0)],
                      "OS_MONTHS": months}).to_csv(root / "survival_data.csv", index=False)
    table = pd.DataFrame(rng.normal(size=(n, genes)) + risk[:, None] * 0.5, columns=[f"G{j}" for j in range(genes)])
    table.insert(0, "PATIENT_ID", ids)
    table.to_csv(root / "gene_expression.csv", index=False)
    pd.DataFrame({"PATIENT_ID": ids, "Grade": rng.integers(0, 2, n), "Age": rng.integers(0, 2, n),
                  "LN_Status": rng.integers(0, 2, n), "Tumor_Size": (risk > 0).astype(int)}).to_csv(
        root / "clinical_data.csv", index=False)
    for extractor in ("dino33m", "dino2m", "mocov3"):
        (root / "features" / extractor).mkdir(parents=True)
        for i, pid in enumerate(ids):
            torch.save(torch.randn(3, 384) + 0.2 * float(risk[i]), root / "features" / extractor / f"{pid}.pt")
    return root


def test_biofusionnet_evaluates_and_predicts_another_folder(small_runs, tmp_path):
    L.seed_everything(0)
    data = MultimodalSurvivalData(str(write_layout(tmp_path / "train", 40, seed=0)), batch_size=8)
    task = SurvivalTask("medical/biofusionnet", model_inputs=data.model_inputs,
                        optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-4}})
    ckpt, saved = small_runs.fit_and_save(task, data, **TRAINER)
    assert len(saved["statistics"]["genes"]) == 20 and len(saved["statistics"]["patch_mean"]) == 3 * 384
    shutil.rmtree(tmp_path / "train")

    others = write_layout(tmp_path / "others", 16, seed=1)
    test = MultimodalSurvivalData(**{**saved, "test_root": str(others)})
    loaded = SurvivalTask.load_from_checkpoint(ckpt, weights_only=True)
    trainer = small_runs.trainer(**TRAINER)
    (result,) = trainer.test(loaded, datamodule=test, ckpt_path=ckpt, weights_only=True, verbose=False)
    outcomes = pd.read_csv(others / "survival_data.csv")
    events = int(outcomes.OS_STATUS.str[0].astype(int).sum())
    assert test.evaluation_line("test") == f"data: 16 subjects, {events} events in {others} (all of it)"

    (others / "survival_data.csv").unlink()  # new patients: no outcomes
    predict = MultimodalSurvivalData(**{**saved, "predict_root": str(others)})
    predictions = small_runs.trainer(**TRAINER).predict(loaded, datamodule=predict, ckpt_path=ckpt, weights_only=True)
    loaded.write_predictions(predictions, predict, tmp_path / "risks.csv")
    with open(tmp_path / "risks.csv") as f:
        risks = {row["id"]: float(row["risk"]) for row in csv.DictReader(f)}
    risk = np.array([risks[pid] for pid in outcomes.PATIENT_ID])
    expected = concordance_index(outcomes.OS_MONTHS / 12, -risk, outcomes.OS_STATUS.str[0].astype(int))
    assert result["test/c_index"] == pytest.approx(expected, abs=1e-3)  # risks are written with 6 digits

    pd.read_csv(others / "gene_expression.csv").drop(columns=["G3"]).to_csv(others / "gene_expression.csv",
                                                                            index=False)
    with pytest.raises(DataError, match=r"gene_expression\.csv: lacks 1 of the 20 genes the model was trained with "
                                        r"\(G3\); it has 19 genes"):
        MultimodalSurvivalData(**{**saved, "predict_root": str(others)}).setup("predict")

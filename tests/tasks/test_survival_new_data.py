"""A trained DeepSurv checkpoint meets other patients: ``zoo test`` on a second file evaluates every row of it with
the checkpoint's covariate encoding (the training file may be gone), and the C-index it reports equals lifelines'
on risks computed by hand (covariates one-hot encoded and standardised with the training part's statistics);
``zoo predict`` scores new patients from their covariates alone (no time or event columns)."""

import csv

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from lifelines.datasets import load_gbsg2
from lifelines.utils import concordance_index
from zoo.data.survival import SurvivalTableData

from zoo.errors import DataError
from zoo.tasks.survival import SurvivalTask

torch.set_num_threads(1)


def _trainer(root) -> L.Trainer:
    return L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=root)


@pytest.fixture
def checkpoint(tmp_path):
    """(checkpoint file, its data module arguments, the training data module, the new patients' frame)."""
    cohort = load_gbsg2()
    train_file, new = tmp_path / "train.csv", cohort.iloc[500:].reset_index(drop=True)
    cohort.iloc[:500].to_csv(train_file, index=False)
    L.seed_everything(0)
    data = SurvivalTableData(path=str(train_file), time_column="time", event_column="cens", batch_size=64)
    task = SurvivalTask("medical/deepsurv", model_inputs=data.model_inputs,
                        optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}})
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=data)
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["datamodule_hyper_parameters"]
    train_file.unlink()  # other patients are evaluated and predicted without the training file
    return ckpt, saved, data, new


def _hand_risks(ckpt, data, frame) -> np.ndarray:
    """Log-risks of ``frame`` by hand: get_dummies(drop_first), training-part mean/std, the checkpoint's net."""
    covariates = ["horTh", "age", "menostat", "tsize", "tgrade", "pnodes", "progrec", "estrec"]
    whole = pd.concat([load_gbsg2().iloc[:500][covariates], frame[covariates]], ignore_index=True)
    x = pd.get_dummies(whole, drop_first=True, dtype=float).to_numpy()
    train = x[:500][data.split.train]
    x = (x[500:] - train.mean(0)) / (train.std(0) + 1e-6)
    task = SurvivalTask.load_from_checkpoint(ckpt, weights_only=True).eval()
    with torch.no_grad():
        return task.model(torch.tensor(x, dtype=torch.float32)).reshape(-1).numpy()


def test_a_checkpoint_evaluates_every_row_of_another_file(checkpoint, tmp_path):
    ckpt, saved, data, new = checkpoint
    new_file = tmp_path / "new.csv"
    new.to_csv(new_file, index=False)
    other = SurvivalTableData(**{**saved, "test_path": str(new_file)})
    task = SurvivalTask.load_from_checkpoint(ckpt, weights_only=True)
    (result,) = _trainer(tmp_path).test(task, datamodule=other, ckpt_path=ckpt, weights_only=True, verbose=False)
    events = int(new.cens.sum())
    assert other.evaluation_line("test") == f"data: {len(new)} subjects, {events} events in {new_file} (all of it)"
    risk = _hand_risks(ckpt, data, new)
    expected = concordance_index(new.time, -risk, new.cens)
    assert result["test/c_index"] == pytest.approx(expected, abs=1e-6)
    assert "test/ibs" in result and "test/uno_c_index" in result  # the checkpoint's baseline, no training rows


def test_new_patients_are_predicted_from_their_covariates_alone(checkpoint, tmp_path):
    ckpt, saved, data, new = checkpoint
    inputs = new.drop(columns=["time", "cens"])[["tgrade", "age", "horTh", "menostat", "tsize", "pnodes",
                                                 "progrec", "estrec"]]
    inputs.to_csv(tmp_path / "patients.csv", index=False)  # other column order, no outcomes
    other = SurvivalTableData(**{**saved, "predict_path": str(tmp_path / "patients.csv")})
    task = SurvivalTask.load_from_checkpoint(ckpt, weights_only=True)
    predictions = _trainer(tmp_path).predict(task, datamodule=other, ckpt_path=ckpt, weights_only=True)
    assert other.evaluation_line("predict") == f"data: {len(new)} subjects, outcomes not given in " \
                                               f"{tmp_path / 'patients.csv'} (all of it)"
    task.write_predictions(predictions, other, tmp_path / "risks.csv")
    with open(tmp_path / "risks.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(new) and "time" not in rows[0]
    np.testing.assert_allclose([float(r["risk"]) for r in rows], _hand_risks(ckpt, data, new), rtol=1e-4,
                               atol=1e-5)
    # without a prediction file the run's own test part is predicted, and the line says so
    own = SurvivalTableData(**{**saved, "path": None})
    own.setup("predict")
    assert own.evaluation_line("predict").endswith(
        "(no --data.predict_path FILE: the run's own test split is predicted)")
    assert own.evaluation_line("predict").startswith("data: test split of lifelines gbsg2")


def test_covariates_that_do_not_fit_are_named(checkpoint, tmp_path):
    _, saved, _, new = checkpoint
    new.drop(columns=["tsize"]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match=r"short\.csv: no covariate column 'tsize': the model was trained on "
                                        r"age, tsize, .*; this file has horTh, age"):
        SurvivalTableData(**{**saved, "test_path": str(tmp_path / "short.csv")}).setup("test")
    new.assign(tgrade=new.tgrade.astype(str).replace("III", "IV")).to_csv(tmp_path / "grade.csv", index=False)
    with pytest.raises(DataError, match=r"grade\.csv: line \d+, column 'tgrade': 'IV' is not one of the "
                                        r"categories the model was trained with \(I, II, III\)"):
        SurvivalTableData(**{**saved, "predict_path": str(tmp_path / "grade.csv")}).setup("predict")


def test_a_number_column_holding_text_is_an_error_not_a_category(tmp_path):
    cohort = load_gbsg2().astype({"age": object})
    cohort.loc[7, "age"] = "seventy"
    cohort.to_csv(tmp_path / "typo.csv", index=False)
    with pytest.raises(DataError, match=r"typo\.csv: line 9, column 'age': 'seventy' is not a number"):
        SurvivalTableData(path=str(tmp_path / "typo.csv"), time_column="time", event_column="cens")


@pytest.mark.slow
def test_the_zoo_command_tests_and_predicts_new_patients_without_the_training_file(tmp_path, capsys):
    """The issue's path, end to end (about 35 s): zoo train on one file, the file removed, zoo test on another file
    and zoo predict on covariates alone (it crashed loading the state dict, the encoding refitted), each
    saying first what it reads."""
    from zoo.cli import main

    cohort = load_gbsg2()
    cohort.iloc[:500].to_csv(tmp_path / "train.csv", index=False)
    cohort.iloc[500:].to_csv(tmp_path / "new.csv", index=False)
    cohort.iloc[500:].drop(columns=["time", "cens"]).to_csv(tmp_path / "inputs.csv", index=False)
    assert main(["train", "medical/deepsurv", "--data.path", str(tmp_path / "train.csv"), "--data.time_column",
                 "time", "--data.event_column", "cens", "--trainer.max_epochs", "1",
                 "--trainer.enable_progress_bar", "false"]) == 0
    (ckpt,) = tmp_path.glob("mlruns/*/*/artifacts/checkpoints/best.ckpt")
    (tmp_path / "train.csv").unlink()
    capsys.readouterr()
    assert main(["test", "--ckpt", str(ckpt), "--data.test_path", str(tmp_path / "new.csv"),
                 "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]) == 0
    assert main(["predict", "--ckpt", str(ckpt), "--data.predict_path", str(tmp_path / "inputs.csv"),
                 "--trainer.logger", "false", "--output", str(tmp_path / "risks.csv")]) == 0
    printed = capsys.readouterr().out
    events = int(cohort.iloc[500:].cens.sum())
    assert f"data: 186 subjects, {events} events in {tmp_path / 'new.csv'} (all of it)" in printed
    assert f"data: 186 subjects, outcomes not given in {tmp_path / 'inputs.csv'} (all of it)" in printed
    assert "test/c_index" in printed
    with open(tmp_path / "risks.csv") as f:
        assert len(list(csv.DictReader(f))) == 186

"""A trained sepsis transformer meets other patients: ``zoo test --data.test_root`` evaluates every patient file of
another folder alone (the training folder is not read; the z-scoring statistics fitted on the training patients
travel as the data module's arguments) and the hourly AUROC it reports equals scikit-learn's on the hourly
probabilities ``zoo predict`` gives for the same patients, scored without their SepsisLabel column."""

from __future__ import annotations

import shutil

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from zoo.data.icu import COLUMNS, FEATURE_NAMES, SepsisData, find_patient_files, read_psv, write_simulated_cohort

from zoo.errors import DataError
from zoo.tasks.sequence_labelling import SequenceLabellingTask

torch.set_num_threads(1)


def test_a_sepsis_checkpoint_evaluates_and_predicts_another_folder(small_runs, tmp_path):
    L.seed_everything(0)
    cohort = write_simulated_cohort(tmp_path / "cohort", 60)
    data = SepsisData(root=str(cohort), val=0.25, test=0.25)
    task = SequenceLabellingTask("medical/sepsis_transformer", in_features=data.in_features,
                                 model_kwargs={"d_model": 32}, lr_scheduler=None,
                                 optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}})
    ckpt, saved = small_runs.fit_and_save(task, data)
    assert len(saved["feature_mean"]) == len(FEATURE_NAMES) and saved["positive_fraction"] > 0
    shutil.rmtree(cohort)  # the training patients are gone

    others = write_simulated_cohort(tmp_path / "others", 24, seed=1)
    files = find_patient_files(others)
    labels = [read_psv(f)[:, -1] for f in files]
    hours, septic = sum(len(y) for y in labels), sum(bool(y.any()) for y in labels)
    test = SepsisData(**{**saved, "test_root": str(others)})
    loaded = SequenceLabellingTask.load_from_checkpoint(ckpt, weights_only=True)
    (result,) = small_runs.trainer().test(loaded, datamodule=test, ckpt_path=ckpt, weights_only=True, verbose=False)
    assert test.evaluation_line("test") == f"data: 24 patients ({septic} septic), {hours} hours in {others} " \
                                           "(all of it)"

    unlabelled = tmp_path / "unlabelled"  # the challenge's test input: no SepsisLabel column
    unlabelled.mkdir()
    for path in files:
        rows = ["|".join(f"{v:g}" for v in row).replace("nan", "NaN") for row in read_psv(path)[:, :-1]]
        (unlabelled / path.name).write_text("\n".join(["|".join(COLUMNS[:-1]), *rows]) + "\n")
    predict = SepsisData(**{**saved, "predict_root": str(unlabelled)})
    batches = small_runs.trainer().predict(loaded, datamodule=predict, ckpt_path=ckpt, weights_only=True)
    scores = dict(pair for batch in batches for pair in batch)
    assert sorted(scores) == sorted(f.stem for f in files)
    hourly = np.concatenate([scores[f.stem] for f in files])
    assert result["test/auroc_hourly"] == pytest.approx(roc_auc_score(np.concatenate(labels), hourly), abs=1e-6)


def test_statistics_of_another_feature_count_are_named():
    with pytest.raises(DataError, match=rf"--data.feature_mean holds 3 values; the hourly features are "
                                        rf"{len(FEATURE_NAMES)}"):
        SepsisData(feature_mean=[0.0, 0.0, 0.0], feature_std=[1.0, 1.0, 1.0])

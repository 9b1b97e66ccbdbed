"""A trained TLOB checkpoint meets another trading day: ``zoo test --data.test_root`` evaluates every labelled window
of that day alone (the training day is not read; the z-score statistics of the training part travel as the data
module's ``normalisation`` argument) and the accuracy it reports equals, by hand, the share of windows whose most
probable class is TLOB's label computed from the day's own order book; ``zoo predict --data.predict_root`` scores
every window, the last ``horizon`` ones (whose future is not in the file) too; without it the line says the run's
own test part is predicted."""

from __future__ import annotations

import shutil

import lightning as L
import numpy as np
import pytest
import torch
from zoo.data.lob import LOBData, preprocess_lobster, read_lobster_day, simulate_cst_day, tlob_labels

from zoo.errors import DataError
from zoo.tasks.lob import LOBTrendTask

torch.set_num_threads(1)
TRAINER = dict(limit_train_batches=20, num_sanity_val_steps=0)  # Trainer arguments of this file's small runs
SEQ_LEN, HORIZON = 32, 10


@pytest.fixture
def checkpoint(small_runs, tmp_path):
    L.seed_everything(0)
    data = LOBData(horizon=HORIZON, seq_len=SEQ_LEN, simulated_events=8000, batch_size=64)
    task = LOBTrendTask("finance/tlob", num_classes=3, class_names=list(data.class_names),
                        model_kwargs={"seq_len": SEQ_LEN, "num_layers": 1}, ema_decay=None, lr_scheduler=None,
                        optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}})
    ckpt, saved = small_runs.fit_and_save(task, data, **TRAINER)
    assert set(saved["normalisation"]) == {"book", "message"}
    shutil.rmtree(data._simulated_folder())  # the training day is gone
    return ckpt, saved


def test_tlob_evaluates_and_predicts_another_day(small_runs, checkpoint, tmp_path):
    ckpt, saved = checkpoint
    message, orderbook = simulate_cst_day(tmp_path / "day2", events=3000, seed=1)
    test = LOBData(**{**saved, "test_root": str(tmp_path / "day2")})
    task = LOBTrendTask.load_from_checkpoint(ckpt, weights_only=True)
    trainer = small_runs.trainer(**TRAINER)
    (result,) = trainer.test(task, datamodule=test, ckpt_path=ckpt, weights_only=True, verbose=False)
    _, book = preprocess_lobster(*read_lobster_day(message, orderbook))
    windows = len(book) - HORIZON - SEQ_LEN + 1
    offset = SEQ_LEN - HORIZON
    labels = tlob_labels((book[:, 0] + book[:, 2]) / 2, HORIZON)[offset:offset + windows]
    assert test.evaluation_line("test") == f"data: {windows} windows of {SEQ_LEN} x 46 in {tmp_path / 'day2'} " \
                                           "(all of it)"

    predict = LOBData(**{**saved, "predict_root": str(tmp_path / "day2")})
    batches = small_runs.trainer(**TRAINER).predict(task, datamodule=predict, ckpt_path=ckpt, weights_only=True)
    classes = torch.cat([b["probabilities"] for b in batches]).argmax(1).numpy()
    assert len(classes) == windows + HORIZON  # every window, the last ones without a known future too
    assert result["test/acc"] == pytest.approx(float(np.mean(classes[:windows] == labels)), abs=1e-6)
    majority = int(np.argmax(saved["train_class_counts"]))  # the training day's, not the evaluated day's
    assert result["test/majority_acc"] == pytest.approx(float(np.mean(labels == majority)), abs=1e-6)

    own = LOBData(**{**saved, "simulated_events": 3000})
    own.setup("predict")
    assert own.evaluation_line("predict").endswith("(no --data.predict_root FOLDER: the run's own test split is "
                                                   "predicted)")


def test_lob_files_without_the_run_statistics_are_refused(tmp_path):
    simulate_cst_day(tmp_path / "day", events=1000, seed=2)
    with pytest.raises(DataError, match=r"day: LOB windows are normalised with the statistics of a trained run"):
        LOBData(seq_len=SEQ_LEN)._folder_windows(tmp_path / "day", "test")

"""The summaries of `zoo train` and `zoo test` put the model beside the do-nothing baseline its task logs, and say
plainly when the model does worse (zoo.verdict)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from mlflow import MlflowClient

from zoo.cli import main
from zoo.verdict import compare, verdict_lines


def test_worse_better_and_tie_read_the_right_way_round_for_each_direction():
    lines = verdict_lines({"test/psnr": 15.63, "test/input_psnr": 16.01, "test/ssim": 0.74, "test/input_ssim": 0.70})
    assert lines[0] == "WORSE than doing nothing: test PSNR 15.63 dB is below the unprocessed input's 16.01 dB"
    assert lines[1] == "test SSIM 0.74 is above the unprocessed input's 0.7 (better)"
    # lower is better: a larger error than persistence is worse, a smaller one better
    (worse,) = compare({"test/mae": 2.0, "test/persistence_mae": 1.5})
    (better,) = compare({"test/mae": 1.0, "test/persistence_mae": 1.5})
    assert worse.worse and not better.worse
    assert "WORSE" in worse.sentence() and "above the last-value (persistence) forecast's 1.5" in worse.sentence()
    (tie,) = compare({"val/acc": 0.25, "val/majority_acc": 0.25})  # zoo validate: the val/ metrics
    assert tie.tie and tie.sentence().startswith("no better than doing nothing: val accuracy 0.25 equals")
    # constant baselines need no logged value; a metric without its baseline is not compared
    assert [c.baseline_value for c in compare({"test/c_index": 0.57})] == [0.5]
    assert compare({"test/map_50": 0.1, "test/loss": 3.0}) == []


def test_the_training_summary_compares_accuracy_with_the_majority_class(trained_run):
    """`zoo train`'s own summary (the session's eca_resnet18 run): the majority-class baseline is logged on the test
    images and the summary's sentence carries the run's logged values."""
    metrics = trained_run.run.data.metrics
    assert 0 < metrics["test/majority_acc"] < 1 and "test/majority_f1_macro" in metrics
    expected = [c.sentence() for c in compare(metrics) if c.pairing.metric == "acc"]
    assert expected and f"beside doing nothing: {expected[0]}" in trained_run.output


@pytest.fixture(scope="module")
def forecasting_checkpoint(tmp_path_factory):
    """A two-batch `zoo train timeseries/lstm` (the CO2 quick start): its output and best checkpoint."""
    root = tmp_path_factory.mktemp("verdict")
    output = io.StringIO()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch, contextlib.chdir(root), contextlib.redirect_stdout(output):
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # not a store an earlier test left set
        code = main(["train", "timeseries/lstm", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                     "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"])
    assert code == 0, output.getvalue()[-2000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    return output.getvalue(), run, run.info.artifact_uri.removeprefix("file://") + "/checkpoints/best.ckpt"


@pytest.mark.slow
def test_train_and_test_summaries_compare_the_forecast_with_persistence(forecasting_checkpoint, capsys):
    output, run, best = forecasting_checkpoint
    metrics = run.data.metrics
    summary = [c.sentence() for c in compare(metrics)]
    assert {c.pairing.baseline for c in compare(metrics)} >= {"persistence_mae", "persistence_rmse"}
    for sentence in summary:
        assert f"beside doing nothing: {sentence}" in output
    mae, persistence = metrics["test/mae"], metrics["test/persistence_mae"]
    word = "WORSE than doing nothing" if mae > persistence else "(better)"
    assert any(word in s and "MAE" in s for s in summary)
    # `zoo test` on the checkpoint prints the same comparison for the metrics it computes
    assert main(["test", "--ckpt", best, "--trainer.enable_progress_bar", "false"]) == 0
    printed = capsys.readouterr().out
    block = printed[printed.index("beside doing nothing:"):]
    assert re.search(r"test MAE [0-9.e+-]+ is (above|below) the last-value \(persistence\) forecast's", block), block

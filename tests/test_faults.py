"""Runs that survive faults, injected for real: `zoo train` subprocesses killed with SIGKILL at a chosen moment
(``ZOO_FAULT``), stopped with SIGTERM/SIGINT, run four at once on a fresh sqlite store, pointed at a tracking server
that is not there; checkpoint writes that fail with ENOSPC or EROFS."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo.checkpointing import AtomicCheckpointIO, atomic_save, checkpoint_interval, remove_stale_temporaries, temp_path
from zoo.errors import CheckpointWriteError, ZooError

ARGS = ["vision/eca_resnet18", "--data.image_size", "16", "--data.batch_size", "64",
        "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "1"]
EPOCH_AGGREGATES = ("train/acc", "train/loss_epoch")  # averaged over the batches a process ran (see zoo.interruption)


def zoo_train(folder: Path, *extra: str, fault: str | None = None, env: dict | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("ZOO_FAULT", "MLFLOW_TRACKING_URI")}
    # checkpoints at every epoch end (not at most once a minute): the faults below strike at chosen epochs
    environment.update({"OMP_NUM_THREADS": "1", "ZOO_CHECKPOINT_EVERY": "0", **(env or {})})
    if fault:
        environment["ZOO_FAULT"] = fault
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "zoo.cli", "train", *ARGS, *extra], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def runs(folder: Path) -> tuple:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return client, client.search_runs([client.get_experiment_by_name("zoo").experiment_id])


def histories(folder: Path) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """The single run's status and every metric's (step, value) history."""
    client, found = runs(folder)
    (run,) = found
    history = {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
               for key in run.data.metrics if not key.startswith("system/")}  # sampled by wall clock
    return run.info.status, history


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, list[tuple[int, float]]]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    done = zoo_train(folder)
    assert done.returncode == 0, done.stderr[-2000:]
    status, history = histories(folder)
    assert status == "FINISHED"
    return history


def assert_same_history(resumed: dict, reference: dict, skip: tuple[str, ...] = ()) -> None:
    """The same (step, value) histories: no step missing, none logged more often than in the uninterrupted run
    (Lightning itself logs ``epoch`` several times a step); for ``skip`` the same steps."""
    assert resumed.keys() == reference.keys()
    for key, values in reference.items():
        if key == "epoch":  # Lightning's own counter, logged several times a step: the distinct values count
            assert sorted(set(resumed[key])) == sorted(set(values))
        elif key in skip:
            assert [step for step, _ in resumed[key]] == [step for step, _ in values], key
        else:
            assert resumed[key] == values, key


def test_kill_9_mid_epoch_then_resume_repeats_the_uninterrupted_run(tmp_path, uninterrupted):
    killed = zoo_train(tmp_path, fault="train_batch@epoch=1,batch=1")
    assert killed.returncode == -signal.SIGKILL
    resumed = zoo_train(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    status, history = histories(tmp_path)
    assert status == "FINISHED"  # one run, back to RUNNING and then finished
    assert_same_history(history, uninterrupted)  # every metric at every step, exactly, once


def test_sigterm_saves_the_run_marks_it_killed_and_resume_continues_mid_epoch(tmp_path, uninterrupted):
    stopped = zoo_train(tmp_path, fault="train_batch@epoch=1,batch=0:SIGTERM")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    _, (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"
    assert run.data.tags["zoo.stopped"] == "SIGTERM at epoch 1, step 4"
    assert "zoo.failure" not in run.data.tags
    assert f"resume it with: zoo train vision/eca_resnet18 --resume {run.info.run_id}" in stopped.stderr
    last = Path(stopped.stderr.split("the run's state is saved in ")[1].split()[0])
    state = torch.load(last, map_location="cpu", weights_only=True)  # plain data: nothing pickled runs
    assert state["callbacks"]["FaultTolerance"]["mid_epoch"]["batches"] == 1

    resumed = zoo_train(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    status, history = histories(tmp_path)
    assert status == "FINISHED"
    # exact, but for the interrupted epoch's train averages, which cover only the batches after the resume
    assert_same_history(history, uninterrupted, skip=EPOCH_AGGREGATES)
    assert history["train/acc"][-1] == uninterrupted["train/acc"][-1]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["checkpoint_write@n=3", "val_batch@epoch=1,batch=1"])
def test_kill_9_while_writing_a_checkpoint_or_validating_loses_nothing(tmp_path, uninterrupted, fault):
    killed = zoo_train(tmp_path, fault=fault)
    assert killed.returncode == -signal.SIGKILL
    folder = next(tmp_path.glob("mlruns/zoo/*/artifacts/checkpoints"))
    if fault.startswith("checkpoint_write"):
        assert list(folder.glob(".*.tmp")), "the write was cut off half-way"
    torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)  # the last good one is whole
    resumed = zoo_train(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list(folder.glob(".*.tmp"))
    status, history = histories(tmp_path)
    assert status == "FINISHED"
    assert_same_history(history, uninterrupted)


@pytest.mark.slow
def test_ctrl_c_stops_like_sigterm(tmp_path):
    stopped = zoo_train(tmp_path, fault="train_batch@epoch=1,batch=0:SIGINT")
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr[-2000:]
    _, (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"
    assert zoo_train(tmp_path, "--resume").returncode == 0
    assert histories(tmp_path)[0] == "FINISHED"


def test_kill_9_before_the_first_checkpoint_write_says_so_on_resume(tmp_path):
    killed = zoo_train(tmp_path, fault="train_batch@epoch=2,batch=1", env={"ZOO_CHECKPOINT_EVERY": "3600"})
    assert killed.returncode == -signal.SIGKILL
    assert not list(tmp_path.rglob("last.ckpt"))  # two epochs ended within the hour
    resumed = zoo_train(tmp_path, "--resume")
    assert resumed.returncode == 1
    assert "has no last.ckpt to resume from" in resumed.stderr
    assert "at most once every ZOO_CHECKPOINT_EVERY seconds, 60 by default" in resumed.stderr


def test_four_runs_at_once_on_a_fresh_sqlite_store_all_complete(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "zoo.cli", "train", *ARGS[:-4], "--trainer.max_epochs", "1"]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], "\n".join(e[-1500:] for e in errors)
    client, found = runs(tmp_path)
    assert len(found) == 4 and {r.info.status for r in found} == {"FINISHED"}
    for run in found:
        assert {"val/acc", "test/acc", "train/loss_epoch"} <= run.data.metrics.keys()
        assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_an_unreachable_tracking_server_fails_in_seconds_naming_it(tmp_path):
    done = zoo_train(tmp_path, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, timeout=60)
    assert done.returncode == 1
    assert "zoo train: error: the MLflow tracking server http://127.0.0.1:9 cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not (tmp_path / "mlruns").exists()  # nothing trained


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_failed_checkpoint_write_names_the_path_and_keeps_the_last_good_one(tmp_path, monkeypatch, code):
    path = tmp_path / "last.ckpt"
    atomic_save({"epoch": 1}, path)

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(CheckpointWriteError, match=f"could not write the checkpoint {path}: {os.strerror(code)}; "
                                                   "the last good checkpoint .* is kept"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert not temp_path(path).exists()


def test_temporaries_of_killed_writes_are_removed(tmp_path):
    stale = tmp_path / ".last.ckpt.12345.tmp"
    stale.write_bytes(b"half a checkpoint")
    (tmp_path / "best.ckpt").write_bytes(b"kept")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]


def test_checkpoints_asked_for_within_the_interval_are_held_then_written_as_they_were(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("zoo.checkpointing.time.monotonic", lambda: clock[0])
    io = AtomicCheckpointIO(interval_s=60)
    weights = torch.zeros(3)
    last, best = tmp_path / "last.ckpt", tmp_path / "best.ckpt"
    io.save_checkpoint({"epoch": 0, "w": weights}, last)
    io.save_checkpoint({"epoch": 0, "w": weights}, best)
    weights += 1  # training goes on changing the live tensors
    clock[0] += 30
    io.save_checkpoint({"epoch": 1, "w": weights}, last)
    assert not last.exists() and not best.exists()  # within the minute: nothing written yet
    weights += 1
    clock[0] += 31
    io.save_checkpoint({"epoch": 2, "w": weights}, last)  # a minute has passed: everything pending is written
    assert torch.load(last, weights_only=True)["epoch"] == 2
    assert torch.equal(torch.load(best, weights_only=True)["w"], torch.zeros(3))  # as it was when asked for
    io.save_checkpoint({"epoch": 3, "w": weights}, last)
    assert torch.load(last, weights_only=True)["epoch"] == 2
    io.teardown()  # the end of training (or a failure) writes what is held
    assert torch.load(last, weights_only=True)["epoch"] == 3
    io.save_checkpoint({"epoch": 4}, best)
    io.remove_checkpoint(best)
    io.flush()
    assert not best.exists()


def test_the_checkpoint_interval_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("ZOO_CHECKPOINT_EVERY", "0")
    assert checkpoint_interval() == 0
    monkeypatch.delenv("ZOO_CHECKPOINT_EVERY")
    assert checkpoint_interval() == 60
    monkeypatch.setenv("ZOO_CHECKPOINT_EVERY", "soon")
    with pytest.raises(ZooError, match="ZOO_CHECKPOINT_EVERY='soon': give the seconds between checkpoint writes"):
        checkpoint_interval()

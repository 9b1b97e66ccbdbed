"""Seeds and folds as one command: a parent MLflow run with a child per member, the members' mean and sd, and a
group that continues where it was killed."""

from __future__ import annotations

import csv
import io
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.cli import main
from zoo.errors import ZooError
from zoo.groups import Member, group_members, parse_seeds


def test_seeds_and_folds_cross_into_members_with_their_flags():
    members = group_members("0,2", ["--data.folds", "3", "--trainer.max_epochs", "1"])
    assert [m.name for m in members] == ["seed 0, fold 0", "seed 0, fold 1", "seed 0, fold 2", "seed 2, fold 0",
                                         "seed 2, fold 1", "seed 2, fold 2"]
    assert members[4].flags() == ["--seed_everything", "2", "--data.fold", "1"]
    assert Member(seed=3, resplit=True).flags() == ["--seed_everything", "3", "--data.seed", "3"]
    assert group_members(None, ["--data.folds", "5", "--data.fold", "2"]) is None  # one fold: an ordinary run
    assert group_members(None, ["--data.folds=1"]) is None
    assert parse_seeds("0-2,7,1") == [0, 1, 2, 7]
    with pytest.raises(ZooError, match=r"--seeds 0,x: expected seeds separated by commas"):
        parse_seeds("0,x")


def test_folds_give_one_parent_run_with_each_folds_child_and_their_mean_and_sd(trained_group):
    group = trained_group
    assert group.exit_code == 0, group.output[-3000:]
    assert [c.data.tags["zoo.member"] for c in group.children] == ["fold 0", "fold 1", "fold 2"]
    assert {c.data.params["data/init_args/folds"] for c in group.children} == {"3"}
    assert [c.data.params["data/init_args/fold"] for c in group.children] == ["0", "1", "2"]
    assert all(c.info.status == "FINISHED" for c in [group.parent, *group.children])
    # the three test parts are the whole cohort, each patient once
    tested = [int(n) for n in re.findall(r"432 subjects, \d+ events; train \d+, val \d+, test (\d+)", group.output)]
    assert len(tested) == 3 and sum(tested) == 432
    values = [c.data.metrics["test/c_index"] for c in group.children]
    metrics = group.parent.data.metrics
    assert metrics["test/c_index_mean"] == pytest.approx(statistics.mean(values))
    assert metrics["test/c_index_sd"] == pytest.approx(statistics.stdev(values))
    assert metrics["members"] == 3
    artifacts = Path(group.parent.info.artifact_uri.removeprefix("file://"))
    rows = list(csv.DictReader(io.StringIO((artifacts / "members.csv").read_text())))
    assert [r["run_id"] for r in rows] == [c.info.run_id for c in group.children]
    assert all(Path(r["best_checkpoint"]).is_file() for r in rows)
    assert (artifacts / "members.png").stat().st_size > 10_000
    mean, sd = statistics.mean(values), statistics.stdev(values)
    assert re.search(rf"c_index +{mean:.4f} ± {sd:.4f} +{values[0]:.4f} +{values[1]:.4f} +{values[2]:.4f}",
                     group.output)
    assert "Finished 3 runs of medical/deepsurv (3-fold cross-validation)" in group.output


def test_seeds_train_each_seed_as_a_child_run(capsys):
    assert main(["train", "tabular/mlp", "--seeds", "0,1", "--trainer.max_epochs", "1",
                 "--trainer.enable_progress_bar", "false"]) == 0
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.data.tags["zoo.member"])
    assert [c.data.params["seed_everything"] for c in children] == ["0", "1"]
    first, second = (c.data.metrics for c in children)
    assert first["test/loss"] != second["test/loss"]  # another seed, another initialisation: another model
    assert "seeds 0, 1" in capsys.readouterr().out


def test_a_killed_group_continues_where_it_stopped(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["ZOO_FAULT"] = "group_member@member=1"  # SIGKILL as the second member is about to start
    command = [sys.executable, "-m", "zoo.cli", "train", "medical/deepsurv", "--data.dataset", "rossi", "--seeds",
               "0,1,2", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    killed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("zoo").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`zoo.run_type` = 'group'")
    (first,) = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert parent.info.status == "RUNNING" and first.data.tags["zoo.member"] == "seed 0"

    assert main(["train", "medical/deepsurv", "--resume", parent.info.run_id,
                 "--trainer.enable_progress_bar", "false"]) == 0
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.data.tags["zoo.member"] for c in children) == ["seed 0", "seed 1", "seed 2"]
    assert first.info.run_id in {c.info.run_id for c in children}  # kept, not trained again
    assert client.get_run(first.info.run_id).info.end_time == first.info.end_time
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    values = [c.data.metrics["test/c_index"] for c in children]
    assert parent.data.metrics["test/c_index_mean"] == pytest.approx(statistics.mean(values))


def test_folds_of_data_that_comes_split_and_group_flags_elsewhere_are_refused(capsys):
    assert main(["train", "vision/dea_net", "--data.folds", "3"]) == 1
    assert "--data.folds: DehazingData does not split into folds" in capsys.readouterr().err
    assert main(["test", "--ckpt", "x.ckpt", "--seeds", "0,1"]) == 1
    assert "--seeds and --resplit are flags of zoo train" in capsys.readouterr().err

"""MLflow tracking: what a run holds, resuming into the same run, failed runs, and a real `mlflow server`."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.cli import main

TINY = ["--data.image_size", "16", "--data.batch_size", "64", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar",
        "false"]


def test_run_holds_config_metrics_checkpoints_plots_and_tags(trained_run):
    client, run = trained_run.client, trained_run.run
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model/model"] == "vision/eca_resnet18"
    assert params["optimizer/class_path"] == "torch.optim.AdamW" and float(params["optimizer/init_args/lr"]) == 0.003
    assert params["data/init_args/root"].endswith("digits")
    assert params["trainer/log_every_n_steps"] == "2"  # from the user's --config file
    tags = run.data.tags
    assert tags["zoo.model_id"] == "vision/eca_resnet18"
    assert tags["versions.torch"] == torch.__version__ and "versions.lightning" in tags
    # the commit of the zoo checkout that trained, when zoo runs from one (as here and in .ci/run); none otherwise
    checkout = subprocess.run(["git", "-C", str(Path(zoo.__file__).parent), "rev-parse", "HEAD"],
                              capture_output=True, text=True)
    if checkout.returncode == 0:
        assert tags["git.commit.zoo"] == tags["mlflow.source.git.commit"] == checkout.stdout.strip()
    else:
        assert "git.commit.zoo" not in tags and "mlflow.source.git.commit" not in tags
    val_acc = client.get_metric_history(trained_run.run_id, "val/acc")
    assert len(val_acc) == 4  # one per epoch
    assert len(client.get_metric_history(trained_run.run_id, "train/loss_step")) >= 10  # per step
    assert "test/acc" in run.data.metrics and any(k.startswith("lr-") for k in run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(trained_run.run_id)}
    assert {"config.yaml", "checkpoints", "plots"} <= artifacts
    assert {a.path for a in client.list_artifacts(trained_run.run_id, "checkpoints")} == {
        "checkpoints/best.ckpt", "checkpoints/last.ckpt"}
    assert {a.path for a in client.list_artifacts(trained_run.run_id, "plots")} >= {
        "plots/val_confusion_matrix.png", "plots/test_confusion_matrix.png", "plots/gradcam_val.png"}
    config = client.download_artifacts(trained_run.run_id, "config.yaml", str(trained_run.root / "dl"))
    with open(config) as f:
        assert "vision/eca_resnet18" in f.read()


def test_mlflow_uris_load_the_trained_model(trained_run, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_run.tracking_uri)
    reference = zoo.create_model("vision/eca_resnet18", pretrained=trained_run.best).eval()
    x = torch.randn(2, 3, 16, 16)
    runs_uri = f"runs:/{trained_run.run_id}/checkpoints/best.ckpt"
    logged = trained_run.client.search_logged_models([trained_run.run.info.experiment_id])
    assert len(logged) == 1 and logged[0].source_run_id == trained_run.run_id
    import mlflow

    mlflow.set_tracking_uri(trained_run.tracking_uri)
    version = mlflow.register_model(f"models:/{logged[0].model_id}", "zoo-test-eca").version
    for uri in (runs_uri, f"models:/{logged[0].model_id}", f"models:/zoo-test-eca/{version}"):
        model = zoo.create_model("vision/eca_resnet18", pretrained=uri).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x))
    with pytest.raises(zoo.errors.CheckpointError, match="could not fetch"):
        zoo.create_model("vision/eca_resnet18", pretrained="models:/no-such-model/1")


def test_run_page_shows_training_kind_dataset_and_logged_model(trained_run):
    client, run = trained_run.client, trained_run.run
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI workspace
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "ImageClassificationData" and len(dataset.digest) == 8
    assert json.loads(dataset.source)["source"] == str(trained_run.root / "digits")  # the folder it read
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["mlflow.data.context"] == "training"
    sizes = {k: int(tags[f"zoo.split.{k}"]) for k in ("train", "val", "test")}
    assert sum(sizes.values()) == 600 and min(sizes.values()) > 0  # 60 images x 10 classes, every one in a split
    assert json.loads(dataset.profile)["num_rows"] == 600
    logged = client.search_logged_models([run.info.experiment_id])
    assert [o.model_id for o in run.outputs.model_outputs] == [logged[0].model_id]  # listed on the run page


def test_system_metrics_are_sampled_during_training(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    assert main(["train", "vision/eca_resnet18", *TINY, "--trainer.max_epochs", "2"]) == 0
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")) >= 1


def test_resume_continues_the_same_run(tmp_path, capsys):
    assert main(["train", "vision/eca_resnet18", *TINY, "--trainer.max_epochs", "1"]) == 0
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 1
    assert main(["train", "vision/eca_resnet18", "--resume", *TINY, "--trainer.max_epochs", "2"]) == 0
    runs = client.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # no new run
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2
    assert runs[0].info.status == "FINISHED"
    # the changed setting (max_epochs 1 -> 2) is recorded, the params keep their first values
    assert runs[0].data.params["trainer/max_epochs"] == "1"
    assert "config-resume-1.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert main(["train", "vision/eca_resnet34", "--resume"]) == 1  # nothing to resume for another model
    assert runs[0].data.tags["mlflow.runName"].startswith("eca_resnet18-train-")  # readable, not MLflow's seeded one
    # an evaluation run is tagged as one, and --resume still finds the training run (finished: it says how to extend)
    (last,) = tmp_path.glob(f"mlruns/*/{run.info.run_id}/artifacts/checkpoints/last.ckpt")
    assert main(["test", "--ckpt", str(last), *TINY]) == 0
    evaluation = [r for r in client.search_runs([run.info.experiment_id]) if r.info.run_id != run.info.run_id]
    assert [r.data.tags["zoo.run_type"] for r in evaluation] == ["test"]
    assert evaluation[0].data.tags["mlflow.runName"].startswith("eca_resnet18-test-")
    capsys.readouterr()
    assert main(["train", "vision/eca_resnet18", "--resume"]) == 1
    assert f"run {run.info.run_id} of vision/eca_resnet18 has finished" in capsys.readouterr().err


def test_nan_loss_stops_the_run_and_marks_it_failed(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_cross_entropy = F.cross_entropy

    def poisoned(*args, **kwargs):  # the third training batch produces a NaN loss
        calls["n"] += 1
        loss = real_cross_entropy(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    assert main(["train", "vision/eca_resnet18", *TINY, "--trainer.max_epochs", "1",
                 "--trainer.num_sanity_val_steps", "0"]) == 1
    assert "training loss became nan at epoch 0, step 2" in capsys.readouterr().err
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["zoo.failure"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_training_against_a_real_mlflow_server(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    assert main(["train", "vision/eca_resnet18", *TINY, "--trainer.max_epochs", "1",
                 "--trainer.logger.init_args.experiment_name", "server-test"]) == 0
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the embedded store
    request = urllib.request.Request(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name"
                                     "?experiment_name=server-test")
    experiment_id = json.load(urllib.request.urlopen(request))["experiment"]["experiment_id"]
    body = json.dumps({"experiment_ids": [experiment_id]}).encode()
    search = urllib.request.Request(f"{mlflow_server}/api/2.0/mlflow/runs/search", data=body,
                                    headers={"Content-Type": "application/json"})
    (run,) = json.load(urllib.request.urlopen(search))["runs"]
    assert run["info"]["status"] == "FINISHED"
    run_id = run["info"]["run_id"]
    listing = json.load(urllib.request.urlopen(
        f"{mlflow_server}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=checkpoints"))
    assert {f["path"] for f in listing["files"]} == {"checkpoints/best.ckpt", "checkpoints/last.ckpt"}
    assert os.path.exists(tmp_path / "runs" / run_id / "checkpoints" / "last.ckpt")  # local copy for --resume
    model = zoo.create_model("vision/eca_resnet18", pretrained=f"runs:/{run_id}/checkpoints/best.ckpt")
    assert model.fc.out_features == 10


def test_the_same_seed_gives_the_same_metrics(tmp_path):
    """Two runs of the same command (augmentation on) give identical metrics, under two different run names."""
    from mlflow import MlflowClient

    for _ in range(2):
        assert main(["train", "vision/eca_resnet18", *TINY, "--trainer.max_epochs", "1"]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    first, second = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    assert first.data.tags["mlflow.runName"] != second.data.tags["mlflow.runName"]
    for key in ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss_epoch"):
        assert first.data.metrics[key] == second.data.metrics[key], key


def _start_server(folder, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return server
        except OSError:
            time.sleep(0.25)
    server.kill()
    pytest.fail("mlflow server did not start")


def _stop(server: subprocess.Popen) -> None:
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # the server and its uvicorn worker
    server.wait(timeout=30)


@pytest.mark.slow
def test_a_tracking_server_that_goes_away_mid_run_loses_nothing(tmp_path):
    from mlflow import MlflowClient

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    env = {k: v for k, v in os.environ.items() if k != "ZOO_FAULT"}
    env.update({"MLFLOW_TRACKING_URI": url, "OMP_NUM_THREADS": "1", "ZOO_DEBUG": "1"})
    epochs = 8
    train = subprocess.Popen(
        [sys.executable, "-m", "zoo.cli", "train", "vision/eca_resnet18", *TINY, "--trainer.max_epochs", str(epochs),
         "--trainer.log_every_n_steps", "1", "--trainer.logger.init_args.experiment_name", "outage"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "train.err").open("w"))
    try:
        client = MlflowClient(url)
        deadline = time.monotonic() + 240
        run_id = None
        while time.monotonic() < deadline and train.poll() is None:  # kill the server after the first epoch
            experiment = client.get_experiment_by_name("outage")
            found = client.search_runs([experiment.experiment_id]) if experiment else []
            if found and client.get_metric_history(found[0].info.run_id, "val/acc"):
                run_id = found[0].info.run_id
                break
            time.sleep(0.2)
        assert run_id is not None and train.poll() is None, (
            f"the run ended before its first epoch was seen: {(tmp_path / 'train.err').read_text()[-3000:]}")
        _stop(server)
        logged_before = len(MlflowClient(f"sqlite:///{tmp_path / 'server.db'}").get_metric_history(run_id, "val/acc"))
        train.wait(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
        _stop(server)
    err = (tmp_path / "train.err").read_text()
    assert train.returncode == 0, err[-3000:]  # training went on to the end
    assert f"the MLflow tracking server {url} does not answer; training goes on" in err
    assert f"python -m zoo.tracking replay {tmp_path}/runs/{run_id}/unlogged/unlogged.json" in err
    local = tmp_path / "runs" / run_id
    assert {p.name for p in (local / "checkpoints").iterdir()} >= {"best.ckpt", "last.ckpt"}  # kept locally
    unlogged = json.loads((local / "unlogged" / "unlogged.json").read_text())["entries"]
    buffered = sum(len(e.get("metrics", ())) for e in unlogged)
    assert buffered > 0 and logged_before < epochs
    # the server comes back; the printed command logs what was kept
    server = _start_server(tmp_path, port)
    try:
        replayed = subprocess.run([sys.executable, "-m", "zoo.tracking", "replay",
                                   str(local / "unlogged" / "unlogged.json")], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
        assert replayed.returncode == 0, replayed.stderr[-3000:]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert sorted(m.step for m in client.get_metric_history(run_id, "val/acc")) == sorted(
            {m.step for m in client.get_metric_history(run_id, "val/acc")})  # each epoch once
        assert len(client.get_metric_history(run_id, "val/acc")) == epochs
        assert "test/acc" in run.data.metrics
        assert {a.path for a in client.list_artifacts(run_id, "checkpoints")} == {
            "checkpoints/best.ckpt", "checkpoints/last.ckpt"}
        assert [o.model_id for o in run.outputs.model_outputs]  # the model was logged too
        print(f"outage: {logged_before} epoch(s) logged before the kill, {buffered} metric values kept and replayed")
    finally:
        _stop(server)


def test_while_the_server_is_away_the_queue_is_retried_once_every_30_s(tmp_path, monkeypatch, capsys):
    """README: what cannot be logged "is kept beside the checkpoints and retried every 30 s". A client whose server
    is down (nothing listens on port 9) takes writes into the queue; the next writes within 30 s of the failure do
    not try the server; the first write 30 s on retries the queue, oldest first, and logs everything once it is
    back."""
    from mlflow.entities import Metric

    from zoo.offline_queue import BufferedClient

    class Server:
        up, calls, logged = False, 0, []

        def log_batch(self, run_id, metrics=(), params=(), tags=()):
            self.calls += 1
            if not self.up:
                raise ConnectionError("server away")
            self.logged += [m.value for m in metrics]

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    server = Server()
    client = BufferedClient(server, "http://127.0.0.1:9", tmp_path / "unlogged")
    step = iter(range(100))

    def write():
        value = next(step)
        client.log_batch("run", metrics=[Metric("loss", float(value), 0, value)])

    write()  # fails: queued, and the warning names the interval
    assert server.calls == 1 and len(client.queue) == 1
    assert "retried every 30 s" in capsys.readouterr().err
    for seconds in (1.0, 15.0, 29.9):
        now[0] = 1000.0 + seconds
        write()
    assert server.calls == 1 and len(client.queue) == 4  # no attempt within 30 s of the failure
    now[0] = 1030.1
    write()  # one attempt (the oldest entry), which fails: queued, and 30 s more to wait
    assert server.calls == 2 and len(client.queue) == 5
    now[0] = 1059.0
    write()
    assert server.calls == 2
    server.up, now[0] = True, 1060.2
    write()
    assert client.queue == [] and server.logged == [float(v) for v in range(7)]

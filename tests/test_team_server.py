"""The team set-up for real: `mlflow server` backed by PostgreSQL (Debian's, started by the test on loopback with
its data in a temporary folder), four `zoo train` at once against it, and one 2-process DDP run (ddp_spawn on CPU)
that must be recorded once, not once per rank. Slow; skipped where PostgreSQL or its Python driver is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EPOCHS = 2
TINY = ["--data.image_size", "16", "--data.batch_size", "64", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar",
        "false"]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: the test drops to the ``postgres`` user there."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres(loopback):
    """A throwaway PostgreSQL cluster on loopback; yields its SQLAlchemy URI."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL is not installed (apt install postgresql)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed (pip install 'psycopg[binary]')")
    folder = Path(tempfile.mkdtemp(prefix="zoo-postgres-"))  # not under pytest's root-only tmp folders
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = loopback.free_port()
    subprocess.run(_as_postgres(["initdb", "-D", str(folder / "data"), "--auth=trust", "-U", "zoo"]), check=True,
                   capture_output=True)
    subprocess.run(_as_postgres(["pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "log"), "-w", "-o",
                                 f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://zoo@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres(["pg_ctl", "-D", str(folder / "data"), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory, loopback):
    """`mlflow server` with two workers on the PostgreSQL store and a local artifact root; yields its URL."""
    folder = tmp_path_factory.mktemp("team-server")
    port = loopback.free_port()
    server = loopback.start(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres, "--artifacts-destination",
         str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        port, folder / "server.log", cwd=folder, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loopback.stop(server)


def _train(folder: Path, url: str, experiment: str, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "ZOO_FAULT"}
    env.update({"MLFLOW_TRACKING_URI": url, "OMP_NUM_THREADS": "1"})
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "zoo.cli", "train", "vision/eca_resnet18", *TINY, "--trainer.max_epochs", str(EPOCHS),
         "--trainer.logger.init_args.experiment_name", experiment, *extra],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _assert_complete(client, run) -> None:
    """Every epoch's metrics once, the test metrics, the config, both checkpoints and the logged model."""
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "val/acc")) == sorted(
        {m.step for m in client.get_metric_history(run_id, "val/acc")})
    assert len(client.get_metric_history(run_id, "val/acc")) == EPOCHS
    assert {"test/acc", "test/loss", "train/loss_epoch"} <= set(run.data.metrics)
    assert run.data.params["trainer/max_epochs"] == str(EPOCHS)
    assert {a.path for a in client.list_artifacts(run_id, "checkpoints")} == {
        "checkpoints/best.ckpt", "checkpoints/last.ckpt"}
    assert "config.yaml" in {a.path for a in client.list_artifacts(run_id)}
    assert [o.model_id for o in run.outputs.model_outputs]


def test_four_runs_at_once_on_a_postgresql_server_all_complete(team_server, tmp_path):
    from mlflow import MlflowClient

    processes = [_train(tmp_path, team_server, "team-four", "--seed_everything", str(seed)) for seed in range(4)]
    errors = [p.communicate(timeout=900)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], "\n".join(e[-1500:] for e in errors)
    client = MlflowClient(team_server)
    found = client.search_runs([client.get_experiment_by_name("team-four").experiment_id])
    assert len(found) == 4
    assert len({r.data.tags["mlflow.runName"] for r in found}) == 4
    for run in found:
        _assert_complete(client, run)


def test_a_two_process_ddp_run_is_recorded_once(team_server, tmp_path):
    from mlflow import MlflowClient

    process = _train(tmp_path, team_server, "team-ddp", "--trainer.strategy", "ddp_spawn", "--trainer.devices", "2",
                     "--trainer.accelerator", "cpu")
    _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    client = MlflowClient(team_server)
    (run,) = client.search_runs([client.get_experiment_by_name("team-ddp").experiment_id])  # one, not one per rank
    _assert_complete(client, run)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.info.run_id]  # local copies of that run only

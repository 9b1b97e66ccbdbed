"""Shared fixtures. Every test runs in its own working directory, so MLflow stores and caches never leak."""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads slow the scans and
# convolutions several times over. Read when torch loads its OpenMP runtime, so it is set before importing torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield


@pytest.fixture
def make_digit_folder():
    """``make_digit_folder(root, classes=(0, 1, 2), per_class=12, size=8)`` writes a digits ImageFolder tree."""
    return lambda root, classes=(0, 1, 2), per_class=12, size=8: write_digit_folder(root, classes, per_class, size)


def write_digit_folder(root, classes=range(10), per_class=40, size=8):
    """A class-per-folder tree of real handwritten digits (PNG files), as users have their own images."""
    from PIL import Image
    from zoo.data.images import load_digits_rgb

    images, labels = load_digits_rgb()
    for c in classes:
        folder = root / f"digit_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images[labels == c][:per_class]):
            Image.fromarray(image).resize((size, size)).save(folder / f"{i:03d}.png")
    return root


class TrainedRun:
    """A short `zoo train` of vision/eca_resnet18 on an ImageFolder tree, run once per test session."""

    def __init__(self, root, output, exit_code):
        from mlflow import MlflowClient

        self.root, self.output, self.exit_code = root, output, exit_code
        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.tracking_uri)
        experiment = self.client.get_experiment_by_name("zoo")
        self.run = self.client.search_runs([experiment.experiment_id])[0]
        self.run_id = self.run.info.run_id
        artifacts = self.run.info.artifact_uri.removeprefix("file://")
        self.best = f"{artifacts}/checkpoints/best.ckpt"
        self.last = f"{artifacts}/checkpoints/last.ckpt"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, learning):
    import contextlib
    import io

    from zoo.cli import main

    root = tmp_path_factory.mktemp("trained_run")
    images = write_digit_folder(root / "digits", per_class=60)
    (root / "override.yaml").write_text("trainer:\n  log_every_n_steps: 2\n")
    old_cwd, old_uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(root)
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            code = main(["train", "vision/eca_resnet18", "--data.root", str(images), "--data.image_size", "16",
                         "--data.batch_size", "32", "--trainer.max_epochs", "4",
                         "--optimizer.lr", str(learning.lr(0.003)), "--config", str(root / "override.yaml"),
                         "--trainer.enable_progress_bar", "false"])
    finally:
        os.chdir(old_cwd)
        if old_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri
    return TrainedRun(root, output.getvalue(), code)


@pytest.fixture
def http_server(tmp_path):
    """A static HTTP server on a free loopback port: (the folder it serves, its base URL)."""
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class LoopbackServers:
    """Start HTTP servers (``mlflow server``, ``zoo ui``) on free loopback ports and wait for their /health page."""

    @staticmethod
    def free_port() -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @staticmethod
    def start(command: list[str], port: int, log, cwd=None, env=None, timeout_s: float = 120):
        """Run ``command`` (its output to the file ``log``) in its own process group; returns it once
        http://127.0.0.1:port/health answers, or fails the test with the end of the log."""
        import subprocess
        import time
        import urllib.request

        process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                   start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    return process
            except OSError:
                if process.poll() is not None:
                    break
                time.sleep(0.25)
        LoopbackServers.stop(process)
        pytest.fail(f"{' '.join(map(str, command[:4]))} did not answer on port {port}: {log.read_text()[-3000:]}")

    @staticmethod
    def stop(process) -> None:
        """SIGTERM to the server and its workers."""
        import contextlib
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def loopback() -> type[LoopbackServers]:
    return LoopbackServers


class LearningCheck:
    """What the learning tests (issue 31) train with: ``lr(x)`` scales a recipe's learning rate and ``seed`` seeds
    the run. ``ZOO_TEST_LR_SCALE=0`` trains at learning rate 0, where every such test must fail (its docstring
    says by how much); ``ZOO_TEST_SEED=1`` (2, ...) shows the spread the margins were set for."""

    def __init__(self, lr_scale: float, seed: int):
        self.lr_scale, self.seed = lr_scale, seed

    def lr(self, value: float) -> float:
        return value * self.lr_scale

    def scaled(self, optimizer: dict) -> dict:
        """A recipe's optimizer config with its learning rate scaled."""
        init_args = dict(optimizer.get("init_args", {}))
        init_args["lr"] = self.lr(init_args["lr"])
        return {**optimizer, "init_args": init_args}

    def optimizer(self, lr: float, class_path: str = "torch.optim.Adam", **init_args) -> dict:
        """An optimizer config as the tasks take it, at the scaled learning rate."""
        return {"class_path": class_path, "init_args": {"lr": self.lr(lr), **init_args}}


@pytest.fixture(scope="session")
def learning() -> LearningCheck:
    return LearningCheck(float(os.environ.get("ZOO_TEST_LR_SCALE", "1")), int(os.environ.get("ZOO_TEST_SEED", "0")))


@pytest.fixture(scope="session")
def readme_figures():
    """``readme_figures(pattern)``: the numbers README.md states where the regular expression ``pattern`` (with one
    group per number) matches, so that a slow quick-start test asserts the figure README gives for it."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()

    def figures(pattern: str) -> tuple[float, ...]:
        found = re.search(pattern, text, flags=re.DOTALL)
        assert found is not None, f"README.md no longer states {pattern!r}"
        return tuple(float(g) for g in found.groups())

    return figures


class TrainedGroup:
    """`zoo train medical/deepsurv --data.folds 3` on lifelines' Rossi cohort (432 real patients): one parent run
    with a child per fold, run once per test session."""

    def __init__(self, root, output, exit_code):
        from mlflow import MlflowClient

        self.root, self.output, self.exit_code = root, output, exit_code
        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.tracking_uri)
        runs = self.client.search_runs([self.client.get_experiment_by_name("zoo").experiment_id])
        (self.parent,) = [r for r in runs if r.data.tags.get("zoo.run_type") == "group"]
        self.children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == self.parent.info.run_id),
                               key=lambda r: r.data.tags["zoo.member"])


@pytest.fixture(scope="session")
def trained_group(tmp_path_factory):
    import contextlib
    import io

    from zoo.cli import main

    root = tmp_path_factory.mktemp("trained_group")
    old_cwd, old_uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    old_cache = os.environ.get("ZOO_CACHE")
    os.environ["ZOO_CACHE"] = str(root / "cache")
    os.chdir(root)
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            code = main(["train", "medical/deepsurv", "--data.dataset", "rossi", "--data.folds", "3",
                         "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false"])
    finally:
        os.chdir(old_cwd)
        if old_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri
        if old_cache is None:
            os.environ.pop("ZOO_CACHE", None)
        else:
            os.environ["ZOO_CACHE"] = old_cache
    return TrainedGroup(root, output.getvalue(), code)


class SmallRuns:
    """Lightning trainers for the tests' small runs (CPU, no logger, no checkpoint callback, no bar or summary),
    writing under one folder; ``overrides`` are Trainer arguments (``max_epochs``, ``limit_train_batches``...)."""

    def __init__(self, root):
        self.root = root

    def trainer(self, **overrides):
        import lightning as L

        defaults = dict(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=self.root)
        return L.Trainer(**{**defaults, **overrides})

    def fit_and_save(self, task, data, **overrides):
        """Train ``task`` on ``data``, save ``run.ckpt``; returns (its path, the data module arguments it keeps)."""
        trainer = self.trainer(**overrides)
        trainer.fit(task, datamodule=data)
        path = self.root / "run.ckpt"
        trainer.save_checkpoint(path)
        return path, torch.load(path, weights_only=True)["datamodule_hyper_parameters"]


@pytest.fixture
def small_runs(tmp_path) -> SmallRuns:
    return SmallRuns(tmp_path)

"""The trained model as a real MLflow model: pyfunc loading, `mlflow models serve` and the registry."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

import zoo


def _logged_model(trained_run):
    (logged,) = trained_run.client.search_logged_models([trained_run.run.info.experiment_id])
    return logged


def _reference(trained_run, x: np.ndarray) -> np.ndarray:
    model = zoo.create_model("vision/eca_resnet18", pretrained=trained_run.best).eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_pyfunc_load_model_predicts_like_the_zoo_model(trained_run, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_run.tracking_uri)
    mlflow.set_tracking_uri(trained_run.tracking_uri)
    logged = _logged_model(trained_run)
    files = {a.path for a in trained_run.client.list_logged_model_artifacts(logged.model_id)}
    assert {"MLmodel", "model.safetensors", "config.json", "pyfunc_model.py", "input_example.json"} <= files
    assert not any(f.endswith((".pkl", ".pickle", ".ckpt", ".pt")) for f in files)  # weights are not pickled
    pyfunc = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
    inputs = pyfunc.metadata.get_input_schema().inputs
    assert list(inputs[0].shape) == [-1, 3, 16, 16]  # the training image size, batch dimension free
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(pyfunc.predict(x), _reference(trained_run, x), rtol=1e-5, atol=1e-5)
    # and registered: the registry version loads the same model through MLflow and through the zoo
    version = mlflow.register_model(f"models:/{logged.model_id}", "zoo-test-pyfunc").version
    registered = mlflow.pyfunc.load_model(f"models:/zoo-test-pyfunc/{version}")
    np.testing.assert_allclose(registered.predict(x), pyfunc.predict(x), rtol=0, atol=0)
    model = zoo.create_model("vision/eca_resnet18", pretrained=f"models:/zoo-test-pyfunc/{version}").eval()
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), pyfunc.predict(x), rtol=1e-5, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_real_request(trained_run, tmp_path):
    logged = _logged_model(trained_run)
    port = _free_port()
    # mlflow runs `uvicorn` from PATH: the venv's bin folder must be on it
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained_run.tracking_uri, "OMP_NUM_THREADS": "1", "PATH": path}
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{logged.model_id}", "--env-manager",
         "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                     data=json.dumps({"inputs": x.tolist()}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        answer = None
        while time.monotonic() - started < 120 and server.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        ready = time.monotonic() - started
        assert answer is not None, server.stdout.read().decode()[-3000:] if server.poll() is not None else "no answer"
        print(f"mlflow models serve: first answer {ready:.1f} s after start")
        predictions = np.asarray(answer["predictions"], dtype=np.float32)
        np.testing.assert_allclose(predictions, _reference(trained_run, x), rtol=1e-4, atol=1e-4)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

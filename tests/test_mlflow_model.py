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


# Every quick-start family, built at a configuration other than its card's default (the shapes a quick start or a
# user's data gives it): (model id, constructor arguments, the data module's recorded arguments, the expected
# input shapes without the batch).
FAMILIES = [
    ("vision/eca_resnet18", {"num_classes": 3}, {"image_size": 24}, {"input": (3, 24, 24)}),
    ("vision/eca_mobilenet_v2", {"num_classes": 3}, {"image_size": 32}, {"input": (3, 32, 32)}),
    ("vision/halonet26t", {"num_classes": 3}, {"image_size": 256}, {"input": (3, 256, 256)}),
    ("vision/vmamba_tiny", {"num_classes": 3, "depths": (1, 1), "dims": 16}, {"image_size": 32},
     {"input": (3, 32, 32)}),
    ("vision/dea_net", {"base_dim": 8, "depths": (1, 1, 1)}, {"image_size": 32}, {"input": (3, 32, 32)}),
    ("vision/yolo9tr", {"num_classes": 2}, {"image_size": 64}, {"input": (3, 64, 64)}),
    ("audio/ssast_tiny_patch", {"num_classes": 4, "input_tdim": 96}, {"num_frames": 96}, {"input": (96, 128)}),
    ("finance/tlob", {"seq_len": 32, "num_layers": 2}, {"seq_len": 32}, {"input": (32, 46)}),
    ("finance/mlplob", {"seq_len": 64}, {"seq_len": 64}, {"input": (64, 46)}),
    ("finance/resnls", {"window": 9}, {}, {"input": (9, 1)}),
    ("medical/sepsis_transformer", {"in_features": 118, "d_model": 32, "num_heads": 4}, {}, {"input": (72, 118)}),
    ("medical/medusa", {"body_size": 32, "backbone": "resnet18"}, {"image_size": 64},
     {"input": (3, 64, 64), "attention_image": (1, 32, 32)}),
    ("medical/biofusionnet", {"gene_features": 20, "clinical_features": 3}, {},
     {"input": (500, 1152), "genes": (20,), "clinical": (3,)}),
    ("medical/deepsurv", {"in_features": 82}, {}, {"input": (82,)}),
    ("timeseries/regenn", {"window": 12, "horizon": 3, "variables": 2}, {}, {"input": (12, 2)}),
    ("timeseries/lstm", {"window": 20, "variables": 3}, {}, {"input": (20, 3)}),
    ("timeseries/mamba_forecaster", {"window": 16, "variables": 2}, {}, {"input": (16, 2)}),
]


# the families the issue found served at the card's shapes run by default, the rest with the slow tests
FAST = {"finance/tlob", "medical/sepsis_transformer", "medical/medusa", "medical/deepsurv"}


@pytest.mark.parametrize(("model_id", "kwargs", "data", "shapes"), [
    pytest.param(*f, id=f[0], marks=() if f[0] in FAST else pytest.mark.slow) for f in FAMILIES])
def test_every_family_is_a_pyfunc_at_the_shape_it_was_built_for(model_id, kwargs, data, shapes, tmp_path):
    """The MLflow model takes the trained model's shapes, not the card's default (TLOB at 32x46 was offered
    128x46, DeepSurv on 82 covariates 9), and mlflow.pyfunc.load_model serves it: its signature and input example
    have those shapes and its predictions are the model's."""
    import mlflow

    from zoo.pyfunc import save_pyfunc

    torch.manual_seed(0)
    model = zoo.create_model(model_id, **kwargs).eval()
    folder = zoo.save_pretrained(model, tmp_path / "folder")
    pyfunc = mlflow.pyfunc.load_model(str(save_pyfunc(folder, tmp_path / "pyfunc", data)))
    schema = {i.name or "input": tuple(i.shape) for i in pyfunc.metadata.get_input_schema().inputs}
    assert schema == {name: (-1, *shape) for name, shape in shapes.items()}
    rng = np.random.default_rng(0)
    inputs = {name: rng.standard_normal((2, *shape)).astype(np.float32) for name, shape in shapes.items()}
    served = pyfunc.predict(inputs if len(inputs) > 1 else inputs["input"])
    with torch.no_grad():
        expected = model(*(torch.from_numpy(x) for x in inputs.values()))
    leaves = torch.utils._pytree.tree_leaves(expected)
    served_leaves = list(served.values()) if isinstance(served, dict) else [served]
    for got, want in zip(torch.utils._pytree.tree_leaves(served_leaves), leaves, strict=True):
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-5)


def _served(model, folder_root, data=None):
    import mlflow

    from zoo.pyfunc import save_pyfunc

    return mlflow.pyfunc.load_model(str(save_pyfunc(folder_root / "folder", folder_root / "pyfunc", data)))


def test_tabr_is_a_pyfunc_that_retrieves_from_its_training_rows(tmp_path):
    """TabR needs its candidates (the preprocessed training rows) at inference: the MLflow model keeps them as
    safetensors beside the weights, and predicts as TabR does with them; a table with numeric and categorical
    columns but no binary ones passes x_cat as x_cat (not as the absent x_bin)."""
    from zoo.blocks.retrieval import Candidates
    from zoo.pyfunc import write_candidates

    torch.manual_seed(0)
    model = zoo.create_model("tabular/tabr", n_num_features=3, cat_cardinalities=[4], num_classes=1).eval()
    zoo.save_pretrained(model, tmp_path / "folder")
    rows = Candidates(torch.randn(120, 3), None, torch.randint(0, 4, (120, 1)), torch.randn(120))
    write_candidates(tmp_path / "folder", {k: v for k, v in rows._asdict().items() if v is not None})
    pyfunc = _served(model, tmp_path)
    assert [i.name for i in pyfunc.metadata.get_input_schema().inputs] == ["x_num", "x_cat"]
    x_num = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    x_cat = np.random.default_rng(1).integers(0, 4, (5, 1))
    with torch.no_grad():
        expected = model(torch.from_numpy(x_num), None, torch.from_numpy(x_cat), candidates=rows).numpy()
    np.testing.assert_allclose(pyfunc.predict({"x_num": x_num, "x_cat": x_cat}), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "shape"), [
    (["finance/tlob", "--data.seq_len", "16", "--model.model_kwargs", "{seq_len: 16, num_layers: 1}"], (16, 46)),
    (["medical/deepsurv", "--data.covariates", "[age, tsize, pnodes]"], (3,)),
], ids=["tlob_16_snapshots", "deepsurv_3_covariates"])
def test_a_quick_start_trained_at_another_shape_is_served_at_that_shape(args, shape, tmp_path, monkeypatch):
    """`zoo train` at a shape the card does not have (a 16-snapshot TLOB window, three DeepSurv covariates), then
    mlflow.pyfunc.load_model on the run's logged model predicts like the checkpoint's model."""
    import contextlib

    import mlflow
    from mlflow import MlflowClient

    from zoo.checkpoints import read_checkpoint
    from zoo.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with contextlib.redirect_stdout(None):
        assert main(["train", *args, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                     "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
                     "--trainer.enable_progress_bar", "false"]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("zoo").experiment_id
    (logged,) = client.search_logged_models([experiment])
    assert logged.model_type == "pyfunc"
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
    assert tuple(pyfunc.metadata.get_input_schema().inputs[0].shape) == (-1, *shape)
    (run,) = client.search_runs([experiment])
    model = read_checkpoint(run.info.artifact_uri.removeprefix("file://") + "/checkpoints/best.ckpt").build_model()
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(pyfunc.predict(x), expected, rtol=1e-5, atol=1e-5)

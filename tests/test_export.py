"""`zoo export`: ONNX and torch.export files of a trained checkpoint give the model's outputs at other batch sizes,
the file is logged to the checkpoint's MLflow run, and what cannot export says why in one line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import zoo
from zoo.cli import main

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

DIFF = re.compile(r"check batch (\d+): .* max \|diff\| (\S+) \(ok")


@pytest.fixture(scope="module")
def tabular_checkpoint(tmp_path_factory):
    """A one-epoch tabular/mlp checkpoint of a table with two numeric and one 3-category column (not the card's
    8 numeric features), written by Lightning with the zoo task, as `zoo train` writes it."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from zoo.data.tabular import TabularData

    from zoo.tasks.tabular import TabularTask

    root = tmp_path_factory.mktemp("export_checkpoint")
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "kind": rng.choice(["x", "y", "z"], n)})
    frame["y"] = 2 * frame["a"] - frame["b"] + (frame["kind"] == "x") + rng.normal(scale=0.1, size=n)
    frame.to_csv(root / "table.csv", index=False)
    L.seed_everything(0, verbose=False)
    data = TabularData(path=str(root / "table.csv"), target="y", batch_size=32)
    task = TabularTask("tabular/mlp", num_classes=data.num_classes, feature_shapes=data.feature_shapes,
                       class_names=data.class_names, target_scaling=data.target_scaling)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1, callbacks=[ModelCheckpoint(dirpath=root, filename="best")])
    trainer.fit(task, datamodule=data)
    return root / "best.ckpt"


@pytest.fixture(scope="module")
def tabular_run(tabular_checkpoint, tmp_path_factory):
    """The checkpoint inside an MLflow run's artifact folder (checkpoints/best.ckpt, where `zoo train` puts it):
    (client, store folder, run id, checkpoint path)."""
    import shutil

    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("export_run")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.create_experiment("zoo", artifact_location=(root / "mlruns").as_uri())
    run = client.create_run(experiment)
    checkpoints = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(tabular_checkpoint, checkpoints / "best.ckpt")
    return client, root, run.info.run_id, str(checkpoints / "best.ckpt")


def _differences(output: str) -> dict[int, float]:
    return {int(b): float(d) for b, d in DIFF.findall(output)}


def _session_outputs(path, *inputs):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, [x.numpy() for x in inputs], strict=True)))


def test_onnx_and_torch_export_match_the_checkpoint_and_are_logged_to_its_run(tabular_run, tmp_path, monkeypatch,
                                                                              capsys):
    import zoo

    client, root, run_id, best = tabular_run
    monkeypatch.chdir(root)  # the default store, ./mlflow.db, is the run's
    onnx_file, program_file = tmp_path / "out" / "mlp.onnx", tmp_path / "out" / "mlp.pt2"
    assert main(["export", "--ckpt", best, "--format", "onnx", "--output", str(onnx_file)]) == 0
    onnx_out = capsys.readouterr().out
    assert main(["export", "--ckpt", best, "--format", "torch_export", "--output", str(program_file)]) == 0
    program_out = capsys.readouterr().out
    for out in (onnx_out, program_out):
        differences = _differences(out)
        assert set(differences) == {1, 3} and max(differences.values()) <= 1e-4, out
        assert "x_num (batch, 2)" in out and "x_cat (batch, 1)" in out  # the checkpoint's table, not the card's
    assert "dynamo exporter" in onnx_out

    # independently of the command's own check: the files give the checkpoint's outputs at batches 1 and 5
    model = zoo.create_model("tabular/mlp", pretrained=best).eval()
    program = torch.export.load(str(program_file)).module()
    for batch in (1, 5):
        x_num, x_cat = torch.randn(batch, 2), torch.randint(0, 3, (batch, 1))
        with torch.no_grad():
            expected = model(x_num, None, x_cat)
            torch.testing.assert_close(program(x_num, x_cat), expected)
        (actual,) = _session_outputs(onnx_file, x_num, x_cat)
        np.testing.assert_allclose(actual, expected.numpy(), atol=1e-4, rtol=0)

    assert f"logged to MLflow run {run_id} as export/mlp.onnx" in onnx_out
    assert {a.path for a in client.list_artifacts(run_id, "export")} == {"export/mlp.onnx", "export/mlp.pt2"}


def test_run_flag_logs_a_copied_checkpoint_and_a_plain_file_is_not_logged(tabular_run, tabular_checkpoint, tmp_path,
                                                                          monkeypatch, capsys):
    client, root, run_id, _ = tabular_run
    # a checkpoint outside any run folder, in a folder without a store: nothing is logged, no mlflow.db is made
    assert main(["export", "--ckpt", str(tabular_checkpoint), "--format", "torch_export", "--output", "a.pt2"]) == 0
    assert "logged" not in capsys.readouterr().out and not (tmp_path / "mlflow.db").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    assert main(["export", "--ckpt", str(tabular_checkpoint), "--format", "torch_export", "--output", "b.pt2",
                 "--run", run_id]) == 0
    assert "export/b.pt2" in {a.path for a in client.list_artifacts(run_id, "export")}
    assert main(["export", "--ckpt", str(tabular_checkpoint), "--format", "torch_export", "--run", "0" * 32]) == 1
    assert f"no MLflow run {'0' * 32}" in capsys.readouterr().err


@pytest.mark.slow
def test_a_trained_image_classifier_exports_at_its_training_size(trained_run, tmp_path, monkeypatch, capsys):
    """End to end on `zoo train`'s own run: eca_resnet18 trained at 16 px exports at 16 px, logged to the run."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_run.tracking_uri)
    for fmt in ("onnx", "torch_export"):
        assert main(["export", "--ckpt", trained_run.best, "--format", fmt, "--output",
                     str(tmp_path / f"eca.{fmt}")]) == 0
        out = capsys.readouterr().out
        assert "input (batch, 3, 16, 16)" in out and max(_differences(out).values()) <= 1e-4, out
    logged = {a.path for a in trained_run.client.list_artifacts(trained_run.run_id, "export")}
    assert {"export/eca.onnx", "export/eca.torch_export"} <= logged


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_or_corrupt_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    assert main(["export", "--ckpt", str(tmp_path / "nope.ckpt"), "--format", "onnx"]) == 1
    assert str(tmp_path / "nope.ckpt") in _one_error_line(capsys)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    assert main(["export", "--ckpt", str(corrupt), "--format", "torch_export"]) == 1
    assert str(corrupt) in _one_error_line(capsys)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, plain)
    assert main(["export", "--ckpt", str(plain), "--format", "onnx"]) == 1
    assert str(plain) in _one_error_line(capsys) and not list(tmp_path.glob("*.onnx"))


class _Eigenvalues(nn.Module):
    """(B, 4, 4) -> (B, 4) eigenvalues of x x^T: torch.linalg.eigh has no ONNX translation."""

    def forward(self, x):
        return torch.linalg.eigh(x @ x.transpose(-1, -2)).eigenvalues


class _DataDependent(nn.Module):
    """Python control flow on a tensor's value, which torch.export cannot trace."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else -x


@pytest.fixture
def register_toy(monkeypatch):
    """Register a toy model under ``test/<name>`` for one test (removed after it)."""
    from zoo import registry
    from zoo.registry import Classes, ModelCard, ModelEntry, Paper

    registry._discover()

    def register(name, factory, shape):
        card = ModelCard(task="tabular", paper=Paper("toy"), license="MIT", num_params=0,
                         input_shape=shape, recipes={}, output=Classes(1))
        entry = ModelEntry(f"test/{name}", card, lambda **_: factory(), None, None, registry.Path("."))
        monkeypatch.setitem(registry._REGISTRY, f"test/{name}", entry)
        return f"test/{name}"

    return register


def test_a_model_that_cannot_export_is_one_line_naming_model_and_operator(register_toy, capsys):
    eigh = register_toy("eigh", _Eigenvalues, (4, 4))
    assert main(["export", "--model", eigh, "--format", "onnx"]) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f"zoo export: error: {eigh} does not export to onnx: ")
    assert "linalg_eigh" in line  # the operator is named
    branch = register_toy("branch", _DataDependent, (3,))
    assert main(["export", "--model", branch, "--format", "torch_export"]) == 1
    line = _one_error_line(capsys)
    assert f"{branch} does not export to torch_export" in line and "data" in line.lower()
    assert not list(Path.cwd().glob("*.onnx")) and not list(Path.cwd().glob(".*partial*"))  # no partial file left


def test_outputs_that_differ_fail_the_check(register_toy, monkeypatch, capsys):
    """The check can fail: an exported file whose outputs differ (here: a shifted onnxruntime) is an error."""
    toy = register_toy("linear", lambda: nn.Linear(3, 2), (3,))
    real = onnxruntime.InferenceSession

    class Shifted(real):
        def run(self, *args, **kwargs):
            return [o + 1e-3 for o in super().run(*args, **kwargs)]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Shifted)
    assert main(["export", "--model", toy, "--format", "onnx"]) == 1
    out, err = capsys.readouterr()
    assert "FAIL" in out and f"{toy}: the exported onnx outputs differ from PyTorch by more than 0.0001" in err


class _Slow(nn.Module):
    """A model whose every call takes 0.4 s (as a large model's tracing takes minutes)."""

    def forward(self, x):
        import time

        time.sleep(0.4)
        return x * 2


class _PerExample(nn.Module):
    """Loops over the batch in Python: torch.export specialises the batch size to the traced one."""

    def forward(self, x):
        return torch.stack([row.sum() * row for row in x.unbind(0)])


def test_export_stops_at_its_time_limit_naming_the_stage_and_leaves_no_file(register_toy, capsys):
    slow = register_toy("slow", _Slow, (3,))
    assert main(["export", "--model", slow, "--format", "torch_export", "--timeout", "0.6"]) == 1
    out, err = capsys.readouterr()
    assert "running the model once" in out  # each stage says so as it starts
    assert re.fullmatch(rf"zoo export: error: {slow}: export stopped after \d+ s, the time limit \(--timeout 0.6\), "
                        r"while (tracing|running).* no file was written\..*\n", err), err
    assert not list(Path.cwd().glob("*.pt2")) and not list(Path.cwd().glob(".*partial*"))


def test_a_model_that_fixes_the_batch_exports_at_batch_1_and_says_so(register_toy, capsys):
    loop = register_toy("per_example", _PerExample, (3,))
    for fmt, suffix in (("torch_export", "pt2"), ("onnx", "onnx")):
        assert main(["export", "--model", loop, "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "the model's code fixes the batch size" in out and "tracing again at batch 1" in out
        assert "batch fixed at 1" in out and "call the exported file one example at a time" in out
        assert list(_differences(out)) == [1]  # checked where it holds
        assert Path(f"per_example.{suffix}").is_file()


def test_a_tiny_vmamba_exports_with_a_dynamic_batch(tmp_path):
    """VMamba's selective scan tiled the batch in Python loops, which fixed the exported batch at 2 (a 14-minute
    export that then failed); under torch.export the scan traces its sequential recurrence instead."""
    from zoo.export import export_model
    from zoo.inputs import example_inputs

    torch.manual_seed(0)
    model = zoo.create_model("vision/vmamba_tiny", depths=(1,), dims=8, num_classes=3).eval()
    specs, slots = example_inputs(model, "vision/vmamba_tiny", {"image_size": 16})
    assert [s.shape for s in specs] == [(3, 16, 16)]
    stages = []
    result = export_model(model, "vision/vmamba_tiny", "torch_export", tmp_path / "vmamba.pt2", specs, slots,
                          progress=stages.append, timeout=600)
    assert result.dynamic_batch and set(result.differences) == {1, 3}
    assert max(result.differences.values()) <= 1e-5
    assert stages[1].startswith("tracing with torch.export, dynamic batch") and len(stages) == 4

"""A zoo run's checkpoint is read once, safely, and answers what every command asks of it."""

from __future__ import annotations

import pytest
import torch

import zoo.weights
from zoo.checkpoints import read_checkpoint
from zoo.cli import main
from zoo.errors import CheckpointError


@pytest.fixture
def counted_reads(monkeypatch):
    """Every torch file the process reads, by path, while the test runs."""
    reads: list[str] = []
    original = zoo.weights.read_torch_file

    def counting(path):
        reads.append(str(path))
        return original(path)

    monkeypatch.setattr(zoo.weights, "read_torch_file", counting)
    monkeypatch.setattr("zoo.checkpoints.read_torch_file", counting)
    return reads


def test_the_record_answers_without_reading_again(trained_run, counted_reads):
    checkpoint = read_checkpoint(trained_run.best)
    assert checkpoint.model_id == "vision/eca_resnet18"
    assert checkpoint.task_kind == "image_classification"
    assert checkpoint.data_hparams["image_size"] == 16
    assert len(checkpoint.extras["class_names"]) == 10
    assert checkpoint.config()["model"]["pretrained"] is None
    model = checkpoint.build_model().eval()
    expected = checkpoint.content["state_dict"]["model.fc.weight"]
    assert torch.equal(model.state_dict()["fc.weight"], expected)
    assert counted_reads == [trained_run.best]


@pytest.mark.parametrize("command", [
    ["test", "--trainer.logger", "false"],
    ["predict", "--trainer.logger", "false", "--output", "{tmp}/predictions.csv"],
    ["export", "--format", "torch_export", "--output", "{tmp}/model.pt2"],
])
def test_each_command_reads_the_checkpoint_once(trained_run, counted_reads, tmp_path, command):
    flags = [part.format(tmp=tmp_path) for part in command]
    if flags[0] == "predict":
        flags += ["--data.predict_path", str(trained_run.root / "digits" / "digit_3")]
    assert main([flags[0], "--ckpt", trained_run.best, *flags[1:]]) == 0
    assert counted_reads.count(trained_run.best) == 1, counted_reads


def test_explain_reads_the_checkpoint_once(trained_run, counted_reads, tmp_path):
    image = next((trained_run.root / "digits" / "digit_3").iterdir())
    assert main(["explain", "--ckpt", trained_run.best, "--image", str(image), "--output",
                 str(tmp_path / "cam.png")]) == 0
    assert counted_reads.count(trained_run.best) == 1, counted_reads
    assert (tmp_path / "cam.png").stat().st_size > 0


def test_a_file_without_the_zoo_record_is_named(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"plain.pt is not a checkpoint of a zoo run \(it lacks the 'zoo'"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"no such checkpoint: .*missing\.ckpt"):
        read_checkpoint(tmp_path / "missing.ckpt")

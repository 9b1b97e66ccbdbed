"""Files written by the official code of ECA-Net, VMamba, Res-VMamba and DEA-Net load through ``create_model`` and
give the official outputs (fixtures made by running the official model classes: tests/fixtures/official/*/README.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from zoo.vision.vmamba import convert_official_checkpoint

import zoo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"


def assert_matches(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 1e-5 relative to the largest official output."""
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("name", ["eca_resnet18", "eca_resnet50", "eca_mobilenet_v2"])
def test_eca_training_checkpoint_gives_the_official_logits(name):
    # main.py / light_main.py's checkpoint: {epoch, arch, state_dict ('module.' keys), best_prec1, optimizer}
    io = torch.load(FIXTURES / "eca_net" / f"{name}_io.pt")
    model = zoo.create_model(f"vision/{name}", pretrained=FIXTURES / "eca_net" / f"{name}_checkpoint.pth.tar")
    assert model.zoo_config["num_classes"] == 10  # the head size of the file
    assert_matches(run(model, io["input"]), io["output"])


VMAMBA = FIXTURES / "vmamba" / "ckpt_epoch_3.pth"


def test_vmamba_training_checkpoint_gives_the_official_logits():
    # the Swin-style checkpoint of save_checkpoint_ema (model, model_ema, optimizer, yacs config, ...); no
    # constructor arguments given: depths, widths and the scan's sizes are read off the file
    io = torch.load(FIXTURES / "vmamba" / "io.pt")
    model = zoo.create_model("vision/vmamba_tiny", pretrained=VMAMBA)
    assert model.zoo_config["model_kwargs"] == {
        "depths": (1, 1, 2, 1), "dims": 16, "d_state": 4, "ssm_ratio": 2.0, "dt_rank": "auto", "patch_size": 4,
        "in_chans": 3}
    assert_matches(run(model, io["input"]), io["output"])


def test_vmamba_ema_entry_of_the_training_checkpoint_gives_the_official_ema_logits(tmp_path):
    io = torch.load(FIXTURES / "vmamba" / "io.pt")
    converted = convert_official_checkpoint(VMAMBA, tmp_path / "ema.safetensors", weights="model_ema")
    model = zoo.create_model("vision/vmamba_tiny", pretrained=converted)
    assert_matches(run(model, io["input"]), io["output_ema"])
    assert not torch.allclose(io["output_ema"], io["output"])  # the two entries are different weights


def test_res_vmamba_checkpoint_loads_without_shortcuts_and_matches_with_the_officials_random_ones(caplog):
    # Deliberate difference: the official forward builds its three shortcut 1x1 convs anew on every call, so they
    # are not in its checkpoints; here they are registered. The fixture recorded the convs the official call used.
    io = torch.load(FIXTURES / "res_vmamba" / "io.pt")
    with caplog.at_level(logging.WARNING, logger="zoo.vision.vmamba"):
        model = zoo.create_model("vision/res_vmamba", pretrained=FIXTURES / "res_vmamba" / "ckpt_epoch_3.pth")
    assert "shortcuts.0.proj.weight" in caplog.text and "at random on every forward pass" in caplog.text
    assert model.zoo_config["model_kwargs"]["depths"] == (1, 1, 1, 1)
    first = run(model, io["input"])
    assert torch.equal(first, run(model, io["input"]))  # registered shortcuts: deterministic, unlike the release
    assert (first - io["output"]).abs().max() > 1e-2  # the file alone cannot give the official output
    with torch.no_grad():
        for i, shortcut in enumerate(model.shortcuts):
            shortcut.proj.weight.copy_(io[f"shortcut{i}.weight"])
            shortcut.proj.bias.copy_(io[f"shortcut{i}.bias"])
    assert_matches(run(model, io["input"]), io["output"])


DEA = FIXTURES / "dea_net"


def test_dea_net_train_py_checkpoint_builds_the_training_graph_and_gives_the_official_output():
    # train.py's best.pk: numpy scalars max_psnr / max_ssim and lists psnrs / ssims beside 'module.' weights
    io = torch.load(DEA / "io.pt")
    model = zoo.create_model("vision/dea_net", pretrained=DEA / "best.pk")
    assert model.zoo_config["model_kwargs"] == {"base_dim": 4, "depths": (4, 4, 8), "deploy": False}
    assert_matches(run(model, io["input"]), io["output_train"])


@pytest.mark.parametrize("source", ["PSNR4020_SSIM9934_simplified.pk", "best.pk"])
def test_dea_net_deploy_graph_gives_the_official_backbone_output(source):
    # reparam.py's re-parameterised file (the released weights' layout), and the training file merged on loading
    io = torch.load(DEA / "io.pt")
    model = zoo.create_model("vision/dea_net_deploy", pretrained=DEA / source)
    assert model.deploy
    assert_matches(run(model, io["input"]), io["output_deploy"])


def test_dea_net_reparameterised_file_gives_the_deploy_graph_even_from_the_training_id():
    io = torch.load(DEA / "io.pt")
    model = zoo.create_model("vision/dea_net", pretrained=DEA / "PSNR4020_SSIM9934_simplified.pk")
    assert model.deploy
    assert_matches(run(model, io["input"]), io["output_deploy"])

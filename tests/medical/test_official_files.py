"""Files the official code of the sepsis transformer and of BioFusionNet writes load through ``create_model`` as a
user calls it, and give the official outputs (fixtures made by the official code: tests/fixtures/official/*)."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import CheckpointError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "official"
SEPSIS = FIXTURES / "sepsis_transformer"
BIOFUSIONNET = FIXTURES / "biofusionnet"


def assert_matches(out: torch.Tensor, official: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal to the official output within ``rtol`` of the output's scale (1e-5 relative)."""
    assert out.shape == official.shape
    scale = official.abs().max().clamp_min(1e-12)
    assert ((out - official).abs().max() / scale).item() <= rtol, (out - official).abs().max()


@pytest.mark.parametrize("norm", ["rezero", "layer"])
def test_official_lightning_checkpoint_of_the_attention_model_loads_and_matches(norm):
    """The .ckpt that src/torch/train_model.py's ModelCheckpoint writes (pytorch-lightning 1.0.5: EarlyStopping and
    ModelCheckpoint classes as callback keys, optimizer state, hyper_parameters): the heads (4, not the default 8)
    and dropout come from its hyper_parameters, the widths, depth and norm from its tensors."""
    model = zoo.create_model("medical/sepsis_transformer", pretrained=str(SEPSIS / f"attention_model_{norm}.ckpt"))
    assert model.zoo_config["model_kwargs"] | {"num_heads": 4} == model.zoo_config["model_kwargs"]
    assert model.zoo_config["model_kwargs"]["norm"] == norm and model.in_features == 16
    io = torch.load(SEPSIS / f"io_{norm}.pt")
    with torch.no_grad():
        out = model.eval()(io["x"], io["lengths"])
    assert_matches(out, io["output"])


def test_a_checkpoint_trained_with_statics_is_refused_with_the_reason(tmp_path):
    checkpoint = torch.load(SEPSIS / "attention_model_rezero.ckpt", weights_only=False)
    checkpoint["hyper_parameters"]["ignore_statics"] = False
    checkpoint["state_dict"]["statics_embedding.weight"] = torch.zeros(16, 4)
    path = tmp_path / "with_statics.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="statics"):
        zoo.create_model("medical/sepsis_transformer", pretrained=str(path))


def released_biofusionnet_weights() -> dict[str, torch.Tensor]:
    """The released MultimodalModel's weights of the fixture, drawn again by the rule its README gives (the 32 MB
    file is not committed): one generator, state-dict order, matrices randn / sqrt(fan_in), vectors 0.1 randn
    (+1 for the LayerNorm weights, the only 1-D weights)."""
    layout = json.loads((BIOFUSIONNET / "state_dict_layout.json").read_text())
    generator = torch.Generator().manual_seed(layout["seed"])
    weights, digest = {}, hashlib.sha256()
    for name, shape in layout["tensors"]:
        t = torch.randn(shape, generator=generator)
        t = t / shape[-1] ** 0.5 if len(shape) >= 2 else 0.1 * t + (1.0 if name.endswith("weight") else 0.0)
        weights[name] = t
        digest.update(name.encode())
        digest.update(t.numpy().tobytes())
    assert digest.hexdigest() == layout["sha256_of_names_and_float32_bytes"], "not the weights the fixture used"
    return weights


def test_released_biofusionnet_state_dict_loads_and_matches_in_released_attention(tmp_path):
    """train_loop.py saves torch.save(model.state_dict(), path): 103 tensors with the orphan encoder layer, no VAE
    (the risk model reads VAE features, so the file builds fusion='none'). attention='released' gives the official
    risks of patients called one at a time; the default token attention (the paper's) deliberately differs."""
    path = tmp_path / "cv_1_saved_model.pt"
    torch.save(released_biofusionnet_weights(), path)
    io = torch.load(BIOFUSIONNET / "io.pt")
    inputs = (io["patches"], io["genes"], io["clinical"], io["mask"])
    with pytest.warns(UserWarning, match="never called"):
        released = zoo.create_model("medical/biofusionnet", pretrained=str(path), attention="released").eval()
    assert released.vae is None  # read off the file: a released risk model holds no VAE
    with torch.no_grad():
        assert_matches(released(*inputs), io["output"])
        with pytest.warns(UserWarning):
            tokens = zoo.create_model("medical/biofusionnet", pretrained=str(path)).eval()
        assert (tokens(*inputs) - io["output"]).abs().max() > 1e-2

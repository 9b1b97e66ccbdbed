"""BioFusionNet: the released dimensions to the unit, masking, both attention modes, released-layout loading."""

import pytest
import torch
from zoo.medical.biofusionnet import BioFusionNet, released_checkpoint_filter

import zoo
from zoo.errors import InputShapeError


def _inputs(batch=2, patches=12, width=1152):
    torch.manual_seed(0)
    mask = torch.ones(batch, patches, dtype=torch.bool)
    mask[-1, patches // 2:] = False
    return torch.randn(batch, patches, width), torch.randn(batch, 138), torch.randn(batch, 4), mask


def test_parameter_counts_of_the_release():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    model = zoo.create_model("medical/biofusionnet")
    assert count(model) == 8_067_584 == zoo.get_card("medical/biofusionnet").num_params
    assert count(model.vae) == 1_575_552
    assert count(BioFusionNet(fusion="none")) == 6_492_032  # the released risk model's forward path
    assert count(model.comodel.encoder.layers[0]) == 1_577_984  # = the orphan layer the release also registers


@pytest.mark.parametrize("attention", ["tokens", "released"])
def test_padding_is_masked_and_gradients_flow(attention):
    model = BioFusionNet(attention=attention).eval()
    patches, genes, clinical, mask = _inputs()
    risk = model(patches, genes, clinical, mask)
    assert risk.shape == (2,)
    padded = patches.clone()
    padded[1, 6:] = 50.0  # whatever sits in the padding must not matter
    torch.testing.assert_close(model(padded, genes, clinical, mask), risk)
    model.train()
    loss = model(patches, genes, clinical, mask).sum() + model.auxiliary_loss(patches, genes, clinical, mask)
    loss.backward()
    assert model.self_attention.query.weight.grad.abs().sum() > 0
    assert model.vae.fc4.weight.grad.abs().sum() > 0  # the VAE stage learns from its own loss


def test_token_attention_sees_the_patches_individually():
    """Released mode only sees the patches' attended sum; token mode reacts to how patches differ."""
    model = BioFusionNet(fusion="none").eval()
    patches, genes, clinical, _ = _inputs(1, 8, 256)
    shuffled = patches[:, torch.randperm(8)]
    torch.testing.assert_close(model(shuffled, genes, clinical), model(patches, genes, clinical))  # order-free
    released = BioFusionNet(fusion="none", attention="released").eval()
    released.load_state_dict(model.state_dict())
    assert not torch.allclose(released(patches, genes, clinical), model(patches, genes, clinical))


def test_released_layout_loads_and_the_orphan_layer_is_ignored_with_a_message():
    source = BioFusionNet(fusion="none")
    state = dict(source.state_dict())
    for key, value in source.comodel.encoder.layers[0].state_dict().items():  # the release's unused template
        state[f"comodel.transformer_encoder.{key}"] = value.clone()
    assert len(state) == 103  # the released file's tensor count
    target = BioFusionNet(fusion="none")
    with pytest.warns(UserWarning, match="1,577,984 parameters"):
        filtered = released_checkpoint_filter(state, target)
    target.load_state_dict(filtered)
    source.eval(), target.eval()
    patches, genes, clinical, _ = _inputs(2, 5, 256)
    torch.testing.assert_close(target(patches, genes, clinical), source(patches, genes, clinical))


def test_wrong_shapes_are_named():
    model = BioFusionNet()
    patches, genes, clinical, _ = _inputs()
    with pytest.raises(InputShapeError, match=r"\(B, N, 1152\)"):
        model(patches[..., :384], genes, clinical)
    with pytest.raises(InputShapeError, match="genes must be"):
        model(patches, genes[:, :100], clinical)
    with pytest.raises(InputShapeError, match="clinical must be"):
        model(patches, genes, clinical[:, :3])
    with pytest.raises(ValueError, match="attention"):
        BioFusionNet(attention="cross")

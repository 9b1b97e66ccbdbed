"""The sepsis transformer: parameter count and official keys, causality, padding, input checks."""

import math

import pytest
import torch
from zoo.medical.sepsis_transformer import SepsisTransformer, hour_encoding, kwargs_from_official

import zoo
from zoo.errors import InputShapeError

torch.set_num_threads(1)


def official_state_dict(d_in=196, d=256, layers=2, norm="rezero"):
    """The key layout of the official AttentionModel's Lightning checkpoint, with random tensors."""
    sd = {"layers.0.weight": torch.randn(d, d_in), "layers.0.bias": torch.randn(d), "loss.pos_weight": torch.ones(1)}
    for i in range(1, layers + 1):
        p = f"layers.{i}."
        sd |= {p + "self_attn.in_proj_weight": torch.randn(3 * d, d), p + "self_attn.in_proj_bias": torch.randn(3 * d),
               p + "self_attn.out_proj.weight": torch.randn(d, d), p + "self_attn.out_proj.bias": torch.randn(d),
               p + "linear1.weight": torch.randn(4 * d, d), p + "linear1.bias": torch.randn(4 * d),
               p + "linear2.weight": torch.randn(d, 4 * d), p + "linear2.bias": torch.randn(d)}
        if norm == "rezero":
            sd |= {p + "residual1.resweight": torch.rand(1), p + "residual2.resweight": torch.rand(1)}
        else:
            for n in ("norm1", "norm2"):
                sd |= {p + n + ".weight": torch.rand(d), p + n + ".bias": torch.rand(d)}
    sd |= {f"layers.{layers + 1}.weight": torch.randn(1, d), f"layers.{layers + 1}.bias": torch.randn(1)}
    return sd


def test_parameter_count_at_the_readme_configuration():
    model = zoo.create_model("medical/sepsis_transformer")
    assert sum(p.numel() for p in model.parameters()) == 1_628_165
    # the research notes' counts of the published sweep (d_in 196, 8 heads, ReZero)
    for d, count in ((32, 31_493), (64, 112_133), (128, 420_869)):
        assert sum(p.numel() for p in SepsisTransformer(d_model=d).parameters()) == count
    # LayerNorm adds 4 d per layer and drops the two ReZero scalars
    layer = SepsisTransformer(d_model=64, norm="layer")
    assert sum(p.numel() for p in layer.parameters()) == 112_133 + 2 * (4 * 64 - 2)


@pytest.mark.parametrize("norm", ["rezero", "layer"])
def test_official_state_dict_loads_with_its_key_names(norm, tmp_path):
    sd = official_state_dict(d_in=118, d=64, norm=norm)
    kwargs = kwargs_from_official(sd)
    assert kwargs == {"in_features": 118, "d_model": 64, "num_layers": 2, "norm": norm, "num_classes": 1}
    path = tmp_path / "official.ckpt"
    torch.save({"state_dict": sd}, path)
    model = zoo.create_model("medical/sepsis_transformer", pretrained=str(path), **kwargs).eval()
    assert torch.equal(model.layers[1].self_attn.in_proj_weight, sd["layers.1.self_attn.in_proj_weight"])
    assert set(model.state_dict()) == set(sd) - {"loss.pos_weight"}


def test_output_at_hour_t_depends_on_hours_up_to_t_only():
    torch.manual_seed(0)
    model = SepsisTransformer(in_features=20, d_model=32, dropout=0.0).eval()
    for layer in model.layers[1:-1]:  # ReZero starts at 0: open the residual branches so attention matters
        layer.residual1.resweight.data.fill_(1.0)
        layer.residual2.resweight.data.fill_(1.0)
    x = torch.randn(2, 12, 20)
    base = model(x)
    for t in range(11):
        changed = x.clone()
        changed[:, t + 1:] += torch.randn_like(changed[:, t + 1:]) * 5
        out = model(changed)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


def test_padding_does_not_change_the_valid_hours():
    torch.manual_seed(0)
    model = SepsisTransformer(in_features=20, d_model=32, dropout=0.0).eval()
    for layer in model.layers[1:-1]:
        layer.residual1.resweight.data.fill_(0.7)
    short = torch.randn(1, 5, 20)
    padded = torch.cat([short, torch.randn(1, 7, 20) * 100], dim=1)
    out = model(torch.cat([padded, torch.randn(1, 12, 20)]), torch.tensor([5, 12]))
    torch.testing.assert_close(out[:1, :5], model(short), rtol=0, atol=1e-5)


def test_hour_encoding_is_the_official_one():
    enc = hour_encoding(torch.tensor([0.0, 1.0, 37.0]))
    assert enc.shape == (3, 10)
    inv = [math.exp(-i * math.log(500) / 4) for i in range(5)]
    expected = [math.sin(37 * s) for s in inv] + [math.cos(37 * s) for s in inv]
    torch.testing.assert_close(enc[2], torch.tensor(expected), rtol=0, atol=1e-6)
    assert torch.equal(enc[0], torch.tensor([0.0] * 5 + [1.0] * 5))


def test_bad_inputs_are_refused_with_the_expected_shape():
    model = SepsisTransformer(in_features=20, d_model=32)
    with pytest.raises(InputShapeError, match=r"\(batch, hours, 20\)"):
        model(torch.randn(2, 5, 19))
    with pytest.raises(InputShapeError, match="lengths"):
        model(torch.randn(2, 5, 20), torch.tensor([6, 2]))


def test_reset_classifier_and_no_weight_decay():
    model = SepsisTransformer(in_features=20, d_model=32)
    model.reset_classifier(3)
    assert model(torch.randn(1, 4, 20)).shape == (1, 4, 3)
    assert model.no_weight_decay() and all(n.endswith("bias") for n in model.no_weight_decay())


def test_gru_baseline_count_keys_and_causality():
    from zoo.medical.sepsis_gru import SepsisGRU

    model = zoo.create_model("medical/sepsis_gru")
    assert sum(p.numel() for p in model.parameters()) == 50_369
    assert {"model.weight_ih_l0", "model.weight_hh_l0", "linear.weight"} <= set(model.state_dict())
    small = SepsisGRU(in_features=20, d_model=16).eval()
    x = torch.randn(2, 10, 20)
    changed = x.clone()
    changed[:, 6:] += 3
    torch.testing.assert_close(small(changed, torch.tensor([10, 8]))[:, :6], small(x, torch.tensor([10, 8]))[:, :6])
    with pytest.raises(InputShapeError, match=r"\(batch, hours, 20\)"):
        small(torch.randn(2, 5, 19))

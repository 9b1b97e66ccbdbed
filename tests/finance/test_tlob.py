"""TLOB, MLPLOB and DeepLOB: parameter counts and key layout of the official code, shape walk-throughs, BiN
against the official formulation, official checkpoints read without unpickling their configuration."""

from __future__ import annotations

import enum
import sys
import types

import pytest
import torch
from zoo.finance.deeplob import DeepLOB
from zoo.finance.tlob import MLPLOB, TLOB, sinusoidal_position_embedding

import zoo
from zoo.blocks.bin_norm import BiN
from zoo.blocks.dual_attention import AxisTransformerLayer, MixerMLP
from zoo.errors import CheckpointError, InputShapeError
from zoo.registry import get_entry

COUNTS = {  # from the official modules (LeonardoBerti00/TLOB models/*.py) at the paper's configurations
    "finance/tlob": 1_173_693, "finance/tlob_fi2010": 2_656_724, "finance/tlob_lob40": 1_135_974,
    "finance/mlplob": 3_074_003, "finance/mlplob_fi2010": 6_327_908, "finance/deeplob": 143_907,
}


@pytest.mark.parametrize("model_id", sorted(COUNTS))
def test_parameter_counts_match_the_official_code(model_id):
    with torch.device("meta"):
        model = zoo.create_model(model_id)
    assert sum(p.numel() for p in model.parameters()) == COUNTS[model_id] == zoo.get_card(model_id).num_params


def test_tlob_state_dict_has_the_official_keys():
    keys = set(TLOB(144, 128, 144, order_type_column=None).state_dict())
    assert len(keys) == 175  # as the official TLOB at the FI-2010 configuration
    for key in ("norm_layer.B1", "norm_layer.l1", "norm_layer.B2", "norm_layer.l2", "norm_layer.y1", "norm_layer.y2",
                "emb_layer.weight", "order_type_embedder.weight", "layers.0.qkv.q.weight", "layers.0.qkv.k.bias",
                "layers.0.qkv.v.weight", "layers.0.attention.in_proj_weight", "layers.0.attention.in_proj_bias",
                "layers.0.attention.out_proj.weight", "layers.7.mlp.fc.weight", "layers.7.mlp.fc2.bias",
                "layers.7.mlp.layer_norm.weight", "layers.7.w0.weight", "layers.7.norm.bias",
                "final_layers.0.weight", "final_layers.2.weight", "final_layers.4.bias"):
        assert key in keys, key
    assert not any(k.startswith("pos_encoder") for k in keys)  # the sinusoidal embedding is not saved
    mlplob = MLPLOB(144, 384, 144, order_type_column=None).state_dict()
    assert "first_layer.weight" in mlplob and "layers.0.weight" in mlplob and "layers.7.fc2.weight" in mlplob


def test_tlob_shape_walk_through_fi2010():
    model = TLOB(144, 128, 144, order_type_column=None).eval()
    x = torch.randn(2, 128, 144)
    features, attention = model.forward_features(x, return_attention=True)
    assert features.shape == (2, 32, 36)  # (B, T/4, H/4)
    assert [a.shape[-1] for a in attention] == [128, 144] * 3 + [128, 36]  # the last feature layer: H/4 tokens
    assert [m.out_features for m in model.final_layers if isinstance(m, torch.nn.Linear)] == [288, 72, 3]
    assert model(x).shape == (2, 3)


def test_axis_layers_shapes():
    layer = AxisTransformerLayer(16, num_heads=2, out_dim=4)
    assert layer(torch.randn(3, 10, 16)).shape == (3, 10, 4)
    y, weights = AxisTransformerLayer(16)(torch.randn(3, 10, 16), return_attention=True)
    assert y.shape == (3, 10, 16) and weights.shape == (3, 1, 10, 10)
    assert MixerMLP(8, 32, 2)(torch.randn(2, 5, 8)).shape == (2, 5, 2)


def _official_bin(x, bin_layer):
    """The official BiN forward (models/bin.py) written with its own matrix products."""
    t, d = bin_layer.seq_len, bin_layer.num_features
    T2 = torch.ones(t, 1)
    mean2 = x.mean(dim=2).reshape(x.shape[0], x.shape[1], 1)
    std2 = x.std(dim=2).reshape(x.shape[0], x.shape[1], 1)
    std2[std2 < 1e-4] = 1
    X2 = (bin_layer.l2 @ T2.T) * ((x - mean2 @ T2.T) / (std2 @ T2.T)) + bin_layer.B2 @ T2.T
    T1 = torch.ones(d, 1)
    mean1 = (x.mean(dim=1).reshape(x.shape[0], t, 1) @ T1.T).permute(0, 2, 1)
    std1 = (x.std(dim=1).reshape(x.shape[0], t, 1) @ T1.T).permute(0, 2, 1)
    X1 = (T1 @ bin_layer.l1.T) * ((x - mean1) / std1) + T1 @ bin_layer.B1.T
    return bin_layer.y1 * X1 + bin_layer.y2 * X2


def test_bin_matches_the_official_formulation_and_keeps_its_mixing_trained():
    torch.manual_seed(0)
    layer = BiN(6, 9)
    with torch.no_grad():
        layer.B1.normal_(), layer.B2.normal_(), layer.y1.fill_(0.3), layer.y2.fill_(0.9)
    x = torch.randn(4, 6, 9) * 3 + 1
    x[:, 2] = 5.0  # a constant feature: the temporal std guard
    torch.testing.assert_close(layer(x), _official_bin(x, layer))
    assert layer.y1.shape == (1,) and layer.B1.shape == (9, 1) and layer.l2.shape == (6, 1)
    y1 = layer.y1
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.1)
    with torch.no_grad():
        layer.y1.fill_(-0.5)
    out = layer(x)  # a negative mixing scalar is set to 0.01 in place (the official code re-creates it)
    assert layer.y1 is y1 and layer.y1.item() == pytest.approx(0.01)
    out.sum().backward()
    optimiser.step()
    assert y1.grad is not None and any(p is y1 for p in optimiser.param_groups[0]["params"])
    assert layer.y1.item() != pytest.approx(0.01)  # and it keeps training
    with pytest.raises(InputShapeError, match="6 features, 9 steps"):
        layer(torch.randn(2, 9, 6))
    assert torch.isfinite(layer(torch.ones(1, 6, 9))).all()  # constant window: no NaN (fixed here)


def test_sinusoidal_embedding():
    pe = sinusoidal_position_embedding(4, 6)
    assert pe.shape == (4, 6) and pe[0, 0] == 0 and pe[0, 1] == 1
    torch.testing.assert_close(pe[3, 2], torch.sin(torch.tensor(3.0) / 10000 ** (2 / 6)))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_position_embedding(4, 5)


def test_lobster_event_type_column_is_embedded_and_horizons_share_a_model():
    model = TLOB(46, 16, 46, num_layers=2, num_horizons=4).eval()
    x = torch.randn(3, 16, 46)
    x[:, :, 41] = torch.randint(0, 3, (3, 16)).float()
    assert model(x).shape == (3, 4, 3)
    changed = x.clone()
    changed[:, :, 41] = (changed[:, :, 41] + 1) % 3
    assert not torch.allclose(model(x), model(changed))
    model.reset_classifier(5)
    assert model(x).shape == (3, 4, 5) and model.get_classifier().out_features == 20


def test_bad_inputs_are_explained():
    with pytest.raises(InputShapeError, match=r"\(batch, 128 snapshots, 46 features\)"):
        zoo.create_model("finance/tlob")(torch.randn(1, 100, 46))
    with pytest.raises(InputShapeError, match="40 order-book"):
        DeepLOB()(torch.randn(1, 100, 46))
    with pytest.raises(ValueError, match="even width"):
        TLOB(45, 16, 45, order_type_column=None)


def test_deeplob_shapes_and_logits():
    model = DeepLOB(seq_len=30, num_horizons=2).eval()
    assert model(torch.randn(2, 30, 40)).shape == (2, 2, 3)
    assert DeepLOB().forward_features(torch.randn(2, 100, 40)).shape == (2, 64)


def test_kwargs_are_read_off_an_official_state_dict():
    official = TLOB(40, 32, 40, num_layers=2, num_heads=2, order_type_column=None).state_dict()
    kwargs = get_entry("finance/tlob_lob40").kwargs_from_checkpoint(official)
    assert kwargs == {"seq_len": 32, "num_features": 40, "hidden_dim": 40, "num_layers": 2, "num_heads": 2}
    official = MLPLOB(40, 32, 40, num_layers=2, order_type_column=None).state_dict()
    kwargs = get_entry("finance/mlplob").kwargs_from_checkpoint(official)
    assert kwargs == {"seq_len": 32, "num_features": 40, "hidden_dim": 40, "num_layers": 2}


def test_official_lightning_checkpoint_is_read_without_running_its_pickles(tmp_path, monkeypatch):
    # The official checkpoints pickle the project's enums and configuration; build one the same way.
    constants = types.ModuleType("constants")

    class DatasetType(enum.Enum):
        FI_2010 = "FI_2010"

    DatasetType.__module__, DatasetType.__qualname__ = "constants", "DatasetType"
    constants.DatasetType = DatasetType
    monkeypatch.setitem(sys.modules, "constants", constants)
    reference = TLOB(40, 32, 40, num_layers=2, order_type_column=None).eval()
    checkpoint = {"pytorch-lightning_version": "2.5.1.post0", "epoch": 2,
                  "state_dict": {f"model.{k}": v for k, v in reference.state_dict().items()},
                  "hyper_parameters": {"dataset_type": DatasetType.FI_2010, "seq_size": 32}}
    torch.save(checkpoint, tmp_path / "val_loss=0.624_epoch=2.pt")
    monkeypatch.delitem(sys.modules, "constants")  # the project is not importable when a user loads its files
    model = zoo.create_model("finance/tlob_lob40", pretrained=str(tmp_path / "val_loss=0.624_epoch=2.pt")).eval()
    x = torch.randn(2, 32, 40)
    torch.testing.assert_close(model(x), reference(x))
    torch.save({"pytorch-lightning_version": "2.5.1", "state_dict": {"loss.weight": torch.ones(3)}}, tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match="does not fit TLOB"):
        zoo.create_model("finance/tlob_lob40", pretrained=str(tmp_path / "e.pt"))


def test_axis_layer_folded_projections_match_the_official_path():
    # without return_attention the layer folds q/k/v into the in-projection and out_proj into w0 (one linear map
    # each); outputs and every gradient must equal the official MultiheadAttention path
    torch.manual_seed(0)
    layer = AxisTransformerLayer(12, num_heads=3, out_dim=4).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64, requires_grad=True)
    official, _ = layer(x, return_attention=True)
    folded = layer(x)
    torch.testing.assert_close(folded, official)
    inputs = [x, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(official.sum(), inputs), torch.autograd.grad(folded.sum(), inputs),
                    strict=True):
        torch.testing.assert_close(a, b)

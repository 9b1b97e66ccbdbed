"""ECA-Net: exact parameter counts, the official checkpoint layout, and outputs against independent references
(timm's ResNet with its ECA layer; torchvision's MobileNetV2 with the official ECA module inserted)."""

import pytest
import timm
import torch
import torchvision
from torch import nn

import zoo
from zoo.errors import CheckpointMismatchError
from zoo.profile import count_macs, count_parameters

OFFICIAL_PARAMS = {
    "vision/eca_resnet18": 11_689_556,
    "vision/eca_resnet34": 21_797_744,
    "vision/eca_resnet50": 25_557_112,
    "vision/eca_resnet101": 44_549_317,
    "vision/eca_resnet152": 60_193_042,
    "vision/eca_mobilenet_v2": 3_504_903,
}


@pytest.mark.parametrize("model_id", list(OFFICIAL_PARAMS))
def test_parameter_count_matches_official(model_id):
    model = zoo.create_model(model_id)
    assert count_parameters(model) == OFFICIAL_PARAMS[model_id] == zoo.get_card(model_id).num_params


@pytest.mark.parametrize("model_id", ["vision/eca_resnet18", "vision/eca_mobilenet_v2"])
def test_card_macs_match_the_model(model_id):
    card = zoo.get_card(model_id)
    assert count_macs(zoo.create_model(model_id), card.input_shape) == card.macs


def test_released_kernel_sizes_and_adaptive_option():
    kernels = lambda m: [m.layer1[0].eca.kernel_size, m.layer2[0].eca.kernel_size,  # noqa: E731
                         m.layer3[0].eca.kernel_size, m.layer4[0].eca.kernel_size]
    assert kernels(zoo.create_model("vision/eca_resnet50")) == [3, 5, 5, 7]  # k3557
    assert kernels(zoo.create_model("vision/eca_resnet18")) == [3, 5, 7, 7]  # k3577
    # psi(C) on the channels ECA sees: 256, 512, 1024, 2048 for bottlenecks
    assert kernels(zoo.create_model("vision/eca_resnet50", kernel_sizes="adaptive")) == [5, 5, 5, 7]
    assert kernels(zoo.create_model("vision/eca_resnet18", kernel_sizes="adaptive")) == [3, 5, 5, 5]


def _official_checkpoint(model: nn.Module, path, arch="se_resnet50"):
    """The official training-loop checkpoint: a plain pickle with DataParallel's `module.` prefix."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 100, "arch": arch, "state_dict": state, "best_prec1": torch.tensor(77.42),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0001, "momentum": 0.9, "params": [0]}]}}, path)
    return path


def test_official_layout_loads_and_matches_timm(tmp_path):
    torch.manual_seed(0)
    source = zoo.create_model("vision/eca_resnet50").eval()
    for m in source.modules():  # non-trivial BN statistics so that a wrong mapping would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = _official_checkpoint(source, tmp_path / "eca_resnet50_k3557.pth.tar")

    model = zoo.create_model("vision/eca_resnet50", pretrained=str(path)).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x))

    # Independent reference: timm's ResNet-50 with its ECA layer. timm picks psi(C) = 5,5,5,7; the official
    # 3-tap kernels of layer1 are zero-padded to 5 taps, which is the same function.
    reference = timm.create_model("resnet50", block_args={"attn_layer": "eca"}, num_classes=1000).eval()
    converted = {}
    for key, value in torch.load(path, weights_only=True)["state_dict"].items():
        key = key.removeprefix("module.").replace(".eca.conv.", ".se.conv.")
        if key.endswith("se.conv.weight") and value.shape[-1] < reference.state_dict()[key].shape[-1]:
            pad = (reference.state_dict()[key].shape[-1] - value.shape[-1]) // 2
            value = nn.functional.pad(value, (pad, pad))
        converted[key] = value
    reference.load_state_dict(converted, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=1e-4)


def test_kernel_sizes_are_read_from_the_checkpoint(tmp_path):
    source = zoo.create_model("vision/eca_resnet50", kernel_sizes=(3, 3, 3, 3))
    path = _official_checkpoint(source, tmp_path / "eca_resnet50_k3333.pth.tar")
    model = zoo.create_model("vision/eca_resnet50", pretrained=str(path))
    assert model.layer4[0].eca.kernel_size == 3


def test_new_head_keeps_the_backbone(tmp_path):
    source = zoo.create_model("vision/eca_resnet18")
    path = _official_checkpoint(source, tmp_path / "eca_resnet18_k3577.pth.tar")
    model = zoo.create_model("vision/eca_resnet18", pretrained=str(path), num_classes=10)
    assert model.fc.out_features == 10
    torch.testing.assert_close(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert not torch.equal(model.fc.weight[:10], source.fc.weight[:10])


def test_wrong_layout_lists_missing_and_unexpected_keys(tmp_path):
    state = zoo.create_model("vision/eca_resnet18").state_dict()
    state["layer9.0.weight"] = torch.zeros(1)
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        zoo.create_model("vision/eca_resnet18", pretrained=str(tmp_path / "broken.pth"))
    assert info.value.missing == ["layer1.0.conv1.weight"]
    assert info.value.unexpected == ["layer9.0.weight"]
    assert "layer1.0.conv1.weight" in str(info.value) and "layer9.0.weight" in str(info.value)


def test_eca_mobilenet_v2_matches_torchvision_with_official_eca(tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("vision/eca_mobilenet_v2").eval()

    class OfficialEca(nn.Module):  # the official eca_layer, written out: avg pool, conv1d over channels, sigmoid
        def __init__(self, k):
            super().__init__()
            self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

        def forward(self, x):
            y = self.conv(x.mean((2, 3))[:, None, :])
            return x * torch.sigmoid(y)[:, 0, :, None, None]

    reference = torchvision.models.mobilenet_v2(num_classes=1000).eval()
    for block in reference.features[1:18]:
        block.conv.append(OfficialEca(1 if block.out_channels < 96 else 3))
    reference.load_state_dict(model.state_dict(), strict=True)  # identical key layout
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
    official = _official_checkpoint(model, tmp_path / "eca_mobilenetv2_k13.pth.tar", arch="mobilenet_v2")
    loaded = zoo.create_model("vision/eca_mobilenet_v2", pretrained=str(official)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x), atol=1e-5, rtol=1e-5)


def test_official_weight_set_without_download_explains_where_to_get_it():
    with pytest.raises(zoo.errors.CheckpointError, match=r"eca_resnet50_k3557\.pth\.tar"):
        zoo.create_model("vision/eca_resnet50", pretrained="official_in1k")

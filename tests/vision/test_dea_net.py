"""DEA-Net: parameter counts, official key layouts, DEConv against a branch-by-branch reference,
re-parameterisation equivalence, CGA details and input errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from zoo.vision.dea_net import DEANet, deploy_state_dict

import zoo
from zoo.blocks.content_guided_attention import CGAFusion, ContentGuidedAttention
from zoo.blocks.detail_enhanced_conv import DEConv
from zoo.errors import InputShapeError
from zoo.profile import count_macs


def _branch_kernels_official_way(conv: DEConv) -> list[torch.Tensor]:
    """The five 3x3 kernels built tap by tap as the official get_weight() does (flattened index assignment)."""
    w_cd = conv.conv1_1.conv.weight.detach().flatten(2).clone()
    w_cd[:, :, 4] = w_cd[:, :, 4] - conv.conv1_1.conv.weight.detach().flatten(2).sum(2)
    w1 = conv.conv1_2.conv.weight.detach()
    w_hd = torch.zeros(*w1.shape[:2], 9)
    w_hd[:, :, [0, 3, 6]] = w1
    w_hd[:, :, [2, 5, 8]] = -w1
    w1 = conv.conv1_3.conv.weight.detach()
    w_vd = torch.zeros(*w1.shape[:2], 9)
    w_vd[:, :, [0, 1, 2]] = w1
    w_vd[:, :, [6, 7, 8]] = -w1
    w = conv.conv1_4.conv.weight.detach().flatten(2)
    w_ad = w - w[:, :, [3, 0, 1, 6, 4, 2, 7, 8, 5]]
    shape = conv.conv1_5.weight.shape
    return [k.view(shape) for k in (w_cd, w_hd, w_vd, w_ad)] + [conv.conv1_5.weight.detach()]


def test_parameter_counts_and_macs_match_the_paper():
    with torch.device("meta"):
        train, deploy = zoo.create_model("vision/dea_net"), zoo.create_model("vision/dea_net_deploy")
        assert sum(p.numel() for p in train.parameters()) == 7_789_313 == zoo.get_card("vision/dea_net").num_params
        assert sum(p.numel() for p in deploy.parameters()) == 3_653_377
        assert zoo.get_card("vision/dea_net_deploy").num_params == 3_653_377
        macs = count_macs(deploy, (3, 256, 256))
    assert macs == zoo.get_card("vision/dea_net").macs == 32_224_851_968  # 32.22 GMACs


def test_state_dict_keys_are_the_official_ones():
    with torch.device("meta"):
        train, deploy = DEANet(), DEANet(deploy=True)
    t, d = train.state_dict(), deploy.state_dict()
    assert tuple(t["down_level1_block1.conv1.conv1_1.conv.weight"].shape) == (32, 32, 3, 3)
    assert tuple(t["down_level1_block1.conv1.conv1_2.conv.weight"].shape) == (32, 32, 3)  # Conv1d
    assert tuple(t["level3_block8.conv1.conv1_5.weight"].shape) == (128, 128, 3, 3)
    assert tuple(d["down_level1_block1.conv1.weight"].shape) == (32, 32, 3, 3)
    for key in ("level3_block1.sa.sa.weight", "level3_block1.ca.ca.0.weight", "level3_block1.ca.ca.2.weight",
                "level3_block1.pa.pa2.weight", "mix1.pa.pa2.weight", "mix2.ca.ca.0.weight", "mix1.conv.weight",
                "down1.0.weight", "down2.0.weight", "up1.0.weight", "up3.0.weight", "fe_level_2.weight",
                "up_level1_block4.conv2.weight", "up_level2_block4.conv1.weight"):
        assert key in d, key
    assert tuple(d["mix2.ca.ca.0.weight"].shape) == (16, 64, 1, 1)  # reduction 4 at level 2
    assert tuple(d["mix1.pa.pa2.weight"].shape) == (128, 2, 7, 7)  # group conv 2C -> C
    assert set(deploy_state_dict(t)) == set(d)
    assert len(t) - len(d) == 24 * 8  # 24 DE blocks, each 5 branches (10 tensors) instead of 1 conv (2)


def test_deconv_equals_its_five_branches_computed_separately():
    torch.manual_seed(0)
    conv = DEConv(6)
    x = torch.randn(2, 6, 9, 11)
    expected = sum(F.conv2d(x, k, padding=1) for k in _branch_kernels_official_way(conv))
    expected = expected + sum(b.detach().view(1, -1, 1, 1) for b in (
        conv.conv1_1.conv.bias, conv.conv1_2.conv.bias, conv.conv1_3.conv.bias, conv.conv1_4.conv.bias,
        conv.conv1_5.bias))
    torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)
    # the central-difference branch alone is sum_i w_i (x_i - x_centre): zero on a constant image
    cdc_only = F.conv2d(torch.ones(1, 6, 5, 5), _branch_kernels_official_way(conv)[0], padding=0)
    assert cdc_only.abs().max() < 1e-5
    plain = conv.reparameterize()
    torch.testing.assert_close(plain(x), conv(x), atol=1e-5, rtol=1e-5)


def test_reparameterised_deploy_graph_gives_the_same_output():
    torch.manual_seed(0)
    model = DEANet().eval()
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        before = model(x)
        model.reparameterize()
        after = model(x)
    assert model.deploy and sum(p.numel() for p in model.parameters()) == 3_653_377
    assert not any(isinstance(m, DEConv) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    assert before.shape == (1, 3, 16, 24)
    # the state-dict conversion (the official reparam.py) gives the same deploy weights, single sigmoid too
    small = {"base_dim": 8, "depths": (2, 1, 2), "double_sigmoid": False}
    trained, deployed = DEANet(**small).eval(), DEANet(deploy=True, **small).eval()
    deployed.load_state_dict(deploy_state_dict(trained.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), trained(x), atol=1e-5, rtol=0)


def test_pixel_attention_interleaves_input_and_coarse_map_per_channel():
    cga = ContentGuidedAttention(4, reduction=2)
    with torch.no_grad():
        cga.pa.pa2.weight.zero_()
        cga.pa.pa2.bias.zero_()
        cga.pa.pa2.weight[:, 0, 3, 3] = 1.0  # first of each pair: must be the input channel itself
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(cga(x), torch.sigmoid(x))


def test_fusion_double_sigmoid_is_the_default_and_single_is_an_option():
    torch.manual_seed(0)
    low, high = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8)
    double, single = CGAFusion(8, 4), CGAFusion(8, 4, double_sigmoid=False)
    single.load_state_dict(double.state_dict())
    assert double.double_sigmoid and not torch.allclose(double(low, high), single(low, high))
    weights = torch.sigmoid(double.attention_weights(low + high))
    assert weights.min() > 0.5 and weights.max() < 0.7311  # sigmoid of (0, 1)


def _write(obj, path):
    torch.save(obj, path)
    return str(path)


def test_official_checkpoints_load_into_the_right_graph(tmp_path):
    torch.manual_seed(0)
    small = {"base_dim": 8, "depths": (1, 1, 2)}
    official_train = DEANet(**small).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        expected = official_train(x)
    # an official training checkpoint of nn.DataParallel: {"model": {"module.<key>": ...}, "epoch": ...}
    ckpt = _write({"epoch": 3, "step": 100, "max_psnr": 30.5, "psnrs": [30.5], "model":
                   {f"module.{k}": v for k, v in official_train.state_dict().items()}}, tmp_path / "best.pk")
    model = zoo.create_model("vision/dea_net", pretrained=ckpt).eval()
    assert not model.deploy and model.depths == (1, 1, 2) and model.base_dim == 8
    # the released weights are plain re-parameterised state dicts
    released = _write(deploy_state_dict(official_train.state_dict()), tmp_path / "PSNR4131_SSIM9945.pth")
    deploy = zoo.create_model("vision/dea_net", pretrained=released).eval()
    assert deploy.deploy
    merged = zoo.create_model("vision/dea_net_deploy", pretrained=ckpt).eval()  # training ckpt merged on load
    finetune = zoo.create_model("vision/dea_net", pretrained=released, deploy=False).eval()
    assert isinstance(finetune.level3_block1.conv1, DEConv)
    with torch.no_grad():
        for m in (model, deploy, merged, finetune):
            torch.testing.assert_close(m(x), expected, atol=1e-5, rtol=0)


def test_bad_input_is_explained():
    model = DEANet(base_dim=8, depths=(1, 1, 1))
    with pytest.raises(InputShapeError, match="multiples of 4"):
        model(torch.rand(1, 3, 30, 32))
    with pytest.raises(InputShapeError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="base_dim"):
        DEANet(base_dim=6)

import math

import pytest
import torch
import torch.nn.functional as F

from zoo.blocks import ECA, SqueezeExcite, eca_kernel_size


@pytest.mark.parametrize(("channels", "expected"), [
    (16, 3), (64, 3), (96, 3), (128, 5), (160, 5), (256, 5), (320, 5), (512, 5), (1024, 5), (2048, 7), (4, 1),
])
def test_adaptive_kernel_size_follows_the_paper(channels, expected):
    # psi(C) = |log2(C)/2 + 1/2|_odd, the values listed in the research notes (no clamp to 3 for tiny C)
    assert eca_kernel_size(channels) == expected


def test_eca_equals_its_definition():
    torch.manual_seed(0)
    eca = ECA(32, kernel_size=5)
    x = torch.randn(2, 32, 7, 9)
    pooled = x.mean(dim=(2, 3))  # (B, C)
    # 1-D convolution across channels with zero padding, as a cross-correlation over neighbours
    padded = F.pad(pooled, (2, 2))
    w = eca.conv.weight.view(5)
    logits = torch.stack([(padded[:, c:c + 5] * w).sum(-1) for c in range(32)], dim=1)
    expected = x * torch.sigmoid(logits)[:, :, None, None]
    torch.testing.assert_close(eca(x), expected)
    assert sum(p.numel() for p in eca.parameters()) == 5


def test_eca_adaptive_and_bad_kernel():
    assert ECA(2048, "adaptive").kernel_size == 7
    with pytest.raises(ValueError, match="odd"):
        ECA(64, kernel_size=4)


def test_squeeze_excite_gates_channels():
    se = SqueezeExcite(64)
    x = torch.randn(2, 64, 5, 5)
    y = se(x)
    gate = y / x
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate), atol=1e-5)  # one gate per channel
    assert ((gate > 0) & (gate < 1)).all()
    assert math.isclose(sum(p.numel() for p in se.parameters()), 64 * 8 + 8 + 8 * 64 + 64)

"""Channel attention: ECA (Wang et al., CVPR 2020, arXiv 1910.03151) and Squeeze-and-Excitation.

ECA follows the official BangguWu/ECANet module (MIT licence, (c) 2019 BangguWu, Qilong Wang): global average
pool, one bias-free Conv1d over the channel axis, sigmoid gate. The module names (`avg_pool`, `conv`, `sigmoid`)
are the official ones so that official checkpoints load as they are.
"""

from __future__ import annotations

import math

import torch
from timm.layers import SEModule
from torch import nn

__all__ = ["ECA", "SqueezeExcite", "eca_kernel_size"]

SqueezeExcite = SEModule
"""Squeeze-and-Excitation (Hu et al., arXiv 1709.01507): timm's module, which is faithful (fc1 -> act -> fc2 ->
sigmoid, 1x1 convs with bias, reduction 1/16 by default)."""


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """The paper's adaptive kernel size psi(C) = |log2(C)/gamma + beta/gamma|_odd.

    |t|_odd is the nearest odd number, computed as in the paper's recipe: int(t), plus one when even.
    Unlike timm this does not clamp to 3, so psi(4) = 1 as the formula says.
    """
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention: x * sigmoid(conv1d_k(avgpool(x))) along the channel axis.

    Args:
        channels: number of input channels; used only when ``kernel_size`` is "adaptive" (psi(C)).
        kernel_size: odd 1-D kernel size over neighbouring channels, or "adaptive" for the paper's psi(C).
    """

    def __init__(self, channels: int, kernel_size: int | str = 3):
        super().__init__()
        if kernel_size == "adaptive":
            kernel_size = eca_kernel_size(channels)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ECA kernel_size must be a positive odd integer or 'adaptive', got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), each channel scaled by its gate in (0, 1)."""
        y = self.avg_pool(x)  # (B, C, 1, 1)
        y = self.conv(y.squeeze(-1).transpose(-1, -2))  # (B, 1, C): channels as a sequence
        y = self.sigmoid(y.transpose(-1, -2).unsqueeze(-1))  # (B, C, 1, 1)
        return x * y.expand_as(x)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"

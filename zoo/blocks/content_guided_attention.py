"""Content-guided attention (CGA) of DEA-Net (Chen, He, Lu, IEEE TIP 2024, arXiv 2301.04805).

A channel-specific spatial importance map W in (0, 1)^(C x H x W), from coarse to fine:

- channel weights ``ca``: GAP -> 1x1 conv (C -> C/r) -> ReLU -> 1x1 conv (C/r -> C), (B, C, 1, 1), no sigmoid;
- spatial weights ``sa``: reflect-padded 7x7 conv (2 -> 1) over the channel mean and max, (B, 1, H, W), no sigmoid;
- coarse map W_coa = W_c + W_s, broadcast to (B, C, H, W);
- pixel attention ``pa``: the input and W_coa interleaved per channel ([x_1, w_1, x_2, w_2, ...], 2C channels),
  a reflect-padded 7x7 group conv (2C -> C, groups C) and a sigmoid.

:class:`CGAFusion` uses W to mix an encoder (low-level) and a decoder (high-level) feature map. Module names follow
the official ``cga.py`` / ``fusion.py`` (``sa.sa``, ``ca.ca.0``, ``ca.ca.2``, ``pa.pa2``, ``conv``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CGAFusion", "ChannelWeights", "ContentGuidedAttention", "PixelAttention", "SpatialWeights"]


class SpatialWeights(nn.Module):
    """(B, C, H, W) -> (B, 1, H, W): 7x7 reflect-padded conv over [mean_c(x), max_c(x)] (no sigmoid)."""

    def __init__(self):
        super().__init__()
        self.sa = nn.Conv2d(2, 1, 7, padding=3, padding_mode="reflect", bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sa(torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1))


class ChannelWeights(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1): GAP -> 1x1 conv C -> C/r -> ReLU -> 1x1 conv C/r -> C (no sigmoid)."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        if channels % reduction:
            raise ValueError(f"channels ({channels}) must be divisible by the reduction ({reduction})")
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.ca = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ca(self.gap(x))


class PixelAttention(nn.Module):
    """(x (B, C, H, W), coarse (B, C, H, W)) -> (B, C, H, W) in (0, 1): channel-interleaved pair -> 7x7 group
    conv (2C -> C, groups C, reflect padding) -> sigmoid."""

    def __init__(self, channels: int):
        super().__init__()
        self.pa2 = nn.Conv2d(2 * channels, channels, 7, padding=3, padding_mode="reflect", groups=channels,
                             bias=True)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pair = torch.stack([x, coarse.expand_as(x)], dim=2).reshape(b, 2 * c, h, w)  # [x_1, w_1, x_2, w_2, ...]
        return self.sigmoid(self.pa2(pair))


class ContentGuidedAttention(nn.Module):
    """Content-guided attention weights: (B, C, H, W) -> (B, C, H, W) in (0, 1).

    Args:
        channels: C.
        reduction: channel reduction r of the channel-weight branch (8 in DEA-Net's blocks).
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.sa = SpatialWeights()
        self.ca = ChannelWeights(channels, reduction)
        self.pa = PixelAttention(channels)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> W (B, C, H, W) in (0, 1)."""
        coarse = self.ca(x) + self.sa(x)  # (B, C, 1, 1) + (B, 1, H, W) -> (B, C, H, W)
        return self.pa(x, coarse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W) attention weights in (0, 1)."""
        return self.attention_weights(x)


class CGAFusion(ContentGuidedAttention):
    """CGA-based mixup fusion of a low-level (encoder) and a high-level (decoder) map of the same shape.

    ``s = low + high``; ``W = CGA(s)``; ``out = conv1x1(s + W * low + (1 - W) * high)``.

    Args:
        channels: C of both inputs.
        reduction: channel reduction of the channel weights (DEA-Net: 8 at level 3, 4 at level 2).
        double_sigmoid: apply a second sigmoid to W, as the official code (and so its released weights) does:
            W then lies in (0.5, 0.73). False gives the paper's single sigmoid (official issue #25).
    """

    def __init__(self, channels: int, reduction: int = 8, double_sigmoid: bool = True):
        super().__init__(channels, reduction)
        self.double_sigmoid = double_sigmoid
        self.conv = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W), (B, C, H, W) -> (B, C, H, W)."""
        initial = low + high
        weights = self.attention_weights(initial)
        if self.double_sigmoid:
            weights = torch.sigmoid(weights)
        return self.conv(initial + weights * low + (1 - weights) * high)

    def extra_repr(self) -> str:
        return f"double_sigmoid={self.double_sigmoid}"

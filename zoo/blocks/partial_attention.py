"""Partial self-attention (PSA, YOLOv10: Wang et al. 2024, arXiv 2405.14458), as YOLO9tr uses it.

Half of the channels pass through global multi-head self-attention over all H x W positions plus a feed-forward
net, the other half is carried over; a 1x1 conv mixes both. The attention has a depthwise 3x3 positional term on
the values. Written from the papers' description (the official codes are GPL/AGPL, read for facts only).
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.blocks.gelan import ConvBNAct

__all__ = ["ConvPositionalAttention", "PartialSelfAttention"]


class ConvPositionalAttention(nn.Module):
    """Global multi-head self-attention on a feature map with a depthwise-conv positional term.

    ``qkv`` is a 1x1 conv-BN to dim + 2 * heads * key_dim channels (key_dim = head_dim * attn_ratio), scores are
    scaled by key_dim^-0.5; the output is proj(attn(V) + dwconv3x3_BN(V)).

    Shapes: (B, dim, H, W) -> (B, dim, H, W).
    """

    def __init__(self, dim: int, num_heads: int, attn_ratio: float = 0.5):
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim {dim} must be a positive multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        self.qkv = ConvBNAct(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = ConvBNAct(dim, dim, 1, act=False)
        self.pe = ConvBNAct(dim, dim, 3, groups=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.qkv(x).view(b, self.num_heads, -1, h * w).split([self.key_dim, self.key_dim, self.head_dim], 2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)  # (B, heads, N, N)
        out = (v @ attn.transpose(-2, -1)).reshape(b, -1, h, w)
        return self.proj(out + self.pe(v.reshape(b, -1, h, w)))


class PartialSelfAttention(nn.Module):
    """PSA: 1x1 conv to 2c (c = channels * expansion), split (a, b); b += MHSA(b); b += FFN(b); 1x1 of [a, b].

    Heads = c // 64 (at least 1); FFN = 1x1 conv (c -> 2c, SiLU) -> 1x1 conv (2c -> c, no activation).

    Shapes: (B, channels, H, W) -> (B, channels, H, W).
    """

    def __init__(self, channels: int, expansion: float = 0.5):
        super().__init__()
        self.c = int(channels * expansion)
        self.cv1 = ConvBNAct(channels, 2 * self.c, 1)
        self.cv2 = ConvBNAct(2 * self.c, channels, 1)
        self.attn = ConvPositionalAttention(self.c, num_heads=max(self.c // 64, 1), attn_ratio=0.5)
        self.ffn = nn.Sequential(ConvBNAct(self.c, 2 * self.c, 1), ConvBNAct(2 * self.c, self.c, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = b + self.attn(b)
        b = b + self.ffn(b)
        return self.cv2(torch.cat((a, b), 1))

"""Attention and sequence building blocks shared by the model families (one file per family of blocks)."""

from zoo.blocks.attention import AttentionKind, MultiHeadCrossAttention, MultiHeadSelfAttention, attend
from zoo.blocks.channel_attention import ECA, SqueezeExcite, eca_kernel_size

__all__ = [
    "ECA",
    "AttentionKind",
    "MultiHeadCrossAttention",
    "MultiHeadSelfAttention",
    "SqueezeExcite",
    "attend",
    "eca_kernel_size",
]

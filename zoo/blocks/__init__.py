"""Attention and sequence building blocks shared by the model families (one file per family of blocks).

The selective scan function lives in ``zoo.blocks.selective_scan`` (the module of the same name is not shadowed).
"""

from zoo.blocks.attention import AttentionKind, MultiHeadCrossAttention, MultiHeadSelfAttention, attend
from zoo.blocks.channel_attention import ECA, SqueezeExcite, eca_kernel_size
from zoo.blocks.halo_attention import HaloAttention
from zoo.blocks.mamba import Mamba, MambaBlock, MambaState
from zoo.blocks.retrieval import nearest_neighbors
from zoo.blocks.selective_scan import ScanMethod
from zoo.blocks.ss2d import SS2D, cross_merge_2d, cross_scan_2d

__all__ = [
    "ECA",
    "SS2D",
    "AttentionKind",
    "HaloAttention",
    "Mamba",
    "MambaBlock",
    "MambaState",
    "MultiHeadCrossAttention",
    "MultiHeadSelfAttention",
    "ScanMethod",
    "SqueezeExcite",
    "attend",
    "cross_merge_2d",
    "cross_scan_2d",
    "eca_kernel_size",
    "nearest_neighbors",
]

"""Halo (blocked local) self-attention with 2-D relative position logits (Vaswani et al., "Scaling Local
Self-Attention for Parameter Efficient Visual Backbones", CVPR 2021, arXiv 2103.12731; no official code).

The feature map is cut into non-overlapping b x b query blocks; every query of a block attends to the same
(b + 2h) x (b + 2h) window of keys and values: the block plus a halo of h pixels on each side, zero-padded at the
borders. The logits of each head are q.k / sqrt(d_qk) plus relative position logits q.r_dy + q.r_dx with separate
learned height and width tables (Attention Augmented Convolution style).

What is reused and what is ours (the paper has no reference code, so timm's ``HaloAttn`` is the reference used):

- timm's ``HaloAttn`` (Apache-2.0) is faithful at stride 1: one 1x1 conv for q, one for k and v together, the
  unfold-based window gathering, per-head softmax over the window, value width set independently of q/k width
  (the paper's r_v), zero-padded halos that take part in the softmax, position logits unscaled (as timm's trained
  weights expect). :class:`HaloAttention` *is* that module (a subclass: same parameters, same state-dict keys,
  same numbers), with the constructor arguments keyword-only past ``dim``/``dim_out`` and a readable error when the
  input does not tile into blocks.
- One piece is ours: the position logits of **strided** layers. The paper's strided self-attention subsamples the
  queries (every 2nd pixel of a block, so a b x b block gives (b/2) x (b/2) outputs) while the keys stay at full
  resolution. timm indexes the relative tables with the *subsampled* query index, so the query at full-resolution
  offset 2i is given the position logits of offset i: the logits are no longer a function of the true key-query
  displacement (timm marks this part "FIXME not clear if this stride behaviour is what the paper intended").
  :class:`StridedRelPosEmbed` uses the true displacement. ``strided_pos="timm"`` keeps timm's indexing, which
  the published timm weights were trained with; the tables have the same shape either way, so parameter counts
  and state-dict keys do not change.

Relative tables have 2(b + 2h) - 1 rows per axis as in timm; a query inside its block sees displacements in
[-(b + h - 1), b + h - 1], so 2h rows of each table are never used. They are kept so that parameter counts and
checkpoints match timm's (and its ``halonet_h1`` = 8,100,056 parameters).
"""

from __future__ import annotations

from typing import Literal

import torch
from timm.layers.halo_attn import HaloAttn, PosEmbedRel

from zoo.errors import InputShapeError

__all__ = ["HaloAttention", "StridedPosIndexing", "StridedRelPosEmbed"]

StridedPosIndexing = Literal["geometric", "timm"]


class StridedRelPosEmbed(PosEmbedRel):
    """Relative position logits for queries subsampled with step ``query_step`` inside each block.

    The parameters are timm's ``PosEmbedRel`` ones (``height_rel`` and ``width_rel``, each (2 * win_size - 1,
    dim_head)), indexed by the true displacement: query i of a block sits at full-resolution offset
    ``query_step * i``, key j of the window at offset ``j - halo``, and the table row is ``win_size - 1 + halo +
    (j - halo - query_step * i)``. With ``query_step == 1`` this is exactly timm's indexing.

    Args:
        block_size: query positions per block side after subsampling (b / query_step).
        win_size: key window side, b + 2h.
        dim_head: query/key width of one head.
        scale: init std of the tables.
        query_step: subsampling step of the queries (the attention's stride).
        **factory: ``device`` / ``dtype`` of the tables.
    """

    def __init__(self, block_size: int, win_size: int, dim_head: int, scale: float, query_step: int, **factory):
        super().__init__(block_size=block_size, win_size=win_size, dim_head=dim_head, scale=scale, **factory)
        self.query_step = query_step
        device = factory.get("device")
        query = torch.arange(block_size, device=device).unsqueeze(1)  # (block_size, 1)
        key = torch.arange(win_size, device=device).unsqueeze(0)  # (1, win_size)
        self.register_buffer("rel_index", win_size - 1 + key - query_step * query, persistent=False)

    def _axis_logits(self, q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(N, rows, cols, d) queries, table (2w-1, d) -> (N, rows, cols, win) logits along the cols axis."""
        logits = q @ table.transpose(0, 1)  # (N, rows, cols, 2w-1)
        cols = torch.arange(self.block_size, device=q.device).unsqueeze(1)  # (cols, 1)
        return logits[:, :, cols, self.rel_index]  # (N, rows, cols, win)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """(B * heads, num_blocks, bs * bs, d) queries -> (B * heads, num_blocks, bs * bs, win * win) logits."""
        batch, num_blocks, _, _ = q.shape
        bs, win = self.block_size, self.rel_index.shape[1]
        q = q.reshape(-1, bs, bs, self.dim_head)  # (N, y, x, d)
        logits_w = self._axis_logits(q, self.width_rel)  # (N, y, x, kx)
        logits_h = self._axis_logits(q.transpose(1, 2), self.height_rel).transpose(1, 2)  # (N, y, x, ky)
        rel = logits_h.unsqueeze(-1) + logits_w.unsqueeze(-2)  # (N, y, x, ky, kx)
        return rel.reshape(batch, num_blocks, bs * bs, win * win)

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, query_step={self.query_step}"


class HaloAttention(HaloAttn):
    """Multi-head halo attention: (B, dim, H, W) -> (B, dim_out, H / stride, W / stride).

    Width of the projections: values (and so the output) ``dim_out`` (default ``dim``), split over ``num_heads``;
    queries and keys ``num_heads * dim_head`` (default ``dim_head = make_divisible(dim_out * qk_ratio, 8) //
    num_heads``). The paper's r_v (value width over q/k width) is ``dim_out = r_v * dim_qk``.

    Args:
        dim: input channels.
        dim_out: output (value) channels; ``dim`` when None.
        stride: 1, or 2 for the strided (downsampling) layer: queries subsampled inside blocks when ``block_size``
            is even (or, with ``avg_down`` / odd blocks, attention at full resolution then 2x2 average pooling).
        num_heads: attention heads.
        dim_head: q/k width of one head.
        block_size: query block side b; H and W must be multiples of it.
        halo_size: halo h; the key window side is b + 2h.
        qk_ratio: q/k width relative to ``dim_out`` when ``dim_head`` is None.
        qkv_bias: biases in the q and kv projections.
        avg_down: downsample by average pooling instead of subsampled queries.
        scale_pos_embed: also scale the position logits by d_qk^-0.5 (timm's option; off for timm's weights).
        strided_pos: position indexing of subsampled queries, "geometric" (true displacement, the paper's
            geometry) or "timm" (the indexing timm's weights were trained with). No effect at stride 1.
        feat_size: ignored (accepted so that timm's ByobNet can build this layer).
    """

    def __init__(self, dim: int, dim_out: int | None = None, *, stride: int = 1, num_heads: int = 8,
                 dim_head: int | None = None, block_size: int = 8, halo_size: int = 3, qk_ratio: float = 1.0,
                 qkv_bias: bool = False, avg_down: bool = False, scale_pos_embed: bool = False,
                 strided_pos: StridedPosIndexing = "geometric", feat_size: tuple[int, int] | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        dim_out = dim_out or dim
        if stride not in (1, 2):
            raise ValueError(f"halo attention supports stride 1 or 2, got {stride}")
        if dim_out % num_heads:
            raise ValueError(f"dim_out={dim_out} must be a multiple of num_heads={num_heads}")
        if strided_pos not in ("geometric", "timm"):
            raise ValueError(f"strided_pos must be 'geometric' or 'timm', got {strided_pos!r}")
        # device/dtype are passed on only when given: timm versions before factory kwargs do not take them.
        factory = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        super().__init__(dim, dim_out, stride=stride, num_heads=num_heads, dim_head=dim_head,
                         block_size=block_size, halo_size=halo_size, qk_ratio=qk_ratio, qkv_bias=qkv_bias,
                         avg_down=avg_down, scale_pos_embed=scale_pos_embed, **factory)
        self.dim = dim
        self.stride = stride
        self.strided_pos = strided_pos
        if self.block_stride > 1 and strided_pos == "geometric":
            self.pos_embed = StridedRelPosEmbed(self.block_size_ds, self.win_size, self.dim_head_qk, self.scale,
                                                query_step=self.block_stride, **factory)
            self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) -> (B, dim_out, H / stride, W / stride); H and W multiples of ``block_size``."""
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise InputShapeError(f"halo attention expects (B, {self.dim}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % self.block_size or width % self.block_size:
            raise InputShapeError(
                f"halo attention with block size {self.block_size} needs H and W that are multiples of "
                f"{self.block_size}, got {height}x{width}"
            )
        return super().forward(x)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, dim_out={self.dim_out_v}, heads={self.num_heads}, dim_head_qk={self.dim_head_qk}, "
                f"block_size={self.block_size}, halo_size={self.halo_size}, stride={self.stride}, "
                f"strided_pos={self.strided_pos!r}")

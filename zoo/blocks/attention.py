"""Multi-head self- and cross-attention with softmax or sigmoid attention weights.

Softmax attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels where the
platform has them). Sigmoid attention (Ramapuram et al., "Theory, Analysis, and Best Practices for Sigmoid
Self-Attention", arXiv 2409.04431) replaces the row-wise softmax by an element-wise sigmoid with a bias
b = -log(n_keys) by default, which keeps the initial attention norm comparable to softmax.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import InputShapeError

__all__ = ["AttentionKind", "MultiHeadCrossAttention", "MultiHeadSelfAttention", "attend"]

AttentionKind = Literal["softmax", "sigmoid"]


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: AttentionKind = "softmax",
    sigmoid_bias: float | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention over heads.

    Args:
        q: (B, heads, N, d) queries.
        k: (B, heads, M, d) keys.
        v: (B, heads, M, d_v) values.
        mask: boolean (True = attend) or additive float, broadcastable to (B, heads, N, M).
        kind: "softmax" or "sigmoid".
        sigmoid_bias: bias added to the sigmoid logits; default -log(M).

    Returns:
        (B, heads, N, d_v).
    """
    if kind == "softmax":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    if kind != "sigmoid":
        raise ValueError(f"attention kind must be 'softmax' or 'sigmoid', got {kind!r}")
    bias = -math.log(k.shape[-2]) if sigmoid_bias is None else sigmoid_bias
    logits = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5 + bias
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    weights = torch.sigmoid(logits)
    if dropout:
        weights = F.dropout(weights, dropout)
    return weights @ v


class _MultiHeadAttention(nn.Module):
    def __init__(
        self, dim: int, num_heads: int, attn_drop: float, proj_drop: float, kind: AttentionKind,
        sigmoid_bias: float | None,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if kind not in ("softmax", "sigmoid"):
            raise ValueError(f"attention kind must be 'softmax' or 'sigmoid', got {kind!r}")
        self.dim, self.num_heads, self.kind, self.sigmoid_bias = dim, num_heads, kind, sigmoid_bias
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def _attend_and_project(self, q, k, v, mask) -> torch.Tensor:
        out = attend(q, k, v, mask, self.kind, self.sigmoid_bias, self.attn_drop if self.training else 0.0)
        b, _, n, _ = out.shape
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, self.dim)))

    @staticmethod
    def _check(x: torch.Tensor, dim: int, name: str) -> None:
        if x.ndim != 3 or x.shape[-1] != dim:
            raise InputShapeError(f"{name} must have shape (batch, tokens, {dim}), got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, kind={self.kind}"


class MultiHeadSelfAttention(_MultiHeadAttention):
    """Self-attention with a fused ``qkv`` projection (timm's ViT layout: ``qkv``, ``proj``).

    Args:
        dim: token width.
        num_heads: number of heads; ``dim`` must be divisible by it.
        kind: "softmax" or "sigmoid" attention weights.
        sigmoid_bias: bias of the sigmoid logits (default -log(number of keys)).
    """

    def __init__(
        self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
        kind: AttentionKind = "softmax", sigmoid_bias: float | None = None,
    ):
        super().__init__(dim, num_heads, attn_drop, proj_drop, kind, sigmoid_bias)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, dim) -> (B, N, dim); ``mask`` broadcastable to (B, heads, N, N), True = attend."""
        self._check(x, self.dim, "x")
        q, k, v = (self._split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        return self._attend_and_project(q, k, v, mask)


class MultiHeadCrossAttention(_MultiHeadAttention):
    """Queries from ``x``, keys and values from ``context`` (projections ``q``, ``kv``, ``proj``).

    Args:
        dim: query and output width.
        context_dim: width of the context tokens (default ``dim``).
    """

    def __init__(
        self, dim: int, num_heads: int = 8, context_dim: int | None = None, qkv_bias: bool = True,
        attn_drop: float = 0.0, proj_drop: float = 0.0, kind: AttentionKind = "softmax",
        sigmoid_bias: float | None = None,
    ):
        super().__init__(dim, num_heads, attn_drop, proj_drop, kind, sigmoid_bias)
        self.context_dim = context_dim or dim
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(self.context_dim, 2 * dim, bias=qkv_bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, dim), context (B, M, context_dim) -> (B, N, dim); ``mask`` broadcastable to (B, heads, N, M)."""
        self._check(x, self.dim, "x")
        self._check(context, self.context_dim, "context")
        if context.shape[0] != x.shape[0]:
            raise InputShapeError(f"x and context batch sizes differ: {x.shape[0]} vs {context.shape[0]}")
        q = self._split_heads(self.q(x))
        k, v = (self._split_heads(t) for t in self.kv(context).chunk(2, dim=-1))
        return self._attend_and_project(q, k, v, mask)

"""Dual (time x feature) attention and mixing layers for windows of multivariate series, as in TLOB and MLPLOB
(Berti and Kasneci 2025, arXiv 2502.15757; official code LeonardoBerti00/TLOB, MIT licence, (c) Leonardo Berti).

Both models alternate a layer over the time axis (tokens = time steps, width = features) with a layer over the
feature axis (tokens = features, width = time steps), transposing the last two axes after every layer::

    x = (B, T, H)
    for layer in layers:          # temporal, feature, temporal, feature, ...
        x = layer(x).transpose(1, 2)

The layers here are the official ones, under the official names (``qkv.q``, ``attention.in_proj_weight``,
``w0``, ``mlp.fc``, ``mlp.fc2``, ``mlp.layer_norm``, ``norm``), so that official checkpoints load as they are.
The official layer asks ``nn.MultiheadAttention`` for its attention weights on every call, which rules out the
fused attention kernels; here they are computed only when asked (``return_attention=True``).

The official layer also applies two linear maps in a row twice: its own q/k/v projections, then the in-projection
of ``nn.MultiheadAttention``; the attention's out-projection, then ``w0``. Each pair is one linear map, so without
``return_attention`` the forward folds each pair's weights into one (a (d x d) product per step) and projects the
tokens once: a third fewer floating-point operations per layer, the same parameters, gradients and outputs (up to
rounding). ``benchmarks/lob.py`` measured the unfolded layer stack at 0.77 x the training steps/s of a same-size
``nn.TransformerEncoder`` on one CPU thread.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QKV", "AxisTransformerLayer", "MixerMLP"]


class MixerMLP(nn.Module):
    """Linear(dim -> hidden) -> GELU -> Linear(hidden -> out_dim) -> (+ input when out_dim == dim) -> LayerNorm
    -> GELU: the MLP-Mixer style block of MLPLOB (and the MLP of a TLOB layer). No dropout.

    Args:
        dim: width of the last axis of the input.
        hidden_dim: width of the hidden layer.
        out_dim: width of the output (a residual connection is used only when it equals ``dim``).
    """

    def __init__(self, dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(out_dim)
        self.fc = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) -> (B, N, out_dim)."""
        y = self.fc2(self.gelu(self.fc(x)))
        if y.shape[-1] == x.shape[-1]:
            y = y + x
        return self.gelu(self.layer_norm(y))


class QKV(nn.Module):
    """Separate query, key and value projections dim -> dim * num_heads (TLOB's ``ComputeQKV``)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.q = nn.Linear(dim, dim * num_heads)
        self.k = nn.Linear(dim, dim * num_heads)
        self.v = nn.Linear(dim, dim * num_heads)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, dim) -> three (B, N, dim * num_heads)."""
        return self.q(x), self.k(x), self.v(x)


class AxisTransformerLayer(nn.Module):
    """TLOB's transformer layer over the tokens of axis 1 (post-norm, no dropout):

    q, k, v = QKV(x); a = MultiheadAttention(q, k, v) (with its own in- and out-projections, heads of width
    ``dim``); x1 = LayerNorm(x + w0(a)); y = MixerMLP(x1) (dim -> 4 dim -> out_dim); y + x when out_dim == dim.

    Args:
        dim: width of a token.
        num_heads: attention heads, each of width ``dim`` (the attention runs at width dim * num_heads).
        out_dim: width of the output tokens (TLOB's last pair shrinks it to a quarter).
    """

    def __init__(self, dim: int, num_heads: int = 1, out_dim: int | None = None):
        super().__init__()
        out_dim = dim if out_dim is None else out_dim
        self.dim, self.num_heads, self.out_dim = dim, num_heads, out_dim
        self.norm = nn.LayerNorm(dim)
        self.qkv = QKV(dim, num_heads)
        self.attention = nn.MultiheadAttention(dim * num_heads, num_heads, batch_first=True)
        self.mlp = MixerMLP(dim, dim * 4, out_dim)
        self.w0 = nn.Linear(dim * num_heads, dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """(B, N, dim) -> (B, N, out_dim); with ``return_attention`` also the weights (B, heads, N, N)."""
        if return_attention:  # the official path: q/k/v, then nn.MultiheadAttention, then w0
            q, k, v = self.qkv(x)
            a, weights = self.attention(q, k, v, need_weights=True, average_attn_weights=False)
            a = self.w0(a)
        else:
            a, weights = self._folded_attention(x), None
        y = self.mlp(self.norm(a + x))
        if y.shape[-1] == x.shape[-1]:
            y = y + x
        return (y, weights) if return_attention else y

    def _folded_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) -> (B, N, dim): w0(MultiheadAttention(q(x), k(x), v(x))) with the q/k/v projections folded
        into the in-projection and the out-projection into w0 (module docstring)."""
        mha, e, heads = self.attention, self.dim * self.num_heads, self.num_heads
        inner = mha.in_proj_weight.view(3, e, e)  # (3, E, E): the in-projections of q, k and v
        outer = torch.stack([self.qkv.q.weight, self.qkv.k.weight, self.qkv.v.weight])  # (3, E, dim)
        outer_bias = torch.stack([self.qkv.q.bias, self.qkv.k.bias, self.qkv.v.bias])  # (3, E)
        weight = torch.bmm(inner, outer).reshape(3 * e, self.dim)
        bias = torch.bmm(inner, outer_bias.unsqueeze(-1)).reshape(3 * e) + mha.in_proj_bias
        b, n, _ = x.shape
        q, k, v = F.linear(x, weight, bias).view(b, n, 3, heads, e // heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, E / heads), scale 1 / sqrt(E / heads) as MHA
        a = a.transpose(1, 2).reshape(b, n, e)
        out = mha.out_proj
        return F.linear(a, self.w0.weight @ out.weight, F.linear(out.bias, self.w0.weight, self.w0.bias))

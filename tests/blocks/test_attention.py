import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks import MultiHeadCrossAttention, MultiHeadSelfAttention, attend
from zoo.errors import InputShapeError


def _heads(b=2, h=4, n=7, m=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n, d, generator=g), torch.randn(b, h, m, d, generator=g),
            torch.randn(b, h, m, d, generator=g))


def test_softmax_self_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiHeadSelfAttention(32, num_heads=4).eval()
    ref = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    ref.in_proj_weight.data.copy_(ours.qkv.weight)
    ref.in_proj_bias.data.copy_(ours.qkv.bias)
    ref.out_proj.weight.data.copy_(ours.proj.weight)
    ref.out_proj.bias.data.copy_(ours.proj.bias)
    x = torch.randn(3, 10, 32)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


def test_sigmoid_attention_matches_sdpa_key_by_key():
    # sigmoid(s + b) v_j equals softmax attention over two keys: k_j (with bias b) and a null key scoring 0 with a
    # zero value. Summing that over the keys gives sigmoid attention, computed independently through sdpa.
    q, k, v = _heads()
    bias = -math.log(k.shape[-2])
    expected = torch.zeros_like(q)
    for j in range(k.shape[-2]):
        keys = torch.cat([k[..., j:j + 1, :], torch.zeros_like(k[..., :1, :])], dim=-2)
        values = torch.cat([v[..., j:j + 1, :], torch.zeros_like(v[..., :1, :])], dim=-2)
        mask = torch.tensor([[bias, 0.0]])  # (queries, keys), broadcast over batch, heads and queries
        expected += F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    torch.testing.assert_close(attend(q, k, v, kind="sigmoid"), expected, atol=1e-5, rtol=1e-5)


def test_softmax_attend_with_boolean_mask_matches_sdpa():
    q, k, v = _heads()
    mask = torch.rand(2, 1, 7, 5) > 0.3
    mask[..., 0] = True
    torch.testing.assert_close(attend(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_sigmoid_mask_zeroes_masked_keys():
    q, k, v = _heads()
    mask = torch.ones(1, 1, 7, 5, dtype=torch.bool)
    mask[..., 3:] = False
    torch.testing.assert_close(attend(q, k, v, mask, kind="sigmoid", sigmoid_bias=0.0),
                               attend(q, k[..., :3, :], v[..., :3, :], kind="sigmoid", sigmoid_bias=0.0))


def test_cross_attention_against_sdpa():
    torch.manual_seed(0)
    attn = MultiHeadCrossAttention(16, num_heads=2, context_dim=12).eval()
    x, context = torch.randn(2, 4, 16), torch.randn(2, 9, 12)
    q = attn.q(x).view(2, 4, 2, 8).transpose(1, 2)
    k, v = (t.view(2, 9, 2, 8).transpose(1, 2) for t in attn.kv(context).chunk(2, -1))
    expected = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 4, 16))
    torch.testing.assert_close(attn(x, context), expected)


def test_attention_shape_errors_name_the_problem():
    with pytest.raises(InputShapeError, match=r"\(batch, tokens, 32\)"):
        MultiHeadSelfAttention(32)(torch.randn(2, 5, 31))
    with pytest.raises(InputShapeError, match="batch sizes differ"):
        MultiHeadCrossAttention(8, 2)(torch.randn(2, 3, 8), torch.randn(3, 3, 8))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadSelfAttention(30, num_heads=4)
    with pytest.raises(ValueError, match="softmax"):
        MultiHeadSelfAttention(32, kind="relu")

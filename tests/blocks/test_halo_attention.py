"""Halo attention against a naive per-block reference, and against timm's HaloAttn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers.halo_attn import HaloAttn

from zoo.blocks.halo_attention import HaloAttention, StridedRelPosEmbed
from zoo.errors import InputShapeError


def naive_halo_attention(attn: HaloAttention, x: torch.Tensor) -> torch.Tensor:
    """Halo attention computed query by query with explicit window gathering (loops, no unfold).

    Each b x b block's window is the padded map's (b + 2h) x (b + 2h) crop starting at the block's corner. A query at
    block offset (qy, qx) (every ``step``-th pixel for subsampled strided layers) gets logits
    q.k * scale + q.height_rel[row(ky, qy)] + q.width_rel[row(kx, qx)], with row(k, q) = win - 1 + k - pos(q) where
    pos(q) is the true offset q ("geometric") or the subsampled index q / step ("timm").
    """
    batch, _, height, width = x.shape
    b, h, win, heads = attn.block_size, attn.halo_size, attn.win_size, attn.num_heads
    d_qk, d_v = attn.dim_head_qk, attn.dim_head_v
    step = attn.block_stride  # query subsampling inside blocks (1 unless a strided layer subsamples queries)
    q_full = F.conv2d(x, attn.q.weight, attn.q.bias)  # queries at every pixel; strided layers read every step-th
    kv = F.pad(F.conv2d(x, attn.kv.weight, attn.kv.bias), [h, h, h, h])
    height_rel, width_rel = attn.pos_embed.height_rel, attn.pos_embed.width_rel
    rows = []
    for y in range(0, height, step):
        cols = []
        for x_ in range(0, width, step):
            by, bx, qy, qx = y // b, x_ // b, y % b, x_ % b
            window = kv[:, :, by * b:by * b + win, bx * b:bx * b + win]  # (B, heads * (d_qk + d_v), win, win)
            window = window.reshape(batch, heads, d_qk + d_v, win, win)  # channels grouped per head, k then v
            k, v = window[:, :, :d_qk], window[:, :, d_qk:]
            q = q_full[:, :, y, x_].reshape(batch, heads, d_qk)
            pos_y, pos_x = (qy, qx) if attn.strided_pos == "geometric" else (qy // step, qx // step)
            logits = torch.einsum("bnd,bndij->bnij", q, k)
            rel_h = torch.stack([q @ height_rel[win - 1 + ky - pos_y] for ky in range(win)], -1)  # (B, n, ky)
            rel_w = torch.stack([q @ width_rel[win - 1 + kx - pos_x] for kx in range(win)], -1)  # (B, n, kx)
            rel = rel_h[..., :, None] + rel_w[..., None, :]
            logits = (logits + rel) * attn.scale if attn.scale_pos_embed else logits * attn.scale + rel
            weights = logits.flatten(2).softmax(-1).reshape_as(logits)
            cols.append(torch.einsum("bnij,bndij->bnd", weights, v).reshape(batch, heads * d_v))
        rows.append(torch.stack(cols, -1))
    out = torch.stack(rows, -2)  # (B, dim_out, H / step, W / step)
    return F.avg_pool2d(out, 2) if isinstance(attn.pool, torch.nn.AvgPool2d) else out


CASES = {
    "stride1": dict(dim=16, num_heads=2, block_size=4, halo_size=1),
    "value_ratio": dict(dim=16, dim_out=24, num_heads=2, dim_head=4, block_size=4, halo_size=2),
    "strided_geometric": dict(dim=16, dim_out=32, stride=2, num_heads=4, block_size=4, halo_size=1),
    "strided_timm": dict(dim=16, dim_out=32, stride=2, num_heads=4, block_size=4, halo_size=1, strided_pos="timm"),
    "strided_avg_pool": dict(dim=8, stride=2, num_heads=2, block_size=2, halo_size=1, avg_down=True),
    "scaled_pos_qkv_bias": dict(dim=8, num_heads=2, block_size=4, halo_size=1, scale_pos_embed=True, qkv_bias=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_backward_match_naive_reference(case):
    torch.manual_seed(0)
    attn = HaloAttention(**CASES[case]).double()
    if attn.q.bias is not None:
        torch.nn.init.normal_(attn.q.bias)
        torch.nn.init.normal_(attn.kv.bias)
    x = torch.randn(2, attn.dim, 8, 12, dtype=torch.float64, requires_grad=True)  # 2 x 3 blocks of 4 (4 x 6 of 2)

    out = attn(x)
    stride = CASES[case].get("stride", 1)
    assert out.shape == (2, attn.dim_out_v, 8 // stride, 12 // stride)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *attn.parameters()], grad_out)

    ref = naive_halo_attention(attn, x)
    ref_grads = torch.autograd.grad(ref, [x, *attn.parameters()], grad_out)
    torch.testing.assert_close(out, ref)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("stride", [1, 2])
def test_same_numbers_as_timm_halo_attn(stride):
    """strided_pos="timm" is timm's module; "geometric" differs from it only in strided layers."""
    torch.manual_seed(0)
    reference = HaloAttn(16, 32, stride=stride, num_heads=4, block_size=4, halo_size=1).eval()
    ours_timm = HaloAttention(16, 32, stride=stride, num_heads=4, block_size=4, halo_size=1, strided_pos="timm")
    ours_geo = HaloAttention(16, 32, stride=stride, num_heads=4, block_size=4, halo_size=1)
    for ours in (ours_timm, ours_geo):
        assert ours.state_dict().keys() == reference.state_dict().keys()
        ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(ours_timm(x), reference(x), rtol=0, atol=0)
    if stride == 1:
        torch.testing.assert_close(ours_geo(x), reference(x), rtol=0, atol=0)
    else:
        assert isinstance(ours_geo.pos_embed, StridedRelPosEmbed)
        assert not torch.allclose(ours_geo(x), reference(x))


def test_strided_geometric_logits_follow_the_true_displacement():
    """Query i of a stride-2 block sits at offset 2i: its logit for key j uses table row win - 1 + j - 2i."""
    embed = StridedRelPosEmbed(block_size=2, win_size=6, dim_head=3, scale=1.0, query_step=2)
    assert embed.rel_index.tolist() == [[5, 6, 7, 8, 9, 10], [3, 4, 5, 6, 7, 8]]


def test_input_that_does_not_tile_into_blocks_is_refused():
    attn = HaloAttention(8, num_heads=2, block_size=4, halo_size=1)
    with pytest.raises(InputShapeError, match=r"multiples of 4, got 6x8"):
        attn(torch.randn(1, 8, 6, 8))
    with pytest.raises(InputShapeError, match=r"expects \(B, 8, H, W\)"):
        attn(torch.randn(1, 4, 8, 8))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="stride"):
        HaloAttention(8, stride=3)
    with pytest.raises(ValueError, match="num_heads"):
        HaloAttention(12, num_heads=8)
    with pytest.raises(ValueError, match="strided_pos"):
        HaloAttention(8, strided_pos="centre")

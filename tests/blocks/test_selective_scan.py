"""Selective scan: the fast chunked scan against the sequential reference (values and the gradients of every
input), its stability at large step sizes where the cumulative-sum closed form overflows, and the SS2D pieces."""

import pytest
import torch
import torch.nn.functional as F

from zoo.blocks import selective_scan as ss
from zoo.blocks.selective_scan import selective_scan
from zoo.blocks.ss2d import SS2D, cross_merge_2d, cross_scan_2d
from zoo.errors import InputShapeError


def _inputs(batch, channels, groups, state, length, dtype=torch.float32, seed=0, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    shape_bc = (batch, groups, state, length) if groups else (batch, state, length)
    return {
        "u": torch.randn(batch, channels, length, generator=g, dtype=dtype),
        "delta": torch.randn(batch, channels, length, generator=g, dtype=dtype) * delta_scale,
        "A": -torch.rand(channels, state, generator=g, dtype=dtype) * 4 - 0.1,
        "B": torch.randn(*shape_bc, generator=g, dtype=dtype),
        "C": torch.randn(*shape_bc, generator=g, dtype=dtype),
        "D": torch.randn(channels, generator=g, dtype=dtype),
        "z": torch.randn(batch, channels, length, generator=g, dtype=dtype),
        "delta_bias": torch.randn(channels, generator=g, dtype=dtype) * 0.5,
    }


def _run(inputs, method, chunk_size=None):
    """Output, last state and the gradients of every input for a fixed random weighting of both outputs."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True, method=method,
                             chunk_size=chunk_size)
    g = torch.Generator().manual_seed(123)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum()
    loss = loss + (last * torch.randn(last.shape, generator=g, dtype=last.dtype)).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return y.detach(), last.detach(), dict(zip(leaves, grads, strict=True))


def _assert_rel_close(actual, expected, rtol=1e-4, name=""):
    scale = expected.abs().max().clamp_min(1e-12)
    err = (actual - expected).abs().max() / scale
    assert err <= rtol, f"{name}: max error {err:.2e} of the largest magnitude (tolerance {rtol:.0e})"


@pytest.mark.parametrize(
    ("batch", "channels", "groups", "state", "length", "chunk"),
    [
        (2, 8, 2, 4, 37, 8),  # length not a multiple of the chunk: a tail after the chunks
        (1, 12, 4, 16, 64, 8),  # exact multiple; recursion over 8 chunk states
        (3, 6, 0, 3, 5, 2),  # B, C without a group axis; several levels of recursion at chunk 2
        (1, 4, 1, 16, 200, 4),  # deeper recursion (200 -> 50 -> 12 -> 3) with tails at several levels
        (2, 6, 3, 2, 1, None),  # a single step
        (1, 16, 2, 8, 129, None),  # the default chunk size, odd length
    ],
)
def test_fast_matches_reference_values_and_gradients(batch, channels, groups, state, length, chunk):
    inputs = _inputs(batch, channels, groups, state, length)
    y_ref, last_ref, grads_ref = _run(inputs, "reference")
    y, last, grads = _run(inputs, "fast", chunk)
    _assert_rel_close(y, y_ref, name="y")
    _assert_rel_close(last, last_ref, name="last state")
    for name in inputs:
        _assert_rel_close(grads[name], grads_ref[name], name=f"d{name}")


def test_fast_equals_reference_in_float64():
    inputs = _inputs(2, 6, 3, 4, 45, dtype=torch.float64, seed=1)
    y_ref, last_ref, grads_ref = _run(inputs, "reference")
    y, last, grads = _run(inputs, "fast", 4)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, last_ref, rtol=1e-12, atol=1e-12)
    for name in inputs:
        torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-10, atol=1e-10)


def test_fast_gradcheck():
    inputs = _inputs(1, 4, 2, 3, 11, dtype=torch.float64, seed=2)
    leaves = [inputs[k].requires_grad_(True) for k in ("u", "delta", "A", "B", "C")]

    def scan(u, delta, A, B, C):  # noqa: N803
        y, last = selective_scan(u, delta, A, B, C, delta_softplus=True, return_last_state=True, chunk_size=2)
        return y, last

    assert torch.autograd.gradcheck(scan, leaves)


def _naive_chunk_closed_form(u, delta, A, B, chunk):  # noqa: N803
    """The cumulative-sum closed form h_t = e^{S_t} sum_{j<=t} e^{-S_j} delta_j u_j B_j within each chunk (the
    formulation the research notes found to overflow); returns the chunks' states, (b, d, L, n)."""
    delta_a = delta.unsqueeze(-1) * A.unsqueeze(1)  # (b, d, L, n)
    drive = (delta * u).unsqueeze(-1) * B.transpose(-1, -2).unsqueeze(1)  # (b, 1 -> d, L, n)
    states = []
    for start in range(0, u.shape[-1], chunk):
        s = delta_a[:, :, start:start + chunk].cumsum(2)
        states.append(torch.exp(s) * (torch.exp(-s) * drive[:, :, start:start + chunk]).cumsum(2))
    return torch.cat(states, 2)


def test_large_step_sizes_stay_finite_and_exact():
    # Realistic trained step sizes: delta = softplus(1..5) (1.3 to 5.0), |A| up to 16, a 224 px stage-1 length.
    g = torch.Generator().manual_seed(0)
    batch, channels, state, length = 1, 8, 16, 3136
    u = torch.randn(batch, channels, length, generator=g)
    delta_raw = torch.rand(batch, channels, length, generator=g) * 4 + 1
    A = -torch.arange(1, state + 1, dtype=torch.float32).repeat(channels, 1)
    B = torch.randn(batch, 1, state, length, generator=g)
    C = torch.randn(batch, 1, state, length, generator=g)
    naive = _naive_chunk_closed_form(u, F.softplus(delta_raw), A, B[:, 0], chunk=8)
    assert not torch.isfinite(naive).all(), "the naive closed form was expected to overflow here"

    y_ref = selective_scan(u, delta_raw, A, B, C, delta_softplus=True, method="reference")
    y = selective_scan(u, delta_raw, A, B, C, delta_softplus=True, method="fast")
    assert torch.isfinite(y).all()
    _assert_rel_close(y, y_ref, name="y")

    leaves = [t.clone().requires_grad_(True) for t in (u, delta_raw, A, B, C)]
    selective_scan(*leaves, delta_softplus=True).square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length", [1, 2, 7, 8, 9, 64, 100])
def test_linear_scan_primitives(length, reverse):
    g = torch.Generator().manual_seed(length)
    a = torch.rand(length, 5, generator=g, dtype=torch.float64)
    x = torch.randn(length, 5, generator=g, dtype=torch.float64)
    expected = x.clone()
    steps = range(length - 2, -1, -1) if reverse else range(1, length)
    for t in steps:
        expected[t] = a[t] * expected[t + (1 if reverse else -1)] + expected[t]
    for chunk in (2, 3, 8):
        out = x.clone()
        (ss._linear_scan_reverse_ if reverse else ss._linear_scan_)(a, out, chunk)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_small_tiles_give_the_same_result(monkeypatch):
    inputs = _inputs(2, 12, 2, 4, 33)
    y_ref, _, grads_ref = _run(inputs, "fast")
    monkeypatch.setattr(ss, "TILE_ELEMENTS", 33 * 4 * 2)  # two channels per tile, uneven split of 6 per group
    y, _, grads = _run(inputs, "fast")
    torch.testing.assert_close(y, y_ref)
    for name in inputs:
        torch.testing.assert_close(grads[name], grads_ref[name])


def test_bad_inputs_are_named():
    inputs = _inputs(2, 8, 2, 4, 10)
    with pytest.raises(InputShapeError, match="u must have shape"):
        selective_scan(**{**inputs, "u": inputs["u"][0]})
    with pytest.raises(InputShapeError, match="delta must have the shape of u"):
        selective_scan(**{**inputs, "delta": inputs["delta"][:, :, :5]})
    with pytest.raises(InputShapeError, match="A must have shape"):
        selective_scan(**{**inputs, "A": inputs["A"][:4]})
    with pytest.raises(InputShapeError, match="B must have shape"):
        selective_scan(**{**inputs, "B": inputs["B"][..., :5]})
    with pytest.raises(InputShapeError, match="multiple of the groups"):
        selective_scan(**{**inputs, "B": torch.randn(2, 3, 4, 10), "C": torch.randn(2, 3, 4, 10)})
    with pytest.raises(ValueError, match="method"):
        selective_scan(**inputs, method="cuda")
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(**inputs, chunk_size=1)


def test_cross_scan_orders_and_merge():
    x = torch.arange(6.0).view(1, 1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    xs = cross_scan_2d(x)
    assert xs.shape == (1, 4, 1, 6)
    assert xs[0, :, 0].tolist() == [
        [0, 1, 2, 3, 4, 5],  # row-major
        [0, 3, 1, 4, 2, 5],  # column-major
        [5, 4, 3, 2, 1, 0],
        [5, 2, 4, 1, 3, 0],
    ]
    # Merging the four orders of one map gives 4x the map in row-major order (each order is undone).
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(cross_merge_2d(cross_scan_2d(x), 5, 7), 4 * x.flatten(2))


def test_ss2d_fast_and_reference_agree_on_a_non_square_map():
    torch.manual_seed(0)
    block = SS2D(16, d_state=4)
    x = torch.randn(2, 5, 7, 16, requires_grad=True)
    out_fast = block(x)
    grads_fast = torch.autograd.grad(out_fast.square().sum(), [x, *block.parameters()])
    block.scan_method = "reference"
    out_ref = block(x)
    grads_ref = torch.autograd.grad(out_ref.square().sum(), [x, *block.parameters()])
    assert out_fast.shape == (2, 5, 7, 16)
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-4, atol=1e-5)
    for g_fast, g_ref in zip(grads_fast, grads_ref, strict=True):
        _assert_rel_close(g_fast, g_ref)


def test_ss2d_parameter_layout_is_the_official_one():
    block = SS2D(96)  # VMamba-T stage 1: inner 192, N 16, R 6
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (384, 96), "conv2d.weight": (192, 1, 3, 3), "conv2d.bias": (192,),
        "x_proj_weight": (4, 38, 192), "dt_projs_weight": (4, 192, 6), "dt_projs_bias": (4, 192),
        "A_logs": (768, 16), "Ds": (768,), "out_norm.weight": (192,), "out_norm.bias": (192,),
        "out_proj.weight": (96, 192),
    }
    torch.testing.assert_close(-torch.exp(block.A_logs[5]), -torch.arange(1.0, 17.0))  # S4D-real init
    dt = F.softplus(block.dt_projs_bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6

# ruff: noqa: N803  -- A, B, C, D are the names of the S6 paper and of mamba_ssm's interface
"""Selective scan (S6, Gu & Dao, "Mamba", arXiv 2312.00752) and the S6 parameter set-up shared by the blocks
built on it (:mod:`zoo.blocks.ss2d` for VMamba, :mod:`zoo.blocks.mamba` for sequences).

The scan, per channel ``d`` with a state of size ``N``, over time ``t``::

    delta_t = softplus(delta_t + delta_bias_d)          (when asked)
    h_t     = exp(delta_t * A_d) * h_{t-1} + delta_t * u_t * B_t     (h_{-1} = 0, h_t in R^N)
    y_t     = <C_t, h_t> + D_d * u_t                    (then y_t * silu(z_t) when z is given)

``B_t`` and ``C_t`` depend on the input and are shared by the channels of one group (VMamba: one group per scan
direction). :func:`selective_scan` computes it two ways, with one interface:

- ``method="reference"``: the sequential loop over time, written for clarity (the test oracle; slow on CPU).
- ``method="fast"``: a chunked two-level scan with a hand-written backward. Time is cut into chunks of a few
  steps; one pass finds each chunk's end state from a zero start (all chunks at once, one step at a time), the
  same scan applied to those end states (recursively) carries them across chunk boundaries, and a second pass
  writes every state. It only ever multiplies by decays ``exp(delta * A) <= 1`` (for A <= 0), so it cannot
  overflow whatever the step sizes, unlike the closed form ``h_t = e^{S_t} sum_j e^{-S_j} x_j`` with cumulative
  log-decays ``S``, whose ``e^{-S_j}`` overflows float32 once a chunk's summed ``|delta * A|`` passes ~88.
  Channels are processed in tiles sized to stay in cache, and the backward recomputes the states instead of
  keeping (batch, channels, N, L) tensors from the forward.

"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from zoo.errors import InputShapeError

__all__ = ["ScanMethod", "selective_scan"]

ScanMethod = Literal["reference", "fast"]

# Elements of the decay buffer of one tile of (L, batch, N, channels) (16 MiB in float32; the backward has two).
TILE_ELEMENTS = 1 << 22
# Elements of the state slab that one op of the chunked scan works on (one step of every chunk): the chunk length
# is chosen per tile to get about this many. On a 2-core EPYC, 256K was fastest (64K ~1.2x, 16K ~1.9x slower at
# VMamba-T stage 1; 1M ~1.1x slower).
STEP_ELEMENTS = 1 << 18


# ----------------------------------------------------------------------------------------------------------------
# Input checks and the shared pre/post-processing
# ----------------------------------------------------------------------------------------------------------------


def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.ndim != 3:
        raise InputShapeError(f"u must have shape (batch, channels, length), got {tuple(u.shape)}")
    batch, channels, length = u.shape
    if length == 0:
        raise InputShapeError(f"u is an empty sequence, shape {tuple(u.shape)}")
    if delta.shape != u.shape:
        raise InputShapeError(f"delta must have the shape of u {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.ndim != 2 or A.shape[0] != channels:
        raise InputShapeError(f"A must have shape (channels={channels}, state), got {tuple(A.shape)}")
    state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.ndim not in (3, 4) or t.shape[0] != batch or t.shape[-2] != state or t.shape[-1] != length:
            raise InputShapeError(
                f"{name} must have shape (batch={batch}, groups, state={state}, length={length}) or "
                f"(batch, state, length), got {tuple(t.shape)}"
            )
    if B.shape != C.shape:
        raise InputShapeError(f"B and C must have the same shape, got {tuple(B.shape)} and {tuple(C.shape)}")
    groups = B.shape[1] if B.ndim == 4 else 1
    if channels % groups:
        raise InputShapeError(f"channels ({channels}) must be a multiple of the groups of B and C ({groups})")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (channels,):
            raise InputShapeError(f"{name} must have shape (channels={channels},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise InputShapeError(f"z must have the shape of u {tuple(u.shape)}, got {tuple(z.shape)}")


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    method: ScanMethod = "fast",
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan S6 (see the module docstring for the recurrence).

    Args:
        u: (batch, channels, length) input sequence.
        delta: (batch, channels, length) step sizes (before ``delta_bias`` and softplus).
        A: (channels, state) state matrix (diagonal per channel; negative for a stable scan).
        B: (batch, groups, state, length) input projections, shared by the channels // groups channels of a group;
            (batch, state, length) means one group.
        C: like ``B``, the output projections.
        D: (channels,) skip weights, or None.
        z: (batch, channels, length) gate, or None: the output is multiplied by silu(z).
        delta_bias: (channels,) added to delta before the softplus, or None.
        delta_softplus: apply softplus to (delta + delta_bias).
        return_last_state: also return the final state h_{L-1}.
        method: "fast" (chunked scan, custom backward) or "reference" (sequential loop).
        chunk_size: steps per chunk of the fast scan (default: chosen per tile for speed); any value >= 2
            gives the same result.

    Returns:
        y (batch, channels, length) in u's dtype, and with ``return_last_state`` the final state
        (batch, channels, state). The scan itself runs in float32 (float64 when an input is float64).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if method not in ("fast", "reference"):
        raise ValueError(f"method must be 'fast' or 'reference', got {method!r}")
    if chunk_size is not None and chunk_size < 2:
        raise ValueError(f"chunk_size must be at least 2, got {chunk_size}")
    out_dtype = u.dtype
    dtype = torch.float64 if torch.float64 in (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype) else torch.float32
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if B.ndim == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype).unsqueeze(-1)
    if delta_softplus:
        delta = F.softplus(delta)

    # an exported graph traces the sequential recurrence (the same result): the fast scan tiles the batch in Python
    # loops, which would fix the batch size of the exported program
    if method == "reference" or torch.compiler.is_exporting():
        y, last_state = _scan_reference(u, delta, A, B, C)
    else:
        y, last_state = _ChunkedSelectiveScan.apply(u, delta, A, B, C, chunk_size)

    if D is not None:
        y = y + u * D.to(dtype).unsqueeze(-1)
    if z is not None:
        y = y * F.silu(z.to(dtype))
    y = y.to(out_dtype)
    return (y, last_state) if return_last_state else y


# ----------------------------------------------------------------------------------------------------------------
# Reference: the sequential recurrence
# ----------------------------------------------------------------------------------------------------------------


def _scan_reference(u, delta, A, B, C) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequential scan. u, delta (b, d, L); A (d, n); B, C (b, g, n, L) -> y (b, d, L), last state (b, d, n)."""
    batch, channels, _ = u.shape
    per_group = channels // B.shape[1]
    B = B.repeat_interleave(per_group, dim=1).transpose(-1, -2)  # (b, d, L, n)
    C = C.repeat_interleave(per_group, dim=1).transpose(-1, -2)
    decay = torch.exp(delta.unsqueeze(-1) * A.unsqueeze(1))  # (b, d, L, n)
    drive = (delta * u).unsqueeze(-1) * B  # (b, d, L, n)
    h = u.new_zeros(batch, channels, A.shape[1])
    ys = []
    # unbind (not indexing) along time, so that autograd stacks the per-step gradients once instead of
    # scattering each into a full-size zero tensor.
    for decay_t, drive_t, C_t in zip(decay.unbind(2), drive.unbind(2), C.unbind(2), strict=True):
        h = decay_t * h + drive_t
        ys.append((h * C_t).sum(-1))
    return torch.stack(ys, dim=-1), h


# ----------------------------------------------------------------------------------------------------------------
# Fast: chunked two-level linear scan, in place on time-major buffers
# ----------------------------------------------------------------------------------------------------------------


def _linear_scan_(a: torch.Tensor, x: torch.Tensor, chunk: int) -> None:
    """In place over dim 0: x[t] <- a[t] * x[t-1] + x[t] (x[-1] = 0). a, x: (L, S), contiguous.

    Two-level and recursive: the states entering the chunks obey the same recurrence over the chunk index, with
    each chunk's product of decays as its decay, so they are found by the same function on (L / chunk, S).
    """
    length = a.shape[0]
    n_chunks = length // chunk
    if n_chunks < 2:
        for t in range(1, length):
            x[t].addcmul_(a[t], x[t - 1])
        return
    main = n_chunks * chunk
    av, xv = a[:main].view(n_chunks, chunk, -1), x[:main].view(n_chunks, chunk, -1)
    # Pass 1: every chunk's end state from a zero start, all chunks at once, one step at a time.
    end = xv[:, 0].clone()
    for tau in range(1, chunk):
        torch.addcmul(xv[:, tau], av[:, tau], end, out=end)
    # The true end states: the same scan over chunks (products of decays <= 1 only: no overflow).
    _linear_scan_(av.prod(dim=1), end, chunk)
    # Pass 2: every state, each chunk started from the true end state of the chunk before.
    xv[1:, 0].addcmul_(av[1:, 0], end[:-1])
    for tau in range(1, chunk):
        xv[:, tau].addcmul_(av[:, tau], xv[:, tau - 1])
    for t in range(main, length):
        x[t].addcmul_(a[t], x[t - 1])


def _linear_scan_reverse_(a: torch.Tensor, x: torch.Tensor, chunk: int) -> None:
    """In place over dim 0, backwards: x[t] <- a[t] * x[t+1] + x[t] (x[L] = 0). a, x: (L, S), contiguous.

    The mirror image of :func:`_linear_scan_` (chunks aligned to the end). The adjoint of the forward scan,
    lam_t = g_t + a_{t+1} lam_{t+1}, is this with ``a`` shifted by one step.
    """
    length = a.shape[0]
    n_chunks = length // chunk
    if n_chunks < 2:
        for t in range(length - 2, -1, -1):
            x[t].addcmul_(a[t], x[t + 1])
        return
    head = length - n_chunks * chunk
    av, xv = a[head:].view(n_chunks, chunk, -1), x[head:].view(n_chunks, chunk, -1)
    start = xv[:, -1].clone()
    for tau in range(chunk - 2, -1, -1):
        torch.addcmul(xv[:, tau], av[:, tau], start, out=start)
    _linear_scan_reverse_(av.prod(dim=1), start, chunk)
    xv[:-1, -1].addcmul_(av[:-1, -1], start[1:])
    for tau in range(chunk - 2, -1, -1):
        xv[:, tau].addcmul_(av[:, tau], xv[:, tau + 1])
    for t in range(head - 1, -1, -1):
        x[t].addcmul_(a[t], x[t + 1])


def _tiles(batch: int, groups: int, per_group: int, length: int, state: int):
    """(batch slice, group, channel slice within the group) tiles of about TILE_ELEMENTS work elements."""
    rows = max(1, TILE_ELEMENTS // (length * state))  # (batch, channel) rows per tile
    if rows >= per_group:
        batch_step, channel_step = min(batch, rows // per_group), per_group
    else:
        batch_step = 1
        channel_step = math.ceil(per_group / math.ceil(per_group / rows))  # even split of the group
    for b0 in range(0, batch, batch_step):
        for g in range(groups):
            for c0 in range(0, per_group, channel_step):
                yield (slice(b0, min(b0 + batch_step, batch)), g,
                       slice(g * per_group + c0, g * per_group + min(c0 + channel_step, per_group)))


class _Buffers:
    """Flat work buffers reused by every tile of one call (fresh large allocations cost page faults).

    Each holds one step more than a tile needs (the padded decays and states of the backward).
    """

    def __init__(self, count: int, batch: int, groups: int, per_group: int, length: int, state: int,
                 like: torch.Tensor):
        numel = max(((bs.stop - bs.start) * (cs.stop - cs.start) * (length + 1) * state
                     for bs, _, cs in _tiles(batch, groups, per_group, length, state)), default=0)
        self.flat = [torch.empty(numel, dtype=like.dtype, device=like.device) for _ in range(count)]

    def views(self, shape: tuple[int, ...]) -> list[torch.Tensor]:
        numel = math.prod(shape)
        return [buf[:numel].view(shape) for buf in self.flat]


Visit = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], None]


def _scan_states(decay: torch.Tensor, drive_u: torch.Tensor, drive_b: torch.Tensor, chunk: int,
                 visit: Visit) -> torch.Tensor:
    """h_t = a_t h_{t-1} + du_t B_t over dim 0 (h_{-1} = 0), handing every state to ``visit`` without storing them.

    decay: (L, b, n, d) = a_t; drive_u: (L, b, 1, d) = delta_t u_t; drive_b: (L, b, n, 1) = B_t.
    ``visit(step, h)`` gets the states of one step of every chunk at once, h (m, b, n, d), and ``step``, which
    selects the matching (m, ...) slab of any (L, ...) tensor (e.g. to write outputs). Returns h_{L-1} (b, n, d).

    Pass 1 finds every chunk's end state from a zero start, :func:`_linear_scan_` carries those across chunks
    (decays per chunk = products of a_t <= 1), and pass 2 replays each chunk from its true starting state.
    """
    length = decay.shape[0]
    n_chunks = length // chunk if length >= 2 * chunk else 0
    main = n_chunks * chunk
    if n_chunks:
        def col(t: torch.Tensor, tau: int) -> torch.Tensor:
            return t[:main].view(n_chunks, chunk, *t.shape[1:])[:, tau]

        end = torch.mul(col(drive_u, 0), col(drive_b, 0))
        for tau in range(1, chunk):
            end.mul_(col(decay, tau)).addcmul_(col(drive_u, tau), col(drive_b, tau))
        _linear_scan_(decay[:main].view(n_chunks, chunk, -1).prod(dim=1), end.view(n_chunks, -1), chunk)
        h = torch.zeros_like(end)
        h[1:] = end[:-1]
        for tau in range(chunk):
            h.mul_(col(decay, tau)).addcmul_(col(drive_u, tau), col(drive_b, tau))
            visit(functools.partial(col, tau=tau), h)
        h = h[-1:]
    else:
        h = decay.new_zeros(1, *decay.shape[1:])
    for t in range(main, length):
        h.mul_(decay[t:t + 1]).addcmul_(drive_u[t:t + 1], drive_b[t:t + 1])
        visit(lambda x, t=t: x[t:t + 1], h)
    return h[0]


def _scan_adjoints(decay_next: torch.Tensor, grad_y: torch.Tensor, C: torch.Tensor, chunk: int,
                   final: torch.Tensor | None, visit: Visit) -> None:
    """lam_t = a_{t+1} lam_{t+1} + g_t C_t backwards over dim 0 (lam_L = 0), plus ``final`` at t = L-1.

    decay_next: (L, b, n, d) = a_{t+1} (0 at t = L-1); grad_y: (L, b, 1, d); C: (L, b, n, 1); final: (b, n, d).
    The mirror image of :func:`_scan_states` (chunks aligned to the end), visiting the steps in reverse order.
    """
    length = decay_next.shape[0]
    n_chunks = length // chunk if length >= 2 * chunk else 0
    head = length - n_chunks * chunk
    if n_chunks:
        def col(t: torch.Tensor, tau: int) -> torch.Tensor:
            return t[head:].view(n_chunks, chunk, *t.shape[1:])[:, tau]

        start = torch.mul(col(grad_y, chunk - 1), col(C, chunk - 1))
        if final is not None:
            start[-1] += final
        for tau in range(chunk - 2, -1, -1):
            start.mul_(col(decay_next, tau)).addcmul_(col(grad_y, tau), col(C, tau))
        _linear_scan_reverse_(decay_next[head:].view(n_chunks, chunk, -1).prod(dim=1), start.view(n_chunks, -1),
                              chunk)
        lam = torch.zeros_like(start)
        lam[:-1] = start[1:]
        for tau in range(chunk - 1, -1, -1):
            lam.mul_(col(decay_next, tau)).addcmul_(col(grad_y, tau), col(C, tau))
            if tau == chunk - 1 and final is not None:
                lam[-1] += final
            visit(functools.partial(col, tau=tau), lam)
        lam = lam[:1]
    else:
        lam = decay_next.new_zeros(1, *decay_next.shape[1:])
    for t in range(head - 1, -1, -1):
        lam.mul_(decay_next[t:t + 1]).addcmul_(grad_y[t:t + 1], C[t:t + 1])
        if t == length - 1 and final is not None:
            lam += final
        visit(lambda x, t=t: x[t:t + 1], lam)


def _chunk_length(length: int, slab: int, chunk_size: int | None) -> int:
    """Steps per chunk for a tile whose states at one step hold ``slab`` elements.

    Enough chunks that one step of all of them is about STEP_ELEMENTS elements (big enough to amortise an op's
    fixed cost, small enough to stay in cache); a chunk as long as the sequence means a plain sequential scan.
    """
    if chunk_size is not None:
        return chunk_size
    n_chunks = STEP_ELEMENTS // slab
    return max(2, -(-length // n_chunks)) if n_chunks >= 2 else length


class _TileOutput:
    """Forward visitor: y_t = sum_n C_t h_t for the steps it is shown. C: (L, b, n, 1); y: (L, b, 1, d)."""

    def __init__(self, C: torch.Tensor, y: torch.Tensor, work: torch.Tensor):
        self.C, self.y, self.work = C, y, work

    def __call__(self, step: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> None:
        work = self.work[:h.shape[0]]
        torch.mul(h, step(self.C), out=work)
        torch.sum(work, 2, keepdim=True, out=step(self.y))


class _TileStates:
    """Backward visitor 1: keeps every state h_t (in ``states[1:]``) and forms dC_t = sum_d g_t h_t."""

    def __init__(self, states: torch.Tensor, grad_y: torch.Tensor, grad_C: torch.Tensor, work: torch.Tensor):
        self.states, self.grad_y, self.grad_C, self.work = states, grad_y, grad_C, work

    def __call__(self, step: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> None:
        work = self.work[:h.shape[0]]
        step(self.states[1:]).copy_(h)
        torch.mul(h, step(self.grad_y), out=work)
        torch.sum(work, 3, keepdim=True, out=step(self.grad_C))


class _TileGradients:
    """Backward visitor 2: given lam_t = dLoss/dh_t, the gradients through the drive delta_t u_t B_t and the decay
    exp(delta_t A).

    Writes, per step, sum_n lam_t B_t and sum_n A q_t into (L, b, 1, d) tensors and dB_t = sum_d lam_t delta_t u_t
    into an (L, b, n, 1) tensor, and accumulates dA = sum_t delta_t q_t, where q_t = lam_t a_t h_{t-1}.
    """

    def __init__(self, B, drive_u, decay, h_prev, delta, A, work, work2):
        self.B, self.drive_u, self.decay, self.h_prev, self.delta, self.A = B, drive_u, decay, h_prev, delta, A
        self.work, self.work2 = work, work2
        self.lam_b = torch.empty_like(delta)
        self.q_a = torch.empty_like(delta)
        self.grad_B = torch.empty_like(B)
        self.grad_A = torch.zeros_like(A)

    def __call__(self, step: Callable[[torch.Tensor], torch.Tensor], lam: torch.Tensor) -> None:
        work, work2 = self.work[:lam.shape[0]], self.work2[:lam.shape[0]]
        torch.mul(lam, step(self.B), out=work)
        torch.sum(work, 2, keepdim=True, out=step(self.lam_b))
        torch.mul(lam, step(self.drive_u), out=work)
        torch.sum(work, 3, keepdim=True, out=step(self.grad_B))
        torch.mul(lam, step(self.decay), out=work)
        work.mul_(step(self.h_prev))  # q_t
        torch.mul(work, step(self.delta), out=work2)
        self.grad_A += work2.sum((0, 1))
        torch.mul(work, self.A, out=work2)
        torch.sum(work2, 2, keepdim=True, out=step(self.q_a))


class _ChunkedSelectiveScan(torch.autograd.Function):
    """y, last_state = scan(u, delta, A, B, C), with delta already biased and softplus-ed.

    u, delta: (b, d, L); A: (d, n); B, C: (b, g, n, L) -> y (b, d, L), last_state (b, d, n).
    Work tiles are (L, b, n, d): time first (one step of every chunk is one slab), channels last (long inner
    loops). Only the decays exp(delta A) are stored per tile; drives and outputs are formed step by step from the
    small (L, b, d) and (L, b, n) inputs, so the forward never writes the states out.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk_size):
        batch, channels, length = u.shape
        groups, state = B.shape[1], A.shape[1]
        per_group = channels // groups
        u_t, delta_t = u.permute(2, 0, 1).contiguous(), delta.permute(2, 0, 1).contiguous()  # (L, b, d)
        B_t, C_t = B.permute(3, 0, 1, 2).contiguous(), C.permute(3, 0, 1, 2).contiguous()  # (L, b, g, n)
        A_t = A.t().contiguous()  # (n, d)
        y_t = torch.empty_like(u_t)
        last = u.new_empty(batch, state, channels)
        (buffer,) = _Buffers(1, batch, groups, per_group, length, state, u).flat
        for bs, g, cs in _tiles(batch, groups, per_group, length, state):
            tile = (length, bs.stop - bs.start, state, cs.stop - cs.start)
            chunk = _chunk_length(length, math.prod(tile[1:]), chunk_size)
            decay = buffer[:math.prod(tile)].view(tile)
            delta, u = delta_t[:, bs, cs].unsqueeze(2), u_t[:, bs, cs].unsqueeze(2)  # (L, b, 1, d)
            torch.mul(delta, A_t[:, cs], out=decay).exp_()
            y = u.new_empty(u.shape)
            output = _TileOutput(C_t[:, bs, g].unsqueeze(-1), y, decay.new_empty(max(length // chunk, 1), *tile[1:]))
            last[bs, :, cs] = _scan_states(decay, delta * u, B_t[:, bs, g].unsqueeze(-1), chunk, output)
            y_t[:, bs, cs] = y[:, :, 0]
        ctx.save_for_backward(u_t, delta_t, A_t, B_t, C_t)
        ctx.chunk_size = chunk_size
        return y_t.permute(1, 2, 0).contiguous(), last.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        u_t, delta_t, A_t, B_t, C_t = ctx.saved_tensors
        length, batch, channels = u_t.shape
        groups, state = B_t.shape[2], A_t.shape[0]
        per_group = channels // groups
        if grad_y is None:
            grad_y = u_t.new_zeros(batch, channels, length)
        grad_y_t = grad_y.permute(2, 0, 1).contiguous()  # (L, b, d)
        grad_last_t = grad_last.transpose(1, 2) if grad_last is not None else None  # (b, n, d)
        grad_u, grad_delta = torch.empty_like(u_t), torch.empty_like(u_t)  # (L, b, d)
        grad_A = torch.zeros_like(A_t)  # (n, d)
        grad_B, grad_C = torch.zeros_like(B_t), torch.zeros_like(C_t)  # (L, b, g, n)
        decay_buffer, state_buffer = _Buffers(2, batch, groups, per_group, length, state, u_t).flat
        for bs, g, cs in _tiles(batch, groups, per_group, length, state):
            tile = (length, bs.stop - bs.start, state, cs.stop - cs.start)
            chunk = _chunk_length(length, math.prod(tile[1:]), ctx.chunk_size)
            padded = (length + 1, *tile[1:])
            decays = decay_buffer[:math.prod(padded)].view(padded)  # a_0 .. a_{L-1}, 0
            states = state_buffer[:math.prod(padded)].view(padded)  # 0 = h_{-1}, h_0 .. h_{L-1}
            decays[length].zero_()
            states[0].zero_()
            delta, u, A = delta_t[:, bs, cs].unsqueeze(2), u_t[:, bs, cs].unsqueeze(2), A_t[:, cs]  # (L, b, 1, d)
            B, C = B_t[:, bs, g].unsqueeze(-1), C_t[:, bs, g].unsqueeze(-1)  # (L, b, n, 1)
            gy = grad_y_t[:, bs, cs].unsqueeze(2)  # (L, b, 1, d)
            decay, drive_u = decays[:length], delta * u
            torch.mul(delta, A, out=decay).exp_()
            work, work2 = (decay.new_empty(max(length // chunk, 1), *tile[1:]) for _ in range(2))
            # The states h_t (kept) and dC; then lam_t = dLoss/dh_t = g_t C_t + a_{t+1} lam_{t+1} backwards, with
            # the last state's gradient added at the end, and the gradients through h_t = a_t h_{t-1} + delta u B.
            grad_c = gy.new_empty(B.shape)
            _scan_states(decay, drive_u, B, chunk, _TileStates(states, gy, grad_c, work))
            grads = _TileGradients(B, drive_u, decay, states[:length], delta, A, work, work2)
            final = grad_last_t[bs, :, cs] if grad_last_t is not None else None
            _scan_adjoints(decays[1:], gy, C, chunk, final, grads)
            grad_C[:, bs, g] += grad_c[..., 0]
            grad_B[:, bs, g] += grads.grad_B[..., 0]
            grad_A[:, cs] += grads.grad_A
            grad_delta[:, bs, cs] = (grads.lam_b * u + grads.q_a)[:, :, 0]
            grad_u[:, bs, cs] = (grads.lam_b * delta)[:, :, 0]
        return (grad_u.permute(1, 2, 0), grad_delta.permute(1, 2, 0), grad_A.t(),
                grad_B.permute(1, 2, 3, 0), grad_C.permute(1, 2, 3, 0), None)


# Parameter set-up shared by the blocks built on the scan (SS2D here, Mamba in zoo.blocks.mamba), as in mamba_ssm.

def check_scan_method(scan_method: str) -> None:
    if scan_method not in ("fast", "reference"):
        raise ValueError(f"scan_method must be 'fast' or 'reference', got {scan_method!r}")


def resolve_dt_rank(dim: int, dt_rank: int | str) -> int:
    """Rank of the step-size projection: "auto" = ceil(dim / 16)."""
    return math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)


def initial_dt_bias(*shape: int, dt_min: float, dt_max: float, floor: float) -> torch.Tensor:
    """Step-size biases softplus^-1(dt) with dt log-uniform in [dt_min, dt_max] and at least ``floor``."""
    dt = torch.exp(torch.rand(*shape) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


def s4d_real_a_log(channels: int, d_state: int) -> torch.Tensor:
    """(channels, d_state) log(-A) of the S4D-real initialisation, A = -(1..N) for every channel."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1)

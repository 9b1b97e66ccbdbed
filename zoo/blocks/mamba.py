"""The Mamba block (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752)
for 1-D sequences: time series, event streams, token sequences.

:class:`Mamba` is the mixer (in_proj -> causal depthwise conv -> SiLU -> selective scan S6 gated by SiLU(z) ->
out_proj) with the parameter names and initialisation of the official ``mamba_ssm.modules.mamba_simple.Mamba``, so
its state dicts (and those of Hugging Face's ``MambaMixer``, which uses the same names) load unchanged. It runs the
scan of :mod:`zoo.blocks.selective_scan` (the CPU-safe chunked scan, or the sequential reference), and has a
recurrent :meth:`Mamba.step` for generation and online forecasting that carries a constant-size state.

:class:`MambaBlock` is the residual unit that stacks: ``x + drop_path(mixer(norm(x)))``, with the ``norm`` and
``mixer`` names of mamba_ssm's ``Block``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from zoo.blocks.selective_scan import (
    ScanMethod,
    check_scan_method,
    initial_dt_bias,
    resolve_dt_rank,
    s4d_real_a_log,
    selective_scan,
)
from zoo.errors import InputShapeError

__all__ = ["Mamba", "MambaBlock", "MambaState"]


class MambaState(NamedTuple):
    """What :meth:`Mamba.step` carries from one time step to the next.

    conv: (batch, inner, d_conv) the last d_conv inputs of the causal convolution, oldest first.
    ssm: (batch, inner, d_state) the scan's hidden state h_t (float32).
    """

    conv: torch.Tensor
    ssm: torch.Tensor


class Mamba(nn.Module):
    """The Mamba (S6) mixer over (batch, length, dim) sequences; causal: output t sees inputs 0..t only.

    Parameters, with E = expand * dim the inner width, N = d_state and R = dt_rank (the official names):
    ``in_proj`` (2E x dim, no bias), ``conv1d`` (depthwise, E x 1 x d_conv, with bias), ``x_proj`` (R+2N x E, no
    bias), ``dt_proj`` (E x R, with bias), ``A_log`` (E x N), ``D`` (E), ``out_proj`` (dim x E, no bias).

    Args:
        dim: channels of the input and output (mamba_ssm's d_model).
        d_state: state size N per channel.
        d_conv: kernel size of the causal depthwise convolution.
        expand: inner width E / dim.
        dt_rank: rank R of the step-size projection; "auto" = ceil(dim / 16).
        dt_min, dt_max, dt_init_floor: initial step sizes are log-uniform in [dt_min, dt_max], floored.
        dt_scale: scale of the uniform initialisation of ``dt_proj.weight`` (+-dt_scale * R^-0.5).
        conv_bias, bias: biases of ``conv1d`` and of ``in_proj``/``out_proj``.
        scan_method: "fast" or "reference" (see :func:`zoo.blocks.selective_scan.selective_scan`).
    """
    # zoo.tasks.compiling keeps a model with this block eager under --model.compile true
    compile_unsupported = ("the selective scan is a Python loop over time in a custom autograd function, which "
                           "torch.compile would unroll")

    def __init__(
        self, dim: int, d_state: int = 16, d_conv: int = 4, expand: float = 2, dt_rank: int | str = "auto",
        dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4, dt_scale: float = 1.0,
        conv_bias: bool = True, bias: bool = False, scan_method: ScanMethod = "fast",
    ):
        super().__init__()
        check_scan_method(scan_method)
        inner = int(expand * dim)
        rank = resolve_dt_rank(dim, dt_rank)
        self.dim, self.inner, self.d_state, self.d_conv, self.dt_rank = dim, inner, d_state, d_conv, rank
        self.scan_method = scan_method
        self.in_proj = nn.Linear(dim, 2 * inner, bias=bias)
        self.conv1d = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(inner, rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(rank, inner, bias=True)
        # The official initialisation: dt_proj weights U(+-dt_scale R^-0.5); its bias softplus^-1(dt) with dt
        # log-uniform in [dt_min, dt_max]; S4D-real A = -(1..N) for every channel; D = 1.
        std = dt_scale * rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(initial_dt_bias(inner, dt_min=dt_min, dt_max=dt_max, floor=dt_init_floor))
        self.A_log = nn.Parameter(s4d_real_a_log(inner, d_state))
        self.D = nn.Parameter(torch.ones(inner))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(inner, dim, bias=bias)

    def _check(self, x: torch.Tensor, ndim: int) -> None:
        shape = "(batch, length, dim)" if ndim == 3 else "(batch, dim)"
        if x.ndim != ndim or x.shape[-1] != self.dim:
            raise InputShapeError(f"expected a sequence batch of shape {shape} with dim={self.dim}, "
                                  f"got {tuple(x.shape)}")

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., E) conv outputs -> step sizes before the bias (..., E), B (..., N), C (..., N)."""
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def forward(self, x: torch.Tensor, return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, MambaState]:
        """(batch, length, dim) -> (batch, length, dim); with ``return_state`` also the :class:`MambaState` after
        the last step, from which :meth:`step` continues the sequence."""
        self._check(x, 3)
        length = x.shape[1]
        x, z = self.in_proj(x).chunk(2, dim=-1)  # (b, L, E) each
        x = x.transpose(1, 2)  # (b, E, L)
        conv_state = F.pad(x, (self.d_conv - length, 0)) if length < self.d_conv else x[..., -self.d_conv:]
        x = F.silu(self.conv1d(x)[..., :length])
        dt, B, C = self._project(x.transpose(1, 2))  # (b, L, E), (b, L, N), (b, L, N)
        y, ssm_state = selective_scan(
            x, dt.transpose(1, 2), -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2),
            self.D.float(), z=z.transpose(1, 2), delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
            return_last_state=True, method=self.scan_method,
        )
        out = self.out_proj(y.transpose(1, 2))
        return (out, MambaState(conv_state.detach(), ssm_state.detach())) if return_state else out

    def initial_state(self, batch: int, device: torch.device | None = None,
                      dtype: torch.dtype | None = None) -> MambaState:
        """The state before the first step (zeros), for :meth:`step`."""
        weight = self.in_proj.weight
        device, dtype = device or weight.device, dtype or weight.dtype
        return MambaState(torch.zeros(batch, self.inner, self.d_conv, device=device, dtype=dtype),
                          torch.zeros(batch, self.inner, self.d_state, device=device, dtype=torch.float32))

    def step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """One time step of the recurrence: (batch, dim) and the state -> (batch, dim) and the next state.

        Running :meth:`step` over a sequence from :meth:`initial_state` gives what :meth:`forward` gives.
        """
        self._check(x, 2)
        x, z = self.in_proj(x).chunk(2, dim=-1)  # (b, E)
        conv = torch.cat([state.conv[..., 1:], x.unsqueeze(-1)], dim=-1)  # (b, E, d_conv)
        x = (conv * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        dt, B, C = self._project(x)
        dt = F.softplus(dt.float() + self.dt_proj.bias.float())  # (b, E)
        A = -torch.exp(self.A_log.float())  # (E, N)
        ssm = torch.exp(dt.unsqueeze(-1) * A) * state.ssm + (dt * x.float()).unsqueeze(-1) * B.float().unsqueeze(1)
        y = (ssm * C.float().unsqueeze(1)).sum(-1) + self.D.float() * x.float()
        y = (y * F.silu(z.float())).to(x.dtype)
        return self.out_proj(y), MambaState(conv, ssm)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, inner={self.inner}, d_state={self.d_state}, d_conv={self.d_conv}, "
                f"dt_rank={self.dt_rank}, scan_method={self.scan_method}")


class MambaBlock(nn.Module):
    """Pre-norm residual Mamba unit, ``x + drop_path(mixer(norm(x)))``, on (batch, length, dim) sequences.

    Args:
        dim: channels.
        norm: "rms" (RMSNorm, as the released Mamba language models use) or "layer" (LayerNorm).
        norm_eps: the norm's epsilon (mamba_ssm: 1e-5).
        drop_path: stochastic depth rate of the residual branch.
        **mixer_kwargs: the arguments of :class:`Mamba` (d_state, d_conv, expand, dt_rank, scan_method, ...).
    """

    def __init__(self, dim: int, norm: Literal["rms", "layer"] = "rms", norm_eps: float = 1e-5,
                 drop_path: float = 0.0, **mixer_kwargs):
        super().__init__()
        if norm not in ("rms", "layer"):
            raise ValueError(f"norm must be 'rms' or 'layer', got {norm!r}")
        self.norm = nn.RMSNorm(dim, eps=norm_eps) if norm == "rms" else nn.LayerNorm(dim, eps=norm_eps)
        self.mixer = Mamba(dim, **mixer_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, length, dim) -> (batch, length, dim)."""
        return x + self.drop_path(self.mixer(self.norm(x)))

    def step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """One time step: (batch, dim) and the mixer's state -> (batch, dim) and the next state."""
        y, state = self.mixer.step(self.norm(x), state)
        return x + y, state

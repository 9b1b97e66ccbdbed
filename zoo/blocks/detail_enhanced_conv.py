"""Detail-enhanced convolution (DEConv) of DEA-Net (Chen, He, Lu, IEEE TIP 2024, arXiv 2301.04805).

Five parallel 3x3 convolutions over the same input, summed:

- ``conv1_1`` central difference (CDC): the centre tap becomes ``w_c - sum(w)``, i.e. ``sum_i w_i (x_i - x_c)``;
- ``conv1_2`` horizontal difference (HDC): a learnable Conv1d weight (C, C, 3) in the left column of the kernel
  and its negation in the right column;
- ``conv1_3`` vertical difference (VDC): the Conv1d weight in the top row, its negation in the bottom row;
- ``conv1_4`` angular difference (ADC): ``w - rot(w)``, each outer tap minus its clockwise neighbour;
- ``conv1_5`` a vanilla 3x3 convolution.

Convolution is linear, so the five branches are one 3x3 kernel and one bias (:func:`merge_detail_kernels`); the
forward pass builds that kernel and runs a single convolution, on any device (the official code allocates CUDA
tensors here). ``DEConv.reparameterize()`` returns the equivalent plain ``nn.Conv2d`` of the deploy graph.
Attribute names follow the official ``model/modules/deconv.py`` so official checkpoints load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DIFFERENCE_BRANCHES", "DEConv", "merge_detail_kernels"]

DIFFERENCE_BRANCHES = ("conv1_1", "conv1_2", "conv1_3", "conv1_4", "conv1_5")
"""Names of the branches: central, horizontal, vertical, angular difference, vanilla."""

# Flattened 3x3 index each tap takes its "rotated" neighbour from (the official clockwise ring permutation).
_CLOCKWISE = [3, 0, 1, 6, 4, 2, 7, 8, 5]


def _central_difference(w: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) -> (O, I, 3, 3) with the centre tap replaced by w_centre - sum(w)."""
    flat = w.flatten(2)
    centre = flat[:, :, 4] - flat.sum(2)
    return torch.cat([flat[:, :, :4], centre[:, :, None], flat[:, :, 5:]], dim=2).view_as(w)


def _angular_difference(w: torch.Tensor, theta: float = 1.0) -> torch.Tensor:
    """(O, I, 3, 3) -> w - theta * rot(w), rot moving each ring tap one place clockwise (centre -> 0 at theta 1)."""
    flat = w.flatten(2)
    return (flat - theta * flat[:, :, _CLOCKWISE]).view_as(w)


def _horizontal_difference(w1d: torch.Tensor) -> torch.Tensor:
    """Conv1d weight (O, I, 3) -> 3x3 kernel with w1d in the left column, -w1d in the right, zeros between."""
    zeros = torch.zeros_like(w1d)
    return torch.stack([w1d, zeros, -w1d], dim=3)  # (O, I, rows=3, cols=3)


def _vertical_difference(w1d: torch.Tensor) -> torch.Tensor:
    """Conv1d weight (O, I, 3) -> 3x3 kernel with w1d in the top row, -w1d in the bottom row, zeros between."""
    zeros = torch.zeros_like(w1d)
    return torch.stack([w1d, zeros, -w1d], dim=2)  # (O, I, rows=3, cols=3)


def merge_detail_kernels(
    w_cd: torch.Tensor, b_cd: torch.Tensor, w_hd: torch.Tensor, b_hd: torch.Tensor, w_vd: torch.Tensor,
    b_vd: torch.Tensor, w_ad: torch.Tensor, b_ad: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The single (O, I, 3, 3) kernel and (O,) bias equal to the five DEConv branches summed.

    Args:
        w_cd, w_ad, w: (O, I, 3, 3) raw weights of the central-, angular-difference and vanilla branches.
        w_hd, w_vd: (O, I, 3) Conv1d weights of the horizontal and vertical difference branches.
        b_*: (O,) biases of the branches.
    """
    kernel = (_central_difference(w_cd) + _horizontal_difference(w_hd) + _vertical_difference(w_vd)
              + _angular_difference(w_ad) + w)
    return kernel, b_cd + b_hd + b_vd + b_ad + b


class _Branch(nn.Module):
    """Holds one difference branch's learnable convolution under ``conv`` (the official key layout)."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv


class DEConv(nn.Module):
    """Detail-enhanced 3x3 convolution, ``dim`` -> ``dim`` channels, stride 1, padding 1.

    Args:
        dim: input and output channels.

    Example:
        >>> conv = DEConv(32)
        >>> plain = conv.reparameterize()          # nn.Conv2d(32, 32, 3, padding=1) giving the same output
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.conv1_1 = _Branch(nn.Conv2d(dim, dim, 3, padding=1, bias=True))
        self.conv1_2 = _Branch(nn.Conv1d(dim, dim, 3, padding=1, bias=True))
        self.conv1_3 = _Branch(nn.Conv1d(dim, dim, 3, padding=1, bias=True))
        self.conv1_4 = _Branch(nn.Conv2d(dim, dim, 3, padding=1, bias=True))
        self.conv1_5 = nn.Conv2d(dim, dim, 3, padding=1, bias=True)

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (dim, dim, 3, 3) kernel and (dim,) bias of the five branches summed (differentiable)."""
        return merge_detail_kernels(
            self.conv1_1.conv.weight, self.conv1_1.conv.bias, self.conv1_2.conv.weight, self.conv1_2.conv.bias,
            self.conv1_3.conv.weight, self.conv1_3.conv.bias, self.conv1_4.conv.weight, self.conv1_4.conv.bias,
            self.conv1_5.weight, self.conv1_5.bias,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) -> (B, dim, H, W): one convolution with the merged kernel."""
        weight, bias = self.merged_kernel()
        return F.conv2d(x, weight, bias, stride=1, padding=1)

    @torch.no_grad()
    def reparameterize(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d(dim, dim, 3, padding=1)`` (same device and dtype) equal to this DEConv."""
        weight, bias = self.merged_kernel()
        conv = nn.Conv2d(self.dim, self.dim, 3, padding=1, bias=True, device=weight.device, dtype=weight.dtype)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

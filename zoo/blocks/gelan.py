"""GELAN building blocks (YOLOv9, Wang, Yeh, Liao 2024, arXiv 2402.13616), written from the paper's description
and the layer lists of the YOLOv9-s configuration (the official code is GPL-3.0 and was read for facts only).

Every block maps (B, C_in, H, W) -> (B, C_out, H', W'); ``ConvBNAct`` is Conv2d (no bias) + BatchNorm (eps 1e-3,
momentum 0.03) + SiLU, the unit all of them are made of. ``RepConvN`` trains as a 3x3 and a 1x1 conv-BN branch
and fuses into one 3x3 convolution with :meth:`RepConvN.fuse` (same outputs in eval mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ELAN1",
    "SPPELAN",
    "AConv",
    "ConvBNAct",
    "RepConvN",
    "RepNBottleneck",
    "RepNCSP",
    "RepNCSPELAN4",
    "fuse_conv_bn",
]


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias, "same" padding for odd kernels) -> BatchNorm2d -> SiLU (or identity with ``act=False``).

    Shapes: (B, channels, H, W) -> (B, out_channels, H / stride, W / stride).
    """

    def __init__(self, channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True, padding: int | None = None):
        padding = kernel_size // 2 if padding is None else padding
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU() if act else nn.Identity()


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of one convolution equal to ``bn(conv(x))`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return weight.detach(), bias.detach()


class RepConvN(nn.Module):
    """Re-parameterisable 3x3 conv: SiLU(BN(conv3x3(x)) + BN(conv1x1(x))), no identity branch.

    Shapes: (B, channels, H, W) -> (B, out_channels, H / stride, W / stride). After :meth:`fuse` the two branches
    are one 3x3 ``nn.Conv2d`` with bias (``self.fused``), with the same eval-mode outputs.
    """

    def __init__(self, channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__()
        if kernel_size != 3:
            raise ValueError(f"RepConvN fuses a 3x3 and a 1x1 branch; got kernel_size={kernel_size}")
        self.conv1 = ConvBNAct(channels, out_channels, 3, stride, groups, act=False)
        self.conv2 = ConvBNAct(channels, out_channels, 1, stride, groups, act=False, padding=0)
        self.act = nn.SiLU()
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        return self.act(self.conv1(x) + self.conv2(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold both conv-BN branches into one 3x3 convolution and drop the branches."""
        if self.fused is not None:
            return
        w3, b3 = fuse_conv_bn(self.conv1.conv, self.conv1.bn)
        w1, b1 = fuse_conv_bn(self.conv2.conv, self.conv2.bn)
        src = self.conv1.conv
        fused = nn.Conv2d(src.in_channels, src.out_channels, 3, src.stride, 1, groups=src.groups, bias=True)
        fused.weight.copy_(w3 + F.pad(w1, [1, 1, 1, 1]))
        fused.bias.copy_(b3 + b1)
        self.fused = fused.to(device=src.weight.device, dtype=src.weight.dtype)
        del self.conv1, self.conv2


class RepNBottleneck(nn.Module):
    """RepConvN(3x3) -> ConvBNAct(3x3), with a residual when the widths agree.

    Shapes: (B, channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, channels: int, out_channels: int, shortcut: bool = True, expansion: float = 0.5):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.cv1 = RepConvN(channels, hidden, 3)
        self.cv2 = ConvBNAct(hidden, out_channels, 3)
        self.add = shortcut and channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class RepNCSP(nn.Module):
    """CSP block: two 1x1 stems of width out/2, ``depth`` RepNBottlenecks on one, concat, 1x1 to ``out_channels``.

    Shapes: (B, channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, channels: int, out_channels: int, depth: int = 1, expansion: float = 0.5):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.cv1 = ConvBNAct(channels, hidden, 1)
        self.cv2 = ConvBNAct(channels, hidden, 1)
        self.cv3 = ConvBNAct(2 * hidden, out_channels, 1)
        self.m = nn.Sequential(*(RepNBottleneck(hidden, hidden, expansion=1.0) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class ELAN1(nn.Module):
    """ELAN-1: 1x1 to ``hidden``, split in halves, two chained 3x3 convs on the second, 1x1 over all four parts.

    Shapes: (B, channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, channels: int, out_channels: int, hidden: int, branch: int):
        super().__init__()
        self.cv1 = ConvBNAct(channels, hidden, 1)
        self.cv2 = ConvBNAct(hidden // 2, branch, 3)
        self.cv3 = ConvBNAct(branch, branch, 3)
        self.cv4 = ConvBNAct(hidden + 2 * branch, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, 1))
        parts.append(self.cv2(parts[-1]))
        parts.append(self.cv3(parts[-1]))
        return self.cv4(torch.cat(parts, 1))


class RepNCSPELAN4(nn.Module):
    """GELAN block: like ELAN-1, with each of the two serial stages RepNCSP(``depth``) -> ConvBNAct(3x3).

    Shapes: (B, channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, channels: int, out_channels: int, hidden: int, branch: int, depth: int = 1):
        super().__init__()
        self.cv1 = ConvBNAct(channels, hidden, 1)
        self.cv2 = nn.Sequential(RepNCSP(hidden // 2, branch, depth), ConvBNAct(branch, branch, 3))
        self.cv3 = nn.Sequential(RepNCSP(branch, branch, depth), ConvBNAct(branch, branch, 3))
        self.cv4 = ConvBNAct(hidden + 2 * branch, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, 1))
        parts.append(self.cv2(parts[-1]))
        parts.append(self.cv3(parts[-1]))
        return self.cv4(torch.cat(parts, 1))


class AConv(nn.Module):
    """Downsampling: 2x2 average pool (stride 1) -> ConvBNAct(3x3, stride 2).

    Shapes: (B, channels, H, W) -> (B, out_channels, ceil((H - 1) / 2), ceil((W - 1) / 2)), i.e. H / 2 for even H.
    """

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.cv1 = ConvBNAct(channels, out_channels, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv1(F.avg_pool2d(x, 2, 1, 0, False, True))


class SPPELAN(nn.Module):
    """Spatial pyramid pooling, ELAN style: 1x1 to ``hidden``, three chained 5x5 max-pools, concat four, 1x1.

    Shapes: (B, channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, channels: int, out_channels: int, hidden: int):
        super().__init__()
        self.cv1 = ConvBNAct(channels, hidden, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.cv5 = ConvBNAct(4 * hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.cv1(x)]
        for _ in range(3):
            parts.append(self.pool(parts[-1]))
        return self.cv5(torch.cat(parts, 1))

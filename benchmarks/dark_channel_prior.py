"""The dark channel prior (He, Sun, Tang, "Single image haze removal using dark channel prior", CVPR 2009), with
the transmission refined by the guided filter (He, Sun, Tang, "Guided image filtering", ECCV 2010) in place of the
2009 paper's soft matting. Written from the papers; the classical baseline of the dehazing benchmarks.

Steps on a hazy image I (B, 3, H, W) in [0, 1]:

1. dark channel: dark(I)(x) = min over the patch around x (15 x 15) of min over colour channels of I;
2. atmospheric light A: among the brightest 0.1 % pixels of the dark channel, the colour of the one with the
   highest intensity in I;
3. transmission: t(x) = 1 - omega * dark(I / A)(x), omega = 0.95 (keeps a little haze for depth perception);
4. refinement: t filtered by a guided filter with the grey hazy image as guide;
5. recovery: J = (I - A) / max(t, t0) + A, t0 = 0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["airlight", "dark_channel", "dark_channel_prior", "guided_filter", "transmission"]


def min_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Minimum over a size x size window: (B, C, H, W) -> (B, C, H, W) (edges replicate-padded)."""
    pad = size // 2
    return -F.max_pool2d(F.pad(-x, (pad, size - 1 - pad, pad, size - 1 - pad), mode="replicate"), size, stride=1)


def dark_channel(image: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): the patch minimum of the per-pixel minimum over the colour channels."""
    return min_filter(image.amin(1, keepdim=True), patch)


def airlight(hazy: torch.Tensor, dark: torch.Tensor, top: float = 0.001) -> torch.Tensor:
    """(B, 3, H, W), its dark channel (B, 1, H, W) -> A (B, 3, 1, 1): among the ``top`` fraction of brightest
    dark-channel pixels, the colour of the one brightest in the hazy image (sum of its channels)."""
    b, _, h, w = hazy.shape
    k = max(1, int(top * h * w))
    index = dark.flatten(1).topk(k, dim=1).indices                                    # (B, k)
    candidates = hazy.flatten(2).gather(2, index[:, None].expand(b, 3, k))            # (B, 3, k)
    brightest = candidates.sum(1).argmax(1)                                           # (B,)
    return candidates[torch.arange(b), :, brightest][..., None, None]


def transmission(hazy: torch.Tensor, light: torch.Tensor, patch: int = 15, omega: float = 0.95) -> torch.Tensor:
    """The coarse transmission t = 1 - omega * dark(I / A): (B, 3, H, W), A (B, 3, 1, 1) -> (B, 1, H, W)."""
    return 1 - omega * dark_channel(hazy / light.clamp_min(1e-3), patch)


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2 radius + 1)^2 window (reflect-padded) by summed-area tables: O(1) per pixel at any radius."""
    size = 2 * radius + 1
    padded = F.pad(x.double(), (radius + 1, radius, radius + 1, radius), mode="reflect")
    padded[..., 0, :] = 0
    padded[..., :, 0] = 0
    table = padded.cumsum(-1).cumsum(-2)
    sums = table[..., size:, size:] - table[..., :-size, size:] - table[..., size:, :-size] + table[..., :-size, :-size]
    return (sums / size ** 2).to(x.dtype)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = 60, eps: float = 1e-4) -> torch.Tensor:
    """He et al.'s guided filter with a grey guide: guide, src (B, 1, H, W) -> filtered src (B, 1, H, W); the radius
    is capped below half the shorter side (the reflect padding needs it)."""
    radius = max(1, min(radius, min(guide.shape[-2:]) // 2 - 1))
    mean_i, mean_p = _box(guide, radius), _box(src, radius)
    cov = _box(guide * src, radius) - mean_i * mean_p
    var = _box(guide * guide, radius) - mean_i ** 2
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * guide + _box(b, radius)


def dark_channel_prior(hazy: torch.Tensor, patch: int = 15, omega: float = 0.95, t0: float = 0.1,
                       top: float = 0.001, radius: int = 60, eps: float = 1e-4, refine: bool = True) -> torch.Tensor:
    """Dehaze hazy (B, 3, H, W) in [0, 1] by the dark channel prior; returns J (B, 3, H, W) clamped to [0, 1]."""
    if hazy.ndim != 4 or hazy.shape[1] != 3:
        raise ValueError(f"dark_channel_prior takes (B, 3, H, W) images, got {tuple(hazy.shape)}")
    light = airlight(hazy, dark_channel(hazy, patch), top)
    t = transmission(hazy, light, patch, omega)
    if refine:
        t = guided_filter(hazy.mean(1, keepdim=True), t, radius, eps)
    return ((hazy - light) / t.clamp_min(t0) + light).clamp(0, 1)

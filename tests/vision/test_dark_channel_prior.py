"""The dark channel prior of benchmarks/dark_channel_prior.py recovers a scene whose dark channel is zero, hazed with
a known transmission and airlight; its guided filter is a box-filter identity on a constant guide."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.dark_channel_prior import airlight, dark_channel, dark_channel_prior, guided_filter, min_filter

AIRLIGHT = torch.tensor([0.92, 0.88, 0.85])


def _zero_dark_channel_scene(h: int = 60, w: int = 80, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W): random colours with one channel zero at every pixel (a haze-free dark channel of 0), none of
    them brighter than the airlight."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.05, 0.8, (3, h, w))
    zero = rng.integers(0, 3, (h, w))
    for c in range(3):
        image[c][zero == c] = 0.0
    return torch.from_numpy(image).float()[None]


def _hazy(clear: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return clear * t + AIRLIGHT[None, :, None, None] * (1 - t)


def _transmission_map(h: int = 60, w: int = 80) -> torch.Tensor:
    """(1, 1, H, W): a sky band on top (t = 0: the pixel is the airlight) over two regions of t 0.7 and 0.4."""
    t = torch.full((1, 1, h, w), 0.7)
    t[..., : h // 5, :] = 0.0
    t[..., h // 2:, w // 2:] = 0.4
    return t


def test_min_filter_and_dark_channel():
    x = torch.rand(1, 3, 9, 11)
    dark = dark_channel(x, patch=3)
    grey_min = x.amin(1)[0]
    for y, xx in ((0, 0), (4, 5), (8, 10)):
        window = grey_min[max(0, y - 1): y + 2, max(0, xx - 1): xx + 2]
        assert float(dark[0, 0, y, xx]) == float(window.min())
    assert torch.equal(min_filter(x, 1), x)


def test_airlight_is_the_colour_of_the_haziest_pixel():
    clear, t = _zero_dark_channel_scene(), _transmission_map()
    hazy = _hazy(clear, t)
    light = airlight(hazy, dark_channel(hazy))
    torch.testing.assert_close(light.flatten(), AIRLIGHT, atol=1e-6, rtol=0)


def test_recovers_a_zero_dark_channel_scene_from_known_haze():
    """With omega = 1 and no refinement the prior is exact wherever a whole patch lies in one region of t: the
    estimated t equals the true t and J is recovered; with the paper's omega 0.95 and the guided filter the result
    is still three times closer to the scene than the hazy input (the guide here is per-pixel colour noise)."""
    clear, t = _zero_dark_channel_scene(), _transmission_map()
    hazy = _hazy(clear, t)
    exact = dark_channel_prior(hazy, patch=5, omega=1.0, t0=0.05, refine=False)
    interior = torch.zeros(60, 80, dtype=torch.bool)
    interior[15:27, 3:77] = True    # t 0.7, two pixels from any edge of its region
    interior[33:57, 43:77] = True   # t 0.4
    torch.testing.assert_close(exact[..., interior], clear[..., interior], atol=1e-5, rtol=0)
    scene = t[0, 0] > 0
    paper = dark_channel_prior(hazy)
    error = lambda x: float((x - clear)[..., scene].abs().mean())  # noqa: E731
    assert error(paper) < error(hazy) / 3, (error(paper), error(hazy))


def test_guided_filter_keeps_a_linear_function_of_the_guide():
    guide = torch.rand(1, 1, 40, 50)
    torch.testing.assert_close(guided_filter(guide, 0.3 * guide + 0.2, radius=5, eps=1e-8), 0.3 * guide + 0.2,
                               atol=1e-4, rtol=0)

"""Input checks shared by the vision models."""

from __future__ import annotations

import torch

from zoo.errors import InputShapeError


def check_image_batch(x: torch.Tensor, in_chans: int) -> None:
    """Raise a clear error unless ``x`` is a (B, in_chans, H, W) float batch."""
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise InputShapeError(f"expected an image batch of shape (B, {in_chans}, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputShapeError(f"expected a float image batch, got dtype {x.dtype}; convert and normalise it first")

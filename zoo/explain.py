"""Grad-CAM (Selvaraju et al., ICCV 2017, arXiv 1610.02391) for any zoo classification model.

For a target class c and the activations A (K channels, u x v) of a layer: alpha_k = mean over positions of
d y_c / d A_k (y_c is the pre-softmax logit), map = ReLU(sum_k alpha_k A_k), upsampled bilinearly to the input and
min-max normalised per image. The default layer is the card's ``target_layer``; layers whose output is
channels-last (B, H, W, C), as in VMamba, are handled when the model sets ``feature_layout = "NHWC"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import InputShapeError, ZooError

MIN_MAP_SIZE = 7


def default_target_layer(model: nn.Module, image_size: Sequence[int] | None = None) -> str:
    """The Grad-CAM layer: the card's layer, or at a given input size (H, W) the deepest layer at the card layer's
    depth whose map is at least 7x7 there (at small inputs the card's last stage is 1x1 and its map is noise).

    Raises:
        ValueError: when the card names no Grad-CAM layer.
    """
    from zoo.registry import get_card

    model_id = getattr(model, "zoo_config", {}).get("model_id")
    layer = get_card(model_id).target_layer if model_id else None
    if not layer:
        raise ValueError(f"{model_id or type(model).__name__} names no Grad-CAM layer; pass target_layer=")
    if image_size is None:
        return layer
    depth = layer.count(".")
    channels_last = getattr(model, "feature_layout", "NCHW") == "NHWC"
    sizes: dict[str, int] = {}

    def record(name):
        def hook(_module, _inputs, output):
            output = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                sizes[name] = int(min(output.shape[1:3] if channels_last else output.shape[2:4]))
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n and n.count(".") == depth]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, getattr(model, "in_chans", 3), *image_size))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if sizes.get(layer, 0) >= MIN_MAP_SIZE:
        return layer
    large = [name for name, size in sizes.items() if size >= MIN_MAP_SIZE]  # in the order the forward ran them
    return large[-1] if large else layer


def grad_cam(model: nn.Module, images: torch.Tensor, targets: Sequence[int] | torch.Tensor | None = None,
             target_layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM heat maps of a batch.

    Args:
        model: a classifier giving (B, num_classes) logits; it is run in eval mode with gradients on.
        images: (B, C, H, W) input batch, preprocessed as for the model.
        targets: class index per image; the predicted class when None.
        target_layer: dotted module name (``model.get_submodule`` path); the card's layer when None.

    Returns:
        heat maps (B, H, W) in [0, 1], and the logits (B, num_classes).
    """
    if images.ndim != 4:
        raise InputShapeError(f"Grad-CAM needs an image batch (B, C, H, W), got {tuple(images.shape)}")
    name = target_layer or default_target_layer(model)
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        import difflib

        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        top = ", ".join(n for n in names if "." not in n)
        hint = f"did you mean {', '.join(close)}?" if close else f"its top-level layers: {top}"
        raise ZooError(f"the model has no layer {name!r}; {hint}") from None
    channels_last = getattr(model, "feature_layout", "NCHW") == "NHWC"
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output = output[0] if isinstance(output, (tuple, list)) else output
        output.retain_grad()
        captured["activation"] = output

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            logits = model(images.clone())  # a clone is a normal tensor even if `images` is an inference tensor
            if targets is None:
                targets = logits.argmax(dim=-1)
            targets = torch.as_tensor(targets, device=logits.device).view(-1, 1)
            model.zero_grad(set_to_none=True)
            logits.gather(1, targets).sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)  # leave no gradients behind in the model
        model.train(was_training)
    activation, gradient = captured["activation"].detach(), captured["activation"].grad
    if channels_last:
        activation, gradient = activation.permute(0, 3, 1, 2), gradient.permute(0, 3, 1, 2)
    if activation.ndim != 4:
        raise InputShapeError(f"layer {target_layer!r} gives {tuple(activation.shape)}, not a (B, C, h, w) map")
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # alpha_k: (B, K, 1, 1)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))  # (B, 1, h, w)
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cam.flatten(1).min(dim=1).values[:, None, None]
    high = cam.flatten(1).max(dim=1).values[:, None, None]
    return (cam - low) / (high - low).clamp_min(1e-12), logits.detach()


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a heat map (H, W) in [0, 1] over an RGB uint8 image (H, W, 3) with the 'jet' colour map."""
    from matplotlib import colormaps

    colours = colormaps["jet"](heat)[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * colours
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)


def unnormalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(B, 3, H, W) normalised tensors back to (B, H, W, 3) uint8 images for display."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    pixels = (images * std_t + mean_t).clamp(0, 1) * 255
    return pixels.permute(0, 2, 3, 1).round().byte().cpu().numpy()


def explanation_figure(images: np.ndarray, heats: np.ndarray, titles: Sequence[str]):
    """A grid: each column an image (top) and its Grad-CAM overlay (bottom)."""
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(images[i])
        axes[0, i].set_title(titles[i], fontsize=9)
        axes[1, i].imshow(overlay(images[i], heats[i]))
        for ax in axes[:, i]:
            ax.axis("off")
    axes[1, 0].set_title("Grad-CAM", fontsize=9, loc="left")
    fig.tight_layout()
    return fig

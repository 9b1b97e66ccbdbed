"""Image restoration: image in, image out (dehazing first; any restoration model whose card names this kind).

Batches are ``(degraded (B, 3, H, W), clean (B, 3, H, W))`` in [0, 1]; prediction batches ``(degraded, index)``.
The loss is a pixel loss (L1 by default; ``l1_ssim`` is Zhao et al.'s structure-preserving mix of (1 - SSIM) and
L1) plus, optionally, DEA-Net's / AECR-Net's contrastive regularisation on
frozen ImageNet VGG19 features. PSNR and SSIM are computed as the DEA-Net paper does (RGB, clamped to [0, 1], data
range 1, Gaussian window 11 with sigma 1.5, averaged per image), for the model's output and, as the do-nothing
baseline, for the degraded input itself. Inputs are reflect-padded to a multiple of ``pad_multiple`` and the
output cropped back, so any image size works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from typing_extensions import override

from zoo.data.contracts import ZooData
from zoo.errors import ZooError
from zoo.tasks.base import ZooTask
from zoo.tasks.registry import register_task

L1_SSIM_ALPHA = 0.84  # Zhao et al. 2017, "Loss Functions for Image Restoration with Neural Networks"


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable SSIM (B,) of images (B, C, H, W) with data range 1, as the evaluation computes it
    (torchmetrics: Gaussian window 11, sigma 1.5), in float32 with autocast off, so bf16/fp16 training gets the same
    loss."""
    with torch.autocast(x.device.type, enabled=False):
        return structural_similarity_index_measure(x.float(), y.float(), gaussian_kernel=True, kernel_size=11,
                                                   sigma=1.5, data_range=1.0, reduction="none")


def l1_ssim_loss(output: torch.Tensor, target: torch.Tensor, alpha: float = L1_SSIM_ALPHA) -> torch.Tensor:
    """alpha (1 - SSIM) + (1 - alpha) L1 (Zhao et al. 2017, alpha 0.84; plain L1 rather than their Gaussian-weighted
    L1): SSIM keeps local structure and contrast (texture) that L1 alone lets a small model smooth away, L1 keeps
    colours and brightness. Scalar, float32; 0 for identical images."""
    with torch.autocast(output.device.type, enabled=False):
        l1 = F.l1_loss(output.float(), target.float())
    return alpha * (1 - ssim_per_image(output, target).mean()) + (1 - alpha) * l1


PIXEL_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss, "smooth_l1": F.smooth_l1_loss, "l1_ssim": l1_ssim_loss}
VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))  # up to relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def restoration_metrics(prefix: str) -> MetricCollection:
    """PSNR and SSIM of (B, 3, H, W) images in [0, 1], per image then averaged (as DEA-Net's metric.py)."""
    return MetricCollection({
        "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean"),
        "ssim": StructuralSimilarityIndexMeasure(data_range=1.0, gaussian_kernel=True, kernel_size=11, sigma=1.5),
    }, prefix=prefix)


class ContrastiveRegularisation(nn.Module):
    """sum_i w_i L1(phi_i(out), phi_i(clear)) / (L1(phi_i(out), phi_i(hazy)) + 1e-7) over frozen VGG19 features
    (relu1_1 ... relu5_1, weights 1/32 ... 1), inputs in [0, 1] without normalisation (the official cr.py)."""

    def __init__(self):
        super().__init__()
        from torchvision.models import VGG19_Weights, vgg19

        try:
            features = vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features
        except Exception as err:  # no network, or no cached weights: say what to do, never change the loss
            raise ZooError(
                "the contrastive regularisation needs torchvision's ImageNet VGG19 weights, which could not be "
                f"loaded ({type(err).__name__}: {err}). Put them in the torch hub cache, or train without it "
                "explicitly with --model.contrastive_weight 0 (the paper's DEA-Net without CR)") from err
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in VGG_SLICES)
        self.requires_grad_(False)
        self.eval()

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.slices:
            x = block(x)
            out.append(x)
        return out

    def forward(self, output: torch.Tensor, clear: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        a, p, n = self._features(output), self._features(clear), self._features(hazy)
        return sum(w * F.l1_loss(fa, fp.detach()) / (F.l1_loss(fa, fn.detach()) + 1e-7)
                   for w, fa, fp, fn in zip(VGG_WEIGHTS, a, p, n, strict=True))

    @override
    def train(self, mode: bool = True) -> ContrastiveRegularisation:
        return super().train(False)  # frozen: always in eval mode


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B, C, H, W) on the bottom and right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def image_grid_figure(rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], title: str):
    """A matplotlib figure: one row per example, columns degraded / restored / clean."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for r, images in enumerate(rows):
        for c, (image, name) in enumerate(zip(images, ("input", "restored", "clean"), strict=True)):
            axes[r][c].imshow(image.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy())
            axes[r][c].set_axis_off()
            if r == 0:
                axes[r][c].set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@register_task("image_restoration")
class RestorationTask(ZooTask):
    """Image-to-image restoration (dehazing, ...).

    Args:
        model: a registered model id whose card names "image_restoration" (e.g. "vision/dea_net").
        pixel_loss: "l1" (DEA-Net), "l2", "smooth_l1" or "l1_ssim" (0.84 (1 - SSIM) + 0.16 L1, Zhao et al. 2017:
            keeps the texture that a small model trained with L1 smooths away; the quick start's).
        contrastive_weight: weight of the contrastive regularisation on VGG19 features (DEA-Net-CR: 0.1); it
            needs torchvision's ImageNet VGG19 weights. 0 trains without it.
        pad_multiple: inputs are reflect-padded to multiples of this (DEA-Net: 4) and the output cropped back.
        grid_images: examples in the input / restored / clean grid logged each validation epoch (0: none).
        **kwargs: the ZooTask arguments (pretrained, model_kwargs, optimizer, lr_scheduler, ema_decay, ...).
    """

    monitor = "val/psnr"
    monitor_mode = "max"
    prediction_output = "predictions"

    def __init__(self, model: str, pixel_loss: str = "l1", contrastive_weight: float = 0.0, pad_multiple: int = 4,
                 grid_images: int = 4, **kwargs: Any):
        super().__init__(model, **kwargs)
        if pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"pixel_loss must be one of {', '.join(PIXEL_LOSSES)}, got {pixel_loss!r}")
        if contrastive_weight < 0 or pad_multiple < 1:
            raise ValueError("contrastive_weight must be >= 0 and pad_multiple >= 1")
        self.save_hyperparameters()
        self.build_model()
        self.pixel_loss = PIXEL_LOSSES[pixel_loss]
        self.contrastive = ContrastiveRegularisation() if contrastive_weight > 0 else None
        self.metrics = nn.ModuleDict({s: restoration_metrics(f"{s}/") for s in ("val", "test")})
        self.input_metrics = nn.ModuleDict({s: restoration_metrics(f"{s}/input_") for s in ("val", "test")})
        self._grid: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def restore(self, images: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W): pad to the model's multiple, run, crop back (not clamped)."""
        padded, (h, w) = pad_to_multiple(images, self.hparams.pad_multiple)
        return (model or self.model)(padded)[..., :h, :w]

    @override
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.restore(images, self.eval_model).clamp(0, 1)

    @override
    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        degraded, clean = batch
        if stage == "train":
            output = self.restore(degraded)
            loss = self.pixel_loss(output, clean)
            if self.contrastive is not None:
                loss = loss + self.hparams.contrastive_weight * self.contrastive(output, clean, degraded)
            return loss
        output = self.restore(degraded, self.eval_model)
        loss = self.pixel_loss(output, clean)
        output = output.clamp(0, 1)
        with torch.autocast(output.device.type, enabled=False):  # SSIM's convolutions in bf16 read 0.2 for 0.75
            self.metrics[stage].update(output.float(), clean.float())
            self.input_metrics[stage].update(degraded.clamp(0, 1).float(), clean.float())
        if stage == "val" and len(self._grid) < self.hparams.grid_images:
            for i in range(min(len(degraded), self.hparams.grid_images - len(self._grid))):
                self._grid.append((degraded[i].detach().cpu(), output[i].detach().cpu(), clean[i].detach().cpu()))
        return loss

    @override
    def end_of_epoch(self, stage: str) -> None:
        values = {**self.metrics[stage].compute(), **self.input_metrics[stage].compute()}
        self.metrics[stage].reset()
        self.input_metrics[stage].reset()
        self.log(f"{stage}/psnr", values.pop(f"{stage}/psnr"), prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)
        if stage == "val" and self._grid:
            rows, self._grid = self._grid, []
            self.log_figure(lambda: image_grid_figure(rows, f"validation, epoch {self.current_epoch}"),
                            f"plots/val_grid_epoch{self.current_epoch:03d}.png")

    @override
    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        images, index = batch[0], batch[1]
        return {"images": self(images).cpu(), "index": torch.as_tensor(index).cpu()}

    @override
    def write_predictions(self, predictions: list[dict[str, torch.Tensor]], datamodule: Any, output: Path) -> str:
        from PIL import Image

        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        paths = (datamodule.predict_paths if isinstance(datamodule, ZooData) else None) or []
        count = 0
        for batch in predictions:
            for image, index in zip(batch["images"], batch["index"].tolist(), strict=True):
                name = f"{Path(paths[index]).stem}.png" if index < len(paths) else f"{index:05d}.png"
                array = (image.permute(1, 2, 0).float().numpy() * 255 + 0.5).clip(0, 255).astype("uint8")
                Image.fromarray(array).save(output / name)
                count += 1
        return f"wrote {count} restored PNGs (original size) to {output.resolve()}"

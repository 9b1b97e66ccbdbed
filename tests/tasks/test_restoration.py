"""The image_restoration task: a small DEA-Net trained on hazy pairs made from real photos beats the hazy input,
PSNR/SSIM as the paper computes them, padding of odd sizes, predictions written at the original size."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from zoo.data.restoration import DehazingData

from zoo.tasks.registry import get_task_class
from zoo.tasks.restoration import l1_ssim_loss, pad_to_multiple, restoration_metrics, ssim_per_image

SMALL = {"base_dim": 8, "depths": (1, 1, 1)}


def _task(**kwargs):
    return get_task_class("image_restoration")(
        "vision/dea_net", model_kwargs=SMALL, decay_norm_and_bias=True, lr_scheduler=None,
        optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 5e-3}}, **kwargs)


def test_metrics_are_per_image_psnr_and_gaussian_ssim():
    """SSIM against scikit-image's with the paper's Gaussian window (sigma 1.5, population covariances) per image:
    the two differ only at the border (1.6e-3 here), a uniform 7x7 or 11x11 window or sigma 3 by 0.03 to 0.07."""
    from skimage.metrics import structural_similarity

    generator = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=generator), size=48, mode="bilinear")
    noise = torch.linspace(0, 0.3, 48) * torch.randn(2, 3, 48, 48, generator=generator)  # stronger to the right
    noisy = (clean + noise).clamp(0, 1)
    noisy[1] = clean[1] * 0.5
    metrics = restoration_metrics("x/")
    values = metrics(noisy, clean)
    per_image = [10 * torch.log10(1 / ((noisy[i] - clean[i]) ** 2).mean()) for i in range(2)]
    torch.testing.assert_close(values["x/psnr"], torch.stack(per_image).mean())
    reference = np.mean([structural_similarity(clean[i].numpy(), noisy[i].numpy(), data_range=1.0, channel_axis=0,
                                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                         for i in range(2)])
    assert float(values["x/ssim"]) == pytest.approx(reference, abs=5e-3)


def test_reflect_padding_to_a_multiple_of_four_and_crop_back():
    task = _task()
    x = torch.rand(1, 3, 30, 37)
    padded, size = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == (32, 40) and size == (30, 37)
    assert torch.equal(padded[..., :30, :37], x)
    assert task(x).shape == (1, 3, 30, 37)


@pytest.mark.slow
def test_quick_start_improves_haze_over_real_depth_it_never_saw():
    """The quick-start recipe (vision/recipes/dea_net_quickstart.yaml: the 0.84 (1 - SSIM) + 0.16 L1 loss, float32)
    on the offline default (simulated haze over simulated scene depth), then scored on the held-out OAK-D scenes
    hazed over their real stereo depth (benchmarks/real_depth_haze.py) and the Middlebury motorcycle: the issue's
    goal, at least 0.5 dB above the hazy input in PSNR and not below it in SSIM. Measured here: OAK-D 18.20 dB /
    SSIM 0.827 against the input's 15.87 / 0.812, motorcycle 15.72 / 0.804 against 11.76 / 0.692 (two `zoo train`
    runs' best checkpoints: 18.14 / 0.830 and 17.97 / 0.835 on OAK-D; benchmarks/results/dehazing_real_depth.md).
    About 3 minutes of training on one core."""
    from benchmarks.dehazing_real_depth import RECIPE, evaluate, model_restorer, train_recipe

    model = train_recipe(RECIPE)
    for source, gain in (("oakd", 0.5), ("motorcycle", 2.0)):
        hazy, ours = evaluate(lambda x: x, source), evaluate(model_restorer(model), source)
        assert ours["psnr"] > hazy["psnr"] + gain, (source, ours, hazy)
        assert ours["ssim"] >= hazy["ssim"], (source, ours, hazy)


def test_predictions_keep_the_original_size(tmp_path):
    """Odd sizes are reflect-padded to a multiple of 4 and cropped back; one PNG per input photo."""
    task = _task(grid_images=0)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 45, 3), dtype=np.uint8)).save(photos / "a.jpg")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (21, 16, 3), dtype=np.uint8)).save(photos / "b.png")
    data = DehazingData(predict_path=str(photos), num_workers=0)
    predictions = trainer.predict(task, datamodule=data)
    summary = task.write_predictions(predictions, data, tmp_path / "out")
    assert "wrote 2" in summary
    assert Image.open(tmp_path / "out" / "a.png").size == (45, 30)
    assert Image.open(tmp_path / "out" / "b.png").size == (16, 21)


def test_contrastive_loss_offline_is_an_explicit_choice(monkeypatch):
    import torchvision.models

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models, "vgg19", offline)
    with pytest.raises(Exception, match="contrastive_weight 0"):
        _task(contrastive_weight=0.1)


def _textured(seed: int = 0) -> torch.Tensor:
    """(2, 3, 48, 48) images with texture at several scales."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.nn.functional.interpolate(torch.rand(2, 3, 6, 6, generator=generator), size=48, mode="bilinear")
    return (0.6 * coarse + 0.4 * torch.rand(2, 3, 48, 48, generator=generator)).clamp(0, 1)


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(images, kernel_size=2 * round(3 * sigma) + 1, sigma=sigma)


def test_l1_ssim_loss_is_zero_for_identical_images_and_rises_with_blur():
    """Zhao et al.'s 0.84 (1 - SSIM) + 0.16 L1: 0 for the image itself, larger the more its texture is blurred;
    its SSIM is the evaluation's (torchmetrics, Gaussian window 11, sigma 1.5) up to the border it leaves out."""
    clean = _textured()
    assert float(l1_ssim_loss(clean, clean)) == pytest.approx(0.0, abs=1e-6)
    losses = [float(l1_ssim_loss(_blur(clean, sigma), clean)) for sigma in (0.5, 1.0, 2.0, 4.0)]
    assert losses[0] > 0.01 and losses == sorted(set(losses)), losses
    blurred = _blur(clean, 1.0)
    reference = restoration_metrics("")(blurred, clean)["ssim"]
    assert float(ssim_per_image(blurred, clean).mean()) == pytest.approx(float(reference), abs=0.02)


def test_l1_ssim_loss_is_float32_and_differentiable_under_bf16_autocast():
    clean = _textured()
    output = _blur(clean, 1.0).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = l1_ssim_loss(output.bfloat16(), clean)
    assert loss.dtype == torch.float32
    assert float(loss.detach()) == pytest.approx(float(l1_ssim_loss(output.detach(), clean)), abs=5e-3)
    loss.backward()
    assert output.grad is not None and torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


def test_unknown_pixel_loss_names_the_choices():
    with pytest.raises(ValueError, match="l1_ssim"):
        _task(pixel_loss="ssim")


def test_validation_metrics_are_float32_under_bf16_autocast():
    """bf16-mixed training (zoo train's default on CPUs with bf16) must not compute SSIM's convolutions in bf16:
    the input's SSIM read 0.21 there against 0.75 in float32."""
    task = _task(grid_images=0)
    clean = _textured()
    hazy = 0.6 * clean + 0.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        task.step((hazy, clean), "val")
    measured = task.input_metrics["val"].compute()
    reference = restoration_metrics("val/input_")(hazy, clean)
    assert float(measured["val/input_ssim"]) == pytest.approx(float(reference["val/input_ssim"]), abs=1e-4)

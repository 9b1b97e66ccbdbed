"""DEA-Net's quick start on haze over REAL depth it never saw, against the hazy input and the dark channel prior.

The held-out pairs (``benchmarks/real_depth_haze.py``): 8 indoor OAK-D stereo scenes (real stereo depth) and
scikit-image's Middlebury motorcycle (ground-truth disparity), each hazed 4 times with I = J t + A (1 - t). PSNR and
SSIM as DEA-Net's paper computes them (RGB, [0, 1], Gaussian window 11, sigma 1.5, per image, averaged).

    python -m benchmarks.dehazing_real_depth                  # trains the quick start here (a few minutes)
    python -m benchmarks.dehazing_real_depth --ckpt mlruns/zoo/<run>/artifacts/checkpoints/best.ckpt
    python -m benchmarks.dehazing_real_depth --recipe old.yaml  # another recipe file of the same form
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks._common import load_average, write_report
from benchmarks.dark_channel_prior import dark_channel_prior
from benchmarks.real_depth_haze import SOURCES, hazed_pairs

Restore = Callable[[torch.Tensor], torch.Tensor]
RECIPE = Path(__file__).parent.parent / "vision" / "recipes" / "dea_net_quickstart.yaml"


def evaluate(restore: Restore, source: str, versions: int = 4, seed: int = 0) -> dict[str, float]:
    """Mean PSNR / SSIM of ``restore`` ((1, 3, H, W) hazy -> dehazed) on a held-out source's hazed pairs."""
    from zoo.tasks.restoration import restoration_metrics

    metrics = restoration_metrics("")
    psnr, ssim = [], []
    with torch.no_grad():
        for pair in hazed_pairs(source, versions, seed):
            hazy = torch.from_numpy(pair["hazy"]).permute(2, 0, 1)[None]
            clear = torch.from_numpy(pair["clear"]).permute(2, 0, 1)[None]
            values = metrics(restore(hazy).clamp(0, 1), clear)
            psnr.append(float(values["psnr"]))
            ssim.append(float(values["ssim"]))
    return {"psnr": statistics.fmean(psnr), "ssim": statistics.fmean(ssim), "pairs": len(psnr)}


def model_restorer(model: torch.nn.Module) -> Restore:
    """A (1, 3, H, W) -> (1, 3, H, W) function of a DEA-Net (reflect-padded to a multiple of 4, cropped back)."""
    from zoo.tasks.restoration import pad_to_multiple

    model = model.eval()

    def restore(hazy: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(hazy, 4)
        return model(padded)[..., :h, :w]
    return restore


def train_recipe(recipe: Path, num_workers: int = 0) -> torch.nn.Module:
    """Train DEA-Net with a quick-start recipe file (its model, data, optimiser, schedule and epochs; no logger,
    no checkpoints, no validation) and return the trained network."""
    import lightning as L
    import yaml
    from zoo.data.restoration import DehazingData

    from zoo.tasks.registry import get_task_class

    config = yaml.safe_load(Path(recipe).read_text())
    L.seed_everything(config.get("seed_everything", 0), verbose=False)
    data = DehazingData(**{**config["data"]["init_args"], "num_workers": num_workers})
    model_args = dict(config.get("model", {}))
    task = get_task_class("image_restoration")("vision/dea_net", grid_images=0, optimizer=config["optimizer"],
                                               lr_scheduler=config.get("lr_scheduler"), **model_args)
    trainer_args = {k: v for k, v in config.get("trainer", {}).items() if k in ("max_epochs", "max_steps", "precision")}
    L.Trainer(**trainer_args, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              accelerator="cpu").fit(task, datamodule=data)
    return task.model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="a zoo DEA-Net checkpoint instead of training the quick start here")
    parser.add_argument("--recipe", default=str(RECIPE), help="the quick-start recipe to train when no --ckpt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dehazing_real_depth.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import zoo

    load_before = load_average()
    started = time.perf_counter()
    model = (zoo.create_model("vision/dea_net", pretrained=args.ckpt) if args.ckpt
             else train_recipe(Path(args.recipe)))
    train_s = time.perf_counter() - started
    load_after_training = load_average()
    methods: dict[str, Restore] = {"hazy input": lambda hazy: hazy, "dark channel prior": dark_channel_prior,
                                   "DEA-Net": model_restorer(model)}
    results = {source: {name: evaluate(restore, source) for name, restore in methods.items()} for source in SOURCES}
    what = args.ckpt or f"the quick start ({Path(args.recipe).name}), trained here in {train_s:.0f} s"
    lines = ["# DEA-Net on haze over real depth (held out) against the hazy input and the dark channel prior", "",
             f"`python -m benchmarks.dehazing_real_depth{' --ckpt ' + args.ckpt if args.ckpt else ''}` on "
             f"{platform.processor() or 'CPU'}, {args.threads} threads, torch {torch.__version__}; {load_before} "
             f"before, {load_after_training} after training (a shared machine: the time is inflated by the load).",
             "", f"DEA-Net: {what}.", "",
             "| held-out source | pairs | method | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for source, by_method in results.items():
        for name, q in by_method.items():
            lines.append(f"| {source} | {q['pairs']} | {name} | {q['psnr']:.2f} | {q['ssim']:.4f} |")
    for source, q in results.items():
        gain = q["DEA-Net"]["psnr"] - q["hazy input"]["psnr"]
        lines.append("")
        lines.append(f"{source}: DEA-Net {gain:+.2f} dB PSNR and {q['DEA-Net']['ssim'] - q['hazy input']['ssim']:+.4f} "
                     f"SSIM over the hazy input; dark channel prior "
                     f"{q['dark channel prior']['psnr'] - q['hazy input']['psnr']:+.2f} dB.")
    print("\n".join(lines))
    write_report(args.out, lines)


if __name__ == "__main__":
    main()

"""ECA-ResNet-50 speed, side by side in one run.

1. Training steps per second of zoo's `vision/eca_resnet50` against the same architecture built from timm
   (timm's ResNet-50 with its ECA layer, official kernel sizes loaded), same batch, input and optimiser.
2. Wall time of the `zoo train` loop (LightningCLI, MLflow logging, checkpointing, validation every epoch)
   against a bare PyTorch loop doing the same epochs over the same model, data and optimiser: the framework's
   overhead.

    python benchmarks/eca_resnet_speed.py [--batch 16] [--size 160] [--steps 6] [--epochs 2]

Numbers depend on the machine and its load; the script prints `os.getloadavg()` with them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time

import timm
import torch
from torch import nn

import zoo
from data.images import ImageClassificationData
from zoo.tasks import ClassificationTask, WarmupCosineLR


def steps_per_second(model: nn.Module, batch: int, size: int, steps: int) -> float:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def timm_eca_resnet50() -> nn.Module:
    model = timm.create_model("resnet50", block_args={"attn_layer": "eca"})
    # timm picks psi(C) kernels 5,5,5,7; the official layer1 kernel is 3 taps: same function when zero-padded,
    # so the compute is timm's own (5 taps there), as a timm user would run it.
    return model


def bare_loop(epochs: int, image_size: int, batch_size: int) -> float:
    torch.manual_seed(0)
    data = ImageClassificationData(image_size=image_size, batch_size=batch_size)
    data.setup("fit")
    model = zoo.create_model("vision/eca_resnet50", num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.05)
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    scheduler = WarmupCosineLR(optimizer, total_steps=epochs * len(train_loader), warmup_steps=0.1)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for images, labels in train_loader:
            optimizer.zero_grad(set_to_none=True)
            criterion(model(images), labels).backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += (model(images).argmax(-1) == labels).sum().item()
    return time.perf_counter() - start


def zoo_loop(epochs: int, image_size: int, batch_size: int) -> float:
    from zoo.runner import ZooCLI

    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), contextlib.redirect_stdout(io.StringIO()):
        entry = zoo.registry.get_entry("vision/eca_resnet50")
        args = [arg for path in entry.recipe_paths() for arg in ("--config", str(path))]
        args += ["--model.model", "vision/eca_resnet50", "--trainer.max_epochs", str(epochs),
                 "--data.image_size", str(image_size), "--data.batch_size", str(batch_size),
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        cli = ZooCLI(ClassificationTask, args, run=False)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")

    ours = steps_per_second(zoo.create_model("vision/eca_resnet50"), args.batch, args.size, args.steps)
    theirs = steps_per_second(timm_eca_resnet50(), args.batch, args.size, args.steps)
    print(f"\n1. training steps/s, batch {args.batch}, {args.size}x{args.size}, SGD")
    print(f"   zoo vision/eca_resnet50          {ours:.3f} steps/s")
    print(f"   timm resnet50 + attn_layer=eca   {theirs:.3f} steps/s")
    print(f"   zoo / timm                       {ours / theirs:.3f}  (> 1: zoo faster)")

    bare = bare_loop(args.epochs, 32, 64)
    framework = zoo_loop(args.epochs, 32, 64)
    print(f"\n2. {args.epochs} epochs of the digits quick start (32 px, batch 64), train + validation each epoch")
    print(f"   bare PyTorch loop     {bare:.1f} s")
    print(f"   zoo train (fit)       {framework:.1f} s")
    print(f"   zoo / bare            {framework / bare:.3f}  (overhead {100 * (framework / bare - 1):.1f} %)")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

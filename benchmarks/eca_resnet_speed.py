"""ECA-ResNet-50 speed, side by side in one run.

1. Training steps per second of zoo's `vision/eca_resnet50` against the same architecture built from timm
   (timm's ResNet-50 with its ECA layer, official kernel sizes loaded), same batch, input and optimiser.
2. Wall time of the `zoo train` loop (Lightning, MLflow logging, best and last checkpoints, the
   end-of-run plots, Grad-CAM and MLflow model) against a bare PyTorch loop doing the same epochs (training and
   validation) over the same model, data, optimiser and schedule: the framework's overhead. Checkpoints are
   written at zoo's default cadence (at most once a minute, and at the end).

    python -m benchmarks.eca_resnet_speed [--batch 16] [--size 160] [--steps 4] [--rounds 5] [--epochs 10] [--repeats 5]

Numbers depend on the machine and its load; the script prints the load average with them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time

import timm
import torch
from lightning.pytorch import Callback
from torch import nn
from zoo.data.images import ImageClassificationData

import zoo
from benchmarks._common import load_average
from zoo.tasks.classification import ClassificationTask
from zoo.tasks.schedules import WarmupCosineLR


def training_rates(models: dict[str, nn.Module], batch: int, size: int, steps: int, rounds: int) -> dict[str, float]:
    """Median training steps/s of each model over ``rounds`` rounds, the models alternating within a round (so
    that a change in machine load hits both)."""
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for name, m in models.items()}

    def step(name: str) -> None:
        optimizers[name].zero_grad(set_to_none=True)
        nn.functional.cross_entropy(models[name](x), y).backward()
        optimizers[name].step()

    rates: dict[str, list[float]] = {name: [] for name in models}
    for name in models:  # warm-up
        models[name].train()
        step(name)
    for r in range(rounds):
        for name in (list(models) if r % 2 == 0 else list(reversed(models))):
            start = time.perf_counter()
            for _ in range(steps):
                step(name)
            rates[name].append(steps / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def timm_eca_resnet50(weights_from: nn.Module) -> nn.Module:
    """timm's ResNet-50 with its ECA layer, holding the same weights as ``weights_from`` (zoo's model).

    Same weights matter: with timm's own initialisation (zero last-BN gammas) the arithmetic differs and so does
    the CPU time. timm picks kernels 5,5,5,7; zoo's 3-tap layer1 kernels are zero-padded to 5 (the same function),
    so timm runs its own 5-tap convolutions there, as a timm user would.
    """
    model = timm.create_model("resnet50", block_args={"attn_layer": "eca"})
    target = model.state_dict()
    converted = {}
    for key, value in weights_from.state_dict().items():
        key = key.replace(".eca.conv.", ".se.conv.")
        if value.shape != target[key].shape:
            pad = (target[key].shape[-1] - value.shape[-1]) // 2
            value = nn.functional.pad(value, (pad, pad))
        converted[key] = value
    model.load_state_dict(converted)
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


class _TrainEnd(Callback):
    """Notes when the last epoch has ended, before the end-of-run work (MLflow model, plots, Grad-CAM, the
    final checkpoint write)."""

    at = 0.0

    def on_train_end(self, trainer, pl_module) -> None:
        self.at = time.perf_counter()


def zoo_loop(epochs: int, image_size: int, batch_size: int, workdir: str) -> tuple[float, float]:
    """Wall time of ``zoo train``'s fit, and of its part up to the end of the last epoch. Every round runs in one
    ``workdir``: MLflow keeps its SQLite engine per store URI for the whole process, so a store deleted after one
    round would be written read-only by the next."""
    from zoo.runner import ZooCLI

    with contextlib.chdir(workdir), contextlib.redirect_stdout(io.StringIO()):
        entry = zoo.registry.get_entry("vision/eca_resnet50")
        args = [arg for path in entry.recipe_paths() for arg in ("--config", str(path))]
        args += ["--model.model", "vision/eca_resnet50", "--trainer.max_epochs", str(epochs),
                 "--data.image_size", str(image_size), "--data.batch_size", str(batch_size),
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        train_end = _TrainEnd()
        cli = ZooCLI(ClassificationTask, args, extra_callbacks=[train_end], run=False)
        _ = cli.trainer.loggers[0].experiment  # the MLflow store is created once per directory: not counted
        start = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        return time.perf_counter() - start, train_end.at - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the loop comparison (quick start: 10)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds of the loop comparison")
    args = parser.parse_args()
    # Denormal floats make x86 CPUs many times slower, and whether a run meets them depends on rounding: two runs
    # of one architecture then differ by 10-15 % at random. Flushing them to zero compares the implementations.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {load_average()}")

    ours = zoo.create_model("vision/eca_resnet50")
    rates = training_rates({"zoo": ours, "timm": timm_eca_resnet50(ours)}, args.batch, args.size, args.steps,
                           args.rounds)
    ours, theirs = rates["zoo"], rates["timm"]
    print(f"\n1. training steps/s, batch {args.batch}, {args.size}x{args.size}, SGD, median of {args.rounds} rounds")
    print(f"   zoo vision/eca_resnet50          {ours:.3f} steps/s")
    print(f"   timm resnet50 + attn_layer=eca   {theirs:.3f} steps/s")
    print(f"   zoo / timm                       {ours / theirs:.3f}  (> 1: zoo faster)")

    pairs, workdir = [], tempfile.TemporaryDirectory()
    for r in range(args.repeats):  # alternating, so that a change in machine load hits both
        order = ("bare", "zoo") if r % 2 == 0 else ("zoo", "bare")
        times = {name: bare_loop(args.epochs, 32, 64) if name == "bare" else zoo_loop(args.epochs, 32, 64, workdir.name)
                 for name in order}
        (framework, epochs_done), bare = times["zoo"], times["bare"]
        pairs.append((framework / bare, bare, framework, epochs_done))
        print(f"   round {r + 1}: bare {bare:.1f} s, zoo {framework:.1f} s, zoo / bare {framework / bare:.3f}",
              flush=True)
    _, bare, framework, epochs_done = sorted(pairs)[len(pairs) // 2]  # the median round
    print(f"\n2. {args.epochs} epochs of the digits quick start (32 px, batch 64), train + validation each epoch; "
          f"median of {args.repeats} alternating rounds")
    print(f"   bare PyTorch loop                        {bare:.1f} s")
    print(f"   zoo train (fit)                          {framework:.1f} s")
    print(f"   zoo / bare                               {framework / bare:.3f}  (overhead "
          f"{100 * (framework / bare - 1):.1f} %)")
    print(f"   of which up to the end of the last epoch {epochs_done:.1f} s  ({epochs_done / bare:.3f} x bare)")
    print(f"   and the end of the run                   {framework - epochs_done:.1f} s  (MLflow model, plots, "
          "Grad-CAM, final checkpoint write)")
    # The run-to-run spread of the same kernels (5-10 % between rounds on 2 cores) is larger than the overhead, and
    # noise only ever adds time: the fastest round of each side is the other usual estimate (timeit's advice).
    fastest_bare, fastest_zoo = min(p[1] for p in pairs), min(p[2] for p in pairs)
    print(f"   fastest round of each: bare {fastest_bare:.1f} s, zoo {fastest_zoo:.1f} s, zoo / bare "
          f"{fastest_zoo / fastest_bare:.3f}")
    print(f"\nafter: {load_average()}")


if __name__ == "__main__":
    main()

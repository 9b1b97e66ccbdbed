"""One script a GPU machine runs in under 8 minutes: per family one training step and one inference, at batch sizes
that fill the card, eager fp32 against bf16 autocast against compiled (bf16), beside the reference implementation
(timm, the official code's own CPU path, the zoo's own training graph or GELAN-s, ``nn.TransformerEncoder``) in the
same process; peak memory and the fraction of the card's dense bf16 peak that the best variant reaches. Results as
a Markdown table. With ``--cpu`` the same comparison runs on this machine's CPU at sizes it can take, the variants
interleaved over ``--rounds`` rounds (median per variant), so that a change in the machine's load hits all of them.

    python -m benchmarks.device_check                     # the GPU (cuda), writes benchmarks/results/device_check.md
    python -m benchmarks.device_check --cpu               # this CPU, writes benchmarks/results/device_check_cpu.md
    python -m benchmarks.device_check --dry               # CPU, tiny inputs, batch 2; TLOB compiled ("eager" backend)
    python -m benchmarks.device_check --families eca_resnet50 tlob --budget 300

Batches start at what fills an 80 GB card in a bf16 training step (scaled by the card's memory) and halve on an
out-of-memory error. A step is SGD on the mean square of every output (the same for the zoo and the reference:
the point is the network's arithmetic, not a task's loss). FLOPs are counted once per row with torch's
``FlopCounterMode`` on a batch of two (training: forward and backward). Rows that the time ``--budget`` (default
420 s) leaves no room for are listed as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import zoo
from benchmarks._common import load_average, write_report
from zoo.tasks.base import outputs_in_fp32
from zoo.tasks.compiling import compile_model

# Dense bf16 tensor-core peak (FLOP/s) by device name, from the vendors' data sheets (no sparsity).
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
VARIANTS = ("fp32", "bf16", "compiled bf16", "reference fp32", "reference bf16")


@dataclass
class Family:
    """A model (zoo id and constructor arguments), its input (shape without the batch; dry: a smaller one; cpu: what
    a CPU measures in seconds), the batch that fills an 80 GB card (and the CPU's batch), and the reference it is
    compared with (None: none offline)."""

    model_id: str
    shape: tuple[int, ...]
    dry_shape: tuple[int, ...]
    batch: int
    cpu_shape: tuple[int, ...]
    cpu_batch: int
    reference: Callable[[nn.Module, tuple[int, ...]], nn.Module] | None = None
    reference_name: str = "-"
    kwargs: dict = field(default_factory=dict)
    inference_only: bool = False
    prepare: Callable[[nn.Module], nn.Module] | None = None  # e.g. the deploy graph of a model with one


def _timm_eca_resnet50(zoo_model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    from benchmarks.eca_resnet_speed import timm_eca_resnet50

    return timm_eca_resnet50(zoo_model)


def _timm_halonet(zoo_model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    import timm

    return timm.create_model("halonet26t")


def _timm_vit_like_ssast(zoo_model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """timm's ViT at SSAST-tiny's width, depth, heads and token grid (as ``benchmarks/ssast.py``), taking the same
    (B, frames, 128) input."""
    from timm.models.vision_transformer import VisionTransformer

    frames = shape[0]
    f_dim, t_dim = zoo_model.f_dim, zoo_model.t_dim
    vit = VisionTransformer(img_size=(128, frames), patch_size=16, in_chans=1, num_classes=zoo_model.num_classes,
                            embed_dim=192, depth=12, num_heads=3, class_token=True, reg_tokens=1, global_pool="avg",
                            dynamic_img_size=False)
    vit.patch_embed.proj = nn.Conv2d(1, 192, 16, stride=10)
    vit.patch_embed.grid_size = (f_dim, t_dim)
    vit.patch_embed.num_patches = f_dim * t_dim
    vit.pos_embed = nn.Parameter(torch.zeros(1, f_dim * t_dim + 2, 192))
    vit.patch_embed.img_size = None
    vit.patch_embed.strict_img_size = False

    class Spectrogram(nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = vit

        def forward(self, x):
            return self.vit(x.transpose(1, 2).unsqueeze(1))

    return Spectrogram()


def _transformer_encoder(zoo_model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    from benchmarks.lob import EncoderClassifier

    seq_len, features = shape
    return EncoderClassifier(features, seq_len, zoo_model.hidden_dim, zoo_model.num_heads, 2 * zoo_model.num_layers)


def _sequential_scan(zoo_model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """The same VMamba with the official code's sequential selective scan (``selective_scan_ref``, its only path
    without the CUDA kernels) in place of the zoo's chunked scan."""
    reference = copy.deepcopy(zoo_model)
    reference.set_scan_method("reference")
    return reference


def _yolov9_s_training_graph(zoo_model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """YOLOv9-s's own training graph (auxiliary branch, no PSA), which YOLO9tr extends with three PSA blocks."""
    from zoo.vision.yolo9tr import YOLO9tr

    return YOLO9tr(num_classes=zoo_model.num_classes, psa="none")


def _zoo(model_id: str) -> Callable[[nn.Module, tuple[int, ...]], nn.Module]:
    return lambda zoo_model, shape: zoo.create_model(model_id)


FAMILIES = {
    "eca_resnet50": Family("vision/eca_resnet50", (3, 224, 224), (3, 32, 32), 256, (3, 96, 96), 16,
                           _timm_eca_resnet50, "timm resnet50 + ECA"),
    "halonet26t": Family("vision/halonet26t", (3, 256, 256), (3, 256, 256), 192, (3, 256, 256), 4, _timm_halonet,
                         "timm halonet26t"),
    "vmamba_tiny": Family("vision/vmamba_tiny", (3, 224, 224), (3, 32, 32), 128, (3, 64, 64), 4, _sequential_scan,
                          "official sequential scan"),
    "ssast_tiny_patch": Family("audio/ssast_tiny_patch", (1024, 128), (64, 128), 128, (256, 128), 8,
                               _timm_vit_like_ssast, "timm ViT (same grid)", {"num_classes": 35}),
    "tlob": Family("finance/tlob", (128, 46), (128, 46), 2048, (128, 46), 32, _transformer_encoder,
                   "nn.TransformerEncoder"),
    "dea_net_deploy": Family("vision/dea_net_deploy", (3, 256, 256), (3, 32, 32), 32, (3, 128, 128), 4,
                             _zoo("vision/dea_net"), "DEA-Net training graph", inference_only=True),
    "yolo9tr": Family("vision/yolo9tr", (3, 640, 640), (3, 32, 32), 64, (3, 256, 256), 4, _yolov9_s_training_graph,
                      "YOLOv9-s training graph"),
    "yolo9tr_deploy": Family("vision/yolo9tr", (3, 640, 640), (3, 32, 32), 64, (3, 256, 256), 4,
                             _zoo("vision/gelan_s"), "GELAN-s", inference_only=True,
                             prepare=lambda model: model.reparameterize()),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def outputs_loss(output) -> torch.Tensor:
    """Mean square of every floating tensor a model returns (a stand-in loss, the same for every model)."""
    output = outputs_in_fp32(output)
    tensors = [output] if torch.is_tensor(output) else \
        [t for t in (output.values() if isinstance(output, dict) else _flatten(output)) if torch.is_tensor(t)]
    return sum(t.square().mean() for t in tensors if t.is_floating_point())


def _flatten(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


def make_step(model: nn.Module, x: torch.Tensor, train: bool, bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9) if train else None
    autocast = (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step() -> None:
        if train:
            with autocast():
                loss = outputs_loss(model(x))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad(), autocast():
                model(x)
    return step


def seconds_per_call(step: Callable[[], None], device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / iters


def flops_of(model: nn.Module, x: torch.Tensor, train: bool) -> float:
    """FLOPs of one call on the batch ``x`` (training: with the backward pass)."""
    counter = FlopCounterMode(display=False)
    with counter:
        if train:
            outputs_loss(model(x)).backward()
        else:
            with torch.no_grad():
                model(x)
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def bf16_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def measure_family(name: str, family: Family, device: torch.device, size: str, deadline: float,
                   warmup: int, iters: int, rounds: int = 1, compile_it: bool = True,
                   summary: Callable[[list[float]], float] = statistics.median) -> list[dict]:
    """The rows (training step, inference) of one family at ``size`` ("card", "cpu" or "dry"): seconds per call of
    each variant (``summary`` over ``rounds`` rounds in which the variants take turns), the batch, peak memory,
    TFLOP/s of the fastest zoo variant and its fraction of the card's bf16 peak."""
    torch.manual_seed(0)
    shape = {"card": family.shape, "cpu": family.cpu_shape, "dry": family.dry_shape}[size]
    kwargs = dict(family.kwargs)
    if family.model_id.startswith("audio/ssast"):
        kwargs["input_tdim"] = shape[0]
    prepare = family.prepare or (lambda model: model)
    model = prepare(zoo.create_model(family.model_id, **kwargs)).to(device)
    reference = family.reference(model, shape).to(device) if family.reference else None
    memory_scale = torch.cuda.get_device_properties(device).total_memory / 80e9 if device.type == "cuda" else 0
    batch = {"card": max(1, int(family.batch * memory_scale)), "cpu": family.cpu_batch, "dry": 2}[size]
    compile_line = "model: stays eager (not asked for)"
    if compile_it:
        compiled = prepare(zoo.create_model(family.model_id, **kwargs)).to(device)
        compiled.load_state_dict(model.state_dict())
        compile_line = compile_model(compiled, family.model_id, **({"backend": "eager"} if size == "dry" else {}))
    rows = []
    for mode in (("inference",) if family.inference_only else ("training step", "inference")):
        train = mode == "training step"
        row = {"family": name, "mode": mode, "reference": family.reference_name, "batch": batch}
        if time.monotonic() > deadline:
            rows.append({**row, "skipped": "time budget"})
            continue
        models = {"fp32": (model, False), "bf16": (model, True)}
        if "stays eager" in compile_line:
            row["compiled bf16"] = compile_line.split("(", 1)[1].rstrip(")")
        else:
            models["compiled bf16"] = (compiled, True)
        if reference is not None:
            models |= {"reference fp32": (reference, False), "reference bf16": (reference, True)}
        while True:
            try:
                x = torch.randn(batch, *shape, device=device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                steps = {}
                for variant, (m, bf16) in models.items():
                    m.train(train)
                    steps[variant] = make_step(m, x, train, bf16)
                timings = {variant: [] for variant in steps}
                for round_ in range(rounds):
                    for variant, step in steps.items():
                        timings[variant].append(seconds_per_call(step, device, warmup if round_ == 0 else 0, iters))
                row |= {variant: summary(times) for variant, times in timings.items()}
                break
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch //= 2
                row["batch"] = batch
                torch.cuda.empty_cache()
        if device.type == "cuda":
            row["peak GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
        timings = {k: v for k, v in row.items() if k in ("fp32", "bf16", "compiled bf16") and isinstance(v, float)}
        best = min(timings, key=timings.get)
        model.train(train)
        flops = flops_of(model, torch.randn(2, *shape, device=device), train) / 2 * batch  # 2: batch norm trains
        if reference is not None:
            reference.train(train)
            row["work vs ref"] = flops / (flops_of(reference, torch.randn(2, *shape, device=device), train) / 2 * batch)
        row["best"] = best
        row["TFLOP/s"] = flops / timings[best] / 1e12
        peak = bf16_peak(device)
        row["of bf16 peak"] = row["TFLOP/s"] * 1e12 / peak if peak else None
        rows.append(row)
    return rows


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * 1e3:.1f} ms" if value < 100 else f"{value:.1f}"
    return str(value)


def table(rows: list[dict]) -> list[str]:
    header = ["family", "mode", "batch", *VARIANTS, "reference", "zoo fp32 / ref fp32", "zoo bf16 / ref bf16",
              "zoo best / ref fp32", "zoo FLOPs / ref FLOPs",
              "peak GiB", "TFLOP/s (best)", "of bf16 peak"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['family']} | {r['mode']} | - | skipped: {r['skipped']} |" + " |" * (len(header) - 4))
            continue
        best = r.get(r["best"])
        speedup = r.get("reference fp32") / best if isinstance(r.get("reference fp32"), float) else None
        same32 = r["reference fp32"] / r["fp32"] if isinstance(r.get("reference fp32"), float) else None
        same = r["reference bf16"] / r["bf16"] if isinstance(r.get("reference bf16"), float) else None
        cells = [r["family"], r["mode"], str(r["batch"]), *(_cell(r.get(v)) for v in VARIANTS), r["reference"],
                 f"{same32:.2f}x" if same32 else "-", f"{same:.2f}x" if same else "-",
                 f"{speedup:.2f}x" if speedup else "-", f"{r['work vs ref']:.2f}" if "work vs ref" in r else "-",
                 f"{r['peak GiB']:.1f}" if "peak GiB" in r else "-", f"{r['TFLOP/s']:.2f}",
                 f"{r['of bf16 peak']:.1%}" if r.get("of bf16 peak") else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dry", action="store_true", help="CPU, tiny inputs, batch 2, compile backend 'eager'")
    where.add_argument("--cpu", action="store_true", help="this CPU, sizes it measures in seconds")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--compile-families", nargs="*", default=None,
                        help="the families whose compiled variant is measured (default: all on a GPU; dry: tlob; "
                             "cpu: none, a CPU compile takes minutes per model)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: cpu 5, else 1)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds before the remaining rows are skipped (default: cpu 1500, else 420)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (a CPU shared with other jobs: 1, so no thread waits for a busy partner)")
    parser.add_argument("--output", default=None, help="default: benchmarks/results/device_check[_cpu|_dry].md")
    args = parser.parse_args(argv)
    size = "dry" if args.dry else "cpu" if args.cpu else "card"
    if size == "card" and not torch.cuda.is_available():
        parser.error("no CUDA device here: --cpu measures this CPU, --dry checks that the script works")
    device = torch.device("cuda" if size == "card" else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # "fp32" on a GPU means TF32 matmuls, as zoo train runs it
        torch.backends.cudnn.allow_tf32 = True
    warmup, iters = {"dry": (1, 1), "cpu": (2, 3), "card": (3, 10)}[size]
    rounds = args.rounds or (5 if size == "cpu" else 1)
    budget = args.budget or (1500.0 if size == "cpu" else 420.0)
    if args.threads or args.dry:
        torch.set_num_threads(args.threads or 1)
    compiled = args.compile_families if args.compile_families is not None else \
        {"dry": ["tlob"], "cpu": [], "card": list(FAMILIES)}[size]
    start = time.monotonic()
    deadline = start + budget
    before = load_average()
    rows: list[dict] = []
    for name in args.families:
        rows += measure_family(name, FAMILIES[name], device, size, deadline, warmup, iters, rounds, name in compiled,
                               min if size == "cpu" else statistics.median)
        print(f"{name}: done at {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    rounds_note = "" if rounds == 1 else f", {'fastest' if size == 'cpu' else 'median'} of {rounds} rounds in which " \
        "the variants take turns: other jobs on a shared CPU only ever slow a round down"
    flag = {"dry": " --dry", "cpu": " --cpu", "card": ""}[size] + (f" --threads {args.threads}" if args.threads else "")
    lines = [
        f"# Device check: {device_name}{' (dry run: tiny inputs)' if args.dry else ''}",
        "",
        f"`python -m benchmarks.device_check{flag}`, torch {torch.__version__}; seconds per call ({warmup} warm-up, "
        f"{iters} timed{rounds_note}); "
        "compiled = `torch.compile` of the zoo model, run in bf16 autocast (its first calls, the compile itself, are "
        "in the warm-up). Ratios > 1: the zoo is faster. FLOPs: the arithmetic of one call of the zoo model over the "
        "reference's (above 1: the zoo computes more, e.g. TLOB's feature-axis layers against an encoder of equal "
        "depth that attends over time only).",
        "",
        *table(rows),
        "",
        f"{time.monotonic() - start:.0f} s in all; {before} before, {load_average()} after.",
        "",
    ]
    output = args.output or f"benchmarks/results/device_check{'_' + size if size != 'card' else ''}.md"
    write_report(Path(output), lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

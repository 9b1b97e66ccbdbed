"""When does ``--model.compile true`` pay? ECA-ResNet-50 training steps, interleaved in one process: timm's
ResNet-50 + ECA in fp32 eager (the reference), the zoo model eager in fp32 and in bf16 autocast, and compiled
(``torch.compile``, Inductor) in fp32 and in bf16 autocast; the compile time (the first compiled steps, less an
eager step each), and the number of steps after which compiling has paid for itself.

    python -m benchmarks.compile_speed [--batch 16] [--size 96] [--steps 4] [--rounds 3] [--threads 2]

Writes ``benchmarks/results/compile_speed.md`` with the machine's load before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch import nn

import zoo
from benchmarks._common import load_average, write_report
from benchmarks.eca_resnet_speed import timm_eca_resnet50
from zoo.tasks.compiling import compile_model


def stepper(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with context:
            loss = nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/compile_speed.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    before = load_average()
    torch.manual_seed(0)
    x, y = torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, 1000, (args.batch,))
    base = zoo.create_model("vision/eca_resnet50")
    models = {"timm fp32 eager (reference)": (timm_eca_resnet50(base), False)}  # same weights

    def copy_of_base() -> nn.Module:
        model = zoo.create_model("vision/eca_resnet50")
        model.load_state_dict(base.state_dict())
        return model

    models["zoo fp32 eager"] = (copy_of_base(), False)
    models["zoo bf16 eager"] = (copy_of_base(), True)
    compile_seconds = {}
    for name, bf16 in (("zoo fp32 compiled", False), ("zoo bf16 compiled", True)):
        model = copy_of_base()
        print(compile_model(model, name), flush=True)
        models[name] = (model, bf16)
    steps = {name: stepper(m, x, y, bf16) for name, (m, bf16) in models.items()}
    first = {}
    for name, step in steps.items():  # the first two steps: a compiled model compiles its forward and backward
        start = time.perf_counter()
        step()
        step()
        first[name] = time.perf_counter() - start
        print(f"{name}: first two steps {first[name]:.1f} s", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        for name in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            rates[name].append((time.perf_counter() - start) / args.steps)
    seconds = {name: statistics.median(v) for name, v in rates.items()}
    for name in ("zoo fp32 compiled", "zoo bf16 compiled"):
        eager = "zoo fp32 eager" if "fp32" in name else "zoo bf16 eager"
        compile_seconds[name] = first[name] - 2 * seconds[name]
        saved = seconds[eager] - seconds[name]
        compile_seconds[name + " pays after"] = compile_seconds[name] / saved if saved > 0 else float("inf")
    reference = seconds["timm fp32 eager (reference)"]
    lines = [
        "# `--model.compile true`: compile time against steps saved (ECA-ResNet-50, CPU)",
        "",
        f"`python -m benchmarks.compile_speed --batch {args.batch} --size {args.size} --steps {args.steps} "
        f"--rounds {args.rounds} --threads {args.threads}`: training steps (SGD, cross-entropy), variants "
        f"interleaved in one process, median over rounds; torch {torch.__version__}.",
        "",
        "| variant | s / step | speed vs timm fp32 eager | compile time (s) | compiling pays after (steps) |",
        "|---|---|---|---|---|",
    ]
    for name, value in seconds.items():
        compiled = name in compile_seconds
        lines.append(f"| {name} | {value:.3f} | {reference / value:.2f}x | "
                     f"{compile_seconds[name]:.0f} | {compile_seconds[name + ' pays after']:.0f} |" if compiled else
                     f"| {name} | {value:.3f} | {reference / value:.2f}x | - | - |")
    lines += ["", f"Machine: {before} before, {load_average()} after (2 cores, shared with other sessions).", ""]
    write_report(args.output, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Speed of zoo's fast (chunked) selective scan against the sequential reference loop, side by side in one process.

Part 1 times one scan call, forward only (no grad) and forward + backward, at the sizes of a 224 px VMamba-T
(stage 1: B=1, K*d_inner=768, N=16, L=3136 in K=4 groups; stage 3: 3072 channels, L=196) and of a 1-D sequence
model (B=8, 256 channels, N=16, L=1024, one group). Part 2 times a VMamba-T training step (forward + backward of
the whole model) with each scan. The two methods alternate so that a change in machine load hits both; the table
gives median wall-clock and process-CPU seconds and the ratio reference / fast. The load average is printed before
and after, since the cores may be shared.

    python benchmarks/selective_scan.py                        # everything, VMamba-T step at 224 px, batch 1
    python benchmarks/selective_scan.py --skip-model --reps 5  # scan calls only
    python benchmarks/selective_scan.py --size 112 --batch 4 --threads 1

On a machine whose cores are shared (load average above the core count), run with ``--threads 1`` or with
``OMP_WAIT_POLICY=PASSIVE``: otherwise OpenMP threads spin-wait for descheduled partners and every multi-threaded
op (the fast scan's are large enough to be split across threads, the reference's per-step ops are not) slows down
several-fold, which measures the contention rather than the code.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from zoo.vision.vmamba import vmamba_tiny

from benchmarks._common import load_average
from zoo.blocks.selective_scan import selective_scan

METHODS = ("fast", "reference")
# name, (batch, channels, groups, state, length)
SCAN_SIZES = {
    "VMamba-T stage 1 @224 (B1 D768 N16 L3136)": (1, 768, 4, 16, 3136),
    "VMamba-T stage 3 @224 (B1 D3072 N16 L196)": (1, 3072, 4, 16, 196),
    "1-D sequence (B8 D256 N16 L1024)": (8, 256, 1, 16, 1024),
}


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _scan_inputs(batch, channels, groups, state, length, requires_grad):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "u": torch.randn(batch, channels, length, generator=g),
        "delta": torch.randn(batch, channels, length, generator=g) - 3.0,  # softplus -> ~0.05, a trained-like dt
        "A": -torch.arange(1, state + 1, dtype=torch.float32).repeat(channels, 1),
        "B": torch.randn(batch, groups, state, length, generator=g),
        "C": torch.randn(batch, groups, state, length, generator=g),
        "D": torch.ones(channels),
        "delta_bias": torch.zeros(channels),
    }
    return {k: v.requires_grad_(requires_grad) for k, v in tensors.items()}


def _scan_call(inputs: dict, method: str, backward: bool) -> Callable[[], None]:
    def run() -> None:
        with torch.set_grad_enabled(backward):
            y = selective_scan(**inputs, delta_softplus=True, method=method)
            if backward:
                y.square().mean().backward()
    return run


def _model_step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, method: str) -> Callable[[], None]:
    def run() -> None:
        model.set_scan_method(method)
        torch.nn.functional.cross_entropy(model(x), target).backward()
        model.zero_grad(set_to_none=True)
    return run


def _compare(calls: dict[str, Callable[[], None]], reps: int, warmup: int) -> dict[str, tuple[float, float]]:
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in calls}
    for _ in range(reps):  # alternate so that load changes hit both
        for method, call in calls.items():
            times[method].append(_timed(call))
    return {m: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for m, ts in times.items()}


def _row(name: str, result: dict[str, tuple[float, float]]) -> str:
    fast, ref = result["fast"], result["reference"]
    return (f"| {name} | {fast[0]:.3f} | {ref[0]:.3f} | {ref[0] / fast[0]:.1f}x | "
            f"{fast[1]:.3f} | {ref[1]:.3f} | {ref[1] / fast[1]:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per method (after warm-up)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", type=int, default=224, help="input side of the VMamba-T step")
    parser.add_argument("--batch", type=int, default=1, help="batch of the VMamba-T step")
    parser.add_argument("--model-reps", type=int, default=2, help="timed VMamba-T steps per method")
    parser.add_argument("--skip-model", action="store_true", help="only the scan calls")
    parser.add_argument("--skip-scans", action="store_true", help="only the VMamba-T training step")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"selective scan, fast vs reference: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"before: {load_average()}")
    print("\n| case | fast wall s | reference wall s | ratio | fast CPU s | reference CPU s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, size in ({} if args.skip_scans else SCAN_SIZES).items():
        for backward in (False, True):
            inputs = _scan_inputs(*size, requires_grad=backward)
            result = _compare({m: _scan_call(inputs, m, backward) for m in METHODS}, args.reps, args.warmup)
            print(_row(f"{name}, {'forward + backward' if backward else 'forward'}", result), flush=True)
    if not args.skip_model:
        torch.manual_seed(0)
        model = vmamba_tiny().train()  # the factory itself: no registry discovery needed here
        x = torch.randn(args.batch, 3, args.size, args.size)
        target = torch.randint(0, 1000, (args.batch,))
        result = _compare({m: _model_step(model, x, target, m) for m in METHODS}, args.model_reps, args.warmup)
        print(_row(f"VMamba-T training step (forward + backward), batch {args.batch}, {args.size} px", result))
    print(f"\nafter:  {load_average()}")


if __name__ == "__main__":
    main()

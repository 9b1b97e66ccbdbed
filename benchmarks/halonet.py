"""Training-step speed of zoo's HaloNet against timm's, side by side in one process.

Measures forward + backward steps per second of ``vision/halonet26t`` (or another id) and of the timm model it
reproduces, at the same batch, input size, threads and weights, alternating the two so that a change in machine load
hits both. Prints each rate, the ratio zoo / timm, and the load average before and after.

    python -m benchmarks.halonet                       # halonet26t, batch 8, 256 px, CPU
    python -m benchmarks.halonet --model vision/halonet50ts --batch 32 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import timm
import torch
from zoo.vision.halonet import TIMM_EQUIVALENT_KWARGS, TIMM_EQUIVALENTS

import zoo
from benchmarks._common import load_average


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_time(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
    """Seconds of one forward + backward (+ zeroing grads) step."""
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    model.zero_grad(set_to_none=True)
    _sync(x.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vision/halonet26t", choices=sorted(TIMM_EQUIVALENTS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    reference = timm.create_model(TIMM_EQUIVALENTS[args.model])
    kwargs = TIMM_EQUIVALENT_KWARGS.get(args.model, {})
    ours = zoo.create_model(args.model, **kwargs)
    ours.load_state_dict(reference.state_dict())
    models = {"zoo": ours.to(device).train(), "timm": reference.to(device).train()}
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    target = torch.randint(0, 1000, (args.batch,), device=device)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{args.model} vs timm {TIMM_EQUIVALENTS[args.model]}: batch {args.batch}, {args.size} px, {device_name}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, timm {timm.__version__}")
    print(f"before: {load_average()}")
    for model in models.values():
        for _ in range(args.warmup):
            _step_time(model, x, target)
    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for _ in range(args.steps):  # interleave, swapping who goes first, so that load changes hit both alike
        for name in order:
            times[name].append(_step_time(models[name], x, target))
        order.reverse()
    print(f"after:  {load_average()}")
    rates = {name: 1.0 / statistics.median(t) for name, t in times.items()}
    for name, rate in rates.items():
        print(f"{name:5s} {rate:8.3f} steps/s  ({rate * args.batch:8.1f} images/s, median of {args.steps})")
    print(f"ratio zoo / timm: {rates['zoo'] / rates['timm']:.3f}")


if __name__ == "__main__":
    main()

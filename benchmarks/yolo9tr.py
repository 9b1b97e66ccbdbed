"""YOLO9tr: the training graph against the deploy graph, side by side in one process.

- training steps per second (forward + TAL loss + backward) of the training graph (GELAN-s + PGI auxiliary branch
  with PSA, dual head, vision/yolo9tr) and of the deploy graph trained on its own (GELAN-s, vision/gelan_s), with the
  share of each step spent in the assigner and loss;
- inference latency, batch 1, of the training graph (eval mode, both heads computed) and of the deploy graph that
  ``reparameterize()`` gives (auxiliary branch dropped, RepConvN fused), decoding and NMS included.

The two are alternated so that a change in machine load hits both. Prints the rates, the ratios and the load.

    python -m benchmarks.yolo9tr                          # train 320 px batch 4, latency 640 px, CPU
    python -m benchmarks.yolo9tr --train-size 640 --batch 16 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import zoo
from benchmarks._common import load_average, write_report
from zoo.blocks.detection import DetectionLoss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _targets(batch: int, size: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batch):
        xy = torch.rand(6, 2, generator=g) * size * 0.7
        wh = torch.rand(6, 2, generator=g) * size * 0.25 + 8
        out.append({"boxes": torch.cat((xy, (xy + wh).clamp(max=size)), 1).to(device),
                    "labels": torch.randint(0, 80, (6,), generator=g).to(device)})
    return out


def _train_step(model, criterion, x, targets) -> tuple[float, float]:
    """(seconds of one step, seconds of it in the assigner + loss)."""
    start = time.perf_counter()
    heads = model(x)
    _sync(x.device)
    loss_start = time.perf_counter()
    weights = (0.25,) * (len(heads) - 1) + (1.0,)
    loss, _ = criterion(heads, targets, weights)
    _sync(x.device)
    loss_time = time.perf_counter() - loss_start
    loss.backward()
    model.zero_grad(set_to_none=True)
    _sync(x.device)
    return time.perf_counter() - start, loss_time


@torch.no_grad()
def _latency(model, x) -> float:
    start = time.perf_counter()
    model.predict(x)
    _sync(x.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--latency-size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--report", default="benchmarks/results/yolo9tr.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    before = load_average()
    train_graph = zoo.create_model("vision/yolo9tr").to(device).train()
    deploy_trained = zoo.create_model("vision/gelan_s").to(device).train()
    criterion = DetectionLoss(80)
    x = torch.rand(args.batch, 3, args.train_size, args.train_size, device=device)
    targets = _targets(args.batch, args.train_size, device)
    times: dict[str, list[tuple[float, float]]] = {"train": [], "deploy": []}
    for model in (train_graph, deploy_trained):  # warm-up
        _train_step(model, criterion, x, targets)
    for _ in range(args.repeats):
        for name, model in (("train", train_graph), ("deploy", deploy_trained)):
            times[name].append(_train_step(model, criterion, x, targets))
    eval_graph = train_graph.eval()
    deployed = zoo.create_model("vision/yolo9tr").to(device).eval()
    deployed.load_state_dict(eval_graph.state_dict())
    deployed.reparameterize()
    x1 = torch.rand(1, 3, args.latency_size, args.latency_size, device=device)
    latency: dict[str, list[float]] = {"train": [], "deploy": []}
    for model in (eval_graph, deployed):
        _latency(model, x1)
    for _ in range(args.repeats):
        latency["train"].append(_latency(eval_graph, x1))
        latency["deploy"].append(_latency(deployed, x1))
    after = load_average()

    step = {k: statistics.median(t for t, _ in v) for k, v in times.items()}
    loss = {k: statistics.median(lt for _, lt in v) for k, v in times.items()}
    lat = {k: statistics.median(v) for k, v in latency.items()}
    params = {"train": sum(p.numel() for p in train_graph.parameters()),
              "deploy": sum(p.numel() for p in deployed.parameters())}
    lines = [
        "# YOLO9tr: training graph against deploy graph",
        "",
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {device}; {before} before, {after} after; median of {args.repeats}.",
        "",
        f"Training step (forward + TAL loss + backward), batch {args.batch}, {args.train_size} px, 80 classes, "
        "6 boxes per image:",
        "",
        "| graph | steps/s | assigner + loss per step | share of the step |",
        "|---|---|---|---|",
        f"| training (vision/yolo9tr, PGI + PSA, dual head) | {1 / step['train']:.3f} | "
        f"{1000 * loss['train']:.1f} ms | {loss['train'] / step['train']:.1%} |",
        f"| deploy graph trained alone (vision/gelan_s) | {1 / step['deploy']:.3f} | "
        f"{1000 * loss['deploy']:.1f} ms | {loss['deploy'] / step['deploy']:.1%} |",
        f"| ratio training / deploy | {step['deploy'] / step['train']:.3f} x the steps/s | | |",
        "",
        f"Inference latency, batch 1, {args.latency_size} px, decoding + NMS included:",
        "",
        "| graph | parameters | latency |",
        "|---|---|---|",
        f"| training graph, eval mode (both heads) | {params['train']:,} | {1000 * lat['train']:.1f} ms |",
        f"| deploy graph (reparameterize(): aux dropped, RepConvN fused into 3x3) | {params['deploy']:,} | "
        f"{1000 * lat['deploy']:.1f} ms |",
        f"| ratio deploy / training | | {lat['deploy'] / lat['train']:.3f} x the latency |",
        "",
    ]
    print("\n".join(lines))
    write_report(args.report, lines)


if __name__ == "__main__":
    main()

"""DEA-Net against the hazy input and the dark channel prior, and its training graph against its deploy graph.

One run, side by side:

1. Quality on test pairs no model saw (the offline default's test photos, or ``--test-root`` such as
   ``RESIDE/SOTS/indoor``): PSNR / SSIM (the paper's settings, per image) of the hazy input itself, of the dark
   channel prior (He, Sun, Tang, CVPR 2009: 15x15 dark channel, airlight from the brightest 0.1 % of it,
   omega 0.95, t0 0.1; the transmission refined with a guided filter, He et al. 2010, in place of the 2009 paper's
   soft matting: ``benchmarks/dark_channel_prior.py``), and of DEA-Net: trained here with the quick start's
   configuration, or ``--ckpt``.
2. Forward time of the full-size training graph (DEConv, 7,789,313 parameters) against the re-parameterised deploy
   graph (3,653,377) at 256x256, alternating the two, and the peak extra memory of one forward of each (resident
   set growth over the forward in a fresh process, sampled every 0.5 ms).

    python -m benchmarks.dea_net                          # ~5 min on 2 CPU cores, writes results/dea_net.md
    python -m benchmarks.dea_net --ckpt best.ckpt --test-root RESIDE/SOTS/indoor
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from zoo.data.restoration import DehazingData, PairedImages, find_pairs

import zoo
from benchmarks._common import load_average, write_report
from benchmarks.dark_channel_prior import dark_channel_prior
from benchmarks.dehazing_real_depth import RECIPE, train_recipe
from zoo.tasks.restoration import restoration_metrics

SIMULATED_TEST = "SIMULATED haze on real photos no model saw: the offline default's test split"


# --- quality -----------------------------------------------------------------------------------------------------
def _evaluate(pairs, restore) -> dict[str, float]:
    metrics = restoration_metrics("")
    dataset = PairedImages(pairs)
    psnr, ssim = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            hazy, clear = dataset[i]
            values = metrics(restore(hazy[None]).clamp(0, 1), clear[None])
            psnr.append(float(values["psnr"]))
            ssim.append(float(values["ssim"]))
    return {"psnr": statistics.fmean(psnr), "ssim": statistics.fmean(ssim)}


def _restorer(model: torch.nn.Module):
    from zoo.tasks.restoration import pad_to_multiple

    def restore(hazy: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(hazy, 4)
        return model(padded)[..., :h, :w]
    return restore


# --- speed and memory ----------------------------------------------------------------------------------------------
_MEMORY_CHILD = """
import json, sys, threading, psutil, torch, zoo
torch.set_num_threads(int(sys.argv[2]))
model = zoo.create_model("vision/dea_net").eval()
if sys.argv[1] == "deploy":
    model.reparameterize()
x = torch.rand(1, 3, 256, 256)
process, peak, done = psutil.Process(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        done.wait(0.0005)
before = process.memory_info().rss
sampler = threading.Thread(target=sample)
sampler.start()
with torch.no_grad():
    model(x)
done.set()
sampler.join()
print(json.dumps({"peak_extra_mib": (peak[0] - before) / 2 ** 20}))
"""


def _peak_memory(graph: str, threads: int) -> float:
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, graph, str(threads)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_mib"]


def _forward_times(repeats: int) -> dict[str, float]:
    training = zoo.create_model("vision/dea_net").eval()
    deploy = zoo.create_model("vision/dea_net").eval()
    deploy.load_state_dict(training.state_dict())
    deploy.reparameterize()
    x = torch.rand(1, 3, 256, 256)
    times: dict[str, list[float]] = {"training": [], "deploy": []}
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), training(x), atol=1e-4, rtol=1e-4)  # also the warm-up
        for _ in range(repeats):
            for name, model in (("training", training), ("deploy", deploy)):
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="a zoo DEA-Net checkpoint to evaluate instead of training the quick start")
    parser.add_argument("--test-root", help="test pairs (hazy/ + clear/); default: the offline default's test set")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards of each graph")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dea_net.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = load_average()

    if args.test_root:
        pairs = find_pairs(args.test_root)
    else:
        data = DehazingData(num_workers=0)
        data.setup("test")
        pairs = data.test_pairs
    started = time.perf_counter()
    model = (zoo.create_model("vision/dea_net", pretrained=args.ckpt).eval() if args.ckpt
             else train_recipe(RECIPE))
    train_s = time.perf_counter() - started
    quality = {
        "hazy input": _evaluate(pairs, lambda hazy: hazy),
        "dark channel prior": _evaluate(pairs, dark_channel_prior),
        f"DEA-Net ({args.ckpt or 'quick start, trained here'})": _evaluate(pairs, _restorer(model)),
    }
    times = _forward_times(args.repeats)
    memory = {graph: _peak_memory(graph, args.threads) for graph in ("training", "deploy")}
    load_after = load_average()

    lines = ["# DEA-Net: quality against the hazy input and the dark channel prior; training vs deploy graph", "",
             f"`python -m benchmarks.dea_net{' --ckpt ' + args.ckpt if args.ckpt else ''}"
             f"{' --test-root ' + args.test_root if args.test_root else ''}` on {platform.processor() or 'CPU'}, "
             f"{args.threads} threads, torch {torch.__version__}; {load_before} before, {load_after} after.", "",
             f"Test pairs: {len(pairs)} ({args.test_root or SIMULATED_TEST})."
             + ("" if args.ckpt else f" DEA-Net: the quick-start recipe ({RECIPE.name}), trained here in "
                f"{train_s:.0f} s."), "",
             "| method | PSNR (dB) | SSIM |", "|---|---|---|"]
    lines += [f"| {name} | {q['psnr']:.2f} | {q['ssim']:.4f} |" for name, q in quality.items()]
    lines += ["", "Full-size DEA-Net (base width 32, 4/4/8 blocks) at 1x3x256x256, eval, no grad:", "",
              "| graph | parameters | forward (median of "
              f"{args.repeats}) | peak extra memory of one forward |", "|---|---|---|---|",
              f"| training (DEConv) | 7,789,313 | {times['training'] * 1e3:.0f} ms | "
              f"{memory['training']:.0f} MiB |",
              f"| deploy (re-parameterised) | 3,653,377 | {times['deploy'] * 1e3:.0f} ms | "
              f"{memory['deploy']:.0f} MiB |",
              "", f"Deploy / training forward time: **{times['deploy'] / times['training']:.2f}x** "
              f"(training / deploy {times['training'] / times['deploy']:.2f}x); peak memory deploy / training: "
              f"**{memory['deploy'] / max(memory['training'], 1e-9):.2f}x**. Our training graph already sums the five "
              "DEConv kernels into one convolution per forward (as the paper does), so the deploy graph saves the "
              "kernel sum and the branch parameters, not four convolutions.", ""]
    print("\n".join(lines))
    write_report(args.out, lines)


if __name__ == "__main__":
    main()

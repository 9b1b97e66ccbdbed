"""SSAST speed, side by side in one process:

1. training steps per second (forward + backward + AdamW) of zoo's SSAST-tiny fine-tuning model against timm's
   ``VisionTransformer`` of the same width, depth, heads and token count (2 prefix tokens, patch embedding by a
   1-channel convolution of the same shape), alternating the two so that machine load hits both;
2. MSPM mask sampling: the vectorised ``zoo.audio.ssast.mask_indices`` against a per-clip Python loop in the style
   of the official ``gen_maskid_patch`` (400 of 512 patches, cluster factor 3-5).

    python -m benchmarks.ssast                  # CPU, batch 8, 128 frames
    python -m benchmarks.ssast --device cuda --batch 64 --frames 1024
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from timm.models.vision_transformer import VisionTransformer
from zoo.audio.ssast import mask_indices

import zoo
from benchmarks._common import load_average


def official_style_masks(batch: int, t_dim: int, n: int, num_masked: int) -> torch.Tensor:
    """Per-clip loop as the released code samples cluster masks (without its quirks' effect on speed)."""
    rows = []
    for _ in range(batch):
        ids: list[int] = []
        size = random.randrange(3) + 3
        while len(set(ids)) <= num_masked:
            start = random.randrange(n)
            ids += [start + t_dim * i + j for i in range(size) for j in range(size) if 0 < start + t_dim * i + j < n]
        rows.append(torch.tensor(list(set(ids))[:num_masked]))
    return torch.stack(rows)


def rate(step, repeats: int, device: torch.device) -> float:
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"load average before: {load_average()}")
    zoo_model = zoo.create_model("audio/ssast_tiny_patch", num_classes=35, input_tdim=args.frames).to(device)
    f_dim, t_dim = zoo_model.f_dim, zoo_model.t_dim
    timm_model = VisionTransformer(img_size=(128, args.frames), patch_size=16, in_chans=1, num_classes=35,
                                   embed_dim=192, depth=12, num_heads=3, class_token=True, reg_tokens=1,
                                   global_pool="avg", dynamic_img_size=False).to(device)
    timm_model.patch_embed.proj = torch.nn.Conv2d(1, 192, 16, stride=10).to(device)
    timm_model.patch_embed.grid_size = (f_dim, t_dim)
    timm_model.patch_embed.num_patches = f_dim * t_dim
    timm_model.pos_embed = torch.nn.Parameter(torch.zeros(1, f_dim * t_dim + 2, 192, device=device))
    timm_model.patch_embed.img_size = None
    timm_model.patch_embed.strict_img_size = False
    x = torch.randn(args.batch, args.frames, 128, device=device)
    y = torch.randint(0, 35, (args.batch,), device=device)
    image = x.transpose(1, 2).unsqueeze(1)

    def stepper(model, inputs):
        optimizer = torch.optim.AdamW(model.parameters(), 1e-4)

        def step():
            loss = torch.nn.functional.cross_entropy(model(inputs), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return step

    steps = {"zoo": stepper(zoo_model, x), "timm": stepper(timm_model, image)}
    rates = {"zoo": [], "timm": []}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(rate(step, args.steps, device))
    zoo_rate, timm_rate = statistics.median(rates["zoo"]), statistics.median(rates["timm"])
    print(f"tokens {f_dim * t_dim}+2, batch {args.batch}, {device}: zoo {zoo_rate:.3f} steps/s, timm ViT "
          f"{timm_rate:.3f} steps/s, ratio zoo/timm {zoo_rate / timm_rate:.3f}")
    vectorised = rate(lambda: mask_indices(64, 8, 64, 400, cluster=True, device=device), 20, device)
    loop = rate(lambda: official_style_masks(64, 64, 512, 400), 3, torch.device("cpu"))
    print(f"masks of 64 clips (400 of 512, cluster): vectorised {vectorised:.1f}/s, per-clip loop {loop:.1f}/s, "
          f"ratio {vectorised / loop:.1f}x")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()

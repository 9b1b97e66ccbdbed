"""The trainer precision ``zoo train`` uses when nobody chose one: bf16 autocast where the hardware runs bf16
natively and the model has enough arithmetic for it to pay, fp16 autocast (with a gradient scaler) on CUDA GPUs
without bf16, fp32 elsewhere.

    >>> choice = default_precision(macs=4.1e9)
    >>> choice.precision, choice.reason        # on a CPU with AVX-512 BF16
    ('bf16-mixed', 'this CPU computes bf16 natively (avx512_bf16)')

What was measured on an AMD EPYC with AVX-512 BF16 (1 thread, training steps, bf16 autocast / fp32): ECA-ResNet-50
1.69x, HaloNet-26t 1.68x, SSAST-tiny 1.40x, YOLO9tr 1.51x, DeepLOB (30 MMACs a sample) 1.80x, MLPLOB (129 MMACs)
1.64x, TLOB (55 MMACs) 1.12x; but ECA-MobileNetV2's whole quick start took 1.11x longer in bf16 (its depthwise
convolutions), so its card sets ``cpu_bf16=False``. Models with less
arithmetic than :data:`MIN_MACS` a sample, or whose card does not know their MACs (the tables, LSTMs, DeepSurv), keep
fp32: there the casts cost about what the bf16 products save. An explicit ``--trainer.precision`` (``32-true``
turns mixed precision off) always wins; :func:`default_precision` is only asked when none was given.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

# Below this many multiply-accumulates a sample (the card's MACs at its default input) bf16 does not pay on a CPU.
MIN_MACS = 10_000_000
# /proc/cpuinfo flags that mean the CPU multiplies bf16 natively (AVX-512 BF16 dot products, AMX tiles).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """A Lightning precision string and, in words, why it was chosen."""

    precision: str
    reason: str


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The native-bf16 flags (:data:`CPU_BF16_FLAGS`) this CPU reports in ``cpuinfo``; none on an OS without that
    file (macOS, Windows), which keeps fp32 there."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def default_precision(macs: float | None, accelerator: str = "auto", cpuinfo: str | Path = "/proc/cpuinfo",
                      cpu_bf16: bool = True) -> PrecisionChoice:
    """The precision a run of a model with ``macs`` multiply-accumulates a sample gets on this machine.

    Args:
        macs: the model card's MACs at its default input; None when the card does not know them.
        accelerator: the trainer's ``accelerator`` ("auto", "cpu", "gpu", "cuda", ...): "cpu" rules the GPU out.
        cpuinfo: where the CPU flags are read (Linux); a test passes a file of its own.
        cpu_bf16: False when the model's card says bf16 autocast slows it down on a CPU (``ModelCard.cpu_bf16``).
    """
    if macs is None or macs < MIN_MACS:
        size = "its card does not give its MACs" if macs is None else f"{macs / 1e6:.2g} MMACs a sample"
        return PrecisionChoice("32-true", f"fp32: too little arithmetic for mixed precision to pay ({size})")
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return PrecisionChoice("bf16-mixed", f"this GPU computes bf16 natively ({name})")
        return PrecisionChoice("16-mixed", f"this GPU has no native bf16 ({name}): fp16 with a gradient scaler")
    if accelerator in ("auto", "cpu"):
        flags = cpu_bf16_flags(cpuinfo) if sys.platform.startswith("linux") or cpuinfo != "/proc/cpuinfo" else []
        if flags and not cpu_bf16:
            return PrecisionChoice("32-true", "fp32: bf16 autocast was measured slower than fp32 for this model on a "
                                              f"CPU with native bf16 ({', '.join(flags)}); its card says so")
        if flags:
            return PrecisionChoice("bf16-mixed", f"this CPU computes bf16 natively ({', '.join(flags)})")
        return PrecisionChoice("32-true", "fp32: this CPU has no native bf16 (no avx512_bf16 or amx_bf16)")
    return PrecisionChoice("32-true", f"fp32: no mixed-precision default for accelerator {accelerator!r}")

"""VMamba (Liu et al., "VMamba: Visual State Space Model", NeurIPS 2024, arXiv 2401.10166) in its "v0" form
("Vanilla VMamba", the released v0 checkpoints), and Res-VMamba (Chen et al., "Res-VMamba: Fine-Grained Food
Category Visual Classification Using Selective State Space Models with Deep Residual Learning", arXiv 2402.15761).

VMamba v0: a 4x4 patch embedding (conv + LayerNorm), four stages of VSS blocks ``x + DropPath(SS2D(LN(x)))`` on
channels-last maps (no MLP in v0), Swin's PatchMerging2D between stages, and LayerNorm -> global average pool ->
Linear. Parameter names follow the official code (MzeroMiko/VMamba, MIT), so its checkpoints load through
:func:`checkpoint_filter`, which also renames the legacy names of the early releases (the hub takes the weights
out of the Swin-style training checkpoint, ``model`` / ``model_ema`` / ``config`` ...).

Res-VMamba adds, to each of stages 0-2, a shortcut from the stage input to its (downsampled) output:
MaxPool 2x2 -> 1x1 conv (C -> 2C, with bias). The official code (ChiShengChen/ResVMamba) builds those convs inside
``forward``, so they are re-drawn at random on every call, never trained, absent from its checkpoints, and make
inference non-deterministic. Here they are registered, trained modules (388,416 parameters for C0 = 96). Loading
an official Res-VMamba checkpoint therefore leaves them at their initialisation, with a logged warning naming them.

The official training checkpoints are pickles that hold a ``yacs`` ``CfgNode``; a stand-in registered with
``zoo.weights.register_safe_global`` lets the hub's weights-only reader take them without yacs and without running any
pickled code.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import DropPath, trunc_normal_
from torch import nn
from zoo.vision._common import check_image_batch

from zoo.blocks.selective_scan import ScanMethod
from zoo.blocks.ss2d import SS2D
from zoo.errors import InputShapeError
from zoo.registry import ModelCard, Paper, Preprocessing, WeightSet, register_model
from zoo.weights import read_weights, register_safe_global

__all__ = [
    "PatchMerging2D", "ResVMamba", "StageShortcut", "VMamba", "VSSBlock", "VSSStage", "checkpoint_filter",
    "convert_official_checkpoint",
]

log = logging.getLogger(__name__)


class Permute(nn.Module):
    """x.permute(*dims), as a module so that the patch embedding keeps the official key layout (``.0``/``.2``)."""

    def __init__(self, *dims: int):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class PatchMerging2D(nn.Module):
    """Swin's patch merging on channels-last maps: each 2x2 neighbourhood concatenated (4C) -> LN -> Linear(2C).

    Odd heights/widths are zero-padded at the bottom/right first, as in the official code.
    """

    def __init__(self, dim: int, out_dim: int | None = None):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, out_dim or 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim)."""
        height, width = x.shape[1:3]
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        # Swin's order: (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class VSSBlock(nn.Module):
    """x + DropPath(SS2D(LayerNorm(x))) on channels-last maps (VMamba v0 has no MLP branch).

    The LayerNorm eps is 1e-5: the official block's default is 1e-6, but its VSSM passes nn.LayerNorm (1e-5).
    """

    def __init__(self, dim: int, drop_path: float = 0.0, d_state: int = 16, ssm_ratio: float = 2.0,
                 dt_rank: int | str = "auto", scan_method: ScanMethod = "fast"):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, scan_method=scan_method)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H, W, dim)."""
        return x + self.drop_path(self.op(self.norm(x)))


class VSSStage(nn.Module):
    """``blocks`` (VSS blocks) then ``downsample`` (PatchMerging2D, or Identity for the last stage)."""

    def __init__(self, dim: int, depth: int, drop_paths: Sequence[float], out_dim: int | None, **ssm_kwargs: Any):
        super().__init__()
        self.blocks = nn.Sequential(*(VSSBlock(dim, drop_paths[i], **ssm_kwargs) for i in range(depth)))
        self.downsample = PatchMerging2D(dim, out_dim) if out_dim else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H', W', out_dim): halved and out_dim when downsampling, else unchanged."""
        return self.downsample(self.blocks(x))


class ClassifierHead(nn.Module):
    """LayerNorm on the channels-last map, global average pool, Linear (keys ``classifier.norm``/``.head``)."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(num_features)
        self.head = nn.Linear(num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, H, W, C) -> (B, num_classes), or the pooled (B, C) with ``pre_logits``."""
        x = self.norm(x).mean(dim=(1, 2))
        return x if pre_logits else self.head(x)


def _init_weights(module: nn.Module) -> None:
    # The official VSSM initialisation: Linear trunc-normal(0.02) with zero bias, LayerNorm (1, 0); convs and the
    # SS2D parameters keep their own initialisation.
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class VMamba(nn.Module):
    """VMamba v0 image classifier.

    Args:
        depths: VSS blocks per stage.
        dims: channels of the first stage (doubled at every stage), or the channels of every stage.
        d_state: state size N of the selective scans.
        ssm_ratio: inner width of SS2D relative to the stage's channels.
        dt_rank: rank of the step-size projection, "auto" = ceil(channels / 16).
        drop_path_rate: stochastic depth, rising linearly from 0 to this over all blocks.
        num_classes: classifier outputs; 0 gives a model that returns pooled features.
        in_chans: input image channels.
        patch_size: side of the patch embedding's patches; image sides must be multiples of it.
        scan_method: "fast" (chunked scan) or "reference" (sequential loop) selective scan; same results.

    Feature maps are channels-last, (B, H, W, C) (``feature_layout``): permute them to (B, C, H, W) for tools that
    expect channels-first maps, e.g. Grad-CAM on ``classifier.norm``.
    """

    feature_layout = "NHWC"

    def __init__(
        self, depths: Sequence[int] = (2, 2, 9, 2), dims: int | Sequence[int] = 96, d_state: int = 16,
        ssm_ratio: float = 2.0, dt_rank: int | str = "auto", drop_path_rate: float = 0.2, num_classes: int = 1000,
        in_chans: int = 3, patch_size: int = 4, scan_method: ScanMethod = "fast",
    ):
        super().__init__()
        dims = [dims * 2**i for i in range(len(depths))] if isinstance(dims, int) else list(dims)
        if len(dims) != len(depths):
            raise ValueError(f"need one width per stage: depths {list(depths)}, dims {dims}")
        self.depths, self.dims = tuple(depths), tuple(dims)
        self.in_chans, self.patch_size, self.num_features = in_chans, patch_size, dims[-1]
        self.patch_embed = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=patch_size, stride=patch_size),
            Permute(0, 2, 3, 1),
            nn.LayerNorm(dims[0]),
        )
        drop_paths = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # CPU: works under meta
        ssm_kwargs = {"d_state": d_state, "ssm_ratio": ssm_ratio, "dt_rank": dt_rank, "scan_method": scan_method}
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            out_dim = dims[i + 1] if i + 1 < len(depths) else None
            self.layers.append(VSSStage(dims[i], depth, drop_paths[start:start + depth], out_dim, **ssm_kwargs))
        self.classifier = ClassifierHead(self.num_features, num_classes)
        self.apply(_init_weights)

    def check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, self.in_chans)
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size or height == 0 or width == 0:
            raise InputShapeError(
                f"image sides must be positive multiples of the patch size {self.patch_size}, got {height}x{width}"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> channels-last (B, H/32, W/32, num_features) (sides rounded up after the patches)."""
        self.check_input(x)
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, h, w, num_features) -> (B, num_classes), or the pooled (B, num_features) with ``pre_logits``."""
        return self.classifier(x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier.head

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        _init_weights(self.classifier.head)

    def set_scan_method(self, method: ScanMethod) -> None:
        """Switch every SS2D block to the "fast" or the "reference" selective scan."""
        for module in self.modules():
            if isinstance(module, SS2D):
                module.scan_method = method


class StageShortcut(nn.Module):
    """Res-VMamba's shortcut around one stage: MaxPool 2x2/2 -> 1x1 conv (in -> out channels, with bias).

    The pool rounds up (``ceil_mode``) so that odd sides match PatchMerging2D's padding; for even sides, as in the
    paper's 224 px inputs, it is the official floor pooling.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
        self.proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last (B, H, W, in_dim) -> (B, ceil(H/2), ceil(W/2), out_dim)."""
        return self.proj(self.pool(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


class ResVMamba(VMamba):
    """VMamba with Res-VMamba's global residual shortcuts around every downsampling stage (0-2 of 4).

    Same arguments as :class:`VMamba`. The shortcut convs are ``shortcuts.<i>.proj`` (absent from the official
    checkpoints, whose code re-creates them at random on every forward pass).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.shortcuts = nn.ModuleList(
            StageShortcut(self.dims[i], self.dims[i + 1]) for i in range(len(self.dims) - 1)
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> channels-last (B, H/32, W/32, num_features)."""
        self.check_input(x)
        x = self.patch_embed(x)
        for i, layer in enumerate(self.layers):
            x = layer(x) + self.shortcuts[i](x) if i < len(self.shortcuts) else layer(x)
        return x


# ----------------------------------------------------------------------------------------------------------------
# Official checkpoints
# ----------------------------------------------------------------------------------------------------------------

_LEGACY_NAMES = (  # early VMamba releases -> current official names (the official _load_from_state_dict shim)
    (re.compile(r"^patch_embed\.proj\."), "patch_embed.0."),
    (re.compile(r"^patch_embed\.norm\."), "patch_embed.2."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.ln_1\."), r"\1.norm."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.self_attention\."), r"\1.op."),
    (re.compile(r"^norm\."), "classifier.norm."),
    (re.compile(r"^head\."), "classifier.head."),
)
def checkpoint_filter(state_dict: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map an official VMamba / Res-VMamba checkpoint onto this module's names.

    Renames the legacy names of the early releases (``patch_embed.proj/norm``, ``ln_1``, ``self_attention``,
    top-level ``norm``/``head``). For :class:`ResVMamba`, shortcut weights missing from the checkpoint (all official
    ones) are filled with the model's own initial values, with a warning naming them.
    """
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in _LEGACY_NAMES:
            key = pattern.sub(replacement, key)
        out[key] = value
    if isinstance(model, ResVMamba):
        own = model.state_dict()
        missing = sorted(k for k in own if k.startswith("shortcuts.") and k not in out)
        if missing:
            log.warning(
                "the checkpoint has no Res-VMamba shortcut weights (%s): the official code re-creates these 1x1 "
                "convs at random on every forward pass, so its checkpoints never hold them. They keep this model's "
                "initialisation; fine-tune before relying on the outputs.", ", ".join(missing),
            )
            out.update({k: own[k] for k in missing})
    return out


class _YacsConfigStandIn:
    """Stands in for ``yacs.config.CfgNode`` while unpickling: builds a plain OrderedDict and runs no yacs code.

    A pickled CfgNode (a dict subclass) is rebuilt as ``cls.__new__(cls)``, its items set, then its ``__dict__``
    flags updated; with this stand-in each of those steps acts on an OrderedDict, which the weights-only unpickler
    allows.
    """

    def __new__(cls, *args: Any) -> OrderedDict:
        return OrderedDict()


register_safe_global(_YacsConfigStandIn, "yacs.config.CfgNode")


def convert_official_checkpoint(src: str | Path, dst: str | Path, weights: str = "model") -> Path:
    """Write the ``weights`` of an official training checkpoint as a safetensors file that ``zoo.create_model``
    (and any tool) reads directly; keys keep the official names."""
    state_dict = {k: v.contiguous() for k, v in read_weights(src, key=weights).state_dict.items()}
    save_file(state_dict, dst)
    return Path(dst)


# ----------------------------------------------------------------------------------------------------------------
# Registered configurations
# ----------------------------------------------------------------------------------------------------------------

_VMAMBA_PAPER = Paper(
    title="VMamba: Visual State Space Model", arxiv="2401.10166", venue="NeurIPS 2024",
    code_url="https://github.com/MzeroMiko/VMamba",
)
_RES_VMAMBA_PAPER = Paper(
    title="Res-VMamba: Fine-Grained Food Category Visual Classification Using Selective State Space Models with "
          "Deep Residual Learning",
    arxiv="2402.15761", venue="arXiv 2024; PLOS ONE 20(5):e0322695, 2025",
    code_url="https://github.com/ChiShengChen/ResVMamba",
)
_RELEASES = "https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/"
# the Swin-style config both releases use: 224 px, bicubic, test Resize(256) + CenterCrop(224), ImageNet mean/std
SWIN_PREPROCESSING = Preprocessing(input_size=224, interpolation="bicubic", crop_pct=0.875)
_COMMON_NOTES = (
    "VMamba v0 ('Vanilla VMamba'): no MLP in the blocks, PatchMerging2D downsampling, LayerNorm eps 1e-5 "
    "everywhere (what the official VSSM passes). MACs count convolutions, linear layers and the projection "
    "einsums (torch's FlopCounterMode), not the selective scan's element-wise work; the README's 5.6G/11.2G/18.0G "
    "add the scan by Albert Gu's formula (4.5G/9.1G/15.2G in older counts). The scan runs on CPU through "
    "zoo.blocks.selective_scan (scan_method='fast', chunked, exact; 'reference' is the sequential loop). "
    "Grad-CAM: target classifier.norm, whose output is channels-last (B, H, W, C) -- permute to (B, C, H, W) "
    "(the model's feature_layout is 'NHWC'). Weight decay as in the official Swin-style recipe applies to A_logs "
    "and dt_projs_bias (2-D) despite their _no_weight_decay flags; only 1-D tensors (Ds, norms, biases) are exempt. "
    "Official checkpoints are Swin-style training pickles (model / model_ema / optimizer / yacs config); they load "
    "as they are (the 'model' entry). VMamba-S/B's EMA weights are the weight set 'official_in1k_ema'; a local "
    "file's EMA entry converts with vision.vmamba.convert_official_checkpoint(src, dst, weights='model_ema')."
)
_VMAMBA_RECIPE = "vmamba_imagenet.yaml"
_EMA = "vmamba_imagenet_ema.yaml"  # VMamba-S/B were trained with EMA, VMamba-T without


def _official_in1k(file_name: str, top1: float, ema: bool) -> tuple[WeightSet, ...]:
    """The official weights; for models trained with EMA also the file's EMA entry, as a second weight set."""
    common = {"num_classes": 1000, "url": _RELEASES + file_name, "file_name": file_name, "license": "MIT",
              "preprocessing": SWIN_PREPROCESSING}
    trained = WeightSet(
        name="official_in1k",
        description="Official VMamba v0 ImageNet-1k weights, 300-epoch Swin-style recipe"
                    + (" (trained with EMA; the file's 'model' entry)" if ema else " (no EMA)"),
        metrics={"imagenet_top1": top1}, **common,
    )
    if not ema:
        return (trained,)
    averaged = WeightSet(
        name="official_in1k_ema", state_dict_key="model_ema",
        description="The EMA of the same run (the file's 'model_ema' entry, decay 0.9999); which entry the README's "
                    "top-1 was measured on is not stated", **common,
    )
    return trained, averaged


def _vmamba_card(num_params: int, macs: int, weights: tuple[WeightSet, ...], paper_recipe: str | tuple[str, ...],
                 notes: str = "") -> ModelCard:
    return ModelCard(
        task="image_classification", paper=_VMAMBA_PAPER, license="MIT", num_params=num_params, macs=macs,
        input_shape=(3, 224, 224), recipes={"quickstart": "digits.yaml", "paper": paper_recipe}, weights=weights,
        target_layer="classifier.norm", notes=(notes + " " if notes else "") + _COMMON_NOTES,
    )


@register_model(
    "vision/vmamba_tiny",
    card=_vmamba_card(22_893_448, 3_676_962_816, _official_in1k("vssmtiny_dp01_ckpt_epoch_292.pth", 82.2, False),
                      _VMAMBA_RECIPE),
    checkpoint_filter=checkpoint_filter,
)
def vmamba_tiny(num_classes: int = 1000, **kwargs: Any) -> VMamba:
    """VMamba-T v0: depths 2-2-9-2, 96 channels, drop path 0.2 (the file name says dp01; the config 0.2)."""
    kwargs = {"depths": (2, 2, 9, 2), "dims": 96, "drop_path_rate": 0.2, **kwargs}
    return VMamba(num_classes=num_classes, **kwargs)


@register_model(
    "vision/vmamba_small",
    card=_vmamba_card(44_417_416, 7_689_738_240, _official_in1k("vssmsmall_dp03_ckpt_epoch_238.pth", 83.5, True),
                      (_VMAMBA_RECIPE, _EMA)),
    checkpoint_filter=checkpoint_filter,
)
def vmamba_small(num_classes: int = 1000, **kwargs: Any) -> VMamba:
    """VMamba-S v0: depths 2-2-27-2, 96 channels, drop path 0.3."""
    kwargs = {"depths": (2, 2, 27, 2), "dims": 96, "drop_path_rate": 0.3, **kwargs}
    return VMamba(num_classes=num_classes, **kwargs)


@register_model(
    "vision/vmamba_base",
    card=_vmamba_card(76_254_056, 13_297_262_592, _official_in1k("vssmbase_dp06_ckpt_epoch_241.pth", 83.7, True),
                      (_VMAMBA_RECIPE, _EMA),
                      notes="The config sets drop path 0.5 (0.6 commented out; the file name says dp06)."),
    checkpoint_filter=checkpoint_filter,
)
def vmamba_base(num_classes: int = 1000, **kwargs: Any) -> VMamba:
    """VMamba-B v0: depths 2-2-27-2, 128 channels, drop path 0.5."""
    kwargs = {"depths": (2, 2, 27, 2), "dims": 128, "drop_path_rate": 0.5, **kwargs}
    return VMamba(num_classes=num_classes, **kwargs)


_RES_VMAMBA_NOTES = (
    "Res-VMamba = VMamba-S v0 plus, around stages 0-2, shortcut = 1x1 conv(MaxPool 2x2(stage input)) added to the "
    "stage output. Difference from the official code: there the three shortcut convs are created inside forward(), "
    "so they are random on every call, never trained, not in the checkpoints, and two eval forwards of one image "
    "differ (the paper's accuracies come from that version). Here they are registered and trained "
    "(shortcuts.{0,1,2}.proj, 18,624 + 74,112 + 295,680 = 388,416 parameters; the official model counts the same as "
    "VMamba-S, 44,417,416 at 1000 classes / 43,833,745 at 241). Loading an official checkpoint logs a warning naming "
    "the missing shortcut weights, which keep their initialisation: fine-tune before use. The official head may be "
    "1000-way even for CNFOOD-241 (its build_dataset reports 1000 classes); the head size is read from the file. "
    "Licence: the GitHub repository has no LICENSE file (all rights reserved by default); the Hugging Face weights "
    "card says MIT. "
)


@register_model(
    "vision/res_vmamba",
    card=ModelCard(
        task="image_classification", paper=_RES_VMAMBA_PAPER,
        license="none: no LICENSE file in the repository (the weights card on Hugging Face says MIT)",
        num_params=44_805_832, macs=7_733_090_304, input_shape=(3, 224, 224),
        recipes={"quickstart": "digits.yaml", "paper": "res_vmamba_cnfood241.yaml"},
        weights=(WeightSet(
            name="official_cnfood241",
            description="Official Res-VMamba CNFOOD-241 weights (epoch 166; random-shortcut version, so the "
                        "shortcut convs are not in the file). Reported: 79.54 % top-1 without pretraining (arXiv), "
                        "81.70 % top-1 (PLOS ONE); which run this file is, is not stated",
            num_classes=241, url="https://huggingface.co/ms57rd/Res-VMamba/resolve/main/ckpt_epoch_166.pth",
            file_name="ckpt_epoch_166.pth", license="MIT (Hugging Face model card)",
            preprocessing=SWIN_PREPROCESSING,
        ),),
        target_layer="classifier.norm", notes=_RES_VMAMBA_NOTES + _COMMON_NOTES,
    ),
    checkpoint_filter=checkpoint_filter,
)
def res_vmamba(num_classes: int = 1000, **kwargs: Any) -> ResVMamba:
    """Res-VMamba: VMamba-S v0 (depths 2-2-27-2, 96 channels, drop path 0.3) with trained stage shortcuts."""
    kwargs = {"depths": (2, 2, 27, 2), "dims": 96, "drop_path_rate": 0.3, **kwargs}
    return ResVMamba(num_classes=num_classes, **kwargs)

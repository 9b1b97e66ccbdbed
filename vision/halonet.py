"""HaloNet (Vaswani et al., "Scaling Local Self-Attention for Parameter Efficient Visual Backbones", CVPR 2021,
arXiv 2103.12731; no official code).

Two groups of models, both built on timm's ByobNet machinery (Apache-2.0; ``ByoModelCfg``/``ByoBlockCfg``, the stem,
stage, shortcut and bottleneck blocks), so that state-dict keys are timm's and timm checkpoints load unchanged:

- the paper's family ``halonet_h0`` ... ``halonet_h7``: a ResNet-like network (7x7/2 stem + 3x3/2 max-pool, four
  stages of depths (3, 3, l3, 3) and strides (1, 2, 2, 2)) whose every block is 1x1 conv -> halo attention -> BN+ReLU
  -> 1x1 conv with a residual shortcut. Stage i has base width w_i = 64 * 2^i: queries and keys are w_i wide, values
  (the attention output) r_v * w_i, the block output r_b * w_i; H3-H7 end in a 1x1 conv to d_f channels before
  pooling. No weights were published. ``halonet_h1`` has the layout and parameters of timm's ``halonet_h1``
  (8,100,056);
- timm's ImageNet-trained hybrids that put halo attention in the last stages of a ResNet-t/ResNeXt-t
  (``halonet26t``, ``sehalonet33ts``, ``halonet50ts``, ``eca_halonext26ts``), with their published weights.

Halo attention is :class:`zoo.blocks.halo_attention.HaloAttention` (timm's ``HaloAttn``; strided layers of the paper
family index their position tables by the true query-key displacement, see that module). The timm hybrids keep
timm's strided indexing, which their weights were trained with; ``strided_pos="timm"`` gives the paper family the same
(``halonet_h1`` then equals timm's ``halonet_h1`` number for number).

Input sizes: a halo layer cuts its input into b x b blocks, so the image height and width must be multiples of
b x (feature stride at the input of every halo layer): 256 for the timm hybrids (b = 8 at stride 32).
:meth:`HaloNet.valid_input_sizes` lists the sizes that fit; other sizes are refused up front with a message
that names the nearest ones.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from functools import partial
from typing import Any

import torch
from timm.layers import DropPath, make_divisible
from timm.models.byobnet import (
    ByoBlockCfg,
    ByobNet,
    ByoModelCfg,
    LayerFn,
    create_shortcut,
    expand_blocks_cfg,
    interleave_blocks,
)
from torch import nn
from zoo.vision._common import check_image_batch

from zoo.blocks.halo_attention import HaloAttention, StridedPosIndexing
from zoo.errors import InputShapeError
from zoo.registry import ModelCard, Paper, Preprocessing, WeightSet, register_model

__all__ = ["HaloBottleneck", "HaloNet", "halonet_paper_cfg"]


class HaloBottleneck(nn.Module):
    """The paper's HaloNet block: 1x1 conv (w) -> halo attention (q/k w, values r_v * w) -> BN+act -> 1x1 conv
    (out_chs), plus the shortcut, then act.

    timm's ``SelfAttnBlock`` ties the attention output to the bottleneck width, so it cannot express r_v != 1; this
    block keeps its module names (``shortcut``, ``conv1_1x1``, ``self_attn``, ``post_attn``, ``conv3_1x1``), so at
    r_v = 1 the two have the same state-dict keys and numbers.

    Args:
        in_chs: input channels.
        out_chs: output channels (r_b * w).
        stride: 1, or 2 for the first block of a downsampling stage (strided attention, strided 1x1 shortcut).
        bottle_ratio: w / out_chs (the q/k width over the output width).
        value_ratio: r_v, value width over q/k width.
        downsample: shortcut type when the shape changes ("conv1x1" or "avg").
        layers: timm's layer factories (conv-norm-act, norm-act, act, self-attention) from the model config.
        drop_path_rate: stochastic depth of the residual branch.
        dilation: (first, rest) dilation from timm's stage builder; only the shortcut uses it.
        **_: the other arguments of timm's stage builder (group_size, drop_block, device, dtype), unused.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, bottle_ratio: float = 1.0,
                 value_ratio: float = 1.0, downsample: str = "conv1x1", layers: LayerFn | None = None,
                 drop_path_rate: float = 0.0, dilation: tuple[int, int] = (1, 1), **_: Any):
        super().__init__()
        if layers is None or layers.self_attn is None:
            raise ValueError("HaloBottleneck needs the model config's layer factories with a self-attention layer")
        mid_chs = make_divisible(out_chs * bottle_ratio)
        value_chs = make_divisible(mid_chs * value_ratio)
        self.shortcut = create_shortcut(downsample, in_chs, out_chs, stride=stride, dilation=dilation,
                                        apply_act=False, layers=layers)
        self.conv1_1x1 = layers.conv_norm_act(in_chs, mid_chs, 1)
        # q/k stay mid_chs wide: qk_ratio * dim_out = mid_chs.
        self.self_attn = layers.self_attn(mid_chs, value_chs, stride=stride, qk_ratio=mid_chs / value_chs)
        self.post_attn = layers.norm_act(value_chs)
        self.conv3_1x1 = layers.conv_norm_act(value_chs, out_chs, 1, apply_act=False)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act = layers.act(inplace=True)

    def init_weights(self, zero_init_last: bool = False) -> None:
        """Called by ByobNet's initialiser: zero the last BN (identity residual at init) and re-init attention."""
        if zero_init_last and self.shortcut is not None:
            nn.init.zeros_(self.conv3_1x1.bn.weight)
        self.self_attn.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chs, H, W) -> (B, out_chs, H / stride, W / stride)."""
        shortcut = self.shortcut(x)
        x = self.conv3_1x1(self.post_attn(self.self_attn(self.conv1_1x1(x))))
        return self.act(self.drop_path(x) + shortcut)


class HaloNet(ByobNet):
    """timm's ByobNet with halo attention, the zoo's model surface and an up-front input-size check.

    ``forward`` (B, in_chans, H, W) -> logits (B, num_classes), ``forward_head`` (B, num_features, h, w) ->
    (B, num_classes) (or pooled features with ``pre_logits``), ``get_classifier`` (``head.fc``, timm's key, so timm
    checkpoints load unchanged) and ``reset_classifier(num_classes)`` are ByobNet's own.

    Args:
        cfg: the network as a timm ``ByoModelCfg`` (see the factories below).
        num_classes: classifier outputs; 0 gives a model that returns pooled features.
        in_chans: input image channels.
        name: the model's name in error messages.
        **kwargs: ``ByobNet`` options (``drop_rate``, ``drop_path_rate``, ``zero_init_last``, ...) and overrides of
            ``ByoModelCfg`` fields (e.g. ``width_factor=0.25``, ``self_attn_kwargs={"block_size": 2, "halo_size": 1}``
            for a small variant).
    """

    def __init__(self, cfg: ByoModelCfg, num_classes: int = 1000, in_chans: int = 3, name: str = "halonet",
                 **kwargs: Any):
        if kwargs.get("output_stride", 32) != 32:
            raise ValueError("HaloNet supports output_stride=32 only: halo attention has no dilated form")
        cfg_fields = {f.name for f in fields(ByoModelCfg)}
        cfg = replace(cfg, **{k: kwargs.pop(k) for k in list(kwargs) if k in cfg_fields})
        super().__init__(cfg, num_classes=num_classes, in_chans=in_chans, **kwargs)
        self.name = name
        self.halo_layers = self._halo_layers(cfg)
        self.input_multiple = math.lcm(*(stride * block for _, stride, block in self.halo_layers)) \
            if self.halo_layers else 1

    def _halo_layers(self, cfg: ByoModelCfg) -> list[tuple[str, int, int]]:
        """(module name, feature stride at its input, block size) of every halo attention layer."""
        layers = []
        stride = getattr(self.stem, "stride", 2)  # feature stride at the input of the first stage
        for stage_idx, (stage, stage_cfg) in enumerate(zip(self.stages, cfg.blocks, strict=True)):
            stride *= expand_blocks_cfg(stage_cfg)[0].s  # stride at the stage output
            for block_idx, block in enumerate(stage):
                attn = getattr(block, "self_attn", None)
                if isinstance(attn, HaloAttention):
                    # A stage downsamples in its first block, in the attention itself or in a conv before it.
                    attn_in = stride // attn.stride if block_idx == 0 else stride
                    layers.append((f"stages.{stage_idx}.{block_idx}.self_attn", attn_in, attn.block_size))
        return layers

    def valid_input_sizes(self, up_to: int = 1024) -> list[int]:
        """Image heights/widths this model accepts, up to ``up_to``: the multiples of :attr:`input_multiple`."""
        return list(range(self.input_multiple, up_to + 1, self.input_multiple))

    def nearest_input_sizes(self, size: int) -> list[int]:
        """The valid size closest to ``size`` and the next closest one (e.g. 224 -> [256, 512] at multiple 256)."""
        m = self.input_multiple
        below, above = (size // m) * m, -(-size // m) * m
        candidates = sorted({s for s in (below, above, above + m) if s > 0}, key=lambda s: (abs(s - size), s))
        return candidates[:2]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``x`` is (B, in_chans, H, W) with H and W multiples of
        :attr:`input_multiple`, naming the sizes that would fit."""
        check_image_batch(x, self.in_chans)
        height, width = x.shape[-2:]
        m = self.input_multiple
        if height % m == 0 and width % m == 0:
            return
        near_h, near_w = self.nearest_input_sizes(height), self.nearest_input_sizes(width)
        if height == width:
            nearest = f"{near_h[0]}" + (f" (or {near_h[1]})" if len(near_h) > 1 else "")
        else:
            nearest = f"{near_h[0]}x{near_w[0]}"
        raise InputShapeError(
            f"{height}x{width} does not fit {self.name}: height and width must be multiples of {m} (halo block size "
            f"x feature stride of its halo layers); nearest: {nearest}"
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32); H and W multiples of :attr:`input_multiple`."""
        self.check_input(x)
        return super().forward_features(x)



# ---------------------------------------------------------------------------------------------------------------
# Configurations

# name: (block size b, halo h, r_v, r_b, l3, d_f) from the paper's model table (d_f 0: no final 1x1 conv).
PAPER_CONFIGS: dict[str, tuple[int, int, float, float, int, int]] = {
    "h0": (8, 3, 1.0, 0.5, 7, 0),
    "h1": (8, 3, 1.0, 1.0, 10, 0),
    "h2": (8, 3, 1.0, 1.25, 11, 0),
    "h3": (10, 3, 1.0, 1.5, 12, 1024),
    "h4": (12, 2, 1.0, 3.0, 12, 1280),
    "h5": (14, 2, 2.5, 2.0, 23, 1536),
    "h6": (8, 4, 3.0, 2.75, 24, 1536),
    "h7": (10, 3, 4.0, 3.5, 26, 2048),
}
# The paper's image sizes, rounded to the block rule where needed: H7's 600 is not a multiple of b x 32 = 320
# (this implementation does not pad feature maps to whole blocks), so H7 runs at 640.
PAPER_IMAGE_SIZES = {"h0": 256, "h1": 256, "h2": 256, "h3": 320, "h4": 384, "h5": 448, "h6": 512, "h7": 640}


def halonet_paper_cfg(block_size: int, halo_size: int, value_ratio: float, bottle_out_ratio: float,
                      depth3: int, num_features: int = 0, num_heads: int = 8,
                      strided_pos: StridedPosIndexing = "geometric") -> ByoModelCfg:
    """The ByoModelCfg of a paper HaloNet: depths (3, 3, l3, 3), q/k width 64 * 2^i, values r_v times that,
    block output r_b times that, all blocks halo attention."""
    stages = []
    for i, (depth, stride) in enumerate(zip((3, 3, depth3, 3), (1, 2, 2, 2), strict=True)):
        width = 64 * 2 ** i
        out_chs = round(width * bottle_out_ratio)
        stages.append(ByoBlockCfg(type=partial(HaloBottleneck), d=depth, c=out_chs, s=stride, gs=0,
                                  br=width / out_chs, block_kwargs=dict(value_ratio=value_ratio)))
    return ByoModelCfg(
        blocks=tuple(stages), stem_chs=64, stem_type="7x7", stem_pool="maxpool", num_features=num_features,
        self_attn_layer=HaloAttention,
        self_attn_kwargs=dict(block_size=block_size, halo_size=halo_size, num_heads=num_heads,
                              strided_pos=strided_pos),
    )


def _timm_halo(**kwargs: Any) -> dict[str, Any]:
    """Self-attention kwargs of a timm hybrid: its halo settings, with timm's strided position indexing."""
    return dict(strided_pos="timm", **kwargs)


# The four timm hybrids with published ImageNet weights, as configured in timm's byoanet.py (same blocks, widths
# and halo settings, so the same parameter names and counts).
TIMM_CONFIGS: dict[str, ByoModelCfg] = {
    "halonet26t": ByoModelCfg(
        blocks=(
            ByoBlockCfg(type="bottle", d=2, c=256, s=1, gs=0, br=0.25),
            ByoBlockCfg(type="bottle", d=2, c=512, s=2, gs=0, br=0.25),
            interleave_blocks(types=("bottle", "self_attn"), d=2, c=1024, s=2, gs=0, br=0.25),
            ByoBlockCfg(type="self_attn", d=2, c=2048, s=2, gs=0, br=0.25),
        ),
        stem_chs=64, stem_type="tiered", stem_pool="maxpool",
        self_attn_layer=HaloAttention, self_attn_kwargs=_timm_halo(block_size=8, halo_size=2),
    ),
    "sehalonet33ts": ByoModelCfg(
        blocks=(
            ByoBlockCfg(type="bottle", d=2, c=256, s=1, gs=0, br=0.25),
            interleave_blocks(types=("bottle", "self_attn"), every=[2], d=3, c=512, s=2, gs=0, br=0.25),
            interleave_blocks(types=("bottle", "self_attn"), every=[2], d=3, c=1024, s=2, gs=0, br=0.25),
            ByoBlockCfg("self_attn", d=2, c=1536, s=2, gs=0, br=0.333),
        ),
        stem_chs=64, stem_type="tiered", stem_pool="", act_layer="silu", num_features=1280, attn_layer="se",
        self_attn_layer=HaloAttention, self_attn_kwargs=_timm_halo(block_size=8, halo_size=3),
    ),
    "halonet50ts": ByoModelCfg(
        blocks=(
            ByoBlockCfg(type="bottle", d=3, c=256, s=1, gs=0, br=0.25),
            interleave_blocks(
                types=("bottle", "self_attn"), every=4, d=4, c=512, s=2, gs=0, br=0.25,
                self_attn_layer=HaloAttention, self_attn_kwargs=_timm_halo(block_size=8, halo_size=3, num_heads=4)),
            interleave_blocks(types=("bottle", "self_attn"), d=6, c=1024, s=2, gs=0, br=0.25),
            interleave_blocks(types=("bottle", "self_attn"), d=3, c=2048, s=2, gs=0, br=0.25),
        ),
        stem_chs=64, stem_type="tiered", stem_pool="maxpool", act_layer="silu",
        self_attn_layer=HaloAttention, self_attn_kwargs=_timm_halo(block_size=8, halo_size=3),
    ),
    "eca_halonext26ts": ByoModelCfg(
        blocks=(
            ByoBlockCfg(type="bottle", d=2, c=256, s=1, gs=16, br=0.25),
            ByoBlockCfg(type="bottle", d=2, c=512, s=2, gs=16, br=0.25),
            interleave_blocks(types=("bottle", "self_attn"), d=2, c=1024, s=2, gs=16, br=0.25),
            ByoBlockCfg(type="self_attn", d=2, c=2048, s=2, gs=16, br=0.25),
        ),
        stem_chs=64, stem_type="tiered", stem_pool="maxpool", act_layer="silu", attn_layer="eca",
        self_attn_layer=HaloAttention, self_attn_kwargs=_timm_halo(block_size=8, halo_size=2, dim_head=16),
    ),
}


# ---------------------------------------------------------------------------------------------------------------
# Cards and factories

_PAPER = Paper(
    title="Scaling Local Self-Attention for Parameter Efficient Visual Backbones", arxiv="2103.12731",
    venue="CVPR 2021", code_url=None,
)
def _recipes(multiple: int) -> dict[str, str | tuple[str, ...]]:
    """The digits quick start upscaled to the smallest input the halo layers take, and the ImageNet recipe."""
    return {"quickstart": ("digits.yaml", f"digits_{multiple}px.yaml"), "paper": "halonet_imagenet.yaml"}


_PAPER_NOTES = (
    "The paper's H{n} configuration (b={b}, h={h}, r_v={rv}, r_b={rb}, l3={l3}, d_f={df}); no official code or "
    "weights. Built from timm's ByobNet; rel-position tables indexed by the true displacement in strided layers "
    "(strided_pos='timm' gives timm's indexing). Inputs: multiples of {multiple} px, so the digits quick start is "
    "upscaled to {multiple} px (slow on a CPU)."
)
_TIMM_NOTES = (
    "timm's {name} ({tag}); weights load unchanged from timm's safetensors or .pth files. Halo layers need height "
    "and width that are multiples of 256 px, so the digits quick start is upscaled to 256 px (slow on a CPU)."
)


# evaluation crop of each timm weight set (its pretrained_cfg; all 256 px, bicubic, ImageNet mean/std)
TIMM_CROP_PCT = {"halonet26t": 0.95, "sehalonet33ts": 0.94, "halonet50ts": 0.94, "eca_halonext26ts": 0.94}


def _timm_weights(name: str, tag: str, top1: float) -> WeightSet:
    return WeightSet(
        name="timm", description=f"timm's {name}.{tag} ImageNet-1k weights (256 px, bicubic, ImageNet mean/std)",
        num_classes=1000, url=f"https://huggingface.co/timm/{name}.{tag}/resolve/main/model.safetensors",
        file_name="model.safetensors", license="Apache-2.0", metrics={"imagenet_top1": top1},
        preprocessing=Preprocessing(input_size=256, interpolation="bicubic", crop_pct=TIMM_CROP_PCT[name]),
    )


def _paper_card(name: str, num_params: int, macs: int) -> ModelCard:
    b, h, rv, rb, l3, df = PAPER_CONFIGS[name]
    size = PAPER_IMAGE_SIZES[name]
    return ModelCard(
        task="image_classification", paper=_PAPER, license="Apache-2.0", num_params=num_params, macs=macs,
        input_shape=(3, size, size), recipes=_recipes(32 * b), target_layer="final_conv" if df else "stages.3",
        notes=_PAPER_NOTES.format(n=name[1:], b=b, h=h, rv=rv, rb=rb, l3=l3, df=df or "none", multiple=32 * b),
    )


def _timm_card(name: str, tag: str, num_params: int, macs: int, top1: float, final_conv: bool = False) -> ModelCard:
    return ModelCard(
        task="image_classification", paper=_PAPER, license="Apache-2.0", num_params=num_params, macs=macs,
        input_shape=(3, 256, 256), recipes=_recipes(256), weights=(_timm_weights(name, tag, top1),),
        target_layer="final_conv" if final_conv else "stages.3", notes=_TIMM_NOTES.format(name=name, tag=tag),
    )


def _paper_halonet(name: str, num_classes: int, strided_pos: StridedPosIndexing, **kwargs: Any) -> HaloNet:
    b, h, rv, rb, l3, df = PAPER_CONFIGS[name]
    cfg = halonet_paper_cfg(b, h, rv, rb, l3, df, strided_pos=strided_pos)
    return HaloNet(cfg, num_classes=num_classes, name=f"halonet_{name}", **kwargs)


def _timm_halonet(name: str, num_classes: int, **kwargs: Any) -> HaloNet:
    return HaloNet(TIMM_CONFIGS[name], num_classes=num_classes, name=name, **kwargs)


# zoo id -> the timm model with the same layout and parameters (for comparisons and weight conversion).
TIMM_EQUIVALENTS = {
    "vision/halonet26t": "halonet26t",
    "vision/sehalonet33ts": "sehalonet33ts",
    "vision/halonet50ts": "halonet50ts",
    "vision/eca_halonext26ts": "eca_halonext26ts",
    "vision/halonet_h1": "halonet_h1",  # with TIMM_EQUIVALENT_KWARGS
}
# What a zoo model needs to equal its timm equivalent number for number.
TIMM_EQUIVALENT_KWARGS: dict[str, dict[str, Any]] = {"vision/halonet_h1": {"strided_pos": "timm"}}


# The paper's family. ``strided_pos="timm"`` reproduces timm's position indexing in the three strided layers.

@register_model("vision/halonet_h0", card=_paper_card("h0", 5_500_952, 2_352_932_864))
def halonet_h0(num_classes: int = 1000, strided_pos: StridedPosIndexing = "geometric", **kwargs: Any) -> HaloNet:
    return _paper_halonet("h0", num_classes, strided_pos, **kwargs)


@register_model("vision/halonet_h1", card=_paper_card("h1", 8_100_056, 2_988_232_704))
def halonet_h1(num_classes: int = 1000, strided_pos: StridedPosIndexing = "geometric", **kwargs: Any) -> HaloNet:
    return _paper_halonet("h1", num_classes, strided_pos, **kwargs)


@register_model("vision/halonet_h2", card=_paper_card("h2", 9_404_312, 3_312_763_904))
def halonet_h2(num_classes: int = 1000, strided_pos: StridedPosIndexing = "geometric", **kwargs: Any) -> HaloNet:
    return _paper_halonet("h2", num_classes, strided_pos, **kwargs)


@register_model("vision/halonet_h3", card=_paper_card("h3", 11_841_304, 6_179_532_800))
def halonet_h3(num_classes: int = 1000, strided_pos: StridedPosIndexing = "geometric", **kwargs: Any) -> HaloNet:
    return _paper_halonet("h3", num_classes, strided_pos, **kwargs)


@register_model("vision/halonet_h4", card=_paper_card("h4", 19_101_976, 11_998_447_616))
def halonet_h4(num_classes: int = 1000, strided_pos: StridedPosIndexing = "geometric", **kwargs: Any) -> HaloNet:
    return _paper_halonet("h4", num_classes, strided_pos, **kwargs)


@register_model("vision/halonet_h5", card=_paper_card("h5", 30_717_272, 32_246_239_232))
def halonet_h5(num_classes: int = 1000, strided_pos: StridedPosIndexing = "geometric", **kwargs: Any) -> HaloNet:
    return _paper_halonet("h5", num_classes, strided_pos, **kwargs)


@register_model("vision/halonet_h6", card=_paper_card("h6", 43_456_792, 52_787_113_984))
def halonet_h6(num_classes: int = 1000, strided_pos: StridedPosIndexing = "geometric", **kwargs: Any) -> HaloNet:
    return _paper_halonet("h6", num_classes, strided_pos, **kwargs)


@register_model("vision/halonet_h7", card=_paper_card("h7", 67_433_240, 121_540_608_000))
def halonet_h7(num_classes: int = 1000, strided_pos: StridedPosIndexing = "geometric", **kwargs: Any) -> HaloNet:
    return _paper_halonet("h7", num_classes, strided_pos, **kwargs)


# timm's hybrids with published ImageNet-1k weights (top-1 at 256 px from timm's results table).

@register_model("vision/halonet26t",
                card=_timm_card("halonet26t", "a1h_in1k", 12_480_288, 3_172_810_752, 79.134))
def halonet26t(num_classes: int = 1000, **kwargs: Any) -> HaloNet:
    """ResNet26-t (tiered stem, ReLU) with halo attention (b8/h2) in the last block of stage 3 and all of stage 4."""
    return _timm_halonet("halonet26t", num_classes, **kwargs)


@register_model("vision/sehalonet33ts",
                card=_timm_card("sehalonet33ts", "ra2_in1k", 13_691_712, 3_530_416_128, 80.976, final_conv=True))
def sehalonet33ts(num_classes: int = 1000, **kwargs: Any) -> HaloNet:
    """ResNet33-ts (SiLU, SE in the conv blocks, final 1x1 conv to 1280) with halo attention (b8/h3) in stages 2-4."""
    return _timm_halonet("sehalonet33ts", num_classes, **kwargs)


@register_model("vision/halonet50ts",
                card=_timm_card("halonet50ts", "a1h_in1k", 22_733_280, 5_269_504_000, 81.640))
def halonet50ts(num_classes: int = 1000, **kwargs: Any) -> HaloNet:
    """ResNet50-ts (SiLU) with halo attention (b8/h3) interleaved in stages 2-4."""
    return _timm_halonet("halonet50ts", num_classes, **kwargs)


@register_model("vision/eca_halonext26ts",
                card=_timm_card("eca_halonext26ts", "c1_in1k", 10_756_885, 2_420_099_968, 79.518))
def eca_halonext26ts(num_classes: int = 1000, **kwargs: Any) -> HaloNet:
    """ResNeXt26-ts (group size 16, SiLU, ECA in the conv blocks) with halo attention (b8/h2, d_qk 16) in stages 3-4."""
    return _timm_halonet("eca_halonext26ts", num_classes, **kwargs)

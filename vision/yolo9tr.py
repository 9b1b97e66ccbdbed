"""YOLO9tr: YOLOv9-s with partial self-attention for pavement-damage detection.

Youwai, Chaiyaphat, Chaipetch, "YOLO9tr: a lightweight model for pavement damage detection utilizing a generalized
efficient layer aggregation network and attention mechanism", J. Real-Time Image Processing 21(5), 2024,
arXiv 2406.11254. Official code: Sompote/YOLO9tr (GPL-3.0, derived from YOLOv9, GPL-3.0). This is a clean-room
implementation: the layer lists, widths and constants come from the released configuration (``yolov9tr.yaml``),
no line of the official code is copied.

Graph (strides 8/16/32 = P3/P4/P5):

- GELAN-s trunk: Conv 3x3/2 (32) -> Conv 3x3/2 (64) -> ELAN1 (64) -> AConv (128) -> RepNCSPELAN4 (128, P3) ->
  AConv (192) -> RepNCSPELAN4 (192, P4) -> AConv (256) -> RepNCSPELAN4 (256, P5).
- Main neck: SPPELAN (256) -> up + P4 -> RepNCSPELAN4 (192) -> up + P3 -> RepNCSPELAN4 (128) [out P3] ->
  AConv (96) + cat -> RepNCSPELAN4 (192) [out P4] -> AConv (128) + cat SPPELAN -> RepNCSPELAN4 (256) [out P5].
- PGI auxiliary branch (training only): SPPELAN on the trunk's P5 -> up + P4 -> RepNCSPELAN4 (192) -> up + P3 ->
  RepNCSPELAN4 (128); the three PSA blocks (128, 192, 256) sit on these outputs, as released.
- DualDDetect: two anchor-free DFL heads (reg_max 16), the auxiliary one on the PSA outputs, the main one on the
  main neck. Predictions (and the deployed model) use the main head only.

``forward`` gives the raw head maps; :meth:`YOLO9tr.predict` decodes and runs NMS; :meth:`YOLO9tr.reparameterize`
drops the auxiliary branch and fuses every RepConvN into one 3x3 convolution (the deploy graph, GELAN-s).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from zoo.vision._common import check_image_batch
from zoo.vision.yolov9_official import checkpoint_filter, kwargs_from_checkpoint

from zoo.blocks.detection import DFL, decode_levels, non_max_suppression
from zoo.blocks.gelan import ELAN1, SPPELAN, AConv, ConvBNAct, RepConvN, RepNCSPELAN4
from zoo.blocks.partial_attention import PartialSelfAttention
from zoo.errors import InputShapeError
from zoo.registry import Boxes, ModelCard, Paper, Preprocessing, WeightSet, register_model

__all__ = ["DetectHead", "YOLO9tr"]

PsaPlacement = Literal["aux", "main", "none"]


class DetectHead(nn.Module):
    """Anchor-free decoupled head (YOLOv9's DDetect) over three levels.

    Per level: box branch ConvBNAct 3x3 -> ConvBNAct 3x3 (groups 4) -> Conv 1x1 (groups 4) to 4 * reg_max;
    class branch ConvBNAct 3x3 -> ConvBNAct 3x3 -> Conv 1x1 to num_classes. Widths: box
    max(ch[0] // 4, 4 * reg_max, 16) rounded up to a multiple of 4, class max(ch[0], min(2 * num_classes, 128)).

    Shapes: [(B, ch_i, H_i, W_i)] -> [(B, 4 * reg_max + num_classes, H_i, W_i)].
    """

    def __init__(self, channels: tuple[int, ...], num_classes: int, strides: tuple[int, ...] = (8, 16, 32),
                 reg_max: int = 16):
        super().__init__()
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, tuple(strides)
        box_width = math.ceil(max(channels[0] // 4, 4 * reg_max, 16) / 4) * 4
        cls_width = max(channels[0], min(2 * num_classes, 128))
        self.cv2 = nn.ModuleList(nn.Sequential(
            ConvBNAct(c, box_width, 3), ConvBNAct(box_width, box_width, 3, groups=4),
            nn.Conv2d(box_width, 4 * reg_max, 1, groups=4)) for c in channels)
        self.cv3 = nn.ModuleList(nn.Sequential(
            ConvBNAct(c, cls_width, 3), ConvBNAct(cls_width, cls_width, 3),
            nn.Conv2d(cls_width, num_classes, 1)) for c in channels)
        self.dfl = DFL(reg_max)
        self.reset_bias()

    @torch.no_grad()
    def reset_bias(self, image_size: int = 640) -> None:
        """Prior biases: box bins 1.0; class logits log(5 / nc / (image_size / stride)^2) (~5 objects per image)."""
        for box, cls, stride in zip(self.cv2, self.cv3, self.strides, strict=True):
            box[-1].bias.fill_(1.0)
            cls[-1].bias.fill_(math.log(5 / self.num_classes / (image_size / stride) ** 2))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat((box(x), cls(x)), 1) for x, box, cls in zip(features, self.cv2, self.cv3, strict=True)]


def _scale(channels: int, width: float) -> int:
    return channels if width == 1.0 else max(8, int(math.ceil(channels * width / 8) * 8))


class YOLO9tr(nn.Module):
    """YOLO9tr / YOLOv9-s training graph (GELAN-s + PGI auxiliary branch + dual head), optionally with PSA.

    Args:
        num_classes: detection classes (80 for the COCO-shaped default).
        psa: where the three PSA blocks sit: "aux" (on the auxiliary branch, as released: the deployed model has
            no attention), "main" (on the main neck outputs, as the paper's text describes), "none" (YOLOv9-s).
        aux: build the PGI auxiliary branch and head (the training graph); False builds the deploy graph.
        width: channel multiplier for small test configurations (1.0 = the paper's).
        depth: RepNBottlenecks per RepNCSP (3 = the paper's).
        in_chans: input channels.
        bn_momentum: momentum of every BatchNorm's running statistics (YOLOv9: 0.03, made for runs of tens of
            thousands of steps; a run of a few hundred steps needs ~0.1, or the statistics that evaluation uses
            lag far behind the weights).

    Shapes: forward (B, in_chans, H, W) with H, W multiples of 32 -> a list of heads (auxiliary first when built,
    main last), each [(B, 4 * reg_max + num_classes, H / s, W / s) for s in (8, 16, 32)].
    """

    strides = (8, 16, 32)
    reg_max = 16

    def __init__(self, num_classes: int = 80, psa: PsaPlacement = "aux", aux: bool = True, width: float = 1.0,
                 depth: int = 3, in_chans: int = 3, bn_momentum: float = 0.03):
        super().__init__()
        if psa not in ("aux", "main", "none"):
            raise ValueError(f"psa must be 'aux', 'main' or 'none', got {psa!r}")
        if psa == "aux" and not aux:
            raise ValueError("psa='aux' needs the auxiliary branch (aux=True); use psa='none' for the deploy graph")
        self.num_classes, self.psa_placement, self.in_chans, self.has_aux = num_classes, psa, in_chans, aux
        c = {k: _scale(k, width) for k in (32, 64, 96, 128, 192, 256)}
        c1, c2, c3, c4, c5 = c[32], c[64], c[128], c[192], c[256]
        # GELAN-s trunk
        self.stem = nn.Sequential(ConvBNAct(in_chans, c1, 3, 2), ConvBNAct(c1, c2, 3, 2), ELAN1(c2, c2, c2, c1))
        self.down3, self.stage3 = AConv(c2, c3), RepNCSPELAN4(c3, c3, c3, c2, depth)
        self.down4, self.stage4 = AConv(c3, c4), RepNCSPELAN4(c4, c4, c4, c[96], depth)
        self.down5, self.stage5 = AConv(c4, c5), RepNCSPELAN4(c5, c5, c5, c3, depth)
        # main neck (FPN + PAN)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.spp = SPPELAN(c5, c5, c3)
        self.top4 = RepNCSPELAN4(c5 + c4, c4, c4, c[96], depth)
        self.out3 = RepNCSPELAN4(c4 + c3, c3, c3, c2, depth)
        self.pan_down4, self.out4 = AConv(c3, c[96]), RepNCSPELAN4(c[96] + c4, c4, c4, c[96], depth)
        self.pan_down5, self.out5 = AConv(c4, c3), RepNCSPELAN4(c3 + c5, c5, c5, c3, depth)
        widths = (c3, c4, c5)
        if aux:  # PGI auxiliary reversible branch, re-reading the trunk
            self.aux_spp = SPPELAN(c5, c5, c3)
            self.aux4 = RepNCSPELAN4(c5 + c4, c4, c4, c[96], depth)
            self.aux3 = RepNCSPELAN4(c4 + c3, c3, c3, c2, depth)
            self.aux_head = DetectHead(widths, num_classes, self.strides, self.reg_max)
        if psa != "none":
            self.psa = nn.ModuleList(PartialSelfAttention(w) for w in widths)  # P3, P4, P5
        self.head = DetectHead(widths, num_classes, self.strides, self.reg_max)
        if not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must lie in (0, 1], got {bn_momentum}")
        self.bn_momentum = bn_momentum
        self.set_bn_momentum(bn_momentum)

    def set_bn_momentum(self, momentum: float) -> None:
        """Set the running-statistics momentum of every BatchNorm (also of heads made later by reset_classifier)."""
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = momentum

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`~zoo.errors.InputShapeError` unless ``x`` is a float (B, in_chans, H, W) batch with H and W
        positive multiples of 32 (the ``ChecksInput`` protocol; runs before any arithmetic)."""
        check_image_batch(x, self.in_chans)
        height, width = x.shape[-2:]
        if height % 32 or width % 32 or height == 0 or width == 0:
            raise InputShapeError(f"expected an image batch of shape (B, {self.in_chans}, H, W) with H and W "
                                  f"positive multiples of 32 (three stride-2 levels past P3; e.g. "
                                  f"(B, {self.in_chans}, 640, 640)), got {tuple(x.shape)}; letterbox the images "
                                  "to a multiple of 32 (zoo.data.detection does)")

    def forward_features(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """(B, C, H, W) -> {"main": [P3, P4, P5] neck outputs, "aux": [P3, P4, P5] (training graph only)}."""
        self.check_input(x)
        p3 = self.stage3(self.down3(self.stem(x)))
        p4 = self.stage4(self.down4(p3))
        p5 = self.stage5(self.down5(p4))
        s5 = self.spp(p5)
        t4 = self.top4(torch.cat((self.up(s5), p4), 1))
        o3 = self.out3(torch.cat((self.up(t4), p3), 1))
        o4 = self.out4(torch.cat((self.pan_down4(o3), t4), 1))
        o5 = self.out5(torch.cat((self.pan_down5(o4), s5), 1))
        features = {"main": [o3, o4, o5]}
        if self.psa_placement == "main":
            features["main"] = [m(f) for m, f in zip(self.psa, features["main"], strict=True)]
        if self.has_aux:
            a5 = self.aux_spp(p5)
            a4 = self.aux4(torch.cat((self.up(a5), p4), 1))
            a3 = self.aux3(torch.cat((self.up(a4), p3), 1))
            features["aux"] = [a3, a4, a5]
            if self.psa_placement == "aux":
                features["aux"] = [m(f) for m, f in zip(self.psa, features["aux"], strict=True)]
        return features

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """(B, C, H, W) -> [aux head maps (training graph only), main head maps]; see the class docstring."""
        features = self.forward_features(x)
        heads = [self.aux_head(features["aux"])] if self.has_aux else []
        return [*heads, self.head(features["main"])]

    def decode(self, heads: list[list[torch.Tensor]]) -> torch.Tensor:
        """Raw head maps -> (B, A, 4 + num_classes) boxes (x1, y1, x2, y2 in input pixels) and class scores, from
        the main head."""
        return decode_levels(heads[-1], list(self.strides), self.reg_max)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, conf_threshold: float = 0.001, iou_threshold: float = 0.7,
                max_det: int = 300) -> list[dict[str, torch.Tensor]]:
        """(B, C, H, W) -> per image {"boxes" (n, 4) x1y1x2y2 pixels, "scores" (n,), "labels" (n,)} after NMS."""
        return non_max_suppression(self.decode(self(x)), conf_threshold, iou_threshold, max_det)

    def reparameterize(self) -> YOLO9tr:
        """Deploy graph in place: drop the auxiliary branch and head (and PSA when it sits there), fuse RepConvN."""
        if self.has_aux:
            del self.aux_spp, self.aux4, self.aux3, self.aux_head
            if self.psa_placement == "aux":
                del self.psa
                self.psa_placement = "none"
            self.has_aux = False
        for module in self.modules():
            if isinstance(module, RepConvN):
                module.fuse()
        return self

    def reset_classifier(self, num_classes: int) -> None:
        """New class branches (same device and dtype) for ``num_classes``; box branches and the trunk are kept."""
        for name in ("aux_head", "head") if self.has_aux else ("head",):
            old: DetectHead = getattr(self, name)
            p = next(old.parameters())
            widths = tuple(seq[0].conv.in_channels for seq in old.cv3)
            new = DetectHead(widths, num_classes, old.strides, old.reg_max).to(device=p.device, dtype=p.dtype)
            new.cv2 = old.cv2
            setattr(self, name, new)
        self.num_classes = num_classes
        self.set_bn_momentum(self.bn_momentum)

    def get_classifier(self) -> nn.Module:
        """The class branches of every head (the auxiliary one first, the main one last): what a new number of
        classes re-initialises; the box branches and DFL stay."""
        heads = (self.aux_head, self.head) if self.has_aux else (self.head,)
        return nn.ModuleList(h.cv3 for h in heads)


_PAPER = Paper("YOLO9tr: a lightweight model for pavement damage detection utilizing a generalized efficient layer "
               "aggregation network and attention mechanism", arxiv="2406.11254",
               venue="J. Real-Time Image Processing 21(5), 2024", code_url="https://github.com/Sompote/YOLO9tr")
_LICENSE = "GPL-3.0 (official code, read for facts only; this is a clean-room implementation)"
_RECIPES = {"quickstart": "yolo9tr_quickstart.yaml", "small_real": "yolo9tr_small_real.yaml",
            "finetune": "yolo9tr_finetune.yaml", "paper": "yolo9tr_rdd2022.yaml"}
_COMMON_NOTES = (
    "Input (3, H, W) RGB in [0, 1], H and W multiples of 32; forward gives raw DFL head maps, predict() decodes "
    "and runs class-aware NMS (torchvision batched_nms; conf 0.001, IoU 0.7, 300 detections for evaluation). "
    "Loss (zoo.tasks.detection): task-aligned assigner (top-k 10, alpha 0.5, beta 6), CIoU + DFL + BCE with gains "
    "7.5 / 1.5 / 0.5, auxiliary head weighted 0.25. "
    "Weights: the official YOLOv9 releases (whole pickled models, read without running them; their key map is "
    "zoo.vision.yolov9_official) load by weight-set name or path; no sha256 is published for them and none could "
    "be computed here (no download), so the download is NOT hash-checked: check the file yourself. "
    "A different num_classes keeps the trunk, neck and box branches and re-initialises the class branches. "
    "Recipes: quickstart (synthetic shapes: says nothing about your objects), small_real (a few dozen real images "
    "from scratch on a CPU: 0.09-0.20 mAP@0.5 on unseen tree-crown photos in 4 minutes), finetune (YOLOv9-s "
    "COCO weights, a GPU). "
    "YOLO9tr's own release (yolov9tr.pt) sits on Google Drive and is not listed; its layout (PSA at 29-31) loads "
    "by path. ")
_RELEASES = "https://github.com/WongKinYiu/yolov9/releases/download/v0.1/"
_RELEASE_PAGE = "https://github.com/WongKinYiu/yolov9/releases/tag/v0.1"
_WEIGHTS_LICENSE = "GPL-3.0 (released with the YOLOv9 code)"
_COCO_INPUT = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=640, crop_pct=1.0)
_HASH_UNKNOWN = " No published sha256: the download is not hash-checked."
_YOLOV9_S = WeightSet(
    name="official_yolov9_s_coco", num_classes=80, url=_RELEASES + "yolov9-s.pt", download_page=_RELEASE_PAGE,
    file_name="yolov9-s.pt", license=_WEIGHTS_LICENSE, metrics={"coco_val2017_map": 46.8, "coco_val2017_map50": 63.4},
    preprocessing=_COCO_INPUT,
    description="YOLOv9-s trained on COCO (train_dual.py, 80 classes), the start the YOLO9tr paper fine-tuned from: "
                "trunk, neck, PGI branch and both heads load; YOLO9tr's three PSA blocks start fresh (a warning "
                "lists them). COCO numbers: the README's, of its converted deploy graph." + _HASH_UNKNOWN)
_GELAN_S = WeightSet(
    name="official_gelan_s_coco", num_classes=80, url=_RELEASES + "gelan-s.pt", download_page=_RELEASE_PAGE,
    file_name="gelan-s.pt", license=_WEIGHTS_LICENSE, preprocessing=_COCO_INPUT,
    description="GELAN-s trained on COCO without PGI (train.py, 80 classes): trunk, neck and the main head load; "
                "into a training graph the PGI branch starts as a copy of its main-path twins and PSA fresh (a warning "
                "says so)."
                + _HASH_UNKNOWN)
_YOLOV9_S_CONVERTED = WeightSet(
    name="official_yolov9_s_converted_coco", num_classes=80, url=_RELEASES + "yolov9-s-converted.pt",
    download_page=_RELEASE_PAGE, file_name="yolov9-s-converted.pt", license=_WEIGHTS_LICENSE,
    metrics={"coco_val2017_map": 46.8, "coco_val2017_map50": 63.4}, preprocessing=_COCO_INPUT,
    description="YOLOv9-s on COCO with the PGI branch removed (the README's deploy model, GELAN-s layout)."
                + _HASH_UNKNOWN)
_HOOKS = {"checkpoint_filter": checkpoint_filter, "kwargs_from_checkpoint": kwargs_from_checkpoint}


@register_model("vision/yolo9tr", card=ModelCard(
    task="detection", paper=_PAPER, license=_LICENSE, num_params=10_258_880, macs=24_799_027_200,
    input_shape=(3, 640, 640), output=Boxes(80), recipes=_RECIPES, weights=(_YOLOV9_S, _GELAN_S),
    notes=_COMMON_NOTES + "As released: the three PSA blocks (128, 192, 256 channels; 1, 1, 2 heads) sit on the PGI "
          "auxiliary branch, which reparameterize() drops, so the deployed model (GELAN-s, 7,226,208 parameters at "
          "80 classes) has no attention; the paper's text describes attention in the detector, offered as "
          "vision/yolo9tr_psa_main. Training graph: 10,258,880 parameters at 80 classes (454,368 in PSA, "
          "1,501,872 in the auxiliary head)."), **_HOOKS)
def yolo9tr(num_classes: int = 80, **kwargs) -> YOLO9tr:
    return YOLO9tr(num_classes=num_classes, psa="aux", **kwargs)


@register_model("vision/yolo9tr_psa_main", card=ModelCard(
    task="detection", paper=_PAPER, license=_LICENSE, num_params=10_258_880, macs=24_799_027_200,
    input_shape=(3, 640, 640), output=Boxes(80), recipes=_RECIPES, weights=(_YOLOV9_S, _GELAN_S),
    notes=_COMMON_NOTES + "Variant: the same three PSA blocks on the main neck outputs (P3/P4/P5) that feed the "
          "deployed head, as the paper's text describes; the auxiliary branch has none. Not what produced the "
          "paper's numbers (see vision/yolo9tr). Deploy graph keeps the attention (7,680,576 parameters)."), **_HOOKS)
def yolo9tr_psa_main(num_classes: int = 80, **kwargs) -> YOLO9tr:
    return YOLO9tr(num_classes=num_classes, psa="main", **kwargs)


@register_model("vision/gelan_s", card=ModelCard(
    task="detection", paper=_PAPER, license=_LICENSE, num_params=7_226_208, macs=13_353_779_200,
    input_shape=(3, 640, 640), output=Boxes(80), recipes={k: v for k, v in _RECIPES.items() if k != "finetune"},
    weights=(_YOLOV9_S_CONVERTED, _GELAN_S),
    notes=_COMMON_NOTES + "The deploy graph of vision/yolo9tr (and of YOLOv9-s): GELAN-s with the main DDetect "
          "head only, no auxiliary branch, no PSA; trains without PGI. yolo9tr.reparameterize() gives this graph "
          "with the RepConvN branches fused. Loading yolov9-s.pt here keeps its main head and leaves out the PGI "
          "branch, as the official re-parameterisation does."), **_HOOKS)
def gelan_s(num_classes: int = 80, **kwargs) -> YOLO9tr:
    return YOLO9tr(num_classes=num_classes, psa="none", aux=False, **kwargs)

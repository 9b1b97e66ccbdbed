"""MEDUSA-style chest X-ray classifier (Aboutalebi et al., "MEDUSA: Multi-scale Encoder-Decoder Self-Attention
Deep Neural Network Architecture for Medical Image Analysis", Frontiers in Medicine 2022, arXiv 2110.06063).

MEDUSA replaces many isolated attention modules with one high-capacity encoder-decoder self-attention network
(the "body") whose multi-scale heads feed attention maps into several stages of a backbone. As in the released
COVIDNet-CXR-3 graph, the model takes two inputs: the body runs on a 256x256 grayscale copy of the image
(per-image standardised), the backbone on the 480x480 image (scaled to [0, 1]).

This is a MEDUSA-style network, not a port: the released backbone is a GenSynth-generated COVID-Net network
whose construction code is not published (only a TF1 meta-graph under AGPL), and the paper does not give the
body's exact depth, widths or fusion operation. The choices made here (all on the card): a ResNet-50 backbone
(timm layout); a U-Net-like body (conv encoder 32-64-128-256 down to 16x16, 4 transformer self-attention layers
of width 256 with 8 heads and learned position embeddings at the bottleneck, conv decoder with skips back to
128x128); one 1-channel head per backbone stage (decoder scales 128, 64, 32 and the 16x16 bottleneck for ResNet
stages 1-4), resized bilinearly to the stage's map, sigmoid-gated and applied as F * (1 + A) (residual gating,
so a closed gate keeps the backbone's features).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import InputShapeError
from zoo.registry import Classes, ModelCard, Paper, register_model

BODY_SIZE = 256
IMAGE_SIZE = 480


def attention_input(images: Tensor, size: int = BODY_SIZE) -> Tensor:
    """The body's input made from the backbone's: grayscale, resized to ``size``, standardised per image.

    (B, 3 or 1, H, W) -> (B, 1, size, size).
    """
    gray = images.mean(dim=1, keepdim=True)
    gray = F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    std = gray.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (gray - mean) / std


def _conv(in_chans: int, out_chans: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 3, stride, 1, bias=False), nn.BatchNorm2d(out_chans),
                         nn.ReLU(inplace=True))


class DownBlock(nn.Sequential):
    """(B, C_in, H, W) -> (B, C_out, H/2, W/2): a strided conv and a conv."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__(_conv(in_chans, out_chans, 2), _conv(out_chans, out_chans))


class UpBlock(nn.Module):
    """Upsample x2, concatenate the skip, two convs: (B, C_in, h, w) + (B, C_skip, 2h, 2w) -> (B, C_out, 2h, 2w)."""

    def __init__(self, in_chans: int, skip_chans: int, out_chans: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(in_chans + skip_chans, out_chans), _conv(out_chans, out_chans))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class SelfAttentionBottleneck(nn.Module):
    """Transformer self-attention over the bottleneck's positions: (B, C, h, w) -> (B, C, h, w)."""

    def __init__(self, dim: int, tokens: int, depth: int = 4, heads: int = 8, mlp_ratio: float = 4.0,
                 dropout: float = 0.0):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        if tokens.shape[1] != self.pos_embed.shape[1]:
            side = round(self.pos_embed.shape[1] ** 0.5) * 16
            raise InputShapeError(f"the attention body expects a {side}x{side} input, got {h * 16}x{w * 16}")
        tokens = self.norm(self.layers(tokens + self.pos_embed))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class MedusaBody(nn.Module):
    """The single encoder-decoder self-attention body with one attention head per backbone stage.

    (B, 1, 256, 256) -> four maps (B, 1, 128, 128), (B, 1, 64, 64), (B, 1, 32, 32), (B, 1, 16, 16) (logits).
    """

    def __init__(self, in_chans: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256), depth: int = 4,
                 heads: int = 8, size: int = BODY_SIZE):
        super().__init__()
        self.size = size
        self.stem = _conv(in_chans, widths[0], 2)                                   # 128
        self.down = nn.ModuleList(DownBlock(widths[i], widths[i + 1]) for i in range(len(widths) - 1))  # 64..16
        bottleneck = size // 2 ** len(widths)
        self.attention = SelfAttentionBottleneck(widths[-1], bottleneck * bottleneck, depth, heads)
        self.up = nn.ModuleList(UpBlock(widths[i + 1], widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        # Heads, finest first: decoder at 128, 64, 32 and the bottleneck at 16.
        self.heads = nn.ModuleList(nn.Conv2d(w, 1, 1) for w in widths)

    def forward(self, x: Tensor) -> list[Tensor]:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = self.attention(skips.pop())
        decoded = [y]
        for block in self.up:
            y = block(y, skips.pop())
            decoded.append(y)
        decoded.reverse()  # finest first
        return [head(feature) for head, feature in zip(self.heads, decoded, strict=True)]


class Medusa(nn.Module):
    """MEDUSA-style two-input classifier.

    Args:
        num_classes: head size (2: COVID-negative / positive, as COVIDx8B/9B; 3 for normal/pneumonia/COVID-19).
        backbone: a timm ResNet name ("resnet50"); its four stages receive the body's maps.
        body_depth / body_heads: transformer layers and heads of the body's bottleneck.
        body_size: side of the body's input (256 as released; smaller for quick CPU runs).

    Inputs: ``x`` (B, 3, 480, 480) in [0, 1], ``attention_image`` (B, 1, 256, 256) per-image standardised
    grayscale (made from ``x`` by :func:`attention_input` when not given). Output: (B, num_classes) logits.
    """

    def __init__(self, num_classes: int = 2, backbone: str = "resnet50", body_depth: int = 4, body_heads: int = 8,
                 body_size: int = BODY_SIZE, drop_rate: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = 3
        self.body_size = body_size
        self.body = MedusaBody(depth=body_depth, heads=body_heads, size=body_size)
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
        self.num_features = self.backbone.num_features

    def _check(self, x: Tensor, attention_image: Tensor | None) -> None:
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise InputShapeError(f"x must be a float (B, 3, {IMAGE_SIZE}, {IMAGE_SIZE}) image batch in [0, 1], got "
                                  f"{tuple(x.shape)} {x.dtype}")
        if attention_image is not None:
            expected = (x.shape[0], 1, self.body_size, self.body_size)
            if tuple(attention_image.shape) != expected:
                raise InputShapeError(f"attention_image must be {expected} (per-image standardised grayscale), got "
                                      f"{tuple(attention_image.shape)}")

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """The image at any size, and the body's grayscale copy at ``body_size``
        (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.in_chans, None, None), "attention_image": (1, self.body_size, self.body_size)}

    def attention_maps(self, x: Tensor, attention_image: Tensor | None = None) -> list[Tensor]:
        """The body's four attention maps (sigmoid, in [0, 1]), finest first."""
        if attention_image is None:
            attention_image = attention_input(x, self.body_size)
        return [torch.sigmoid(m) for m in self.body(attention_image)]

    def forward_features(self, x: Tensor, attention_image: Tensor | None = None) -> Tensor:
        """(B, 3, H, W), (B, 1, 256, 256) -> (B, 2048, H/32, W/32) backbone features."""
        self._check(x, attention_image)
        maps = self.attention_maps(x, attention_image)
        bb = self.backbone
        y = bb.maxpool(bb.act1(bb.bn1(bb.conv1(x))))
        for stage, gate in zip((bb.layer1, bb.layer2, bb.layer3, bb.layer4), maps, strict=True):
            y = stage(y)
            gate = F.interpolate(gate, size=y.shape[-2:], mode="bilinear", align_corners=False)
            y = y * (1 + gate)
        return y

    def forward_head(self, features: Tensor) -> Tensor:
        return self.backbone.forward_head(features)

    def forward(self, x: Tensor, attention_image: Tensor | None = None) -> Tensor:
        """x (B, 3, 480, 480), attention_image (B, 1, 256, 256) or None -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x, attention_image))

    def get_classifier(self) -> nn.Module:
        return self.backbone.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        old = self.backbone.get_classifier()
        self.backbone.reset_classifier(num_classes)
        self.backbone.get_classifier().to(device=old.weight.device, dtype=old.weight.dtype)
        self.num_classes = num_classes


PAPER = Paper("MEDUSA: Multi-scale Encoder-Decoder Self-Attention Deep Neural Network Architecture for Medical "
              "Image Analysis", arxiv="2110.06063", venue="Frontiers in Medicine 2022",
              code_url="https://github.com/lindawangg/COVID-Net")
NOTES = (
    "MEDUSA-style, not the paper's exact network: COVID-Net publishes only the TF1 meta-graph and weights of "
    "COVIDNet-CXR-3 (AGPL, no construction code; the GenSynth backbone cannot be rebuilt) and the paper leaves the "
    "body's depth, widths, head count and fusion open. Kept from the release: two inputs, the body on a 256x256 "
    "per-image standardised grayscale copy, the backbone on the 480x480 image scaled to [0, 1] without cropping, "
    "2 classes (COVIDx8B/9B positive/negative). Choices where the paper is silent: ResNet-50 backbone (timm "
    "layout, random init: no ImageNet weights exist for the released backbone either); body = conv encoder "
    "32-64-128-256 to 16x16, 4 pre-norm transformer layers (width 256, 8 heads, MLP 1024, learned positions), "
    "conv decoder with skips to 128x128; one 1x1-conv head per backbone stage (decoder 128/64/32, bottleneck 16), "
    "bilinearly resized, sigmoid, applied as F * (1 + A). attention_image may be omitted: it is then made from x "
    "(channel mean, antialiased resize, per-image standardisation), which differs from resizing the original "
    "file only by the resampling. Parameters 28,676,102 (ResNet-50 23,512,130 + body 5,163,972) and 21.3 "
    "GMACs (body 2.5 G at 256) against the released 29.2 M / 29.1 G: the released backbone is a different "
    "(generated) network. Grad-CAM layer: "
    "backbone.layer4 (its map before the last attention gate). "
    "Recipe as COVID-Net's train_tf.py: Adam 2e-4, batch 8, 100 epochs, 50 % positive batches, rotation 10, "
    "shifts 10 %, horizontal flip, brightness 0.9-1.1, zoom 0.85-1.15 (zoo.data.covidx.CovidxData reads the COVIDx "
    "label files and class folders, and makes the balanced batches). Quick start data: SIMULATED chest X-rays "
    "in the COVIDx layout (procedural radiographs; positives with bilateral peripheral lower-zone ground-glass "
    "opacities, a third of the negatives with a lobar consolidation), at 128 px with a 64 px body: no labelled "
    "chest X-rays ship with the installed packages. Research use only, not for diagnosis."
)


@register_model("medical/medusa", card=ModelCard(
    task="image_classification", paper=PAPER, license="AGPL-3.0 (COVID-Net; read for facts only, nothing copied)",
    num_params=28_676_102, macs=21_264_584_704, input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
    extra_inputs={"attention_image": (1, BODY_SIZE, BODY_SIZE)}, output=Classes(2),
    recipes={"quickstart": "medusa_quickstart.yaml", "paper": "medusa_covidx.yaml"},
    target_layer="backbone.layer4", notes=NOTES,
))
def medusa(num_classes: int = 2, **kwargs: Any) -> Medusa:
    return Medusa(num_classes=num_classes, **kwargs)

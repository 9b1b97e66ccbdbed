"""ECA-MobileNetV2 (Wang et al., CVPR 2020, arXiv 1910.03151): MobileNetV2 (width 1.0) with ECA after the
projection BN of every inverted-residual block, as in the official ``eca_mobilenetv2.py`` (BangguWu/ECANet, MIT).

Kernel sizes follow the released checkpoint ``eca_mobilenetv2_k13``: 1 for blocks with fewer than 96 output
channels, 3 otherwise (the threshold is ``c < 96``; ``c <= 96`` does not load the checkpoint, ECANet PR #32).
Parameter names are the official (torchvision 0.4-era) ones: ``features.N.conv.M``, ``classifier.1``.
"""

from __future__ import annotations

import torch
from torch import nn
from zoo.vision._common import check_image_batch
from zoo.vision.eca_resnet import ECA_DOWNLOAD_PAGE, ECA_PAPER, ECA_PREPROCESSING

from zoo.blocks import ECA
from zoo.registry import ModelCard, WeightSet, register_model

__all__ = ["EcaInvertedResidual", "EcaMobileNetV2"]

# (expansion t, output channels c, repeats n, first stride s), MobileNetV2 Table 2.
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                             (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn_relu6(in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU6, as a Sequential so the parameter names are ``0.weight``, ``1.weight``..."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_planes),
        nn.ReLU6(inplace=True),
    )


class EcaInvertedResidual(nn.Module):
    """[1x1 expand ->] 3x3 depthwise -> 1x1 project -> BN -> ECA, with a residual add when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, eca_kernel: int):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_residual = stride == 1 and inp == oup
        layers = [conv_bn_relu6(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
            ECA(oup, eca_kernel),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class EcaMobileNetV2(nn.Module):
    """MobileNetV2 with ECA.

    Args:
        num_classes: classifier outputs; 0 gives pooled features.
        small_channel_kernel: ECA kernel for blocks with fewer than 96 output channels (official: 1).
        large_channel_kernel: ECA kernel for blocks with 96 or more output channels (official: 3).
        dropout: dropout before the classifier (official: 0.25).
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, small_channel_kernel: int = 1,
                 large_channel_kernel: int = 3, dropout: float = 0.25):
        super().__init__()
        self.in_chans = in_chans
        input_channel, self.num_features = 32, 1280
        features: list[nn.Module] = [conv_bn_relu6(in_chans, input_channel, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            kernel = small_channel_kernel if c < 96 else large_channel_kernel
            for i in range(n):
                features.append(EcaInvertedResidual(input_channel, c, s if i == 0 else 1, t, kernel))
                input_channel = c
        features.append(conv_bn_relu6(input_channel, self.num_features, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.dropout = dropout
        self.classifier = self._make_classifier(num_classes)
        self._init_weights()

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if not num_classes:
            return nn.Identity()
        return nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.num_features, num_classes))

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, 1280, H/32, W/32)."""
        check_image_batch(x, self.in_chans)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1280, h, w) -> (B, num_classes), or the pooled (B, 1280) with ``pre_logits``."""
        x = x.mean((2, 3))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = self._make_classifier(num_classes)


@register_model("vision/eca_mobilenet_v2", card=ModelCard(
    task="image_classification",
    paper=ECA_PAPER,
    license="MIT", num_params=3_504_903, macs=300_777_952, input_shape=(3, 224, 224),
    recipes={"quickstart": "digits.yaml", "paper": "eca_mobilenet_v2_imagenet.yaml"},
    cpu_bf16=False,  # its quick start took 70 s in bf16 against 63 s in fp32 here (bf16_quality_eca_mobilenet_v2.md)
    weights=(WeightSet(
        name="official_in1k", description="Official ImageNet-1k weights (k13), 400 epochs SGD", num_classes=1000,
        download_page=ECA_DOWNLOAD_PAGE,
        file_name="eca_mobilenetv2_k13.pth.tar", license="MIT",
        metrics={"imagenet_top1": 72.56, "imagenet_top5": 90.81}, preprocessing=ECA_PREPROCESSING),),
    target_layer="features.18",
    notes="ECA kernel 1 (one learned scalar before the sigmoid) for blocks with < 96 channels, 3 above. "
          "Parameter count is decimal: the README's '3.34M' is 3,504,903 / 2^20.",
))
def eca_mobilenet_v2(num_classes: int = 1000, **kwargs) -> EcaMobileNetV2:
    return EcaMobileNetV2(num_classes=num_classes, **kwargs)

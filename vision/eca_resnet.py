"""ECA-ResNet (Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
CVPR 2020, arXiv 1910.03151).

A torchvision-layout ResNet whose residual branches end in ECA (after the last BN, before the addition), as in the
official code (BangguWu/ECANet, MIT). Parameter names equal the official ones (torchvision ResNet names plus
``layerX.Y.eca.conv.weight``), so the official ``.pth.tar`` checkpoints load without renaming once the
``module.`` prefix of ``nn.DataParallel`` is stripped (``zoo.weights`` does that for every checkpoint).

The released checkpoints use hand-picked per-stage kernel sizes (the file tag ``k3557`` = 3, 5, 5, 7), not the
paper's psi(C); both are available (``kernel_sizes="adaptive"`` applies psi to the channels ECA sees).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from zoo.vision._common import check_image_batch

from zoo.blocks import ECA
from zoo.registry import ModelCard, Paper, Preprocessing, WeightSet, register_model

__all__ = ["EcaBasicBlock", "EcaBottleneck", "EcaResNet"]

KernelSizes = Sequence[int] | str


class EcaBasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> ECA, plus the shortcut, then ReLU (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 eca_kernel: int | str = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.eca = ECA(planes, eca_kernel)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.eca(self.bn2(self.conv2(out)))
        out += shortcut
        return self.relu(out)


class EcaBottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4 channels) -> ECA, plus the shortcut, then ReLU (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 eca_kernel: int | str = 3):
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.eca = ECA(width, eca_kernel)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.eca(self.bn3(self.conv3(out)))
        out += shortcut
        return self.relu(out)


class EcaResNet(nn.Module):
    """ResNet with ECA in every residual block.

    Args:
        block: ``EcaBasicBlock`` or ``EcaBottleneck``.
        layers: blocks per stage, e.g. (3, 4, 6, 3).
        kernel_sizes: ECA kernel size per stage (4 odd ints), or "adaptive" for psi(C) of each block's channels.
        num_classes: classifier outputs; 0 gives a model that returns pooled features.
        in_chans: input image channels.
    """

    def __init__(self, block: type[EcaBasicBlock | EcaBottleneck], layers: Sequence[int],
                 kernel_sizes: KernelSizes = (3, 3, 3, 3), num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if kernel_sizes == "adaptive":
            kernel_sizes = ("adaptive",) * 4
        if len(layers) != 4 or len(kernel_sizes) != 4:
            raise ValueError(f"need 4 stages of layers and kernel sizes, got {list(layers)} and {list(kernel_sizes)}")
        self.in_chans = in_chans
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1, kernel_sizes[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, kernel_sizes[1])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, kernel_sizes[2])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, kernel_sizes[3])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self._init_weights()

    def _make_layer(self, block, planes: int, blocks: int, stride: int, eca_kernel: int | str) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, eca_kernel)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, eca_kernel=eca_kernel) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # The official initialisation: N(0, sqrt(2 / (k*k*out))) for 2-D convs, BN to identity, fc left at default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_features, H/32, W/32)."""
        check_image_batch(x, self.in_chans)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, num_features, h, w) -> (B, num_classes), or the pooled (B, num_features) with ``pre_logits``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def kernel_sizes_from_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict:
    """Per-stage ECA kernel sizes read off a checkpoint's ``layerX.0.eca.conv.weight`` shapes.

    The official files differ per depth (k3577, k3357, k3557); reading the sizes from the tensors avoids the size
    mismatches users of the official code hit when the sizes are not passed by hand (ECANet issues #31, #49).
    """
    sizes = [state_dict.get(f"layer{i}.0.eca.conv.weight") for i in range(1, 5)]
    if any(s is None for s in sizes):
        return {}
    return {"kernel_sizes": tuple(int(s.shape[-1]) for s in sizes)}


ECA_PAPER = Paper(
    title="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    arxiv="1910.03151", venue="CVPR 2020", code_url="https://github.com/BangguWu/ECANet",
)
ECA_DOWNLOAD_PAGE = "https://github.com/BangguWu/ECANet#imagenet-classification (Google Drive / Baidu links)"
# the official main.py evaluates with torchvision's Resize(256) + CenterCrop(224), bilinear, ImageNet mean/std
ECA_PREPROCESSING = Preprocessing(input_size=224, interpolation="bilinear", crop_pct=224 / 256)
_NOTES = (
    "Parameter counts are decimal: the paper's '24.37M' for ECA-ResNet-50 is 25,557,112 / 2^20. "
    "Official weights are plain torch pickles named .pth.tar with 'module.'-prefixed keys; they load as they are. "
    "kernel_sizes='adaptive' gives the paper's psi(C) instead of the released per-stage sizes."
)
_RECIPES = {"quickstart": ("digits.yaml", "digits_large_batch.yaml"), "paper": "eca_resnet_imagenet.yaml"}


def _official(depth: int, tag: str, top1: float, top5: float) -> WeightSet:
    return WeightSet(
        name="official_in1k", description=f"Official ImageNet-1k weights ({tag}), 100 epochs SGD",
        num_classes=1000, download_page=ECA_DOWNLOAD_PAGE, file_name=f"eca_resnet{depth}_{tag}.pth.tar",
        license="MIT", metrics={"imagenet_top1": top1, "imagenet_top5": top5},
        model_kwargs={"kernel_sizes": tuple(int(c) for c in tag[1:])}, preprocessing=ECA_PREPROCESSING,
    )


def _card(num_params: int, macs: int, weights: WeightSet) -> ModelCard:
    return ModelCard(
        task="image_classification", paper=ECA_PAPER, license="MIT", num_params=num_params, macs=macs,
        input_shape=(3, 224, 224), recipes=_RECIPES, weights=(weights,), target_layer="layer4", notes=_NOTES,
    )


@register_model("vision/eca_resnet18", card=_card(11_689_556, 1_814_085_760, _official(18, "k3577", 70.92, 89.93)),
                kwargs_from_checkpoint=kernel_sizes_from_checkpoint)
def eca_resnet18(num_classes: int = 1000, kernel_sizes: KernelSizes = (3, 5, 7, 7), **kwargs) -> EcaResNet:
    return EcaResNet(EcaBasicBlock, (2, 2, 2, 2), kernel_sizes, num_classes, **kwargs)


@register_model("vision/eca_resnet34", card=_card(21_797_744, 3_663_781_952, _official(34, "k3357", 74.21, 91.83)),
                kwargs_from_checkpoint=kernel_sizes_from_checkpoint)
def eca_resnet34(num_classes: int = 1000, kernel_sizes: KernelSizes = (3, 3, 5, 7), **kwargs) -> EcaResNet:
    return EcaResNet(EcaBasicBlock, (3, 4, 6, 3), kernel_sizes, num_classes, **kwargs)


@register_model("vision/eca_resnet50", card=_card(25_557_112, 4_089_270_528, _official(50, "k3557", 77.42, 93.62)),
                kwargs_from_checkpoint=kernel_sizes_from_checkpoint)
def eca_resnet50(num_classes: int = 1000, kernel_sizes: KernelSizes = (3, 5, 5, 7), **kwargs) -> EcaResNet:
    return EcaResNet(EcaBottleneck, (3, 4, 6, 3), kernel_sizes, num_classes, **kwargs)


@register_model("vision/eca_resnet101", card=_card(44_549_317, 7_801_574_656, _official(101, "k3357", 78.65, 94.34)),
                kwargs_from_checkpoint=kernel_sizes_from_checkpoint)
def eca_resnet101(num_classes: int = 1000, kernel_sizes: KernelSizes = (3, 3, 5, 7), **kwargs) -> EcaResNet:
    return EcaResNet(EcaBottleneck, (3, 4, 23, 3), kernel_sizes, num_classes, **kwargs)


@register_model("vision/eca_resnet152",
                card=_card(60_193_042, 11_513_868_544, _official(152, "k3357", 78.92, 94.55)),
                kwargs_from_checkpoint=kernel_sizes_from_checkpoint)
def eca_resnet152(num_classes: int = 1000, kernel_sizes: KernelSizes = (3, 3, 5, 7), **kwargs) -> EcaResNet:
    return EcaResNet(EcaBottleneck, (3, 8, 36, 3), kernel_sizes, num_classes, **kwargs)

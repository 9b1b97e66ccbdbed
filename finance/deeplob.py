"""DeepLOB (Zhang, Zohren and Roberts, "DeepLOB: Deep Convolutional Neural Networks for Limit Order Books",
IEEE Transactions on Signal Processing 67(11), 2019, arXiv 1808.03668): the baseline of the limit-order-book line.

Layer for layer as the DeepLOB module of the TLOB repository (LeonardoBerti00/TLOB, MIT licence, ``models/
deeplob.py``), under its names (``conv1.0``, ``inp1.0``, ``lstm``, ``fc1``), so its checkpoints load as they are:
three convolution blocks (1x2 stride-2 convolutions pairing price and volume, then price levels, then all ten
levels with a 1x10 convolution; each followed by two 4x1 convolutions over time; 32 filters, LeakyReLU 0.01 or
tanh, BatchNorm after each activation), an inception module (1x1 -> 3x1, 1x1 -> 5x1, 3x1 max-pool -> 1x1; 64
filters each), an LSTM of 64 units and a linear layer to 3 classes.

One fix: the official forward ends in a softmax and is trained with ``CrossEntropyLoss`` on those probabilities
(a softmax applied twice); this forward returns the logits, so ``softmax(logits)`` is the official output and
the predicted classes are the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import InputShapeError
from zoo.registry import Classes, ModelCard, Paper, WeightSet, register_model
from zoo.safe_pickle import to_plain

__all__ = ["DeepLOB"]


def _conv_block(first: nn.Conv2d, activation: type[nn.Module], channels: int = 32) -> nn.Sequential:
    """first conv -> act -> BN, then two (4 x 1) convs over time, each -> act -> BN."""
    def act() -> nn.Module:
        return activation(negative_slope=0.01) if activation is nn.LeakyReLU else activation()
    return nn.Sequential(
        first, act(), nn.BatchNorm2d(channels),
        nn.Conv2d(channels, channels, kernel_size=(4, 1)), act(), nn.BatchNorm2d(channels),
        nn.Conv2d(channels, channels, kernel_size=(4, 1)), act(), nn.BatchNorm2d(channels),
    )


def _conv_bn(in_channels: int, out_channels: int, kernel_size: tuple[int, int]) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding="same"),
            nn.LeakyReLU(negative_slope=0.01), nn.BatchNorm2d(out_channels)]


class DeepLOB(nn.Module):
    """DeepLOB over windows of the 40 order-book features (10 levels of ask price, ask volume, bid price, bid
    volume).

    Args:
        seq_len: snapshots per window (100 in the paper); the LSTM reads the seq_len - 18 steps the convolutions
            leave.
        num_classes: classes per horizon (3: up, stationary, down).
        num_horizons: horizons predicted at once (1 in the paper).
    """

    num_features = 40

    def __init__(self, seq_len: int = 100, num_classes: int = 3, num_horizons: int = 1):
        super().__init__()
        if seq_len < 19:
            raise ValueError(f"DeepLOB's convolutions take 18 steps off the window; seq_len must be >= 19, got "
                             f"{seq_len}")
        self.seq_len, self.num_classes, self.num_horizons = seq_len, num_classes, num_horizons
        self.conv1 = _conv_block(nn.Conv2d(1, 32, kernel_size=(1, 2), stride=(1, 2)), nn.LeakyReLU)
        self.conv2 = _conv_block(nn.Conv2d(32, 32, kernel_size=(1, 2), stride=(1, 2)), nn.Tanh)
        self.conv3 = _conv_block(nn.Conv2d(32, 32, kernel_size=(1, 10)), nn.LeakyReLU)
        self.inp1 = nn.Sequential(*_conv_bn(32, 64, (1, 1)), *_conv_bn(64, 64, (3, 1)))
        self.inp2 = nn.Sequential(*_conv_bn(32, 64, (1, 1)), *_conv_bn(64, 64, (5, 1)))
        self.inp3 = nn.Sequential(nn.MaxPool2d((3, 1), stride=(1, 1), padding=(1, 0)), *_conv_bn(32, 64, (1, 1)))
        self.lstm = nn.LSTM(input_size=192, hidden_size=64, num_layers=1, batch_first=True)
        self.fc1 = nn.Linear(64, num_classes * num_horizons)

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One window: (seq_len, 40) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.seq_len, self.num_features)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 40) -> (B, 64), the last LSTM state."""
        if x.ndim != 3 or x.shape[1:] != (self.seq_len, self.num_features):
            raise InputShapeError(f"DeepLOB expects windows (batch, {self.seq_len} snapshots, 40 order-book "
                                  f"features), got {tuple(x.shape)}")
        x = self.conv3(self.conv2(self.conv1(x.unsqueeze(1))))  # (B, 32, T - 18, 1)
        x = torch.cat([self.inp1(x), self.inp2(x), self.inp3(x)], dim=1)  # (B, 192, T - 18, 1)
        x = x.permute(0, 2, 1, 3).flatten(2)  # (B, T - 18, 192)
        out, _ = self.lstm(x)
        return out[:, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 40) -> logits (B, num_classes), or (B, num_horizons, num_classes)."""
        logits = self.fc1(self.forward_features(x))
        return logits if self.num_horizons == 1 else logits.view(len(logits), self.num_horizons, self.num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc1

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc1 = nn.Linear(64, num_classes * self.num_horizons, device=self.fc1.weight.device,
                             dtype=self.fc1.weight.dtype)


def kwargs_from_checkpoint(state_dict: dict[str, Any], checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The window length an official ``Engine`` checkpoint records (``hyper_parameters["seq_size"]``); the
    tensors do not tell it (the LSTM reads any length)."""
    hyper_parameters = to_plain((checkpoint or {}).get("hyper_parameters"))
    if isinstance(hyper_parameters, dict) and isinstance(hyper_parameters.get("seq_size"), int):
        return {"seq_len": hyper_parameters["seq_size"]}
    return {}


_BTC_CHECKPOINTS = (
    (10, "val_loss=0.831_epoch=4.pt", "039464f32505bb5edc5ce6b7913284f663fcecdf89bb7f4303ea6c4dc8cb59d8"),
    (20, "val_loss=0.914_epoch=2.pt", "b0c57dc95f9e0277458978dfa1f6724c5a44aed39262adbbfe690c6d5c161cd5"),
    (50, "val_loss=0.996_epoch=1.pt", "87200f75d5823d48d1133cf2059c8992e2bcbdf33703d6604da1b2b0cb9340b5"),
    (100, "val_loss=1.023_epoch=1.pt", "99322ef8aa49a0bb4378878c6ede7f1d85a9eafccd6cae97cf103a0c64222bb7"),
)


@register_model("finance/deeplob", card=ModelCard(
    task="lob_trend",
    paper=Paper("DeepLOB: Deep Convolutional Neural Networks for Limit Order Books", arxiv="1808.03668",
                venue="IEEE Transactions on Signal Processing 2019", code_url="https://github.com/zcakhaa/DeepLOB-Deep-"
                "Convolutional-Neural-Networks-for-Limit-Order-Books"),
    license="MIT (the TLOB repository's re-implementation, whose layout is followed)", num_params=143_907,
    macs=29_807_808, input_shape=(100, 40), output=Classes(3),
    recipes={"quickstart": "deeplob_quickstart.yaml", "paper": "deeplob_fi2010.yaml"},
    weights=tuple(
        WeightSet(name=f"official_btc_h{h}", num_classes=3, license="MIT", file_name=name, sha256=sha,
                  description=f"TLOB repository's DeepLOB on Binance BTCUSDT (Jan 2023, 40 LOB features, TLOB "
                              f"labels), horizon {h}, seed 42",
                  url=f"https://github.com/LeonardoBerti00/TLOB/raw/main/data/checkpoints/DEEPLOB/"
                      f"BTC_seq_size_100_horizon_{h}_seed_42/pt/{name}")
        for h, name, sha in _BTC_CHECKPOINTS),
    notes="Returns logits (the official module ends in a softmax that its cross-entropy applies again). Inputs: "
          "the 40 order-book features; labels 0 up, 1 stationary, 2 down. Adam lr 0.01 eps 1 as LOBCAST and TLOB "
          "train it. The quick start trains on a SIMULATED LOBSTER-format day (Cont-Stoikov-Talreja 2010).",
), kwargs_from_checkpoint=kwargs_from_checkpoint)
def deeplob(num_classes: int = 3, **kwargs: Any) -> DeepLOB:
    return DeepLOB(num_classes=num_classes, **kwargs)

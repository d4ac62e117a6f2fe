"""digitlab's own architectures: for speed (`fastcnn`), a wide plain CNN (`widecnn`, of the
`robust` preset), a residual network (`resnet`, the most accurate on digits and clothes) and
the same network reading deskewed digits (`resnet-deskew`, an ensemble member)."""

from __future__ import annotations

import torch
from torch import nn

from digitlab.models.deskew import Deskew
from digitlab.models.registry import register_model


def conv_block(n_in: int, n_out: int, kernel: int) -> list[nn.Module]:
    """Conv -> 2x2 max-pool -> BN -> ReLU: pooling first makes BN and ReLU 4x cheaper."""
    return [
        nn.Conv2d(n_in, n_out, kernel, padding=kernel // 2, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
    ]


@register_model("fastcnn")
class FastCNN(nn.Module):
    """Three pooled conv blocks, 16-32-64 channels: 99 % in one CPU epoch (29,434 params)."""

    def __init__(
        self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64), first_kernel: int = 5
    ):
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            *conv_block(1, w1, first_kernel),  # (N, w1, 14, 14)
            *conv_block(w1, w2, 3),  # (N, w2, 7, 7)
            *conv_block(w2, w3, 3),  # (N, w3, 3, 3)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(w3 * 9, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def conv_bn_relu(n_in: int, n_out: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [
        nn.Conv2d(n_in, n_out, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
    ]


@register_model("widecnn")
class WideCNN(nn.Module):
    """Accuracy model: two 32/64-channel stacks with strided 5x5 convs, dropout 0.4 (325,994 params).

    The layout of the best-known single Keras CNN for MNIST (99.7 % with augmentation).
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.4):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(1, 32, 3),  # (N, 32, 26, 26)
            *conv_bn_relu(32, 32, 3),  # (N, 32, 24, 24)
            *conv_bn_relu(32, 32, 5, stride=2, padding=2),  # (N, 32, 12, 12)
            nn.Dropout(dropout),
            *conv_bn_relu(32, 64, 3),  # (N, 64, 10, 10)
            *conv_bn_relu(64, 64, 3),  # (N, 64, 8, 8)
            *conv_bn_relu(64, 64, 5, stride=2, padding=2),  # (N, 64, 4, 4)
            nn.Dropout(dropout),
            *conv_bn_relu(64, 128, 4),  # (N, 128, 1, 1)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers whose output is added to the input, then ReLU (He et al., 2016)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(channels, channels, 3, padding=1),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


@register_model("resnet")
class ResNet(nn.Module):
    """The deepest of digitlab's models (the `best` and `fashion` presets): a residual block at
    each of 28x28, 14x14 and 7x7 with 32, 64 and 128 channels, global average pooling
    (482,154 params)."""

    def __init__(
        self, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128), dropout: float = 0.2
    ):
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            *conv_bn_relu(1, w1, 3, padding=1),  # (N, w1, 28, 28)
            ResidualBlock(w1),
            nn.MaxPool2d(2),  # (N, w1, 14, 14)
            *conv_bn_relu(w1, w2, 3, padding=1),
            ResidualBlock(w2),
            nn.MaxPool2d(2),  # (N, w2, 7, 7)
            *conv_bn_relu(w2, w3, 3, padding=1),
            ResidualBlock(w3),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(w3, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("resnet-deskew")
class DeskewResNet(ResNet):
    """`resnet` behind a moment-based deskewing layer: it sees every digit upright, so it errs
    on other images than `resnet` does (482,154 params, none in the deskewing)."""

    def __init__(
        self, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128), dropout: float = 0.2
    ):
        super().__init__(num_classes, widths, dropout)
        self.deskew = Deskew()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.deskew(x))

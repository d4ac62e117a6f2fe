"""The six architectures of the five source reports, with their exact layer sizes.

Each returns logits. Where an original had a bug (softmax inside the model, an
activation on the logits) the version here is correct and its docstring says so.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from digitlab.models.registry import register_model


@register_model("digit")
class Digit(nn.Module):
    """Report 000 'Digit': two convolutions and a 2000->500 dense layer (1,007,590 params)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 10, 5),  # (N, 10, 24, 24)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 10, 12, 12)
            nn.Conv2d(10, 20, 3),  # (N, 20, 10, 10)
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 2000)
            nn.Linear(20 * 10 * 10, 500),
            nn.ReLU(),
            nn.Linear(500, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("coursecnn")
class CourseCNN(nn.Module):
    """Report 001 course report: conv 16 (pad 2) and conv 32 (k4), 1152->160 dense (194,474 params)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=2),  # (N, 16, 30, 30)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 15, 15)
            nn.Conv2d(16, 32, 4),  # (N, 32, 12, 12)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, 6, 6)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 1152)
            nn.Linear(32 * 6 * 6, 160),
            nn.ReLU(),
            nn.Linear(160, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("myconvnet")
class MyConvNet(nn.Module):
    """Report 002 'MyConvNet': two conv+BN blocks, dense 1568->392->196 (698,942 params).

    Differs from the original: no softmax inside (it applied softmax before the
    cross-entropy loss). Like the original it also takes one unbatched 1x28x28 image.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=1, padding=1),  # (N, 16, 28, 28)
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 14, 14)
            nn.Conv2d(16, 32, 3, stride=1, padding=1),  # (N, 32, 14, 14)
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, 7, 7)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 1568)
            nn.Linear(32 * 7 * 7, 392),
            nn.ReLU(),
            nn.Linear(392, 196),
            nn.ReLU(),
            nn.Linear(196, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # one unbatched image (1, 28, 28)
            return self.forward(x.unsqueeze(0)).squeeze(0)
        return self.classifier(self.features(x))


@register_model("mlp")
class MLP(nn.Module):
    """Report 003 'LinerModel': MLP 784-1024-2048-1024-512-10 with dropout 0.2 (5,531,147 params).

    Differs from the original: no dropout and ReLU on the output logits.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        widths = [28 * 28, 1024, 2048, 1024, 512]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            activation = nn.PReLU() if i == 0 else nn.ReLU()
            layers += [nn.Linear(n_in, n_out), nn.Dropout(dropout), activation]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_model("cnn5")
class CNN5(nn.Module):
    """Report 003 'CnnModel': five conv3x3+BN+activation+dropout blocks, 64..1024 channels, PReLU in
    the first block and ReLU in the other four, as the report's code has it (8,422,155 params)."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        # (in, out, stride): 28 -> 28 -> 14 -> 7 -> 4 -> 2
        plan = [(1, 64, 1), (64, 256, 2), (256, 512, 2), (512, 1024, 2), (1024, 256, 2)]
        blocks: list[nn.Module] = []
        for i, (n_in, n_out, stride) in enumerate(plan):
            blocks += [
                nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1),
                nn.BatchNorm2d(n_out),
                nn.PReLU() if i == 0 else nn.ReLU(),
                nn.Dropout(dropout),
            ]
        self.features = nn.Sequential(*blocks)  # (N, 256, 2, 2)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256 * 2 * 2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("bncnn")
class BNCNN(nn.Module):
    """Report 004 learning-rate study: two conv5x5+BN blocks and one dense layer (29,034 params)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=1, padding=2),  # (N, 16, 28, 28)
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 14, 14)
            nn.Conv2d(16, 32, 5, stride=1, padding=2),  # (N, 32, 14, 14)
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, 7, 7)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

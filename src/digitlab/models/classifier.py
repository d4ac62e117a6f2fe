"""DigitClassifier: a network together with its input standardisation.

The model owns its input: every caller feeds pixels in [0, 1] (float, (N, 1, 28, 28)) and
the standardisation the network was trained with travels in the weights as two buffers,
so training, evaluation, prediction, serving and ONNX export cannot disagree about it.
"""

from __future__ import annotations

import torch
from torch import nn

from digitlab.models.registry import build_model

# The standardisation the seed reports' code used (transforms.Normalize((0.1307,), (0.3081,))):
# the input of their .pth state dicts and of checkpoints saved without one.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
NETWORK_PREFIX = "network."


class DigitClassifier(nn.Module):
    """Pixels in [0, 1] -> standardised -> `network` -> logits / temperature.

    The temperature is 1 while training; the trainer fits it on the validation split when it
    saves the best checkpoint, so that softmax probabilities are calibrated."""

    def __init__(self, network: nn.Module, mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.register_buffer("temperature", torch.tensor(1.0))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        inputs = (pixels - self.mean) / self.std
        if inputs.dim() == 4:  # the networks' weights are channels-last; so should their input be
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.network(inputs) / self.temperature


def build_classifier(
    name: str, mean: float = MNIST_MEAN, std: float = MNIST_STD, **kwargs
) -> DigitClassifier:
    """A registered network (see `build_model`) wrapped with its input standardisation."""
    return DigitClassifier(build_model(name, **kwargs), mean, std)


def classifier_state(network_state: dict, mean: float, std: float) -> dict:
    """A DigitClassifier state dict from a bare network's (older checkpoints, seed .pth files)."""
    state = {NETWORK_PREFIX + key: value for key, value in network_state.items()}
    state.update(mean=torch.tensor(float(mean)), std=torch.tensor(float(std)), temperature=torch.tensor(1.0))
    return state

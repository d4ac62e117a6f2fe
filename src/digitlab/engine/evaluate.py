"""Evaluation: logits for a whole data set, and loss/accuracy metrics from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.data.digitdata import DigitData, normalize


@dataclass
class Metrics:
    loss: float
    accuracy: float
    errors: int
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def predict_logits(
    model: nn.Module, data: DigitData, mean: float, std: float, batch_size: int = 500
) -> torch.Tensor:
    """Logits (N, classes) for every image of `data`, in order, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for images, _ in data.batches(batch_size):
        inputs = normalize(images.to(device), mean, std).contiguous(memory_format=torch.channels_last)
        outputs.append(model(inputs).float())
    model.train(was_training)
    if not outputs:
        return torch.empty(0, len(data.classes))
    return torch.cat(outputs)


def metrics_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> Metrics:
    labels = labels.to(logits.device)
    n = len(labels)
    if n == 0:
        return Metrics(float("nan"), float("nan"), 0, 0)
    loss = F.cross_entropy(logits, labels, reduction="sum").item() / n
    correct = (logits.argmax(1) == labels).sum().item()
    return Metrics(loss, correct / n, n - correct, n)


def evaluate(model: nn.Module, data: DigitData, mean: float, std: float, batch_size: int = 500) -> Metrics:
    """Mean cross-entropy, accuracy and error count of `model` on `data`."""
    return metrics_from_logits(predict_logits(model, data, mean, std, batch_size), data.labels)


def ensemble_probabilities(checkpoints: list, data: DigitData, batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities (N, classes) averaged over `checkpoints`."""
    return sum(
        torch.softmax(predict_logits(c.model, data, c.mean, c.std, batch_size), 1).cpu() for c in checkpoints
    ) / len(checkpoints)


def evaluate_ensemble(checkpoints: list, data: DigitData, batch_size: int = 500) -> Metrics:
    """Accuracy and loss (NLL of the averaged probabilities) of checkpoints voting together."""
    probabilities = ensemble_probabilities(checkpoints, data, batch_size)
    # log-probabilities are logits whose softmax is themselves: cross-entropy on them is the NLL
    return metrics_from_logits(probabilities.clamp_min(1e-12).log(), data.labels.cpu())

"""Evaluation: logits of one model, probabilities of an ensemble, and metrics from them.

`ensemble_probabilities` is the one place where models vote and test-time augmentation
happens: `digitlab test`, `predict`, `serve`, reports, audits and the benchmarks all use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.config import EVAL_BATCH_SIZE
from digitlab.data.digitdata import DigitData, to_pixels

# test-time augmentation: the image itself and one-pixel shifts in four directions
TTA_SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]


@dataclass
class Metrics:
    loss: float
    accuracy: float
    errors: int
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Logits (N, classes) of `model` in eval mode for uint8 images (N, 28, 28), in order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = [
        model(to_pixels(images[start : start + batch_size].to(device)).unsqueeze(1)).float()
        for start in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def ensemble_probabilities(
    models: list[nn.Module], images: torch.Tensor, tta: bool = False, batch_size: int = EVAL_BATCH_SIZE
) -> torch.Tensor:
    """Softmax probabilities (N, classes) on the CPU, averaged over `models` and, with `tta`,
    over the one-pixel shifts of each uint8 image (N, 28, 28)."""
    shifts = TTA_SHIFTS if tta else TTA_SHIFTS[:1]
    total = None
    for model in models:
        for shift in shifts:
            shifted = torch.roll(images, shift, dims=(1, 2)) if any(shift) else images
            probabilities = torch.softmax(predict_logits(model, shifted, batch_size), 1).cpu()
            total = probabilities if total is None else total + probabilities
    return total / (len(models) * len(shifts))


def metrics_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> Metrics:
    labels = labels.to(logits.device)
    n = len(labels)
    if n == 0:
        return Metrics(float("nan"), float("nan"), 0, 0)
    loss = F.cross_entropy(logits, labels, reduction="sum").item() / n
    correct = (logits.argmax(1) == labels).sum().item()
    return Metrics(loss, correct / n, n - correct, n)


def evaluate(model: nn.Module, data: DigitData, batch_size: int = EVAL_BATCH_SIZE) -> Metrics:
    """Mean cross-entropy, accuracy and error count of `model` on `data`."""
    return metrics_from_logits(predict_logits(model, data.images, batch_size), data.labels)


def evaluate_ensemble(
    models: list[nn.Module], data: DigitData, tta: bool = False, batch_size: int = EVAL_BATCH_SIZE
) -> Metrics:
    """Accuracy and loss (NLL of the averaged probabilities) of models voting together."""
    probabilities = ensemble_probabilities(models, data.images, tta, batch_size)
    # log-probabilities are logits whose softmax is themselves: cross-entropy on them is the NLL
    return metrics_from_logits(probabilities.clamp_min(1e-12).log(), data.labels.cpu())

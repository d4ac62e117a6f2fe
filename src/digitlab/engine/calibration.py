"""Calibration: how far confidence is from accuracy (ECE), and temperature scaling, which
the trainer fits on the validation split so that the model's probabilities mean what they say."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Calibration:
    ece: float  # expected calibration error: the count-weighted mean |accuracy - confidence|
    bin_edges: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray
    bin_count: np.ndarray


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> Calibration:
    """Reliability of the top-class confidence, in equal-width confidence bins."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    mean_confidence = np.bincount(which, confidence, bins) / safe
    accuracy = np.bincount(which, correct.astype(float), bins) / safe
    ece = float((count * np.abs(accuracy - mean_confidence)).sum() / max(len(labels), 1))
    return Calibration(ece, edges, mean_confidence, accuracy, count)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T that minimises the cross-entropy of logits / T on (held-out) data."""
    log_t = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)
    logits, labels = logits.float().cpu().clone(), labels.cpu().clone()  # out of inference mode

    def loss():
        optimiser.zero_grad()
        value = F.cross_entropy(logits / log_t.exp(), labels)
        value.backward()
        return value

    optimiser.step(loss)
    temperature = float(log_t.detach().exp().clamp(0.05, 20.0))
    return temperature if math.isfinite(temperature) else 1.0  # a handful of images can diverge the fit

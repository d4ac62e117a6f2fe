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
    """The temperature T in [0.05, 20] that minimises the cross-entropy of logits / T on
    (held-out) data. The cross-entropy is convex in 1/T, so a golden-section search finds it;
    no torch.optim optimiser, whose first use costs seconds of importing (see engine/optim.py)."""
    logits, labels = logits.float().cpu(), labels.cpu()
    if not torch.isfinite(logits).all():
        return 1.0

    def loss(inverse_t: float) -> float:
        return float(F.cross_entropy(logits * inverse_t, labels))

    low, high = 1 / 20.0, 1 / 0.05
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > 1e-4:
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(torch.tensor(2 / (low + high)))  # float32, as the model's temperature buffer holds it

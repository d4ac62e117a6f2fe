"""Class probabilities of one or several checkpoints on a data set, for error analysis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab.data.digitdata import DigitData
from digitlab.engine.checkpoint import Checkpoint
from digitlab.engine.evaluate import ensemble_probabilities


@dataclass
class Predictions:
    probabilities: np.ndarray  # (N, classes), averaged over the checkpoints
    labels: np.ndarray  # (N,) the given labels
    images: np.ndarray  # (N, 28, 28) uint8
    classes: list[str]

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.labels).mean())


def predict(checkpoints: list[Checkpoint], data: DigitData) -> Predictions:
    """Softmax probabilities averaged over `checkpoints` (an ensemble when more than one)."""
    models = [checkpoint.model for checkpoint in checkpoints]
    probabilities = ensemble_probabilities(models, data.images).numpy().astype(np.float64)
    return Predictions(probabilities, data.labels.cpu().numpy(), data.images.cpu().numpy(), data.classes)


def hardest_mistakes(predictions: Predictions, count: int = 25) -> np.ndarray:
    """Indices of wrongly predicted images, most confident mistakes first."""
    wrong = np.flatnonzero(predictions.predicted != predictions.labels)
    confidence = predictions.probabilities[wrong].max(1)
    return wrong[np.argsort(-confidence, kind="stable")][:count]

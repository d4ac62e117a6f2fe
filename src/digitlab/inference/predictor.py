"""Predictor: one or several checkpoints (averaged) reading users' images of digits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from digitlab.data.digitdata import normalize
from digitlab.engine.checkpoint import Checkpoint, load_checkpoint
from digitlab.errors import DigitlabError
from digitlab.inference.preprocess import ImageSource, split_digits, to_mnist

# test-time augmentation: the image itself and one-pixel shifts in four directions
TTA_SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
CHUNK = 1000  # images per forward pass


@dataclass
class Prediction:
    digit: str  # the class name of the most probable class
    probability: float
    top: list[tuple[str, float]]  # the top-k classes with their probabilities
    probabilities: list[float]  # every class, in class order
    image: np.ndarray = field(repr=False)  # the 28x28 uint8 image the model saw

    def to_dict(self) -> dict:
        return {
            "digit": self.digit,
            "probability": self.probability,
            "top": [{"digit": d, "probability": p} for d, p in self.top],
            "probabilities": self.probabilities,
        }


class Predictor:
    """Predict digits with one checkpoint, or an ensemble that averages probabilities."""

    def __init__(self, checkpoints: list[Checkpoint], tta: bool = False, top_k: int = 3):
        if not checkpoints:
            raise DigitlabError("a Predictor needs at least one checkpoint")
        classes = checkpoints[0].classes
        for checkpoint in checkpoints[1:]:
            if checkpoint.classes != classes:
                raise DigitlabError(
                    f"{checkpoint.path}: classes differ from {checkpoints[0].path}; cannot ensemble"
                )
        self.checkpoints, self.classes, self.tta, self.top_k = checkpoints, classes, tta, top_k

    @classmethod
    def from_paths(cls, paths: list[str | Path], **kwargs) -> Predictor:
        return cls([load_checkpoint(path) for path in paths], **kwargs)

    @torch.inference_mode()
    def probabilities(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, classes) probabilities for uint8 MNIST-form images (N, 28, 28)."""
        images = torch.as_tensor(np.asarray(images), dtype=torch.uint8).reshape(-1, 1, 28, 28)
        shifts = TTA_SHIFTS if self.tta else TTA_SHIFTS[:1]
        total = torch.zeros(len(images), len(self.classes))
        for start in range(0, len(images), CHUNK):  # bounded memory for a whole CSV file
            batch = images[start : start + CHUNK]
            for checkpoint in self.checkpoints:
                device = next(checkpoint.model.parameters()).device
                for shift in shifts:
                    shifted = torch.roll(batch, shift, dims=(2, 3)).to(device)
                    inputs = normalize(shifted, checkpoint.mean, checkpoint.std).contiguous(
                        memory_format=torch.channels_last
                    )
                    total[start : start + CHUNK] += torch.softmax(checkpoint.model(inputs).float(), 1).cpu()
        return (total / (len(self.checkpoints) * len(shifts))).numpy()

    def predict_mnist(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for images already in MNIST form (N, 28, 28) uint8."""
        images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
        results = []
        for image, probs in zip(images, self.probabilities(images), strict=True):
            order = np.argsort(-probs, kind="stable")[: self.top_k]
            results.append(
                Prediction(
                    self.classes[order[0]],
                    float(probs[order[0]]),
                    [(self.classes[i], float(probs[i])) for i in order],
                    [float(p) for p in probs],
                    image,
                )
            )
        return results

    def predict(self, source: ImageSource, name: str = "image") -> Prediction:
        """Read one digit from a path, bytes, PIL image or array (any size, any polarity)."""
        return self.predict_mnist(to_mnist(source, name)[None])[0]

    def predict_many(self, sources: list[ImageSource], names: list[str] | None = None) -> list[Prediction]:
        """One digit from each image, predicted as one batch; `names` label errors."""
        names = names or [
            str(s) if isinstance(s, (str, Path)) else f"image {i}" for i, s in enumerate(sources)
        ]
        images = np.stack([to_mnist(source, name) for source, name in zip(sources, names, strict=True)])
        return self.predict_mnist(images)

    def predict_number(self, source: ImageSource, name: str = "image") -> list[Prediction]:
        """Every digit of a written number, left to right."""
        return self.predict_mnist(np.stack(split_digits(source, name)))

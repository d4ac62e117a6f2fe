"""Predictor: one or several checkpoints (averaged) reading users' images of digits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from digitlab.data.digitdata import NOT_A_DIGIT
from digitlab.engine.checkpoint import Checkpoint, load_checkpoint, load_checkpoints
from digitlab.engine.evaluate import ensemble_probabilities
from digitlab.engine.pretrained import DEFAULT_MODEL, model_card, shipped_weights
from digitlab.errors import DigitlabError, NoDigitFound
from digitlab.imaging.preprocess import ImageSource, split_digits, to_mnist

# verdicts: "not-a-digit" from this probability of the not-a-digit class (or a blank image);
# "unsure" when the best digit is less probable than UNSURE_BELOW; else "digit"
NOT_A_DIGIT_FROM = 0.5
UNSURE_BELOW = 0.6


@dataclass
class Prediction:
    label: str  # the most probable class other than "not a digit": a digit, a letter, a garment
    probability: float
    top: list[tuple[str, float]]  # the top-k such classes with their probabilities
    probabilities: list[float]  # every class of the model, in class order
    image: np.ndarray = field(repr=False)  # the 28x28 uint8 image the model saw
    verdict: str = "digit"  # "digit", "unsure" or "not-a-digit"

    @classmethod
    def blank(cls, classes: list[str]) -> Prediction:
        """What an image with no ink at all reads as: not a digit, no class."""
        return cls("", 0.0, [], [0.0] * len(classes), np.zeros((28, 28), np.uint8), "not-a-digit")

    def to_dict(self) -> dict:
        # the API and `predict --json` call the class "digit" whatever the data set
        return {
            "digit": self.label or None,
            "probability": self.probability,
            "verdict": self.verdict,
            "top": [{"digit": label, "probability": p} for label, p in self.top],
            "probabilities": self.probabilities,
        }


def verdict(class_probability: float, not_a_digit_probability: float) -> str:
    if not_a_digit_probability >= NOT_A_DIGIT_FROM:
        return "not-a-digit"
    return "unsure" if class_probability < UNSURE_BELOW else "digit"


def mnist_or_blank(source: ImageSource, name: str) -> np.ndarray | None:
    """The image in MNIST form, or None when it holds no ink (blank paper)."""
    try:
        return to_mnist(source, name)
    except NoDigitFound:
        return None


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
    def from_paths(cls, paths: str | Path | list[str | Path], **kwargs) -> Predictor:
        """Load one checkpoint (a path) or an ensemble (a list of paths, or a shipped ensemble's name)."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        return cls(load_checkpoints(paths), **kwargs)

    @classmethod
    def pretrained(cls, name: str = DEFAULT_MODEL, **kwargs) -> Predictor:
        """A model that ships with digitlab (`digitlab models` lists them), ready to predict."""
        model_card(name)  # a clear error naming the shipped models for an unknown name
        return cls([load_checkpoint(path) for path in shipped_weights(name)], **kwargs)

    def probabilities(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, classes) probabilities for uint8 MNIST-form images (N, 28, 28)."""
        images = torch.as_tensor(np.asarray(images), dtype=torch.uint8).reshape(-1, 28, 28)
        models = [checkpoint.model for checkpoint in self.checkpoints]
        return ensemble_probabilities(models, images, self.tta).numpy()

    def predict_mnist(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for images already in MNIST form (N, 28, 28) uint8."""
        images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
        rejects = self.classes[-1] == NOT_A_DIGIT  # a model trained with an extra "not a digit" class
        named = len(self.classes) - rejects  # the real classes come first
        results = []
        for image, probs in zip(images, self.probabilities(images), strict=True):
            order = np.argsort(-probs[:named], kind="stable")[: self.top_k]
            best = float(probs[order[0]])
            results.append(
                Prediction(
                    self.classes[order[0]],
                    best,
                    [(self.classes[i], float(probs[i])) for i in order],
                    [float(p) for p in probs],
                    image,
                    verdict(best, float(probs[-1]) if rejects else 0.0),
                )
            )
        return results

    def predict(self, source: ImageSource, name: str = "image") -> Prediction:
        """Read one digit from a path, bytes, PIL image or array (any size, any polarity)."""
        return self.predict_many([source], [name])[0]

    def predict_many(self, sources: list[ImageSource], names: list[str] | None = None) -> list[Prediction]:
        """One digit from each image, predicted as one batch; `names` label errors. A blank image
        is read as not a digit; an unreadable one raises DataError naming it."""
        names = names or [
            str(s) if isinstance(s, (str, Path)) else f"image {i}" for i, s in enumerate(sources)
        ]
        images = [mnist_or_blank(source, name) for source, name in zip(sources, names, strict=True)]
        found = [i for i, image in enumerate(images) if image is not None]
        read = iter(self.predict_mnist(np.stack([images[i] for i in found])) if found else [])
        return [next(read) if image is not None else Prediction.blank(self.classes) for image in images]

    def predict_number(self, source: ImageSource, name: str = "image") -> list[Prediction]:
        """Every digit of a written number, left to right."""
        return self.predict_mnist(np.stack(split_digits(source, name)))

"""Why a model read an image as it did: attribution maps over the input pixels (Captum).

The attributions are of the model's output for one class (its logit, temperature included)
with respect to the pixels in [0, 1] the model takes (its standardisation is inside it).
Integrated gradients start from a black image, MNIST's empty background: its attributions
sum to the logit of the image minus the logit of the black image (completeness) and are zero
where a pixel is black. Saliency is the plain gradient, signed, so both read on the same
diverging scale: red raises the class's score, blue lowers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digitlab.data.digitdata import to_pixels
from digitlab.engine.checkpoint import Checkpoint
from digitlab.engine.evaluate import ensemble_probabilities
from digitlab.errors import ConfigError
from digitlab.imaging import to_mnist

METHODS = ("integrated-gradients", "saliency")
# steps of the path integral (Gauss-Legendre): on a fastcnn the attributions of MNIST test
# digits sum to the logit difference within 0.5 % (median), a few per cent at worst
IG_STEPS = 32
INTERNAL_BATCH = 512  # images per forward/backward pass inside integrated gradients


def attribute(
    model: nn.Module,
    pixels: torch.Tensor,
    targets: torch.Tensor | list[int],
    method: str = "integrated-gradients",
    steps: int = IG_STEPS,
) -> torch.Tensor:
    """Attributions (N, 1, 28, 28) of `model`'s output for class `targets[i]` to each pixel of
    `pixels` (N, 1, 28, 28) in [0, 1]; integrated gradients from a black baseline, or saliency."""
    from captum.attr import IntegratedGradients, Saliency

    if method not in METHODS:
        raise ConfigError(f"unknown attribution method {method!r}; choose from {', '.join(METHODS)}")
    if steps < 2:
        raise ConfigError(f"integrated gradients needs at least 2 steps, got {steps}")
    targets = torch.as_tensor(targets, dtype=torch.int64)
    if not len(pixels):
        return torch.zeros_like(pixels, dtype=torch.float32)
    device = next(model.parameters()).device
    inputs = pixels.detach().to(device, torch.float32).clone().requires_grad_(True)
    targets = targets.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            if method == "saliency":
                result = Saliency(model).attribute(inputs, target=targets, abs=False)
            else:
                result = IntegratedGradients(model).attribute(
                    inputs,
                    baselines=torch.zeros_like(inputs),
                    target=targets,
                    n_steps=steps,
                    internal_batch_size=max(INTERNAL_BATCH, len(inputs)),
                )
    finally:
        model.train(was_training)
    return result.detach().float().cpu()


def attribute_images(
    model: nn.Module, images: np.ndarray | torch.Tensor, targets, method: str = "integrated-gradients", **kw
) -> np.ndarray:
    """`attribute` for uint8 MNIST-form images (N, 28, 28): attributions (N, 28, 28)."""
    images = torch.as_tensor(np.asarray(images), dtype=torch.uint8).reshape(-1, 28, 28)
    return attribute(model, to_pixels(images).unsqueeze(1), targets, method, **kw)[:, 0].numpy()


class MeanProbability(nn.Module):
    """Several models as one to attribute: the log of their mean probability, which is what an
    ensemble predicts (its arg-max is the ensemble's answer)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(pixels).softmax(1) for m in self.members]).mean(0).log()


def explained_model(models: list[nn.Module]) -> nn.Module:
    """The module whose output `explain` attributes: a lone model's logits, or an ensemble's
    log mean probability."""
    return models[0] if len(models) == 1 else MeanProbability(models)


@dataclass
class Explanation:
    """One image explained: its two likeliest classes and their attribution maps."""

    name: str
    image: np.ndarray  # (28, 28) uint8, what the model saw
    classes: list[str]  # [predicted, runner-up]
    probabilities: list[float]  # their probabilities
    attributions: np.ndarray  # (2, 28, 28): for the predicted class, for the runner-up
    method: str


def explain(
    model: nn.Module,
    images: np.ndarray,
    class_names: list[str],
    names: list[str] | None = None,
    method: str = "integrated-gradients",
    steps: int = IG_STEPS,
) -> list[Explanation]:
    """Explain uint8 MNIST-form images (N, 28, 28): the predicted class and the runner-up, each
    with its attribution map; every image and both classes in one batched call."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
    names = names or [f"image {i}" for i in range(len(images))]
    if not len(images):
        return []
    probabilities = ensemble_probabilities([model], torch.as_tensor(images)).numpy()
    pixels = to_pixels(torch.as_tensor(images)).unsqueeze(1)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :2]
    n = len(images)
    maps = attribute(
        model, pixels.repeat(2, 1, 1, 1), np.concatenate([order[:, 0], order[:, 1]]), method, steps
    )
    maps = maps[:, 0].numpy()
    return [
        Explanation(
            names[i],
            images[i],
            [class_names[c] for c in order[i]],
            [float(probabilities[i, c]) for c in order[i]],
            np.stack([maps[i], maps[n + i]]),
            method,
        )
        for i in range(n)
    ]


def output_paths(images: list[Path], out: Path, overwrite: bool = False) -> list[Path]:
    """The PNG each image's explanation goes to (`out`/<image name>.png), refusing before anything
    is read or written: a missing image, two images of the same name, an existing PNG."""
    targets = []
    for path in images:
        if not path.exists():
            raise ConfigError(f"{path}: no such image")
        if path.is_dir():
            raise ConfigError(f"{path}: a folder; give image files")
        targets.append(out / f"{path.stem}.png")
    seen: dict[Path, Path] = {}
    for path, target in zip(images, targets, strict=True):
        if target in seen:
            raise ConfigError(f"{seen[target]} and {path} would both be explained in {target}; rename one")
        seen[target] = path
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: not a folder")
    if not overwrite:
        for target in targets:
            if target.exists():
                raise ConfigError(f"{target}: already exists; pass --overwrite or choose another --out")
    return targets


def explain_files(
    checkpoint: Checkpoint,
    images: list[str | Path],
    out: str | Path = "explain",
    method: str = "integrated-gradients",
    overwrite: bool = False,
    steps: int = IG_STEPS,
) -> list[tuple[Explanation, Path]]:
    """Explain each image file (brought into MNIST's form as `predict` does) and write one PNG
    per image into `out` (created): the input and the two attribution overlays. Nothing is
    written when an image is missing or unreadable, or a PNG exists and not `overwrite`."""
    from digitlab.analysis.figures import explanation_figure

    paths = [Path(image) for image in images]
    targets = output_paths(paths, Path(out), overwrite)
    digits = np.stack([to_mnist(path, str(path)) for path in paths])
    explanations = explain(
        checkpoint.model, digits, checkpoint.classes, [str(p) for p in paths], method, steps
    )
    written = []
    for explanation, target in zip(explanations, targets, strict=True):
        written.append((explanation, explanation_figure(explanation, target)))
    return written

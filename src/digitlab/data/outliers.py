"""Things that are not digits, in MNIST's form, to train a "not a digit" class (outlier exposure).

Sources: Fashion-MNIST's training images (when a copy is on this machine: Debian's
`dataset-fashion-mnist` or the cache), letters and symbols that do not look like digits
printed in the DejaVu fonts, dense scribbles and speckle. Each goes through
`imaging.to_mnist`, as a user's image does. The real-world suite evaluates other kinds
(other fonts, stars, hearts, spirals, hashes, zigzags, arrows, textures): see
`analysis.realworld`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from digitlab.errors import DataError
from digitlab.imaging.preprocess import to_mnist
from digitlab.imaging.render import LETTERS, SYMBOLS, font_files, printed

NOT_A_DIGIT = "not a digit"
TRAINING_FONTS = "DejaVu"
SHARES = {"fashion": 0.4, "printed": 0.35, "scribble": 0.15, "speckle": 0.1}


def scribble(rng: np.random.Generator) -> Image.Image:
    """A dense random scribble: many short strokes in one place."""
    canvas = Image.new("L", (120, 120), 0)
    steps = rng.normal(0, 14, size=(int(rng.integers(20, 40)), 2)).cumsum(0)  # too many turns for a digit
    steps = 60 + 45 * (steps - steps.mean(0)) / max(np.abs(steps - steps.mean(0)).max(), 1)
    ImageDraw.Draw(canvas).line(
        [tuple(p) for p in steps], fill=255, width=int(rng.integers(3, 9)), joint="curve"
    )
    return canvas


def speckle(rng: np.random.Generator) -> Image.Image:
    """Scattered dots and small blots, as dirt on paper."""
    canvas = Image.new("L", (120, 120), 0)
    draw = ImageDraw.Draw(canvas)
    for x, y, r in zip(rng.uniform(5, 115, 40), rng.uniform(5, 115, 40), rng.uniform(1, 6, 40), strict=True):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.integers(120, 256)))
    return canvas


def _fashion(count: int, rng: np.random.Generator) -> list:
    from digitlab.data.sources import load_dataset

    try:
        fashion = load_dataset("fashion-mnist", "train")
    except DataError:  # no copy on this machine, offline: the other sources fill in
        return []
    return [fashion.images[int(i)].numpy() for i in rng.choice(len(fashion), count, replace=False)]


def outlier_images(count: int, seed: int = 0) -> np.ndarray:
    """`count` not-a-digit images (count, 28, 28) uint8 in MNIST's form, the same for the same seed."""
    rng = np.random.default_rng(seed)
    fonts = font_files(TRAINING_FONTS)
    alphabet = LETTERS + SYMBOLS
    sources = _fashion(round(count * SHARES["fashion"]), rng)
    n_printed = round(count * SHARES["printed"]) if fonts else 0
    sources += [
        printed(alphabet[rng.integers(len(alphabet))], fonts[rng.integers(len(fonts))], rng)
        for _ in range(n_printed)
    ]
    remaining = count - len(sources)
    n_scribbles = round(remaining * SHARES["scribble"] / (SHARES["scribble"] + SHARES["speckle"]))
    sources += [scribble(rng) for _ in range(n_scribbles)]
    sources += [speckle(rng) for _ in range(remaining - n_scribbles)]
    images = np.zeros((count, 28, 28), np.uint8)
    for i, source in enumerate(sources):
        try:
            images[i] = to_mnist(source if isinstance(source, Image.Image) else Image.fromarray(source))
        except DataError:  # too faint to hold anything: an empty image is a fine outlier too
            pass
    return images[rng.permutation(count)]

"""Things that are not digits, in MNIST's form, to train a "not a digit" class (outlier exposure).

Sources: Fashion-MNIST's training images (when a copy is on this machine: Debian's
`dataset-fashion-mnist` or the cache), letters and symbols that do not look like digits
printed in the DejaVu fonts, dense scribbles, speckle, and pen-drawn geometric shapes
(polygons with corners, nested rings, strokes with branches, crossed and boxed marks). Each goes through
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

TRAINING_FONTS = "DejaVu"
SHARES = {"fashion": 0.3, "printed": 0.3, "shape": 0.25, "scribble": 0.1, "speckle": 0.05}


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


def _pen(rng: np.random.Generator) -> tuple[Image.Image, ImageDraw.ImageDraw, int, np.ndarray, float]:
    canvas = Image.new("L", (120, 120), 0)
    return (
        canvas,
        ImageDraw.Draw(canvas),
        int(rng.integers(3, 9)),
        60 + rng.uniform(-8, 8, 2),
        rng.uniform(28, 45),
    )


def polygon(rng: np.random.Generator) -> Image.Image:
    """A closed polygon of 3 to 6 sharp corners (a triangle, a box, a house), drawn by hand."""
    canvas, draw, width, centre, radius = _pen(rng)
    corners = int(rng.integers(3, 7))
    angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
    radii = radius * rng.uniform(0.75, 1.15, corners)
    points = [
        tuple(centre + r * np.array([np.cos(a), np.sin(a)])) for a, r in zip(angles, radii, strict=True)
    ]
    draw.line(points + points[:1], fill=255, width=width, joint="curve")
    return canvas


def rings(rng: np.random.Generator) -> Image.Image:
    """Two or three nested rings (one ring alone would be a zero)."""
    canvas, draw, width, centre, radius = _pen(rng)
    for scale in np.linspace(1, rng.uniform(0.3, 0.5), int(rng.integers(2, 4))):
        rx, ry = radius * scale * rng.uniform(0.8, 1.1, 2)
        draw.ellipse(
            [centre[0] - rx, centre[1] - ry, centre[0] + rx, centre[1] + ry], outline=255, width=width
        )
    return canvas


def branches(rng: np.random.Generator) -> Image.Image:
    """A stroke with three to six side strokes, like a twig or a fishbone."""
    canvas, draw, width, centre, radius = _pen(rng)
    turn = rng.uniform(0, np.pi)
    along = np.array([np.cos(turn), np.sin(turn)])
    draw.line([tuple(centre - radius * along), tuple(centre + radius * along)], fill=255, width=width)
    for t in np.linspace(-0.8, 0.8, int(rng.integers(3, 7))):
        side = rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
        tip = (
            centre + t * radius * along + radius * 0.5 * np.array([np.cos(turn + side), np.sin(turn + side)])
        )
        draw.line([tuple(centre + t * radius * along), tuple(tip)], fill=255, width=width)
    return canvas


def marks(rng: np.random.Generator) -> Image.Image:
    """A crossed or boxed mark: an X or a plus inside a box or a ring, a ticked box."""
    canvas, draw, width, centre, radius = _pen(rng)
    box = [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]
    if rng.random() < 0.5:
        draw.rectangle(box, outline=255, width=width)
    else:
        draw.ellipse(box, outline=255, width=width)
    inner = radius * 0.7
    if rng.random() < 0.5:
        ends = [(-inner, -inner, inner, inner), (-inner, inner, inner, -inner)]
    else:
        ends = [(0, -inner, 0, inner), (-inner, 0, inner, 0)]
    for x0, y0, x1, y1 in ends:
        draw.line([(centre[0] + x0, centre[1] + y0), (centre[0] + x1, centre[1] + y1)], fill=255, width=width)
    return canvas


SHAPES = (polygon, rings, branches, marks)


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
    sources += [SHAPES[rng.integers(len(SHAPES))](rng) for _ in range(round(count * SHARES["shape"]))]
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

"""A real-world evaluation suite: digits as users have them, and things that are not digits.

Every set is built deterministically (seeded) and offline from sources that no training
uses: MNIST *test* digits turned into phone photos, low-resolution scans, thick-marker and
thin-pen strokes; digits printed in the Liberation fonts; and non-digits (letters and
symbols that do not look like digits, in the Liberation fonts; doodles of kinds no outlier
set draws; textures; blank paper). Training outliers (`data.outliers`) print with the DejaVu
fonts and draw scribbles and speckle instead, so the suite measures unseen kinds. The
images are encoded files (JPEG/PNG bytes), so they take exactly the road of a user's image
through `imaging.to_mnist`. This module lives in `analysis`, a layer that `data` and the
training engine cannot import: nothing here can leak into training.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from digitlab.imaging.render import LETTERS, SYMBOLS, font_files, printed

EVAL_FONTS = "Liberation"  # the suite prints with these; training outliers use other families


@dataclass
class EvalSet:
    """Encoded images and their labels (-1: not a digit)."""

    name: str
    description: str
    images: list[bytes]
    labels: np.ndarray

    @property
    def is_digits(self) -> bool:
        return bool((self.labels >= 0).all())


def encode(image: Image.Image, fmt: str = "PNG", quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=quality) if fmt == "JPEG" else image.save(buffer, format=fmt)
    return buffer.getvalue()


def ink_on_paper(ink: np.ndarray, paper: float = 255.0, ink_level: float = 0.0) -> Image.Image:
    """Greyscale image of `ink` in [0, 1] (1 = full ink) drawn dark on light paper."""
    grey = paper * (1 - ink) + ink_level * ink
    return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), mode="L")


def upscaled(digit: np.ndarray, size: int) -> np.ndarray:
    """An MNIST digit (28x28 uint8, white ink) as ink in [0, 1] at `size` x `size`, smoothly."""
    image = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image, dtype=np.float64) / 255.0, 0, 1)


# --- digits as users have them -----------------------------------------------------------
def photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo of a written digit: paper tone and tint, uneven light, the digit small and
    off-centre in a large frame, perspective, blur, sensor noise, JPEG."""
    width, height = 320, 240
    size = int(rng.integers(70, 150))
    ink = np.zeros((height, width))
    top, left = int(rng.integers(10, height - size - 10)), int(rng.integers(10, width - size - 10))
    ink[top : top + size, left : left + size] = upscaled(digit, size)
    ramp = np.linspace(-1, 1, width)[None, :] * rng.uniform(-30, 30) + np.linspace(-1, 1, height)[
        :, None
    ] * rng.uniform(-20, 20)
    paper = rng.uniform(175, 240) + ramp
    tint = rng.uniform(0.9, 1.05, size=3)
    ink_colour = rng.uniform(10, 80, size=3)
    rgb = np.stack([paper * t * (1 - ink) + c * ink for t, c in zip(tint, ink_colour, strict=True)], -1)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
    jitter = rng.uniform(-0.07, 0.07, size=8) * np.tile([width, height], 4)
    corners = np.array([0, 0, 0, height, width, height, width, 0], float) + jitter  # UL, LL, LR, UR
    image = image.transform(
        (width, height),
        Image.Transform.QUAD,
        tuple(corners),
        Image.Resampling.BILINEAR,
        fillcolor=tuple(int(paper.mean()) for _ in range(3)),
    )
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.4)))
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(2, 9), size=(height, width, 3))
    return encode(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), "JPEG", int(rng.integers(35, 85)))


def scan(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A small, low-resolution scan: the digit at 8-12 pixels, scaled back up, dark on light."""
    low = int(rng.integers(8, 13))
    small = Image.fromarray(digit).resize((low, low), Image.Resampling.BOX)
    ink = np.asarray(small.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    grey = np.asarray(ink_on_paper(ink, rng.uniform(215, 250), rng.uniform(0, 60)), dtype=np.float64)
    return encode(Image.fromarray(np.clip(grey + rng.normal(0, 3, grey.shape), 0, 255).astype(np.uint8)))


def stroke(digit: np.ndarray, rng: np.random.Generator, thicker: bool) -> bytes:
    """The digit's stroke redrawn at 4x with a thick marker (dilated) or a fine pen (eroded)."""
    strokes = upscaled(digit, 112) > 0.5
    radius = int(rng.integers(3, 6)) if thicker else int(rng.integers(2, 4))
    disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
    if thicker:
        strokes = ndimage.binary_dilation(strokes, disk)
    else:
        thinner = ndimage.binary_erosion(strokes, disk)
        strokes = thinner if thinner.sum() > strokes.sum() * 0.1 else ndimage.binary_erosion(strokes)
    ink = ndimage.gaussian_filter(np.pad(strokes, 12).astype(np.float64), 0.8)
    return encode(ink_on_paper(ink, rng.uniform(225, 255), rng.uniform(0, 50)))


# --- things that are not digits ----------------------------------------------------------
def doodle(kind: str, rng: np.random.Generator) -> bytes:
    """A pen doodle (star, heart, spiral, hash, zigzag, arrow) or a texture, dark on light."""
    size = 200
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    width = int(rng.integers(3, 12))
    c, r = size / 2 + rng.uniform(-15, 15, 2), rng.uniform(50, 85)
    turn = rng.uniform(0, 2 * math.pi)
    if kind == "star":
        points = [
            (
                c[0] + (r if i % 2 == 0 else r * 0.4) * math.cos(turn + i * math.pi / 5),
                c[1] + (r if i % 2 == 0 else r * 0.4) * math.sin(turn + i * math.pi / 5),
            )
            for i in range(11)
        ]
        draw.line(points, fill=255, width=width, joint="curve")
    elif kind == "heart":
        t = np.linspace(0, 2 * math.pi, 120)
        x, y = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        draw.line(list(zip(c[0] + x * r / 17, c[1] + y * r / 17, strict=True)), fill=255, width=width)
    elif kind == "spiral":
        t = np.linspace(0, rng.uniform(3, 5) * 2 * math.pi, 300)
        radius = r * t / t[-1]
        draw.line(
            list(zip(c[0] + radius * np.cos(t + turn), c[1] + radius * np.sin(t + turn), strict=True)),
            fill=255,
            width=width,
        )
    elif kind == "hash":
        for offset in (-r / 3, r / 3):
            draw.line([(c[0] + offset, c[1] - r), (c[0] + offset, c[1] + r)], fill=255, width=width)
            draw.line([(c[0] - r, c[1] + offset), (c[0] + r, c[1] + offset)], fill=255, width=width)
    elif kind == "zigzag":
        xs = np.linspace(c[0] - r, c[0] + r, int(rng.integers(5, 9)))
        draw.line([(x, c[1] + (r / 2 if i % 2 else -r / 2)) for i, x in enumerate(xs)], fill=255, width=width)
    elif kind == "arrow":
        tip, tail = (
            c + r * np.array([math.cos(turn), math.sin(turn)]),
            c - r * np.array([math.cos(turn), math.sin(turn)]),
        )
        draw.line([tuple(tail), tuple(tip)], fill=255, width=width)
        for side in (-1, 1):
            barb = tip - r * 0.35 * np.array([math.cos(turn + side * 0.5), math.sin(turn + side * 0.5)])
            draw.line([tuple(tip), tuple(barb)], fill=255, width=width)
    elif kind == "texture":
        noise = ndimage.gaussian_filter(rng.random((size, size)), rng.uniform(2, 6))
        canvas = Image.fromarray(((noise > np.quantile(noise, 0.6)) * 255).astype(np.uint8))
    else:
        raise ValueError(f"unknown doodle {kind!r}")
    ink = np.asarray(canvas, dtype=np.float64) / 255.0
    return encode(ink_on_paper(ink, rng.uniform(200, 255), rng.uniform(0, 60)))


# kinds that no training outlier set draws (data.outliers draws scribbles and speckle)
DOODLES = ("star", "heart", "spiral", "hash", "zigzag", "arrow", "texture")


def blank_paper(rng: np.random.Generator) -> bytes:
    """An empty sheet: paper tone, a light gradient, sensor noise, JPEG."""
    size = 160
    ramp = np.linspace(-1, 1, size)[None, :] * rng.uniform(-15, 15)
    grey = rng.uniform(170, 245) + ramp + rng.normal(0, rng.uniform(1, 5), (size, size))
    return encode(Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)), "JPEG", 70)


# --- the suite -------------------------------------------------------------------------------
def _from_mnist(name, description, mnist_test, count, seed, make: Callable) -> EvalSet:
    rng = np.random.default_rng(seed)
    index = rng.choice(len(mnist_test), size=min(count, len(mnist_test)), replace=False)
    images = [make(mnist_test.images[int(i)].numpy(), rng) for i in index]
    return EvalSet(name, description, images, mnist_test.labels[index].numpy().astype(np.int64))


def _printed_set(name, description, alphabet, fonts, count, seed, labelled: bool) -> EvalSet:
    rng = np.random.default_rng(seed)
    choices = [(text, font) for font in fonts for text in alphabet]
    picks = rng.choice(len(choices), size=min(count, len(choices)), replace=False)
    images = [encode(printed(choices[i][0], choices[i][1], rng)) for i in picks]
    labels = [int(choices[i][0]) if labelled else -1 for i in picks]
    return EvalSet(name, description, images, np.array(labels, np.int64))


def build_suite(mnist_test, count: int = 500, seed: int = 0) -> Iterator[EvalSet]:
    """The evaluation sets, each of up to `count` images, the same for the same seed."""
    fonts = font_files(EVAL_FONTS)
    yield _from_mnist(
        "photos", "MNIST test digits as phone photos (JPEG)", mnist_test, count, seed + 1, photo
    )
    yield _from_mnist("scans", "MNIST test digits scanned at 8-12 px", mnist_test, count, seed + 2, scan)
    yield _from_mnist(
        "marker",
        "MNIST test digits in thick marker",
        mnist_test,
        count,
        seed + 3,
        lambda d, rng: stroke(d, rng, thicker=True),
    )
    yield _from_mnist(
        "thin-pen",
        "MNIST test digits in a fine pen",
        mnist_test,
        count,
        seed + 4,
        lambda d, rng: stroke(d, rng, thicker=False),
    )
    if fonts:
        yield _printed_set(
            "fonts",
            f"digits printed in the {len(fonts)} fonts installed here",
            "0123456789",
            fonts,
            count,
            seed + 5,
            True,
        )
        yield _printed_set(
            "letters",
            "letters and symbols that do not look like digits",
            LETTERS + SYMBOLS,
            fonts,
            count,
            seed + 6,
            False,
        )
    rng = np.random.default_rng(seed + 7)
    doodles = [doodle(DOODLES[i % len(DOODLES)], rng) for i in range(count)]
    yield EvalSet(
        "doodles", "stars, hearts, spirals, hashes, zigzags, arrows, textures", doodles, np.full(count, -1)
    )
    rng = np.random.default_rng(seed + 8)
    blanks = [blank_paper(rng) for _ in range(max(1, count // 5))]
    yield EvalSet("blank", "empty paper", blanks, np.full(len(blanks), -1))


def preprocess_all(eval_set: EvalSet) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-form images of the set and a mask of those in which preprocessing found ink."""
    from digitlab.errors import DataError
    from digitlab.imaging import to_mnist

    images, found = np.zeros((len(eval_set.images), 28, 28), np.uint8), np.zeros(len(eval_set.images), bool)
    for i, encoded in enumerate(eval_set.images):
        try:
            images[i], found[i] = to_mnist(encoded, f"{eval_set.name} #{i}"), True
        except DataError:  # no ink: blank paper reads as not a digit
            pass
    return images, found


def score(predicted: np.ndarray, accepted: np.ndarray, found: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, the share accepted as a digit and the accuracy on the accepted (digit sets), or
    the share rejected (non-digit sets). `predicted`: class indices; `accepted`: verdict "digit".
    An image in which preprocessing found no ink is neither right nor accepted."""
    accepted = found & accepted
    right = found & (predicted == labels)
    row = {"n": len(labels), "accepted": float(accepted.mean())}
    if (labels >= 0).all():
        row["accuracy"] = float(right.mean())
        row["accuracy_on_accepted"] = float(right[accepted].mean()) if accepted.any() else None
    else:
        row["rejected"] = 1.0 - row["accepted"]
    return row


def score_predictor(predictor, eval_set: EvalSet) -> dict:
    """`score` of a digitlab Predictor on one set, with its verdicts."""
    images, found = preprocess_all(eval_set)
    readings = predictor.predict_mnist(images)
    predicted = np.array([predictor.classes.index(r.label) for r in readings])
    accepted = np.array([r.verdict == "digit" for r in readings])
    return score(predicted, accepted, found, eval_set.labels)


# --- written numbers: several digits in one image, for `predict --multi` -------------------
def written_number(
    digits: list[np.ndarray], gaps: list[int], slant: float = 0.0, scale: int = 4
) -> Image.Image:
    """MNIST digits (28x28 uint8, white ink) side by side, `gaps[i]` pixels between the ink of
    digit i and i + 1, dark on white paper, leaning right by `slant` columns per row (left if
    negative), scaled `scale` times."""
    pieces = []
    for digit, gap in zip(digits, [*gaps, 0], strict=True):
        columns = np.flatnonzero(digit.max(0))
        pieces += [digit[:, columns[0] : columns[-1] + 1], np.zeros((28, gap), np.uint8)]
    margin = 4 + math.ceil(abs(slant) * 28)
    paper = Image.fromarray(255 - np.pad(np.hstack(pieces), ((4, 4), (margin, margin))))
    shear = (1, slant, -slant * paper.height / 2, 0, 1, 0)
    paper = paper.transform(
        paper.size, Image.Transform.AFFINE, shear, Image.Resampling.BILINEAR, fillcolor=255
    )
    return paper.resize((paper.width * scale, paper.height * scale), Image.Resampling.BILINEAR)


@dataclass
class WrittenNumber:
    image: bytes  # a PNG file
    text: str  # the number it shows
    index: np.ndarray  # its digits' places in the MNIST test split


def written_numbers(mnist_test, count: int, seed: int, slanted: bool) -> list[WrittenNumber]:
    """`count` numbers of 2-4 MNIST test digits, 0-4 pixels apart, upright or slanted by
    0.15-0.5 columns per row (mostly to the right)."""
    rng = np.random.default_rng(seed)
    numbers = []
    for _ in range(count):
        index = rng.integers(0, len(mnist_test), rng.integers(2, 5))
        slant = rng.uniform(0.15, 0.5) * rng.choice([1, 1, -1]) if slanted else 0.0
        digits = [mnist_test.images[int(i)].numpy() for i in index]
        image = written_number(digits, list(rng.integers(0, 5, len(index) - 1)), slant, scale=3)
        text = "".join(str(int(mnist_test.labels[int(i)])) for i in index)
        numbers.append(WrittenNumber(encode(image), text, index))
    return numbers

"""Bring any user image of a digit into MNIST's own form: white ink on black, the digit
fitted into a 20x20 box and placed in 28x28 by its centre of mass.

The steps: read (any Pillow format, alpha counted as background) -> ink map in [0, 1]
with the polarity decided from the border -> Otsu mask, specks dropped, background
removed (grey levels kept) -> crop -> stroke width brought near MNIST's -> fit -> centre.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from digitlab.errors import DataError, NoDigitFound

MAX_PIXELS = 16_000_000  # refuse bigger images well before Pillow's decompression-bomb limit
MIN_INK = 0.15  # ink fainter than this is background
MIN_CONTRAST = 0.2  # strongest ink over the background: blank photos of paper stay below 0.15
FLATTEN_FROM = 160  # images whose shorter side reaches this many pixels get their background flattened
MNIST_STROKE = 2.6  # median stroke width of MNIST test digits (28x28), in pixels
ImageSource = str | Path | bytes | Image.Image | np.ndarray


def open_image(source: ImageSource, name: str = "image") -> Image.Image:
    """A PIL image from a path, bytes, a PIL image or an array; first frame of animations."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, name)
    if isinstance(source, (str, Path)):
        name = str(source)
        try:
            source = Path(source).read_bytes()
        except OSError as err:
            raise DataError(f"{name}: cannot read ({err.strerror or err})") from None
    try:
        image = Image.open(io.BytesIO(source))
        if image.width * image.height > MAX_PIXELS:
            raise DataError(
                f"{name}: image of {image.width}x{image.height} pixels is too large "
                f"(at most {MAX_PIXELS:,} pixels)"
            )
        image.seek(0)
        image.load()
    except UnidentifiedImageError:
        raise DataError(f"{name}: not a readable image (unknown or unsupported format)") from None
    except Image.DecompressionBombError as err:
        raise DataError(f"{name}: image too large ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{name}: broken or truncated image ({err})") from None
    return image


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise DataError(f"{name}: expected an H×W, H×W×3 or H×W×4 array, got shape {array.shape}")
    if array.dtype != np.uint8:
        scale = 255.0 if array.max() <= 1.0 else 1.0
        array = np.clip(array.astype(np.float64) * scale, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def ink_map(image: Image.Image) -> np.ndarray:
    """Ink strength in [0, 1] per pixel (1 = full ink), whatever the polarity or alpha."""
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
    grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    alpha = rgba[..., 3] if has_alpha else np.ones_like(grey)
    dark_ink, light_ink = (1 - grey) * alpha, grey * alpha
    border = np.zeros(grey.shape, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    dark_border, light_border = dark_ink[border].mean(), light_ink[border].mean()
    if abs(dark_border - light_border) > 0.05:  # the border (background) shows the polarity
        return dark_ink if dark_border < light_border else light_ink
    return dark_ink if dark_ink.sum() >= light_ink.sum() else light_ink  # transparent border


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold that best separates `values` in [0, 1] into two classes."""
    histogram, edges = np.histogram(values, bins=256, range=(0, 1))
    weight = histogram.cumsum()
    mean = (histogram * edges[:-1]).cumsum()
    total_weight, total_mean = weight[-1], mean[-1]
    between = (total_mean * weight - mean * total_weight) ** 2 / np.maximum(
        weight * (total_weight - weight), 1e-12
    )
    return float(edges[np.argmax(between[:-1]) + 1])


def clean_ink(ink: np.ndarray, name: str = "image") -> np.ndarray:
    """Remove the background level and small specks; keep the anti-aliased grey levels."""
    # contrast over the background (the 10th percentile: digits are sparse), so that blank
    # paper under uneven light, with noise or JPEG, holds no "ink"
    if ink.max() - np.percentile(ink, 10) < MIN_CONTRAST:
        raise NoDigitFound(f"{name}: no digit found (the image is empty or nearly so)")
    mask = ink > max(otsu_threshold(ink), MIN_INK / 2)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        keep = np.flatnonzero(sizes >= max(sizes.max() * 0.05, 2)) + 1
        mask = np.isin(labels, keep)
    if mask.sum() < 3:
        raise NoDigitFound(f"{name}: no digit found (only specks of ink)")
    background = np.median(ink[~mask]) if (~mask).any() else 0.0
    halo = ndimage.binary_dilation(mask, iterations=2)
    return np.clip((ink - background) / max(ink[mask].max() - background, 1e-6), 0, 1) * halo


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the ink area over its outline length."""
    mask = ink > 0.5
    area = mask.sum()
    outline = (mask & ~ndimage.binary_erosion(mask)).sum()
    return 2.0 * area / max(outline, 1)


def normalise_stroke(crop: np.ndarray, scale: float) -> np.ndarray:
    """Thicken hair-thin strokes or thin marker blobs towards MNIST's width, at the crop's own
    resolution (`scale`: how much the crop will shrink to fit 20x20)."""
    target = MNIST_STROKE / scale  # MNIST's stroke width, in crop pixels
    width = stroke_width(crop)
    if target / 2 <= width <= target * 2:
        return crop
    size = max(2, int(round(abs(target - width))))
    padded = np.pad(crop, size)
    if width < target / 2:
        return ndimage.grey_dilation(padded, size=(size, size))
    thinner = ndimage.grey_erosion(padded, size=(size, size))
    return thinner if thinner.max() >= 0.5 else padded


def fit_to_mnist(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit into 20x20 keeping the aspect, centre by mass in 28x28 (uint8)."""
    crop = _crop(ink)
    crop = _crop(normalise_stroke(crop, 20.0 / max(crop.shape)))
    height, width = crop.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    box = np.asarray(
        Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    )
    box = np.clip(box, 0, 1)
    canvas = np.zeros((28, 28))
    top, left = (28 - box.shape[0]) // 2, (28 - box.shape[1]) // 2
    canvas[top : top + box.shape[0], left : left + box.shape[1]] = box
    centre_row, centre_col = ndimage.center_of_mass(canvas)
    shift_row = int(np.clip(round(14 - centre_row), -top, 28 - top - box.shape[0]))
    shift_col = int(np.clip(round(14 - centre_col), -left, 28 - left - box.shape[1]))
    canvas = np.roll(canvas, (shift_row, shift_col), axis=(0, 1))
    return np.round(canvas * 255).astype(np.uint8)


def _crop(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def flatten_background(ink: np.ndarray) -> np.ndarray:
    """Remove what is wider than a pen stroke (shading, paper edges, shadows) from a large image:
    a white top-hat with a window of a quarter of the image's shorter side."""
    window = min(ink.shape) // 4
    if window < FLATTEN_FROM // 4:
        return ink  # a small image is a digit already cropped: nothing to flatten
    flat = ink - ndimage.grey_opening(ink, size=(window, window))
    # what is left of a paper edge are wedges along the border; a digit photographed whole is
    # inside the frame, so when something is, what touches the border goes
    labels, _ = ndimage.label(flat > max(otsu_threshold(flat), MIN_INK / 2))
    on_border = np.unique(np.concatenate([labels[[0, -1], :].ravel(), labels[:, [0, -1]].ravel()]))
    on_border = on_border[on_border > 0]
    if labels.max() > len(on_border):
        flat[np.isin(labels, on_border)] = 0
    return flat


def to_mnist(source: ImageSource, name: str = "image") -> np.ndarray:
    """One image of one digit -> a 28x28 uint8 MNIST-like digit (white ink on black)."""
    return fit_to_mnist(clean_ink(flatten_background(ink_map(open_image(source, name))), name))


def split_digits(source: ImageSource, name: str = "image") -> list[np.ndarray]:
    """An image of several digits (a written number) -> one 28x28 digit each, left to right."""
    ink = clean_ink(ink_map(open_image(source, name)), name)
    # join the broken strokes of one character vertically, then group by column spans
    joined = ndimage.binary_dilation(ink > 0, structure=np.ones((max(3, ink.shape[0] // 8), 1)))
    columns = joined.any(0)
    spans, start = [], None
    for i, filled in enumerate(np.append(columns, False)):
        if filled and start is None:
            start = i
        elif not filled and start is not None:
            spans.append((start, i))
            start = None
    digits = []
    for begin, end in spans:
        part = np.zeros_like(ink)
        part[:, begin:end] = ink[:, begin:end]
        if part.max() > 0 and (part > 0).sum() >= 3:
            digits.append(fit_to_mnist(part))
    if not digits:
        raise NoDigitFound(f"{name}: no digit found")
    return digits

"""Bring any user image of a digit into MNIST's own form: white ink on black, the digit
fitted into a 20x20 box and placed in 28x28 by its centre of mass.

The steps: read (PNG, JPEG, GIF, BMP, TIFF, WebP or PPM of any mode, EXIF orientation applied,
alpha counted as background) -> ink map in [0, 1] with the polarity decided from the border ->
Otsu mask, specks dropped, background removed (grey levels kept) -> crop -> stroke width brought
near MNIST's -> fit -> centre.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from digitlab.errors import DataError, NoDigitFound
from digitlab.fileio import read_limited

MAX_FILE_BYTES = 50_000_000  # read no more: a path to /dev/zero or a FIFO must not hang or fill memory
# the formats of data.imagefolder.IMAGE_SUFFIXES: Pillow opens these lazily, so the pixel count is
# checked before decoding (an ICO, for one, decodes its image on open)
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
MAX_PIXELS = 16_000_000  # refuse bigger images well before Pillow's decompression-bomb limit
# larger images are shrunk to this many pixels before the float work (a 16 MP photo would take
# 600 MB of arrays); a digit needs far fewer, and the result is 28x28
WORKING_PIXELS = 2_000_000
MIN_INK = 0.15  # ink fainter than this is background
MIN_CONTRAST = 0.2  # strongest ink over the background: blank photos of paper stay below 0.15
FLATTEN_FROM = 160  # images whose shorter side reaches this many pixels get their background flattened
MNIST_STROKE = 2.6  # median stroke width of MNIST test digits (28x28), in pixels
# split_digits: strokes are traced where ink reaches STROKE_CORE of its patch's strongest, so that
# the faint edges of digits that nearly touch do not join them
STROKE_CORE = 0.5
SHORT_STROKE = 0.5  # a stroke shorter than this part of the line's height is a piece of a character
MIN_PART = 0.1  # a character with less ink than this part of the largest one's is a speck, dot or dash
ImageSource = str | Path | bytes | Image.Image | np.ndarray  # or what numpy reads as one: a tensor, lists


def open_image(source: ImageSource, name: str = "image") -> Image.Image:
    """An upright PIL image (EXIF orientation applied) from a path, bytes, a PIL image or an
    array; the first frame of an animation."""
    if not isinstance(source, (str, Path, bytes, bytearray, memoryview, Image.Image)):
        return _from_array(source, name)  # a numpy array, or anything numpy reads as one (a tensor)
    if isinstance(source, (str, Path)):
        name = str(source)
        source = read_limited(source, MAX_FILE_BYTES)
    try:
        image = source
        if not isinstance(image, Image.Image):
            image = Image.open(io.BytesIO(source), formats=FORMATS)
            image.seek(0)
            # from the header of the first frame, before decoding it; transposing keeps the count
            if image.width * image.height > MAX_PIXELS:
                raise DataError(
                    f"{name}: image of {image.width}x{image.height} pixels is too large "
                    f"(at most {MAX_PIXELS:,} pixels)"
                )
            image.load()
        return ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise DataError(
            f"{name}: not a readable image (PNG, JPEG, GIF, BMP, TIFF, WebP or PPM expected)"
        ) from None
    except Image.DecompressionBombError as err:
        raise DataError(f"{name}: image too large ({err})") from None
    # a TIFF strip offset of 1.5 is a TypeError, an EXIF block of a JPEG that is not TIFF a SyntaxError
    except (OSError, SyntaxError, ValueError, TypeError) as err:
        raise DataError(f"{name}: broken or truncated image ({err})") from None


def _from_array(source, name: str) -> Image.Image:
    try:
        array = np.asarray(source)
    except (TypeError, ValueError, RuntimeError) as err:  # ragged lists, tensors on a GPU
        raise DataError(f"{name}: not an image, nor an array of pixels ({err})") from None
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[2]):  # one channel, first or last
        array = array[0] if array.shape[0] == 1 else array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or not array.size:
        raise DataError(f"{name}: expected an H×W, H×W×1, H×W×3 or H×W×4 array, got shape {array.shape}")
    if array.dtype.kind not in "buif":
        raise DataError(f"{name}: expected an array of numbers, got {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).any():
        raise DataError(f"{name}: no finite pixel value (all NaN or infinite)")
    if array.dtype != np.uint8:
        array = np.round(_unit_range(array.astype(np.float64)) * 255).astype(np.uint8)
    return Image.fromarray(array)


def _unit_range(values: np.ndarray) -> np.ndarray:
    """Pixel values of any range in [0, 1]: values in [0, 1] as they are, values in [0, 255] as
    8-bit, any other range from 0 (or the lowest, if negative) to the highest. Zero stays black
    so that blank paper stays blank rather than its noise stretched into ink."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return np.zeros(values.shape)
    low, high = min(finite.min(), 0.0), finite.max()
    values = np.clip(np.nan_to_num(values, nan=low), low, high)
    if low == 0 and high <= 255:
        return values if high <= 1 else values / 255
    return (values - low) / (high - low or 1)  # a flat negative image is all 0


def _to_rgba_float(image: Image.Image) -> np.ndarray:
    """An HxWx4 float array in [0, 1] from an image of any mode; alpha 1 where it has none."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):  # convert() would clip to 8 bits
        grey = _unit_range(np.asarray(image, dtype=np.float64)).astype(np.float32)
        return np.dstack([grey, grey, grey, np.ones_like(grey)])
    if image.mode == "La":  # premultiplied alpha: Pillow converts it to LA only
        image = image.convert("LA")
    return np.asarray(image.convert("RGBA"), dtype=np.float32) / 255  # float32: 16M pixels are 256 MB


def working_size(image: Image.Image) -> Image.Image:
    """`image`, shrunk by a whole factor (box filter) when it has more than WORKING_PIXELS."""
    factor = math.ceil(math.sqrt(image.width * image.height / WORKING_PIXELS))
    if factor <= 1:
        return image
    if image.mode.startswith("I;16"):
        image = image.convert("I")  # 32-bit: every 16-bit value kept
    elif image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):  # the modes reduce() takes
        transparent = image.mode in ("P", "PA", "La") or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    return image.reduce(factor)


def ink_map(image: Image.Image) -> np.ndarray:
    """Ink strength in [0, 1] per pixel (1 = full ink) of an upright image (see open_image),
    whatever the polarity, alpha or mode."""
    rgba = _to_rgba_float(image)
    grey, alpha = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32), rgba[..., 3]
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
    sample = ink.ravel()[:: max(1, ink.size // 20_000)]  # the statistics of the background need no more
    if ink.max() - np.percentile(sample, 10) < MIN_CONTRAST:
        raise NoDigitFound(f"{name}: no digit found (the image is empty or nearly so)")
    mask = ink > max(otsu_threshold(ink), MIN_INK / 2)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        keep = np.flatnonzero(sizes >= max(sizes.max() * 0.05, 2)) + 1
        mask = np.isin(labels, keep)
    if mask.sum() < 3:
        raise NoDigitFound(f"{name}: no digit found (only specks of ink)")
    paper = ink[~mask]
    background = np.median(paper[:: max(1, paper.size // 20_000)]) if paper.size else 0.0
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
    # normalise_stroke pads by a part of the long side: an elongated crop (1x16M pixels) would
    # grow to that side squared, so shrink one longer than the side of the largest square image
    longest = math.isqrt(MAX_PIXELS)
    if max(crop.shape) > longest:
        crop = _crop(np.clip(_resize(crop, longest / max(crop.shape)), 0, 1))
    crop = _crop(normalise_stroke(crop, 20.0 / max(crop.shape)))
    box = np.clip(_resize(crop, 20.0 / max(crop.shape)), 0, 1)
    canvas = np.zeros((28, 28))
    top, left = (28 - box.shape[0]) // 2, (28 - box.shape[1]) // 2
    canvas[top : top + box.shape[0], left : left + box.shape[1]] = box
    centre_row, centre_col = ndimage.center_of_mass(canvas)
    shift_row = int(np.clip(round(14 - centre_row), -top, 28 - top - box.shape[0]))
    shift_col = int(np.clip(round(14 - centre_col), -left, 28 - left - box.shape[1]))
    canvas = np.roll(canvas, (shift_row, shift_col), axis=(0, 1))
    return np.round(canvas * 255).astype(np.uint8)


def _resize(ink: np.ndarray, scale: float) -> np.ndarray:
    height, width = ink.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(
        Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    )


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
    ink = ink_map(working_size(open_image(source, name)))
    return fit_to_mnist(clean_ink(flatten_background(ink), name))


def split_digits(source: ImageSource, name: str = "image") -> list[np.ndarray]:
    """An image of several digits (a written number) -> one 28x28 digit each, left to right:
    the ink split into connected strokes, the strokes of one character joined again."""
    ink = clean_ink(ink_map(working_size(open_image(source, name))), name)
    labels, count = _strokes(ink)
    characters = _characters(labels, count)
    digits = [fit_to_mnist(np.where(np.isin(labels, strokes), ink, 0)) for strokes in characters]
    if not digits:
        raise NoDigitFound(f"{name}: no digit found")
    return digits


def _strokes(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """The connected strokes (8-connected) of cleaned ink, as labels 1..count, traced through
    their cores (see STROKE_CORE); each fainter pixel goes to the nearest core."""
    eight = np.ones((3, 3), bool)
    patches, count = ndimage.label(ink > 0, structure=eight)
    brightest = np.zeros(count + 1)
    np.maximum.at(brightest, patches, ink)
    cores, count = ndimage.label(ink > STROKE_CORE * brightest[patches], structure=eight)
    _, (rows, cols) = ndimage.distance_transform_edt(cores == 0, return_indices=True)
    return np.where(ink > 0, cores[rows, cols], 0), count


def _characters(labels: np.ndarray, count: int) -> list[np.ndarray]:
    """The labels of each character's strokes, left to right; characters with far less ink than
    the largest are specks, dots or dashes."""
    rows, cols = np.nonzero(labels)
    stroke = labels[rows, cols] - 1
    cols = cols - _slant(rows, cols, stroke) * rows
    left, right = np.full(count, np.inf), np.full(count, -np.inf)
    np.minimum.at(left, stroke, cols)
    np.maximum.at(right, stroke, cols + 1)
    sizes = np.bincount(stroke, minlength=count)
    heights = np.array([box[0].stop - box[0].start for box in ndimage.find_objects(labels)])
    spans = list(zip(left, right, strict=True))
    characters = _join_strokes(spans, heights < SHORT_STROKE * (rows.max() + 1 - rows.min()), sizes)
    ink = [sizes[strokes].sum() for strokes in characters]
    kept = [strokes for strokes, n in zip(characters, ink, strict=True) if n >= max(3, MIN_PART * max(ink))]
    centres = np.bincount(stroke, cols, count) / sizes
    kept.sort(key=lambda strokes: np.average(centres[strokes], weights=sizes[strokes]))
    return [np.array(strokes) + 1 for strokes in kept]


def _join_strokes(spans: list[tuple[float, float]], short: np.ndarray, sizes: np.ndarray) -> list[list[int]]:
    """Strokes (their column spans, whether short, their sizes) grouped into characters. Largest
    first, a stroke joins the character whose columns it overlaps most: a short stroke (a detached
    bar, a piece of a broken line) at any overlap, a tall one when it lies mostly within them (the
    two strokes of a 4); else it starts a character."""
    characters: list[list[int]] = []
    character_spans: list[tuple[float, float]] = []
    for i in np.argsort(-sizes, kind="stable"):
        overlaps = [_overlap(spans[i], span) for span in character_spans]
        best = int(np.argmax(overlaps)) if overlaps else None
        if best is not None and _joins(spans[i], character_spans[best], short[i]):
            characters[best].append(i)
            (start, end), (left, right) = character_spans[best], spans[i]
            character_spans[best] = (min(start, left), max(end, right))
        else:
            characters.append([i])
            character_spans.append(spans[i])
    return characters


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def _joins(stroke: tuple[float, float], character: tuple[float, float], short: bool) -> bool:
    """Whether a stroke spanning these columns belongs to a character spanning those."""
    narrower = min(stroke[1] - stroke[0], character[1] - character[0])
    return _overlap(stroke, character) > (0 if short else narrower / 2)


def _slant(rows: np.ndarray, cols: np.ndarray, stroke: np.ndarray) -> float:
    """The writing's slant, in columns per row, from the ink pixels' rows, columns and strokes:
    the slope of column over row (as MNIST's deskewing measures it) within each stroke, pooled,
    so that a line of writing that rises does not count."""
    sizes = np.bincount(stroke)
    rows = rows - (np.bincount(stroke, rows) / np.maximum(sizes, 1))[stroke]
    cols = cols - (np.bincount(stroke, cols) / np.maximum(sizes, 1))[stroke]
    return float(np.clip((rows * cols).sum() / max((rows * rows).sum(), 1e-9), -1, 1))

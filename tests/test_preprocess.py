import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digitlab.errors import DataError
from digitlab.imaging.preprocess import split_digits, stroke_width, to_mnist


@pytest.fixture(scope="module")
def digit(mnist_test) -> np.ndarray:
    return mnist_test.images[0].numpy()  # a 7


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def ink_box(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(image.max(1) > 30), np.flatnonzero(image.max(0) > 30)
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_inverted_colours_upscaled(digit):
    photo = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR)
    out = to_mnist(photo)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert similarity(out, digit) > 0.95
    assert 120 < out.max() and out[0].max() == 0  # white ink on black, clean border


def test_rgba_with_transparent_background(digit):
    rgba = np.zeros((28, 28, 4), np.uint8)  # black ink, alpha carries the strokes
    rgba[..., 3] = digit
    out = to_mnist(Image.fromarray(rgba, "RGBA").resize((140, 140)))
    assert similarity(out, digit) > 0.9


def test_off_centre_tiny_digit_is_centred_and_fitted(digit):
    canvas = np.full((300, 300), 255, np.uint8)
    small = np.asarray(Image.fromarray(255 - digit).resize((30, 30)))
    canvas[10:40, 250:280] = small  # top-right corner
    out = to_mnist(canvas)
    row, col = ndimage.center_of_mass(out.astype(float))
    assert abs(row - 14) < 1.5 and abs(col - 14) < 1.5
    assert max(ink_box(out)) in (19, 20, 21)
    assert similarity(out, digit) > 0.8


def test_huge_digit(digit):
    out = to_mnist(Image.fromarray(255 - digit).resize((2000, 2000)))
    assert max(ink_box(out)) in (19, 20, 21) and similarity(out, digit) > 0.9


def test_noise_specks_are_dropped(digit):
    rng = np.random.default_rng(0)
    photo = np.asarray(Image.fromarray(255 - digit).resize((280, 280))).copy()
    noisy = np.clip(photo.astype(int) + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    specks = rng.integers(0, 280, (15, 2))
    noisy[specks[:, 0], specks[:, 1]] = 0  # single black pixels
    out = to_mnist(noisy)
    assert similarity(out, digit) > 0.9


@pytest.mark.parametrize(
    "image",
    [np.full((50, 50), 255, np.uint8), np.zeros((50, 50), np.uint8), np.full((60, 60), 250, np.uint8)],
)
def test_blank_images_are_errors_not_guesses(image):
    with pytest.raises(DataError, match="no digit found"):
        to_mnist(image, "blank.png")


@pytest.mark.parametrize(
    "fmt, mode", [("PNG", "P"), ("JPEG", "RGB"), ("BMP", "L"), ("GIF", "P"), ("TIFF", "RGB")]
)
def test_file_formats(digit, fmt, mode):
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((112, 112)).convert(mode).save(buffer, format=fmt)
    assert similarity(to_mnist(buffer.getvalue()), digit) > 0.9


def test_thin_pen_strokes_are_thickened():
    image = Image.new("L", (400, 400), 255)
    from PIL import ImageDraw

    ImageDraw.Draw(image).line([(100, 50), (300, 50), (150, 350)], fill=0, width=3)  # a thin 7
    out = to_mnist(image)
    assert stroke_width(out / 255.0) >= 1.5


def test_several_digits_left_to_right(mnist_test):
    parts = [255 - mnist_test.images[i].numpy() for i in (0, 1, 2)]  # 7, 2, 1
    gap = np.full((28, 10), 255, np.uint8)
    number = np.hstack([parts[0], gap, parts[1], gap, parts[2]])
    digits = split_digits(Image.fromarray(number).resize((number.shape[1] * 4, 112)))
    assert len(digits) == 3
    for out, index in zip(digits, (0, 1, 2), strict=True):
        assert similarity(out, mnist_test.images[index].numpy()) > 0.85


def test_broken_and_foreign_files_name_the_file(tmp_path, digit):
    png = io.BytesIO()
    Image.fromarray(digit).save(png, format="PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(png.getvalue()[:60])
    with pytest.raises(DataError, match="cut.png"):
        to_mnist(cut)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(DataError, match="notes.txt: not a readable image"):
        to_mnist(text)
    with pytest.raises(DataError, match="expected an H×W"):
        to_mnist(np.zeros((2, 3, 4, 5)))


def test_shading_and_a_paper_edge_in_a_photo_are_not_ink(digit):
    """A small digit in a large photo with uneven light and a dark corner (the table beyond
    the sheet): only the digit is read."""
    photo = np.full((240, 320), 215.0)
    photo += np.linspace(-25, 25, 320)[None, :]  # uneven light
    rows, cols = np.mgrid[:240, :320]
    photo[cols + 1.2 * rows > 420] = 120  # a dark triangle in the bottom-right corner
    small = np.asarray(Image.fromarray(digit).resize((80, 80), Image.Resampling.BICUBIC), float) / 255
    photo[60:140, 40:120] = photo[60:140, 40:120] * (1 - small) + 30 * small
    out = to_mnist(photo.astype(np.uint8))
    assert similarity(out, digit) > 0.85

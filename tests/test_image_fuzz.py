"""to_mnist on random, truncated and bit-flipped image files: the project's error or a digit,
never a crash."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from digitlab.errors import DataError
from digitlab.imaging.preprocess import to_mnist

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged files
FUZZ = settings(max_examples=200, deadline=None)
POSITIONS = st.one_of(st.integers(0, 99), st.integers(0, 2**20))  # in the headers half of the time


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def valid_files() -> list[bytes]:
    """Small images of a drawn digit in every format and mode that to_mnist reads specially."""
    grey = np.full((40, 40), 255, np.uint8)
    grey[8:32, 18:23] = 0  # a "1"
    grey[8:13, 12:23] = 0
    image = Image.fromarray(grey)
    exif = Image.Exif()
    exif[0x0112] = 6
    transparent = image.convert("P")
    return [
        encoded(image, "PNG"),
        encoded(image.convert("RGB"), "JPEG", exif=exif, dpi=(300, 300)),  # EXIF read on transposing
        encoded(image, "GIF"),
        encoded(image, "BMP"),
        encoded(image, "WEBP"),
        encoded(Image.fromarray(grey.astype(np.uint16) * 257), "PPM"),
        encoded(image.convert("CMYK"), "TIFF"),
        encoded(Image.fromarray(grey.astype(np.float32) / 255), "TIFF"),
        encoded(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        encoded(transparent, "PNG", transparency=255),
        encoded(image.convert("LA"), "PNG"),
        encoded(image.convert("1"), "PNG"),
    ]


VALID = valid_files()


def read_or_refuse(payload: bytes) -> None:
    try:
        out = to_mnist(payload, "fuzz")
    except DataError:  # NoDigitFound included
        return
    assert out.shape == (28, 28) and out.dtype == np.uint8


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(payload):
    read_or_refuse(payload)


@FUZZ
@given(st.sampled_from(VALID), st.floats(0, 1, exclude_max=True))
def test_truncated_files(valid, where):
    read_or_refuse(valid[: int(where * len(valid))])


@FUZZ
@given(st.sampled_from(VALID), st.lists(st.tuples(POSITIONS, st.integers(0, 7)), min_size=1, max_size=6))
def test_bit_flipped_files(valid, flips):
    damaged = bytearray(valid)
    for where, bit in flips:
        damaged[where % len(damaged)] ^= 1 << bit
    read_or_refuse(bytes(damaged))

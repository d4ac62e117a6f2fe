import io
import os
import struct
import threading
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digitlab.analysis.realworld import written_number
from digitlab.errors import DataError
from digitlab.imaging import preprocess
from digitlab.imaging.preprocess import open_image, split_digits, stroke_width, to_mnist
from digitlab.inference.predictor import Predictor


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


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.pretrained("default")


def number_of(mnist_test, indices, gap: int, slant: float = 0.0) -> Image.Image:
    digits = [mnist_test.images[i].numpy() for i in indices]
    return written_number(digits, [gap] * (len(digits) - 1), slant)


def test_slanted_digits_whose_columns_overlap_are_split(mnist_test, shipped):
    paper = number_of(mnist_test, (4, 1), gap=2, slant=0.45)  # an italic 4 and 2
    columns = np.flatnonzero((np.asarray(paper) < 128).any(0))
    assert len(columns) == columns[-1] - columns[0] + 1  # no blank column between them
    assert len(split_digits(paper)) == 2
    assert "".join(p.label for p in shipped.predict_number(paper)) == "42"


# Debian's fonts-liberation and fonts-dejavu-extra, which .ci/run installs
ITALIC_FONTS = ["liberation/LiberationSans-BoldItalic.ttf", "dejavu/DejaVuSans-BoldOblique.ttf"]


@pytest.mark.parametrize("font", ITALIC_FONTS)
def test_italic_printed_number(font, shipped):
    from PIL import ImageDraw, ImageFont

    path = f"/usr/share/fonts/truetype/{font}"
    assert os.path.exists(path), f"{path} missing: apt-get install fonts-liberation fonts-dejavu-extra"
    paper = Image.new("L", (300, 150), 255)
    face = ImageFont.truetype(path, 110)
    ImageDraw.Draw(paper).text((20, 10), "42", font=face, fill=0)
    assert "".join(p.label for p in shipped.predict_number(paper)) == "42"


@pytest.mark.parametrize("index, cut", [(4, 18), (15, 10), (8, 9), (2, 12)])  # a 4, two 5s, a 1
def test_a_digit_broken_in_two_strokes_is_one_part(mnist_test, shipped, index, cut):
    digit = mnist_test.images[index].numpy().copy()
    digit[cut : cut + 2] = 0  # a pen break: two blank rows across the digit
    paper = Image.fromarray(255 - digit).resize((112, 112), Image.Resampling.BILINEAR)
    assert ndimage.label(np.asarray(paper) < 128, structure=np.ones((3, 3)))[1] >= 2
    parts = split_digits(paper)
    assert len(parts) == 1
    assert shipped.predict_mnist(parts[0])[0].label == str(int(mnist_test.labels[index]))


def draw_four(draw) -> None:
    draw.line([(70, 20), (30, 140), (170, 140)], fill=0, width=14)  # the open angle and the bar
    draw.line([(130, 50), (130, 120)], fill=0, width=14)  # the stem, the pen lifted over the bar
    draw.line([(130, 160), (130, 225)], fill=0, width=14)


def draw_five(draw) -> None:
    draw.line([(75, 22), (165, 22)], fill=0, width=14)  # the top bar, apart from the body
    draw.line([(60, 42), (52, 115)], fill=0, width=14)
    draw.arc([(40, 85), (170, 220)], start=-150, end=140, fill=0, width=14)


@pytest.mark.parametrize("draw_digit, label, strokes", [(draw_four, "4", 3), (draw_five, "5", 2)])
def test_a_digit_drawn_in_separate_strokes_is_one_part(shipped, draw_digit, label, strokes):
    from PIL import ImageDraw

    paper = Image.new("L", (200, 240), 255)
    draw_digit(ImageDraw.Draw(paper))
    assert ndimage.label(np.asarray(paper) < 128, structure=np.ones((3, 3)))[1] == strokes
    parts = split_digits(paper)
    assert len(parts) == 1 and shipped.predict_mnist(parts[0])[0].label == label


def test_a_number_with_normal_spacing_reads_left_to_right(mnist_test, shipped):
    paper = number_of(mnist_test, (18, 61, 3), gap=6)  # 3, 8, 0
    assert "".join(p.label for p in shipped.predict_number(paper)) == "380"


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


# --- every mode that Pillow opens, read as its plain 8-bit equivalent -----------------------


@pytest.fixture(scope="module")
def paper(digit) -> Image.Image:
    """The digit as an 8-bit scan: black ink on white paper."""
    return Image.fromarray(255 - digit).resize((112, 112))


@pytest.fixture(scope="module")
def reads_like_paper(paper, trained_checkpoint, mnist_test):
    """Check that an image reads as `paper` does: nearly the same MNIST image, the same digit."""
    predictor = Predictor.from_paths(trained_checkpoint)
    reference, label = to_mnist(paper), str(int(mnist_test.labels[0]))

    def check(source, min_similarity=0.95):
        out = to_mnist(source)
        assert out.shape == (28, 28) and out.dtype == np.uint8
        assert similarity(out, reference) > min_similarity
        assert predictor.predict_mnist(out)[0].label == label

    return check


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def opened_mode(payload: bytes) -> str:
    return Image.open(io.BytesIO(payload)).mode


def test_16_bit_greyscale(paper, reads_like_paper):
    wide = np.asarray(paper).astype(np.uint16) * 257
    png = encoded(Image.fromarray(wide), "PNG")
    pgm = encoded(Image.fromarray(wide), "PPM")
    assert opened_mode(png) == "I;16" and opened_mode(pgm) == "I"
    reads_like_paper(png)
    reads_like_paper(pgm)
    reads_like_paper(Image.fromarray(wide.astype(">u2")))  # I;16B
    reads_like_paper(Image.fromarray(wide // 16))  # 12-bit values in a 16-bit image


@pytest.mark.parametrize("low, high", [(0, 1), (0, 255), (-500, 1000)])
def test_float_tiff_is_scaled_by_its_own_range(paper, reads_like_paper, low, high):
    values = low + np.asarray(paper) / 255 * (high - low)
    tiff = encoded(Image.fromarray(values.astype(np.float32)), "TIFF")
    assert opened_mode(tiff) == "F"
    reads_like_paper(tiff)


def test_transparent_background_is_background_whatever_its_colour(digit, reads_like_paper):
    """Dark ink on a transparent black background: read by alpha, not as a black image."""
    strength = np.asarray(Image.fromarray(digit).resize((112, 112)))
    # a GIF-like palette: index 0 transparent black, k grey 255 - k, the faint edges transparent
    palette = Image.fromarray(np.where(strength < 64, 0, strength), "P")
    palette.putpalette([0, 0, 0] + [255 - k for k in range(1, 256) for _ in range(3)])
    png = encoded(palette, "PNG", transparency=0)
    assert opened_mode(png) == "P"
    reads_like_paper(png)
    la = encoded(Image.merge("LA", [Image.new("L", (112, 112)), Image.fromarray(strength)]), "PNG")
    assert opened_mode(la) == "LA"
    reads_like_paper(la)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(paper, reads_like_paper, fmt):
    payload = encoded(paper.convert("CMYK"), fmt)
    assert opened_mode(payload) == "CMYK"
    reads_like_paper(payload)


def test_1_bit(paper, reads_like_paper):
    scan = paper.point(lambda v: 255 if v > 128 else 0).convert("1")
    png = encoded(scan, "PNG")
    assert opened_mode(png) == "1"
    assert np.array_equal(to_mnist(png), to_mnist(scan.convert("L")))
    assert np.array_equal(to_mnist(png), to_mnist(np.asarray(scan)))  # a bool array
    reads_like_paper(png, min_similarity=0.8)  # the anti-aliased edges are lost


STORED_FOR = {  # EXIF orientation -> how to turn an upright image into the pixels stored
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(paper, reads_like_paper, orientation):
    """A photo taken sideways (a non-square one, so that width and height swap) reads upright."""
    photo = Image.new("L", (150, 112), 255)
    photo.paste(paper, (19, 0))
    stored = photo.transpose(STORED_FOR[orientation]) if orientation > 1 else photo
    exif = Image.Exif()
    exif[0x0112] = orientation
    reads_like_paper(encoded(stored, "JPEG", exif=exif, quality=95))


@pytest.mark.parametrize(
    "array",
    [lambda a: a.astype(np.uint16) * 257, lambda a: a / 255.0, lambda a: a.astype(np.float32)],
    ids=["uint16", "float-0-1", "float-0-255"],
)
def test_arrays_of_any_type(paper, reads_like_paper, array):
    reads_like_paper(array(np.asarray(paper)))


# --- hostile input: refused quickly, with the project's error ------------------------------


def refused_quickly(source) -> DataError:
    """The DataError that open_image(source) raises within seconds (a hang fails the test
    instead of blocking the suite)."""
    errors = []

    def attempt():
        try:
            open_image(source)
        except DataError as err:
            errors.append(err)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), f"open_image({source}) still running after 5 s"
    assert errors, f"open_image({source}) did not raise DataError"
    return errors[0]


def test_devices_and_fifos_are_refused_before_they_are_opened(tmp_path):
    assert "not a regular file" in str(refused_quickly("/dev/zero"))
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would block until someone writes
    assert "pipe.png: not a regular file" in str(refused_quickly(fifo))


def test_files_over_the_limit_are_refused(tmp_path, paper, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(encoded(paper, "PNG"))
    monkeypatch.setattr(preprocess, "MAX_FILE_BYTES", 100)
    with pytest.raises(DataError, match="big.png: file of .* bytes is larger than the 100 allowed"):
        to_mnist(path)


@pytest.mark.parametrize("side", [5000, 20000])  # over our limit; over Pillow's too
def test_a_header_claiming_too_many_pixels_is_refused_before_decoding(paper, side):
    png = bytearray(encoded(paper, "PNG"))
    png[16:24] = struct.pack(">II", side, side)  # IHDR width and height, then its CRC
    png[29:33] = struct.pack(">I", zlib.crc32(png[12:29]))
    # decoding would fail for want of data: "too large" shows the size was checked first
    with pytest.raises(DataError, match="bomb.png: .*too large"):
        to_mnist(bytes(png), "bomb.png")


def test_formats_that_decode_on_open_are_refused(paper):
    """An ICO decodes the PNG inside it when opened, before any size could be checked."""
    with pytest.raises(DataError, match="icon: not a readable image"):
        to_mnist(encoded(paper, "ICO"), "icon")


def test_damaged_headers_that_pillow_does_not_report_as_broken(paper):
    exif = Image.Exif()
    exif[0x0112] = 6
    # an EXIF block that is not TIFF (with dpi in the JFIF header, Pillow leaves it unread on open)
    jpeg = encoded(paper, "JPEG", exif=exif, dpi=(300, 300)).replace(b"MM\x00*", b"M\x00\x00*", 1)
    tiff = bytearray(encoded(paper, "TIFF"))
    entry = tiff.index(struct.pack("<HH", 273, 4))  # StripOffsets, of type LONG
    tiff[entry + 2 : entry + 4] = struct.pack("<H", 11)  # now a FLOAT
    for damaged in (jpeg, bytes(tiff)):
        with pytest.raises(DataError, match="broken or truncated"):
            to_mnist(damaged)


def test_a_long_thin_image_is_read_in_bounded_memory(monkeypatch):
    """Stroke normalisation pads a crop by a part of its long side: unless the crop is shrunk
    first, a 2x8000 line grows to 2082x10080 pixels, and a 15 kB PNG of a 1x16M line to terabytes."""
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 1_000_000)
    line = np.full((2, 8000), 255, np.uint8)
    line[:, 100:7900] = 0
    tracemalloc.start()
    try:
        out = to_mnist(line)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (28, 28) and peak < 50e6


@pytest.mark.parametrize("mode", ["L", "I;16", "F", "P", "CMYK", "RGBA"])
def test_images_larger_than_the_working_size_are_shrunk_first_and_read_alike(mnist_test, mode):
    from digitlab.imaging import preprocess

    digit = Image.fromarray(255 - mnist_test.images[0].numpy()).resize((1600, 1600))
    if mode == "I;16":
        big = Image.fromarray(np.asarray(digit).astype(np.uint16) * 257)
    elif mode == "F":
        big = Image.fromarray(np.asarray(digit).astype(np.float32) / 255)
    else:
        big = digit.convert(mode)
    small = preprocess.working_size(big)
    assert small.width * small.height <= preprocess.WORKING_PIXELS < big.width * big.height
    reference = to_mnist(digit.resize((400, 400))).astype(float)
    assert np.corrcoef(to_mnist(big).astype(float).ravel(), reference.ravel())[0, 1] > 0.9


def test_tensors_lists_and_one_channel_arrays_read_like_the_array(mnist_test):
    import torch

    seven = mnist_test.images[0]  # a torch tensor, as load_dataset gives it
    expected = to_mnist(seven.numpy())
    for source in (seven, seven.numpy()[:, :, None], seven.numpy()[None], seven.tolist()):
        assert np.array_equal(to_mnist(source), expected)
    assert np.array_equal(to_mnist(seven.to(torch.float32) / 255), expected)


@pytest.mark.parametrize(
    "source, message",
    [
        (np.full((28, 28), np.nan), "no finite pixel value"),
        ([[1, 2], [3]], "not an image, nor an array of pixels"),
        (np.zeros((3, 28, 28)), r"expected an H×W, H×W×1, H×W×3 or H×W×4 array, got shape \(3, 28, 28\)"),
    ],
)
def test_arrays_that_are_no_image_are_refused_by_name(source, message):
    with pytest.raises(DataError, match=message):
        to_mnist(source, "drawing")

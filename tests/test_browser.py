"""A real browser draws on the page served by `digitlab serve` and reads the prediction."""

import base64
import io
import itertools
import math
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from conftest import free_port
from digitlab.inference import Predictor
from digitlab.serve.app import png_data_url

pytestmark = pytest.mark.slow  # a server process and a browser: end to end


@pytest.fixture(scope="module")
def server(trained_checkpoint):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitlab",
            "serve",
            str(trained_checkpoint),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/health", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.stdout.read().decode()[-2000:]
                raise RuntimeError(f"digitlab serve did not start: {output}") from None
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def page(browser, server):
    """One page that the tests below share, in their order."""
    page = browser.new_page(viewport={"width": 900, "height": 650})
    page.goto(server)
    yield page
    page.close()


def draw(page, strokes):
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
        page.mouse.up()


def test_drawing_a_seven_with_the_mouse_reads_seven(page):
    draw(page, [[(70, 60), (210, 60), (120, 250)]])
    expect(page.locator("#digit")).to_have_text("7", timeout=20000)
    assert "% sure" in page.inner_text("#confidence")
    assert page.get_attribute("#seen", "src").startswith("data:image/png")


def test_clear_then_draw_a_one(page):
    page.click("#clear")
    assert page.inner_text("#digit") == "?"
    draw(page, [[(140, 40), (140, 240)]])
    expect(page.locator("#digit")).to_have_text("1", timeout=20000)


def test_uploading_a_photo(page, tmp_path, mnist_test):
    draw(page, [[(140, 40), (140, 240)]])  # a drawing still being read when the photo arrives
    path = tmp_path / "photo.jpg"
    Image.fromarray(255 - mnist_test.images[1].numpy()).resize((300, 300)).convert("RGB").save(path)  # a 2
    page.set_input_files("#upload", str(path))
    expect(page.locator("#digit")).to_have_text("2", timeout=20000)
    expect(page.locator("#confidence")).to_contain_text("% sure")


def test_the_upload_is_reached_and_opened_from_the_keyboard(page):
    page.focus("#clear")
    for _ in range(3):  # Clear, Undo when it is enabled, then the upload
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "upload":
            break
    assert page.evaluate("document.activeElement.id") == "upload"
    with page.expect_file_chooser(timeout=5000) as chooser:
        page.keyboard.press("Space")
    assert not chooser.value.is_multiple()


def test_the_model_is_named_on_load(page, trained_checkpoint):
    expect(page.locator("#model")).to_have_text(f"model: {trained_checkpoint / 'best.safetensors'} (fastcnn)")


def test_the_verdict_is_shown(page, tmp_path, mnist_test, trained_checkpoint):
    doubtful = 255 - mnist_test.images[18].numpy()  # a 3 the test model is unsure of
    top = Predictor.from_paths([trained_checkpoint]).predict(doubtful).top
    Image.fromarray(doubtful).save(tmp_path / "doubtful.png")
    page.set_input_files("#upload", str(tmp_path / "doubtful.png"))
    expect(page.locator("#confidence")).to_have_text(f"unsure: {top[0][0]} or {top[1][0]}", timeout=20000)
    Image.fromarray(np.full((60, 60), 255, np.uint8)).save(tmp_path / "blank.png")  # blank paper
    page.set_input_files("#upload", str(tmp_path / "blank.png"))
    expect(page.locator("#confidence")).to_have_text("not a digit?", timeout=20000)
    expect(page.locator("#digit")).to_have_text("?")


def ellipse(x, y, width, height, points=16):
    return [
        (x + width / 2 * math.sin(a), y - height / 2 * math.cos(a))
        for a in np.linspace(0, 2 * math.pi, points + 1)
    ]


ONE_O_SEVEN = [[(40, 55), (40, 225)], ellipse(125, 140, 70, 170), [(190, 60), (260, 60), (215, 225)]]


def test_reading_a_number_shows_each_digit_in_the_room_of_the_bars(page):
    page.click("#clear")
    before = [page.locator(part).bounding_box() for part in (".result", ".readout")]
    page.check("#multi")
    draw(page, ONE_O_SEVEN)
    expect(page.locator("#digit")).to_have_text("107", timeout=20000)
    expect(page.locator("#confidence")).to_have_text("3 digits, all sure")
    expect(page.locator("#digits .reading b")).to_have_text(["1", "0", "7"])
    expect(page.locator("#digits .reading span").first).to_contain_text("% sure")
    expect(page.locator("#bars")).to_be_hidden()
    assert [page.locator(part).bounding_box() for part in (".result", ".readout")] == before
    page.uncheck("#multi")  # the same drawing read again as one digit
    expect(page.locator("#bars")).to_be_visible(timeout=20000)
    expect(page.locator("#digits")).to_be_hidden()
    assert len(page.inner_text("#digit")) == 1


def canned_digit(label: str, verdict: str, top: list[tuple[str, float]]) -> dict:
    return {
        "digit": label,
        "probability": top[0][1],
        "verdict": verdict,
        "top": [{"digit": d, "probability": p} for d, p in top],
        "probabilities": [0.1] * 10,
        "mnist_image": png_data_url(np.zeros((28, 28), np.uint8)),
    }


def test_a_number_shows_each_digit_s_verdict(page):
    """Verdicts the test model never gives (it has no "not a digit" class), from a canned answer."""
    digits = [
        canned_digit("4", "unsure", [("4", 0.5), ("9", 0.4)]),
        canned_digit("1", "not-a-digit", [("1", 0.1)]),
    ]
    answer = {"predictions": [{"name": "image 0", "number": "41", "digits": digits}], "milliseconds": 1.0}
    page.route("**/api/predict*", lambda route: route.fulfill(json=answer))
    try:
        page.click("#clear")
        page.check("#multi")
        draw(page, [[(140, 40), (140, 240)]])
        expect(page.locator("#digits .reading span")).to_have_text(
            ["unsure: 4 or 9", "not a digit?"], timeout=20000
        )
        expect(page.locator("#confidence")).to_have_text("2 digits, 2 in doubt")
    finally:
        page.unroute("**/api/predict*")
        page.uncheck("#multi")


# The page as a person uses it: a fresh page each, at a desktop's or a phone's size.

DESKTOP = {"viewport": {"width": 1000, "height": 800}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
SMALL_PHONE = {
    **PHONE,
    "viewport": {"width": 320, "height": 568},
}  # shows the pad smaller than its 280 pixels
SIZES = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]
PHONES = [pytest.param(PHONE, id="phone"), pytest.param(SMALL_PHONE, id="small-phone")]

# strokes in fractions of the pad's width and height
ONE = [[(0.5, 0.15), (0.5, 0.85)]]
SEVEN = [[(0.25, 0.22), (0.75, 0.22)], [(0.75, 0.22), (0.43, 0.88)]]  # its bar, then its leg
ACROSS = [[(0.2, 0.5), (0.8, 0.5)]]


@pytest.fixture
def fresh_page(browser, server):
    """`fresh_page(size)`: the page just loaded (its model named) in a browser context of its own."""
    contexts = []

    def open_page(size, color_scheme="light"):
        context = browser.new_context(**size, color_scheme=color_scheme)
        contexts.append(context)
        page = context.new_page()
        page.goto(server)
        expect(page.locator("#model")).not_to_have_text("model: …")
        return page

    yield open_page
    for context in contexts:
        context.close()


def paper(page) -> list[float]:
    """The pad's drawing area (inside its border) on the screen: left, top, width, height in CSS pixels."""
    return page.evaluate(
        """() => { const pad = document.getElementById("pad"), box = pad.getBoundingClientRect();
                   return [box.left + pad.clientLeft, box.top + pad.clientTop,
                           box.width - 2 * pad.clientLeft, box.height - 2 * pad.clientTop]; }"""
    )


def screen_points(page, stroke, steps=8) -> list[tuple[float, float]]:
    """A stroke in fractions of the pad as points on the screen, `steps` of them a segment."""
    left, top, width, height = paper(page)
    corners = [(left + fx * width, top + fy * height) for fx, fy in stroke]
    points = corners[:1]
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        points += [(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps) for i in range(1, steps + 1)]
    return points


def mouse_draw(page, strokes):
    for stroke in strokes:
        first, *rest = screen_points(page, stroke)
        page.mouse.move(*first)
        page.mouse.down()
        for point in rest:
            page.mouse.move(*point)
        page.mouse.up()


def touch_draw(page, strokes):
    """A finger draws: real touch events, which Chromium turns into the pointer events the page reads."""
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        first, *rest = screen_points(page, stroke)
        cdp.send(
            "Input.dispatchTouchEvent",
            {"type": "touchStart", "touchPoints": [{"x": first[0], "y": first[1]}]},
        )
        for x, y in rest:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def pad_image(page) -> str:
    return page.evaluate("document.getElementById('pad').toDataURL('image/png')")


def grey(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("L"))


def brightness(page, selector: str, prop: str) -> float:
    rgb = page.locator(selector).evaluate(f"e => getComputedStyle(e).{prop}")
    return float(np.mean([float(v) for v in rgb[rgb.index("(") + 1 : -1].split(",")[:3]]))


def test_the_page_loads_nothing_from_elsewhere(browser, server):
    page = browser.new_page()
    urls = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(server)
    expect(page.locator("#model")).not_to_have_text("model: …")
    page.close()
    assert urls and all(url.startswith(server) for url in urls)  # no CDN: it works offline


@pytest.mark.parametrize("size", SIZES)
def test_no_broken_image_before_the_first_answer(fresh_page, size):
    page = fresh_page(size)
    seen = page.locator("#seen")
    assert seen.get_attribute("src") is None
    expect(seen).to_be_hidden()  # in its empty frame: no broken-image icon
    (touch_draw if size.get("has_touch") else mouse_draw)(page, SEVEN)
    expect(page.locator("#digit")).to_have_text("7", timeout=20000)
    expect(seen).to_be_visible()
    assert seen.evaluate("img => img.naturalWidth") == 28
    page.keyboard.press("Escape")
    expect(seen).to_be_hidden()


@pytest.mark.parametrize("size", SIZES)
def test_the_layout_does_not_jump_on_the_first_prediction(fresh_page, size):
    page = fresh_page(size)
    parts = [
        ".drawing",
        "#pad",
        ".buttons",
        ".result",
        ".answer",
        "#digit",
        "#confidence",
        "#seen",
        "#bars",
        ".timing",
    ]

    def boxes():
        return {part: page.locator(part).bounding_box() for part in parts}

    before = boxes()
    (touch_draw if size.get("has_touch") else mouse_draw)(page, SEVEN)
    expect(page.locator("#digit")).to_have_text("7", timeout=20000)
    expect(page.locator("#timing")).to_contain_text("ms on the server")
    assert boxes() == before
    page.keyboard.press("Escape")
    expect(page.locator("#digit")).to_have_text("?")
    assert boxes() == before


@pytest.mark.parametrize("size", PHONES)
def test_the_page_fits_a_phone(fresh_page, size):
    page = fresh_page(size)
    width, height = page.evaluate("[innerWidth, innerHeight]")
    assert width == size["viewport"]["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing sticks out sideways
    pad = page.locator("#pad").bounding_box()
    assert (
        0 < pad["x"]
        and pad["x"] + pad["width"] < width
        and 0 < pad["y"]
        and pad["y"] + pad["height"] < height
    )
    drawing, result = page.locator(".drawing").bounding_box(), page.locator(".result").bounding_box()
    assert result["y"] >= drawing["y"] + drawing["height"]  # the cards stack
    for card in (drawing, result):
        assert 0 < card["x"] and card["x"] + card["width"] < width


@pytest.mark.parametrize("size", PHONES)
def test_a_finger_draws_a_one_on_a_phone(fresh_page, size):
    page = fresh_page(size)
    shown = paper(page)[2]
    assert (shown < 280) == (size is SMALL_PHONE)  # the 280-pixel pad shown larger, then smaller
    touch_draw(page, ONE)
    expect(page.locator("#digit")).to_have_text("1", timeout=20000)
    ink = grey(pad_image(page)) < 128
    rows, columns = np.nonzero(ink)
    # where the finger went, in canvas pixels: x at half the width, from 15 % to 85 % of the height, a round
    # end of half the pen's width beyond each end
    assert abs(columns.mean() - 140) < 1.5
    assert abs(rows.min() - (42 - 9)) <= 2 and abs(rows.max() - (238 + 9)) <= 2
    assert abs(ink[140].sum() - 18) <= 2  # the pen's 18 pixels of the pad, however large the pad is shown
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")


def test_undo_removes_the_last_stroke_and_keys_undo_and_clear(fresh_page):
    page = fresh_page(DESKTOP)
    undo = page.get_by_role("button", name="Undo")
    expect(undo).to_be_disabled()
    blank = pad_image(page)
    mouse_draw(page, SEVEN[:1])
    bar = pad_image(page)
    mouse_draw(page, SEVEN[1:])
    expect(page.locator("#digit")).to_have_text("7", timeout=20000)
    assert pad_image(page) != bar
    # the leg goes, the bar is drawn again exactly as it was, and that is read anew
    with page.expect_request(
        lambda r: "/api/predict" in r.url and r.post_data_json["image"] == bar, timeout=20000
    ):
        undo.click()
    assert pad_image(page) == bar
    page.keyboard.press("Control+z")
    assert pad_image(page) == blank
    expect(undo).to_be_disabled()
    expect(page.locator("#digit")).to_have_text("?")  # an empty pad: the page as it loaded
    expect(page.locator("#confidence")).to_have_text("draw a digit")
    expect(page.locator("#seen")).to_be_hidden()
    for key in ("Meta+z", "Escape", "Delete"):
        mouse_draw(page, ONE)
        expect(page.locator("#digit")).to_have_text("1", timeout=20000)
        page.keyboard.press(key)
        assert pad_image(page) == blank, key
        expect(page.locator("#digit")).to_have_text("?")
        expect(page.locator("#timing")).to_have_text("")


def test_the_pen_size_sets_the_stroke_width(fresh_page):
    page = fresh_page(DESKTOP)
    pen = page.get_by_label("pen size")
    expect(pen).to_have_value("18")
    widths, inks = {}, {}
    for size in (6, 40):
        page.keyboard.press("Escape")
        pen.fill(str(size))
        expect(page.locator("#pen-size")).to_have_text(str(size))
        mouse_draw(page, ACROSS)
        ink = grey(pad_image(page)) < 128
        widths[size], inks[size] = ink[:, 140].sum(), ink.sum()
    assert abs(widths[6] - 6) <= 2 and abs(widths[40] - 40) <= 2  # in pixels of the 280-pixel pad
    assert inks[40] > 4 * inks[6]


def test_dark_mode_darkens_the_page_but_not_what_the_model_is_sent(fresh_page):
    page = fresh_page(DESKTOP)
    assert brightness(page, "body", "backgroundColor") > 200
    page.emulate_media(color_scheme="dark")  # the system turns dark
    assert brightness(page, "body", "backgroundColor") < 50
    assert brightness(page, "body", "color") > 180
    assert brightness(page, ".result", "backgroundColor") < 60
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json["image"]) if "/api/predict" in r.url else None)
    mouse_draw(page, ONE)
    expect(page.locator("#digit")).to_have_text("1", timeout=20000)
    final = pad_image(page)
    deadline = time.monotonic() + 20
    while final not in sent and time.monotonic() < deadline:  # the last answer may still be on its way
        page.wait_for_timeout(100)
    assert final in sent
    for image in map(grey, sent):  # black ink on white paper, as in light mode
        assert image.shape == (280, 280)
        assert np.median(image) == 255 and image.min() == 0


@pytest.mark.parametrize("size", SIZES)
def test_why_shows_the_pixels_behind_the_answer_and_the_runner_up(fresh_page, size):
    page = fresh_page(size)
    explained = []
    page.on("request", lambda r: explained.append(r) if r.url.endswith("/api/explain") else None)
    box = page.locator("#why-box")
    expect(box).to_be_hidden()
    page.get_by_label("why?").check()
    expect(box).to_be_visible()
    for i in (0, 1):  # empty frames, no broken-image icon, before there is anything to explain
        expect(page.locator(f"#why-{i}")).to_be_hidden()
    page.evaluate("scrollTo(0, 0)")  # ticking it scrolled the page to the box: back to the pad
    (touch_draw if size.get("has_touch") else mouse_draw)(page, SEVEN)
    expect(page.locator("#digit")).to_have_text("7", timeout=20000)
    expect(page.locator("#why-0-caption")).to_contain_text("answer: 7", timeout=20000)
    expect(page.locator("#why-1-caption")).to_contain_text("runner-up: ")
    for i in (0, 1):
        image = page.locator(f"#why-{i}")
        expect(image).to_be_visible()
        assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [112, 112]
    assert 1 <= len(explained) <= len(SEVEN)  # asked when the pen is lifted, not at every move
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.keyboard.press("Escape") if not size.get("has_touch") else page.click("#clear")
    expect(page.locator("#why-0")).to_be_hidden()
    expect(page.locator("#why-0-caption")).to_have_text("")


def test_why_explains_single_digits_only(fresh_page):
    page = fresh_page(DESKTOP)
    page.get_by_label("why?").check()
    page.get_by_label("read a number").check()
    page.evaluate("scrollTo(0, 0)")
    mouse_draw(page, ONE)
    expect(page.locator("#digit")).to_have_text("1", timeout=20000)
    expect(page.locator("#why-note")).to_contain_text("single digit")
    page.get_by_label("why?").uncheck()
    expect(page.locator("#why-box")).to_be_hidden()

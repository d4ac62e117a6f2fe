"""A real browser draws on the page served by `digitlab serve` and reads the prediction."""

import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from digitlab.inference import Predictor
from digitlab.serve.app import png_data_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow  # a server process and a browser: end to end


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
def page(server):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 900, "height": 650})
        page.goto(server)
        yield page
        browser.close()


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

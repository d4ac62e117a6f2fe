"""A real browser draws on the page served by `digitlab serve` and reads the prediction."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import expect

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
    from PIL import Image

    draw(page, [[(140, 40), (140, 240)]])  # a drawing still being read when the photo arrives
    path = tmp_path / "photo.jpg"
    Image.fromarray(255 - mnist_test.images[1].numpy()).resize((300, 300)).convert("RGB").save(path)  # a 2
    page.set_input_files("#upload", str(path))
    expect(page.locator("#digit")).to_have_text("2", timeout=20000)
    expect(page.locator("#confidence")).to_contain_text("% sure")

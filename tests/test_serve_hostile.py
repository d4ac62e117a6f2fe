"""The server under odd and hostile requests, and its micro-batcher (in-process: TestClient)."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitlab.inference import Predictor
from digitlab.serve.app import Batching, create_app
from digitlab.serve.batching import MicroBatcher, Overloaded
from digitlab.serve.requests import Limits


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says width x height (the pixels themselves are never there)."""
    data = bytearray(png_bytes(np.zeros((8, 8), np.uint8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


@pytest.fixture(scope="module")
def client(trained_checkpoint):
    predictor = Predictor.from_paths(trained_checkpoint)
    limits = Limits(max_bytes=300_000, max_images=16, max_pixels=4_000_000, max_total_pixels=6_000_000)
    with TestClient(create_app(predictor, limits)) as client:
        yield client


def assert_error(response, status: int, code: str, words: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "code"}, body
    assert body["code"] == code and words in body["error"]


def test_every_error_has_one_shape_with_a_code(client):
    assert_error(client.get("/nowhere"), 404, "not_found", "Not Found")
    assert_error(client.get("/api/predict"), 405, "method_not_allowed", "Method Not Allowed")
    assert_error(client.post("/api/predict", content=b"x"), 415, "unsupported_media_type", "content type")
    assert_error(client.post("/api/predict", json={"image": "%%%"}), 422, "unreadable_input", "base64")


def test_json_nested_100000_deep_is_a_400(client):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert_error(response, 400, "bad_request", "nested too deeply")


def test_images_too_large_are_refused_from_their_headers_before_decoding(client):
    huge = png_claiming(4000, 4000)  # 16 megapixels claimed in a few hundred bytes
    response = client.post("/api/predict", files={"file": ("huge.png", huge, "image/png")})
    assert_error(response, 413, "too_large", "huge.png: image of 4000x4000 pixels")
    ten = [("file", (f"{i}.png", png_claiming(1000, 1000), "image/png")) for i in range(10)]
    assert_error(client.post("/api/predict", files=ten), 413, "too_large", "10,000,000 pixels in all")
    assert client.get("/api/health").json() == {"status": "ok"}


def test_a_chunked_body_over_the_limit_is_refused(client):
    def chunks():
        for _ in range(100):
            yield b"x" * 10_000  # 1 MB in all, no content-length

    response = client.post("/api/predict", content=chunks(), headers={"content-type": "application/json"})
    assert_error(response, 413, "too_large", "larger than 300,000 bytes")


def test_a_broken_multipart_body_is_a_400(client):
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    response = client.post("/api/predict", content=b"--xyz\r\nbroken", headers=headers)
    assert response.status_code in (400, 422) and "code" in response.json()


def test_docs_need_no_network(client):
    page = client.get("/docs").text
    assert "/openapi.json" in page
    assert "http://" not in page and "https://" not in page  # no CDN: it works offline


def test_metrics_count_requests_latency_and_batch_sizes(client, mnist_test):
    seven = png_bytes(255 - mnist_test.images[0].numpy())
    client.post("/api/predict", files=[("file", (f"{i}.png", seven, "image/png")) for i in range(3)])
    text = client.get("/metrics").text
    assert 'digitlab_requests_total{path="/api/predict",status="200"}' in text
    assert 'digitlab_request_seconds_bucket{le="0.005",path="/api/predict"}' in text
    assert "digitlab_batch_images_count" in text and "digitlab_queue_depth" in text
    sizes = [line for line in text.splitlines() if line.startswith("digitlab_batch_images_sum")]
    assert float(sizes[0].split()[-1]) >= 3


def test_concurrent_requests_share_batches():
    calls, release = [], threading.Event()

    def predict(images):
        release.wait(5)  # hold the first batch so that the others queue up behind it
        calls.append(len(images))
        return list(range(len(images)))

    batcher = MicroBatcher(predict, max_batch=8, max_wait_ms=50, max_queue=16)

    async def clients():
        tasks = [asyncio.create_task(batcher.submit(np.zeros((2, 28, 28), np.uint8))) for _ in range(6)]
        await asyncio.sleep(0.1)
        release.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(clients())
    batcher.close()
    assert all(len(r) == 2 for r in results)
    assert sum(calls) == 12 and len(calls) < 6 and max(calls) <= 8  # batched, within max_batch


def test_a_full_queue_answers_overloaded_at_once():
    release = threading.Event()
    batcher = MicroBatcher(lambda images: (release.wait(5), list(images))[1], max_queue=2, max_wait_ms=0)

    async def flood():
        tasks = [asyncio.create_task(batcher.submit(np.zeros((1, 28, 28), np.uint8))) for _ in range(6)]
        await asyncio.sleep(0.1)
        outcomes = await asyncio.gather(*tasks[2:], return_exceptions=True)  # these could not queue
        release.set()
        await asyncio.gather(*tasks[:2])
        return outcomes

    outcomes = asyncio.run(flood())
    batcher.close()
    assert any(isinstance(o, Overloaded) for o in outcomes)


def test_an_overloaded_server_answers_503_with_retry_after(trained_checkpoint, mnist_test):
    predictor = Predictor.from_paths(trained_checkpoint)
    entered, blocker, real = threading.Event(), threading.Event(), predictor.predict_mnist

    def slow_model(images):
        entered.set()
        blocker.wait(10)
        return real(images)

    predictor.predict_mnist = slow_model
    app = create_app(predictor, batching=Batching(max_pending=1))
    seven = png_bytes(255 - mnist_test.images[0].numpy())
    with TestClient(app) as client:
        first = threading.Thread(
            target=lambda: client.post("/api/predict", files={"file": ("a.png", seven, "image/png")})
        )
        first.start()
        try:
            assert entered.wait(10)  # the first request holds the only place, in the model
            response = client.post("/api/predict", files={"file": ("b.png", seven, "image/png")})
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert response.json()["code"] == "overloaded"
            assert client.get("/api/health").status_code == 200
        finally:
            blocker.set()
            first.join()


def test_an_unexpected_failure_is_a_json_500_in_the_same_shape(trained_checkpoint, mnist_test):
    predictor = Predictor.from_paths(trained_checkpoint)
    predictor.predict_mnist = lambda images: 1 / 0  # a bug deep in the model path
    seven = png_bytes(255 - mnist_test.images[0].numpy())
    with TestClient(create_app(predictor), raise_server_exceptions=False) as client:
        response = client.post("/api/predict", files={"file": ("a.png", seven, "image/png")})
        assert_error(response, 500, "internal_error", "ZeroDivisionError")
        assert client.get("/api/health").status_code == 200

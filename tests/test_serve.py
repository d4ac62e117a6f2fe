import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitlab.inference import Predictor
from digitlab.serve.app import create_app


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(trained_checkpoint):
    app = create_app(Predictor.from_paths([trained_checkpoint]), max_bytes=200_000, max_batch=4)
    return TestClient(app)


@pytest.fixture(scope="module")
def seven(mnist_test):
    return png_bytes(255 - mnist_test.images[0].numpy())  # dark on light, as a scan would be


def test_page_health_model_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/api/predict" in page.text
    assert client.get("/api/health").json() == {"status": "ok"}
    model = client.get("/api/model").json()
    assert model["checkpoints"][0]["model"] == "fastcnn" and model["classes"][7] == "7"
    assert client.get("/docs").status_code == 200
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_multipart_and_json(client, seven, mnist_test):
    answer = client.post("/api/predict", files={"file": ("seven.png", seven, "image/png")}).json()
    prediction = answer["predictions"][0]
    assert prediction["digit"] == "7" and prediction["name"] == "seven.png"
    assert len(prediction["probabilities"]) == 10 and answer["milliseconds"] > 0
    assert prediction["mnist_image"].startswith("data:image/png;base64,")
    two = png_bytes(mnist_test.images[1].numpy())
    batch = client.post(
        "/api/predict",
        json={
            "images": [
                base64.b64encode(seven).decode(),
                "data:image/png;base64," + base64.b64encode(two).decode(),
            ]
        },
    )
    assert [p["digit"] for p in batch.json()["predictions"]] == ["7", "2"]
    files = [("file", ("a.png", seven, "image/png")), ("file", ("b.png", two, "image/png"))]
    assert [p["digit"] for p in client.post("/api/predict", files=files).json()["predictions"]] == ["7", "2"]


def test_an_empty_drawing_reads_as_not_a_digit(client):
    blank = png_bytes(np.full((30, 30), 255, np.uint8))
    response = client.post("/api/predict", files={"file": ("white.png", blank, "image/png")})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["verdict"] == "not-a-digit"


@pytest.mark.parametrize(
    "request_kwargs, status, message",
    [
        (dict(content=b"hello", headers={"content-type": "text/plain"}), 415, "unsupported content type"),
        (dict(files={"file": ("x.png", b"\x89PNG broken", "image/png")}), 422, "x.png"),
        (dict(content=b"{nope", headers={"content-type": "application/json"}), 400, "not valid JSON"),
        (dict(json={"image": "!!!"}), 422, "not valid base64"),
        (dict(json={"picture": "x"}), 422, '"image"'),
        (dict(content=b"x" * 300_000, headers={"content-type": "application/json"}), 413, "larger than"),
        (dict(json={"images": ["aGk="] * 5}), 413, "at most 4"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    client, seven, request_kwargs, status, message
):
    response = client.post("/api/predict", **request_kwargs)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert client.post("/api/predict", files={"file": ("s.png", seven, "image/png")}).status_code == 200

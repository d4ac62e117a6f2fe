import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitlab.engine.pretrained import model_cards, shipped_weights
from digitlab.inference import Predictor
from digitlab.inference.predictor import UNSURE_BELOW
from digitlab.serve.app import create_app
from digitlab.serve.requests import Limits

NUMBER_2026 = (Path(__file__).parent.parent / "docs" / "examples" / "2026.png").read_bytes()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


BLANK = png_bytes(np.full((30, 30), 255, np.uint8))


@pytest.fixture(scope="module")
def client(trained_checkpoint):
    app = create_app(Predictor.from_paths([trained_checkpoint]), Limits(max_bytes=200_000, max_images=4))
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
    response = client.post("/api/predict", files={"file": ("white.png", BLANK, "image/png")})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["verdict"] == "not-a-digit"


def test_each_prediction_has_a_verdict(client, seven, mnist_test):
    doubtful = png_bytes(255 - mnist_test.images[18].numpy())  # a 3 the test model reads 5, 8 or 3
    files = [
        ("file", (name, data, "image/png"))
        for name, data in [("7.png", seven), ("3.png", doubtful), ("white.png", BLANK)]
    ]
    predictions = client.post("/api/predict", files=files).json()["predictions"]
    assert [p["verdict"] for p in predictions] == ["digit", "unsure", "not-a-digit"]
    assert predictions[1]["probability"] < UNSURE_BELOW <= predictions[0]["probability"]


def test_multi_reads_a_written_number(client, seven):
    files = {"file": ("2026.png", NUMBER_2026, "image/png")}
    reading = client.post("/api/predict?multi=1", files=files).json()["predictions"][0]
    assert reading["name"] == "2026.png" and reading["number"] == "2026"
    assert [d["digit"] for d in reading["digits"]] == ["2", "0", "2", "6"]
    for digit in reading["digits"]:
        assert digit["verdict"] == "digit" and len(digit["probabilities"]) == 10
        assert digit["mnist_image"].startswith("data:image/png;base64,")
    # JSON asks with "multi": a lone digit is a number of one digit
    images = [base64.b64encode(data).decode() for data in (NUMBER_2026, seven)]
    batch = client.post("/api/predict", json={"multi": True, "images": images}).json()["predictions"]
    assert [(p["number"], len(p["digits"])) for p in batch] == [("2026", 4), ("7", 1)]
    single = client.post("/api/predict", files=files).json()["predictions"][0]  # without multi: one digit
    assert "number" not in single and "digits" not in single and len(single["digit"]) == 1


def test_the_model_served_is_named(client, trained_checkpoint, second_checkpoint):
    one, two = trained_checkpoint / "best.safetensors", second_checkpoint / "best.safetensors"
    assert client.get("/api/model").json()["name"] == str(one)
    ensemble = TestClient(create_app(Predictor.from_paths([trained_checkpoint, second_checkpoint])))
    model = ensemble.get("/api/model").json()
    assert model["name"] == f"ensemble of 2: {one}, {two}"
    assert [c["model"] for c in model["checkpoints"]] == ["fastcnn", "fastcnn"]
    shipped = next(iter(model_cards()))
    named = TestClient(create_app(Predictor.from_paths(shipped_weights(shipped))))
    assert named.get("/api/model").json()["name"] == shipped


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
        (dict(params={"multi": "1"}, files={"file": ("w.png", BLANK, "image/png")}), 422, "no digit found"),
        (dict(json={"image": "aGk=", "multi": "yes"}), 422, '"multi" must be true or false'),
        (dict(params={"multi": "banana"}, json={"image": "aGk="}), 422, '"multi" must be true or false'),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    client, seven, request_kwargs, status, message
):
    response = client.post("/api/predict", **request_kwargs)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert client.post("/api/predict", files={"file": ("s.png", seven, "image/png")}).status_code == 200


def overlay_of(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_explain_gives_the_answer_and_the_runner_up_with_their_overlays(client, seven, mnist_test):
    predicted = client.post("/api/predict", files={"file": ("seven.png", seven, "image/png")}).json()
    answer = client.post(
        "/api/explain",
        files=[("file", ("seven.png", seven, "image/png")), ("file", ("blank.png", BLANK, "image/png"))],
    )
    assert answer.status_code == 200
    explained, blank = answer.json()["explanations"]
    assert explained["name"] == "seven.png" and explained["method"] == "integrated-gradients"
    top = predicted["predictions"][0]["top"]
    assert [c["digit"] for c in explained["classes"]] == [t["digit"] for t in top[:2]]
    for c, t in zip(explained["classes"], top, strict=False):
        assert c["probability"] == pytest.approx(t["probability"], abs=1e-4)
        overlay = overlay_of(c["overlay"])
        assert overlay.shape == (112, 112, 3)
        assert overlay.std() > 0  # the digit and its attribution, not a flat square
    assert blank == {"name": "blank.png", "blank": True, "classes": []}


def test_explain_refuses_numbers_too_many_images_and_bad_images(client, trained_checkpoint, seven):
    refused = client.post("/api/explain?multi=1", files={"file": ("seven.png", seven, "image/png")})
    assert refused.status_code == 422 and "single digits" in refused.json()["error"]
    bad = client.post("/api/explain", files={"file": ("junk.png", b"junk", "image/png")})
    assert bad.status_code == 422 and "junk.png" in bad.json()["error"]
    roomy = TestClient(create_app(Predictor.from_paths([trained_checkpoint])))
    many = roomy.post("/api/explain", files=[("file", (f"{i}.png", seven, "image/png")) for i in range(9)])
    assert many.status_code == 413 and many.json()["code"] == "too_large"
    assert client.get("/api/health").json() == {"status": "ok"}


def test_an_ensemble_is_explained_as_one_model(trained_checkpoint, second_checkpoint, seven):
    predictor = Predictor.from_paths([trained_checkpoint, second_checkpoint])
    client = TestClient(create_app(predictor))
    predicted = client.post("/api/predict", files={"file": ("seven.png", seven, "image/png")}).json()
    explained = client.post("/api/explain", files={"file": ("seven.png", seven, "image/png")}).json()
    top = predicted["predictions"][0]["top"][0]
    first = explained["explanations"][0]["classes"][0]
    assert first["digit"] == top["digit"] and first["probability"] == pytest.approx(
        top["probability"], abs=1e-4
    )

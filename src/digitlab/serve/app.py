"""The web app: a page to draw a digit (or a number) on, and a JSON API, both calling the Predictor."""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from digitlab.engine.checkpoint import Checkpoint
from digitlab.engine.pretrained import model_cards, pretrained_path
from digitlab.errors import DigitlabError
from digitlab.inference import Prediction, Predictor
from digitlab.models import count_parameters

MAX_REQUEST_BYTES = 5 * 1024 * 1024
MAX_BATCH = 64


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_base64_image(text: object, index: int) -> bytes:
    if not isinstance(text, str) or not text:
        raise RequestError(422, f"image {index}: expected a base64 string (or data URL)")
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, f"image {index}: not valid base64") from None


async def read_request(
    request: Request, max_bytes: int, max_batch: int
) -> tuple[list[tuple[str, bytes]], bool]:
    """(name, bytes) of every image in a multipart upload or a JSON body, and whether each is to be
    read as a number: `?multi=1`, or `"multi": true` in the JSON."""
    multi = request.query_params.get("multi", "").lower() in ("1", "true", "yes")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"request of {int(declared):,} bytes is larger than {max_bytes:,}")
    body = await request.body()
    if len(body) > max_bytes:
        raise RequestError(413, f"request of {len(body):,} bytes is larger than {max_bytes:,}")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=max_batch + 1)
        images = [
            (getattr(item, "filename", None) or key, await item.read())
            for key, item in form.multi_items()
            if hasattr(item, "read")
        ]
    elif kind == "application/json":
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError(400, "body is not valid JSON") from None
        if not isinstance(payload, dict) or not ({"image", "images"} & set(payload)):
            raise RequestError(422, 'JSON must hold "image" (base64 PNG) or "images" (a list of them)')
        listed = payload.get("images", [payload.get("image")])
        if not isinstance(listed, list):
            raise RequestError(422, '"images" must be a list of base64 strings')
        if not isinstance(payload.get("multi", False), bool):
            raise RequestError(422, '"multi" must be true or false')
        multi = multi or payload.get("multi", False)
        images = [(f"image {i}", decode_base64_image(text, i)) for i, text in enumerate(listed)]
    else:
        raise RequestError(
            415,
            f"unsupported content type {kind or '(none)'!r}: send multipart/form-data "
            "with image files, or JSON with base64 images",
        )
    if not images:
        raise RequestError(422, "no image in the request")
    if len(images) > max_batch:
        raise RequestError(413, f"{len(images)} images in one request; at most {max_batch}")
    return images, multi


def shipped_name(path: Path | None) -> str | None:
    """The name of the shipped model whose weights are at `path`, if any."""
    if path is None:
        return None
    return next((name for name in model_cards() if pretrained_path(name).resolve() == path.resolve()), None)


def served_name(checkpoints: list[Checkpoint]) -> str:
    """What a person calls the model served: a shipped model's name, a path, or an ensemble of them."""
    names = [shipped_name(c.path) or str(c.path) for c in checkpoints]
    return names[0] if len(names) == 1 else f"ensemble of {len(names)}: {', '.join(names)}"


def prediction_dict(prediction: Prediction) -> dict:
    return {**prediction.to_dict(), "mnist_image": png_data_url(prediction.image)}


def number_dict(digits: list[Prediction]) -> dict:
    """A written number: its digits' labels joined, left to right, and each digit's prediction."""
    return {"number": "".join(d.label for d in digits), "digits": [prediction_dict(d) for d in digits]}


def create_app(
    predictor: Predictor, max_bytes: int = MAX_REQUEST_BYTES, max_batch: int = MAX_BATCH
) -> FastAPI:
    app = FastAPI(title="digitlab", description="Read handwritten digits with digitlab models.")
    page = (resources.files("digitlab.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/model")
    async def model() -> dict:
        return {
            "name": served_name(predictor.checkpoints),
            "classes": predictor.classes,
            "tta": predictor.tta,
            "checkpoints": [
                {
                    "path": str(c.path),
                    "model": c.model_name,
                    "parameters": count_parameters(c.model),
                    "metrics": {"val": c.meta.val},
                    "dataset": c.meta.dataset,
                }
                for c in predictor.checkpoints
            ],
        }

    @app.post(
        "/api/predict",
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                            },
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "image": {"type": "string", "description": "base64 PNG or data URL"},
                                "images": {"type": "array", "items": {"type": "string"}},
                                "multi": {"type": "boolean", "description": "read each image as a number"},
                            },
                        }
                    },
                }
            }
        },
    )
    async def predict(request: Request) -> JSONResponse:
        """Predict the digit in each uploaded image (multipart files, or JSON base64); with
        `?multi=1` read each as a number: its `number` and the prediction of each of its `digits`."""
        start = time.perf_counter()
        images, multi = await read_request(request, max_bytes, max_batch)
        try:
            if multi:
                results = [
                    {"name": name, **number_dict(predictor.predict_number(data, name))}
                    for name, data in images
                ]
            else:
                predictions = predictor.predict_many(
                    [data for _, data in images], [name for name, _ in images]
                )
                results = [
                    {"name": name, **prediction_dict(p)}
                    for (name, _), p in zip(images, predictions, strict=True)
                ]
        except DigitlabError as err:
            raise RequestError(422, str(err)) from None
        return JSONResponse(
            {"predictions": results, "milliseconds": round((time.perf_counter() - start) * 1000, 2)}
        )

    return app

"""The web app: a page to draw a digit on, and a JSON API, both calling the Predictor."""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from digitlab.errors import DigitlabError
from digitlab.inference import Predictor
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


async def images_from_request(request: Request, max_bytes: int, max_batch: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in a multipart upload or a JSON body."""
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
    return images


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
                            },
                        }
                    },
                }
            }
        },
    )
    async def predict(request: Request) -> JSONResponse:
        """Predict the digit in each uploaded image (multipart files, or JSON base64)."""
        start = time.perf_counter()
        images = await images_from_request(request, max_bytes, max_batch)
        try:
            predictions = predictor.predict_many([data for _, data in images], [name for name, _ in images])
        except DigitlabError as err:
            raise RequestError(422, str(err)) from None
        results = [
            {"name": name, **p.to_dict(), "mnist_image": png_data_url(p.image)}
            for (name, _), p in zip(images, predictions, strict=True)
        ]
        return JSONResponse(
            {"predictions": results, "milliseconds": round((time.perf_counter() - start) * 1000, 2)}
        )

    return app

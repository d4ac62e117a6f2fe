"""The web app: a page to draw a digit (or a number) on, and a JSON API, both calling the Predictor.

The event loop only reads requests and writes answers. Decoding images runs in a few worker
threads, the model in the micro-batcher's thread (serve.batching), so `/api/health` answers at
once under any load, and concurrent requests share model batches.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import anyio
import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from digitlab.analysis.explain import Explanation, explain, explained_model
from digitlab.engine.checkpoint import Checkpoint
from digitlab.engine.pretrained import model_cards, shipped_weights
from digitlab.errors import DigitlabError, NoDigitFound
from digitlab.imaging import split_digits, to_mnist
from digitlab.inference import Prediction, Predictor
from digitlab.models import count_parameters
from digitlab.serve import metrics
from digitlab.serve.batching import MicroBatcher, Overloaded
from digitlab.serve.requests import Limits, RequestError, drain, read_images
from digitlab.serve.settings import Batching

log = logging.getLogger("digitlab.serve")
# the multipart parser logs a warning for every malformed body it is sent: the client's 400 says it
logging.getLogger("python_multipart").setLevel(logging.ERROR)


def png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def shipped_name(path: Path | None) -> str | None:
    """The name of the shipped model whose weights are at `path`, if any."""
    if path is None:
        return None
    singles = (name for name, card in model_cards().items() if card.file)
    return next((name for name in singles if shipped_weights(name)[0].samefile(path)), None)


def served_name(checkpoints: list[Checkpoint]) -> str:
    """What a person calls the model served: a shipped model's name, a path, or an ensemble of them."""
    names = [shipped_name(c.path) or str(c.path) for c in checkpoints]
    return names[0] if len(names) == 1 else f"ensemble of {len(names)}: {', '.join(names)}"


def explanation_dict(explanation: Explanation) -> dict:
    """An explanation for the page: the two likeliest classes, each with its probability and its
    attribution overlay (a PNG data URL, 4x the 28x28 the model saw, on one colour scale)."""
    from digitlab.analysis.figures import attribution_overlay, attribution_scale  # matplotlib: on first use

    scale = attribution_scale(explanation.attributions)
    overlays = [
        (attribution_overlay(explanation.image, a, scale) * 255).round().astype(np.uint8)
        for a in explanation.attributions
    ]
    return {
        "name": explanation.name,
        "method": explanation.method,
        "classes": [
            {
                "digit": label,
                "probability": probability,
                "overlay": png_data_url(overlay.repeat(4, 0).repeat(4, 1)),
            }
            for label, probability, overlay in zip(
                explanation.classes, explanation.probabilities, overlays, strict=True
            )
        ],
    }


def prediction_dict(prediction: Prediction) -> dict:
    return {**prediction.to_dict(), "mnist_image": png_data_url(prediction.image)}


def number_dict(digits: list[Prediction]) -> dict:
    """A written number: its digits' labels joined, left to right, and each digit's prediction."""
    return {"number": "".join(d.label for d in digits), "digits": [prediction_dict(d) for d in digits]}


def decode(images: list[tuple[str, bytes]], multi: bool) -> list[np.ndarray | None]:
    """Each image in MNIST form: (1, 28, 28), a number's digits (k, 28, 28), or None if blank.
    Runs in a decode thread; a bad image raises DataError naming it."""
    decoded = []
    for name, data in images:
        try:
            decoded.append(np.stack(split_digits(data, name)) if multi else to_mnist(data, name)[None])
        except NoDigitFound:
            if multi:
                raise
            decoded.append(None)
    return decoded


def error_response(status: int, message: str, code: str) -> JSONResponse:
    """Every error of the API has this one shape: {"error": message, "code": code}. The connection
    is closed after it: an error can be answered before the request's body was read (too large,
    wrong type, busy), and uvicorn would otherwise read and discard the rest, however long."""
    headers = {"Connection": "close", **({"Retry-After": "1"} if status == 503 else {})}
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


class MetricsMiddleware:
    """Counts and times every HTTP request (plain ASGI: no per-request task or body copy)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
            metrics.REQUESTS.labels(path, str(status[0])).inc()
            metrics.LATENCY.labels(path).observe(time.perf_counter() - start)


KNOWN_PATHS = {
    "/",
    "/api/predict",
    "/api/explain",
    "/api/health",
    "/api/model",
    "/metrics",
    "/docs",
    "/openapi.json",
}


MAX_EXPLAINED = 8  # images one explanation request may hold: each costs 64 forward/backward passes


class Service:
    """What the routes share: the predictor, the request limits, the micro-batcher, the decode
    threads, the explaining thread and the counts of requests in progress."""

    def __init__(self, predictor: Predictor, limits: Limits, batching: Batching):
        self.predictor, self.limits, self.batching = predictor, limits, batching
        self.in_progress = {"predictions": 0, "explanations": 0}  # requests admitted, by kind
        self.batcher = MicroBatcher(
            predictor.predict_mnist,
            batching.max_batch,
            batching.max_wait_ms,
            batching.max_pending,
            on_batch=metrics.BATCH_SIZE.observe,
            coming=self.coming,
        )
        self.decoders = anyio.CapacityLimiter(batching.decode_threads)
        # attributions need gradients, so they run beside the batcher, one request at a time
        self.explainer = anyio.CapacityLimiter(1)

    def coming(self) -> int:
        """Prediction requests admitted and not yet queued for the model (the batcher waits for them)."""
        return self.in_progress["predictions"] - self.batcher.depth

    def model_info(self) -> dict:
        checkpoints = self.predictor.checkpoints
        return {
            "name": served_name(checkpoints),
            "classes": self.predictor.classes,
            "tta": self.predictor.tta,
            "checkpoints": [
                {
                    "path": str(c.path),
                    "model": c.model_name,
                    "parameters": count_parameters(c.model),
                    "metrics": {"val": c.meta.val},
                    "dataset": c.meta.dataset,
                }
                for c in checkpoints
            ],
        }

    async def answer(self, images: list[tuple[str, bytes]], multi: bool) -> list[dict]:
        """Each image decoded in a decode thread, then predicted in a shared model batch."""
        try:
            decoded = await anyio.to_thread.run_sync(decode, images, multi, limiter=self.decoders)
        except DigitlabError as err:
            raise RequestError(422, str(err)) from None
        found = [d for d in decoded if d is not None]
        try:
            predictions = iter(await self.batcher.submit(np.concatenate(found)) if found else [])
        except Overloaded as err:
            raise RequestError(503, f"the server is busy ({err}); try again") from None
        results = []
        for (name, _), digits in zip(images, decoded, strict=True):
            if digits is None:
                results.append({"name": name, **prediction_dict(Prediction.blank(self.predictor.classes))})
            elif multi:
                results.append({"name": name, **number_dict([next(predictions) for _ in digits])})
            else:
                results.append({"name": name, **prediction_dict(next(predictions))})
        return results

    def explain_images(self, images: list[tuple[str, bytes]]) -> list[dict]:
        """Each image decoded and explained (integrated gradients for its two likeliest classes);
        a blank image gets no explanation. Runs in the explaining thread."""
        decoded = decode(images, multi=False)
        found = [(name, d[0]) for (name, _), d in zip(images, decoded, strict=True) if d is not None]
        model = explained_model([c.model for c in self.predictor.checkpoints])
        explained = iter(
            explain(model, np.stack([d for _, d in found]), self.predictor.classes, [n for n, _ in found])
            if found
            else []
        )
        return [
            {"name": name, "blank": True, "classes": []} if d is None else explanation_dict(next(explained))
            for (name, _), d in zip(images, decoded, strict=True)
        ]

    async def answer_explain(self, images: list[tuple[str, bytes]], multi: bool) -> list[dict]:
        if multi:
            raise RequestError(422, "explanations are of single digits; leave out multi")
        if len(images) > MAX_EXPLAINED:
            raise RequestError(
                413, f"{len(images)} images to explain in one request; at most {MAX_EXPLAINED}"
            )
        try:
            return await anyio.to_thread.run_sync(self.explain_images, images, limiter=self.explainer)
        except DigitlabError as err:
            raise RequestError(422, str(err)) from None

    async def respond(self, request: Request, kind: str, work) -> Response:
        """Admit a request of `kind` (503 beyond max_pending of that kind in progress), read its
        images and answer `{kind: await work(images, multi), "milliseconds": ...}`."""
        if self.in_progress[kind] >= self.batching.max_pending:
            raise RequestError(
                503, f"the server is busy ({self.in_progress[kind]} requests in progress); try again"
            )
        start = time.perf_counter()
        self.in_progress[kind] += 1
        metrics.IN_FLIGHT.inc()
        try:
            images, multi = await read_images(request, self.limits)
            results = await work(images, multi)
        except ClientDisconnect:
            log.info("client went away before its request was read; nothing answered")
            return Response(status_code=400)
        finally:
            self.in_progress[kind] -= 1
            metrics.IN_FLIGHT.dec()
        return JSONResponse({kind: results, "milliseconds": round((time.perf_counter() - start) * 1000, 2)})

    async def predict(self, request: Request) -> Response:
        """Predict the digit in each uploaded image (multipart files, or JSON base64); with
        `?multi=1` read each as a number: its `number` and the prediction of each of its `digits`."""
        return await self.respond(request, "predictions", self.answer)

    async def explain(self, request: Request) -> Response:
        """Why the model read each uploaded image as it did (the bodies of /api/predict, at most 8
        images): its two likeliest classes, each with its probability and an overlay of the pixels
        that raised (red) or lowered (blue) the class's score."""
        return await self.respond(request, "explanations", self.answer_explain)


def static_page(name: str) -> str:
    return (resources.files("digitlab.serve") / "static" / name).read_text(encoding="utf-8")


router = APIRouter()


def service(request: Request) -> Service:
    return request.app.state.service


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request) -> str:
    return request.app.state.page


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def docs(request: Request) -> str:
    return request.app.state.docs_page


@router.get("/api/health")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    metrics.QUEUE_DEPTH.set(service(request).batcher.depth)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@router.get("/api/model")
async def model(request: Request) -> dict:
    return service(request).model_info()


async def refusal(request: Request, status: int, message: str, code: str) -> JSONResponse:
    """A 4xx or 503 answer, after the rest of a small body is read: the answer closes the
    connection, and one closed on a body still arriving is reset, so the client would see the
    reset instead of the answer (see `drain`)."""
    await drain(request, service(request).limits.max_bytes)
    return error_response(status, message, code)


async def request_error(request: Request, error: RequestError) -> JSONResponse:
    return await refusal(request, error.status, error.message, error.code)


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    return await refusal(
        request, error.status_code, str(error.detail), RequestError.CODES.get(error.status_code, "error")
    )


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    message = str(error.errors()[0].get("msg", "invalid request"))
    return await refusal(request, 422, message, "unreadable_input")


async def internal_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("error answering %s %s", request.method, request.url.path)  # a bug: keep its traceback
    return error_response(
        500, f"internal error ({type(error).__name__}); see the server's log", "internal_error"
    )


def create_app(
    predictor: Predictor, limits: Limits | None = None, batching: Batching | None = None
) -> FastAPI:
    shared = Service(predictor, limits or Limits(), batching or Batching())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        shared.batcher.close()  # after the server stopped taking requests: finish the queued batches

    app = FastAPI(
        lifespan=lifespan,
        title="digitlab",
        description="Read handwritten digits with digitlab models. Every error is "
        '`{"error": message, "code": code}` with code one of: '
        + ", ".join(sorted(set(RequestError.CODES.values()))),
        docs_url=None,  # our own page needs no CDN, so /docs works offline
        redoc_url=None,
    )
    app.state.service = shared
    app.state.page, app.state.docs_page = static_page("index.html"), static_page("docs.html")
    app.add_middleware(MetricsMiddleware)
    for kind, handler in [
        (RequestError, request_error),
        (HTTPException, http_error),
        (RequestValidationError, validation_error),
        (Exception, internal_error),
    ]:
        app.add_exception_handler(kind, handler)
    app.include_router(router)
    app.add_api_route("/api/predict", shared.predict, methods=["POST"], openapi_extra=PREDICT_SCHEMA)
    app.add_api_route("/api/explain", shared.explain, methods=["POST"], openapi_extra=EXPLAIN_SCHEMA)
    return app


PREDICT_SCHEMA = {
    "parameters": [
        {
            "name": "multi",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean"},
            "description": "read each image as a number of several digits",
        }
    ],
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
    },
}

EXPLAIN_SCHEMA = {"requestBody": PREDICT_SCHEMA["requestBody"]}

"""Reading a prediction request safely: the body is read with its size limit enforced while it
streams, images are counted and their pixels measured from their headers before any is
decoded, and every malformed body is a 4xx `RequestError`."""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass

from fastapi import Request
from PIL import Image, UnidentifiedImageError
from starlette.requests import ClientDisconnect

from digitlab.imaging.preprocess import FORMATS, MAX_PIXELS


class RequestError(Exception):
    """A request the server refuses: an HTTP status, a short code and a message for people."""

    CODES = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        415: "unsupported_media_type",
        422: "unreadable_input",
        500: "internal_error",
        503: "overloaded",
    }

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or self.CODES.get(status, "error")


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_bytes: int = 5 * 1024 * 1024  # the whole body
    max_images: int = 64
    max_pixels: int = MAX_PIXELS  # one image, width x height from its header
    max_total_pixels: int = 24_000_000  # all images of one request together


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, read as it streams; reading stops at the limit (a chunked body has no length)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"request of {int(declared):,} bytes is larger than {max_bytes:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"request body is larger than {max_bytes:,} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette's form parser reads the cached body instead of the spent stream
    return body


async def drain(request: Request, max_bytes: int) -> None:
    """Read and drop what is left of a body of at most `max_bytes` (by its Content-Length) before
    an answer that needs none of it: a connection closed with its body unread is reset, and the
    client then sees the reset instead of the answer. A longer body is left unread: closing is
    cheaper. A body read already is not read again."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) <= max_bytes:
        try:
            async for _ in request.stream():  # the cached body, if `read_body` read it
                pass
        except (ClientDisconnect, RuntimeError):  # RuntimeError: a stream consumed, not cached
            pass


def multi_flag(request: Request) -> bool:
    """`?multi=`: read each image as a number."""
    value = request.query_params.get("multi", "").lower()
    if value not in ("", "0", "1", "false", "true", "no", "yes"):
        raise RequestError(422, f'"multi" must be true or false, got {value!r}')
    return value in ("1", "true", "yes")


def decode_base64_image(text: object, index: int) -> bytes:
    if not isinstance(text, str) or not text:
        raise RequestError(422, f"image {index}: expected a base64 string (or data URL)")
    payload = text.partition(",")[2] if text.startswith("data:") else text  # "data:" alone: no image
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, f"image {index}: not valid base64") from None


def _json_images(body: bytes) -> tuple[list[tuple[str, bytes]], bool]:
    try:
        payload = json.loads(body)
    except ValueError:  # not JSON, not UTF-8, or an integer of over 4,300 digits (Python refuses those)
        raise RequestError(400, "body is not valid JSON") from None
    except RecursionError:  # nested thousands deep
        raise RequestError(400, "body is JSON nested too deeply") from None
    if not isinstance(payload, dict) or not ({"image", "images"} & set(payload)):
        raise RequestError(422, 'JSON must hold "image" (base64 PNG) or "images" (a list of them)')
    listed = payload.get("images", [payload.get("image")])
    if not isinstance(listed, list):
        raise RequestError(422, '"images" must be a list of base64 strings')
    if not isinstance(payload.get("multi", False), bool):
        raise RequestError(422, '"multi" must be true or false')
    return [(f"image {i}", decode_base64_image(text, i)) for i, text in enumerate(listed)], payload.get(
        "multi", False
    )


async def _form_images(request: Request, max_images: int) -> list[tuple[str, bytes]]:
    try:
        form = await request.form(max_files=max_images + 1)
    except Exception as err:  # starlette raises several types for a broken multipart body
        raise RequestError(400, f"not a readable multipart body ({str(err) or type(err).__name__})") from None
    return [
        (getattr(item, "filename", None) or key, await item.read())
        for key, item in form.multi_items()
        if hasattr(item, "read")
    ]


def check_pixels(images: list[tuple[str, bytes]], limits: Limits) -> None:
    """Refuse images too large to decode, from their headers alone (nothing is decoded here)."""
    total = 0
    for name, data in images:
        try:
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:  # none decodes on open
                width, height = image.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            continue  # unreadable: the decoder says so in the answer for this image
        if width * height > limits.max_pixels:
            raise RequestError(
                413, f"{name}: image of {width}x{height} pixels is larger than {limits.max_pixels:,} pixels"
            )
        total += width * height
    if total > limits.max_total_pixels:
        raise RequestError(
            413, f"the request's images hold {total:,} pixels in all; at most {limits.max_total_pixels:,}"
        )


async def read_images(request: Request, limits: Limits) -> tuple[list[tuple[str, bytes]], bool]:
    """(name, bytes) of every image in a multipart upload or a JSON body, and whether each is to be
    read as a number: `?multi=1`, or `"multi": true` in the JSON."""
    multi = multi_flag(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise RequestError(
            415,
            f"unsupported content type {kind or '(none)'!r}: send multipart/form-data "
            "with image files, or JSON with base64 images",
        )
    body = await read_body(request, limits.max_bytes)
    if kind == "multipart/form-data":
        images = await _form_images(request, limits.max_images)
    else:
        images, json_multi = _json_images(body)
        multi = multi or json_multi
    if not images:
        raise RequestError(422, "no image in the request")
    if len(images) > limits.max_images:
        raise RequestError(413, f"{len(images)} images in one request; at most {limits.max_images}")
    check_pixels(images, limits)
    return images, multi

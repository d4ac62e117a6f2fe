"""The request parser of `POST /api/predict` on random and damaged requests (in-process: TestClient):
never a 5xx, and every refusal is the API's one error shape {"error": message, "code": code}."""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitlab.inference import Predictor
from digitlab.serve.app import create_app

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def drawn_seven() -> bytes:
    """A small PNG of a 7 drawn in black on white: a valid image for the parser to get far with."""
    paper = np.full((28, 28), 255, np.uint8)
    paper[5:8, 6:22] = 0
    for row in range(8, 24):
        column = 21 - (row - 8) // 2
        paper[row, column - 1 : column + 2] = 0
    buffer = io.BytesIO()
    Image.fromarray(paper).save(buffer, format="PNG")
    return buffer.getvalue()


SEVEN = drawn_seven()
SEVEN_B64 = base64.b64encode(SEVEN).decode("ascii")

CONTENT_TYPES = [
    "multipart/form-data",  # no boundary
    "multipart/form-data; boundary=",
    'multipart/form-data; boundary="',
    "multipart/form-data; boundary=xyz",
    "Multipart/Form-Data; BOUNDARY=xyz",
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "APPLICATION/JSON",
    "text/plain",
    "image/png",
    "",
    ";",
]

QUERIES = st.one_of(
    st.sampled_from(
        ["", "?multi=1", "?multi=true", "?multi=yes", "?multi=0", "?multi=", "?multi", "?multi=1&multi=0"]
    ),
    st.sampled_from(["?multi=%FF", "?multi=%00", "?%zz", "?multi=1;x", "?&&=&"]),
    st.text(max_size=20).map(lambda value: "?multi=" + quote(value)),
)

BOUNDARY = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=? ",
    min_size=1,
    max_size=40,
).filter(lambda text: not text.endswith(" "))


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` intact (half the time), or cut short, with a byte changed, bytes inserted or taken out."""
    if not data or draw(st.booleans()):
        return data
    where = draw(st.integers(0, len(data) - 1))
    kind = draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
    if kind == "cut":
        return data[:where]
    if kind == "flip":
        return data[:where] + bytes([data[where] ^ draw(st.integers(1, 255))]) + data[where + 1 :]
    if kind == "insert":
        return data[:where] + draw(st.binary(min_size=1, max_size=64)) + data[where:]
    return data[:where] + data[where + draw(st.integers(1, 64)) :]  # delete


@st.composite
def multipart_requests(draw) -> tuple[str, bytes]:
    boundary = draw(BOUNDARY)
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["file", "files", "image", "", 'a"b', "é"]))
        if draw(st.booleans()):  # a file
            content = draw(st.one_of(st.just(SEVEN), damaged(SEVEN), st.binary(max_size=300)))
            filename = draw(st.sampled_from(["seven.png", "", "x.jpg", "../../etc/passwd", "é\u202e.png"]))
            kind = draw(st.sampled_from(["image/png", "application/octet-stream", "text/plain", ""]))
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            head += f"Content-Type: {kind}\r\n" if kind else ""
        else:  # a plain form field
            content = draw(st.text(max_size=30).map(str.encode) | st.binary(max_size=50))
            head = f'Content-Disposition: form-data; name="{name}"\r\n'
        parts.append(f"--{boundary}\r\n{head}\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    header = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                f"multipart/form-data; charset=utf-8; boundary={boundary}",
                "multipart/form-data",  # no boundary
                "multipart/form-data; boundary=other",
            ]
        )
    )
    return header, draw(damaged(body))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
BASE64_TEXT = st.one_of(
    st.binary(max_size=200).map(lambda data: base64.b64encode(data).decode("ascii")),
    st.just(SEVEN_B64),
    damaged(SEVEN).map(lambda data: base64.b64encode(data).decode("ascii")),
    st.text(max_size=30),
)
IMAGE_TEXT = st.builds(
    lambda prefix, text: prefix + text,
    st.sampled_from(["", "data:", "data:image/png;base64,", "data:image/png", "data:,"]),
    BASE64_TEXT,
)
JSON_FRAGMENTS = [
    b"",
    b"{",
    b'{"image":',
    b'{"image": "',
    b'{"images": [',
    b"null",
    b"NaN",
    b"[]",
    b'"\\ud800"',
    b'{"image": "\\ud800"}',
    b'{"image": ' + b"1" * 5000 + b"}",  # Python's int() refuses over 4,300 digits
    b"[" * 3000 + b"]" * 3000,
    b'{"image": "x"}\x00',
    b"\xef\xbb\xbf{}",
    '{"image": "é"}'.encode("utf-16"),
]


@st.composite
def json_requests(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["image", "images", "value", "fragment"]))
    if kind == "image":
        payload = {"image": draw(IMAGE_TEXT)}
    elif kind == "images":
        payload = {"images": draw(st.lists(IMAGE_TEXT | JSON_VALUES, max_size=4))}
    elif kind == "value":
        payload = {draw(st.sampled_from(["image", "images", "other"])): draw(JSON_VALUES)}
    else:
        return "application/json", draw(st.sampled_from(JSON_FRAGMENTS))
    if draw(st.booleans()):
        payload["multi"] = draw(st.booleans() | JSON_VALUES)
    body = json.dumps(payload, allow_nan=True).encode()
    return draw(st.sampled_from(["application/json", "application/json; charset=utf-8"])), draw(damaged(body))


REQUESTS = st.one_of(
    multipart_requests(),
    json_requests(),
    st.tuples(st.sampled_from(CONTENT_TYPES), st.binary(max_size=2048)),
    st.tuples(  # a body of one kind sent as another
        st.sampled_from(CONTENT_TYPES), st.one_of(multipart_requests(), json_requests()).map(lambda r: r[1])
    ),
)


@pytest.fixture(scope="module")
def client(trained_checkpoint):
    with TestClient(create_app(Predictor.from_paths(trained_checkpoint))) as client:
        yield client


@FUZZ
@given(request=REQUESTS, query=QUERIES)
def test_any_request_is_answered_without_a_server_error(client, request, query):
    content_type, body = request
    assert_answered(client.post("/api/predict" + query, content=body, headers={"content-type": content_type}))


def assert_answered(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    answer = response.json()
    if response.status_code == 200:
        assert isinstance(answer["predictions"], list) and answer["predictions"]
        return
    assert set(answer) == {"error", "code"}, answer
    assert isinstance(answer["error"], str) and answer["error"]
    assert isinstance(answer["code"], str) and answer["code"]


@pytest.mark.parametrize(
    "body",
    [
        *JSON_FRAGMENTS,
        b'{"image": "data:"}',  # a data URL with no comma: once an IndexError, a 500
        b'{"image": "data:image/png;base64"}',
        b'{"images": ["data:,", "data:x"]}',
    ],
)
def test_awkward_json_bodies_found_by_the_fuzzer(client, body):
    assert_answered(client.post("/api/predict", content=body, headers={"content-type": "application/json"}))

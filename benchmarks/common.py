"""What the benchmark scripts share: one timed `digitlab train` process, a running
`digitlab serve`, multipart bodies and percentiles."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: the scripts that time a process never import torch
    import torch


def timed_train(flags: list[str], out: Path, name: str) -> tuple[float, dict]:
    """Run `digitlab train FLAGS` as a new process; return its wall seconds and result.json."""
    command = [
        sys.executable,
        "-m",
        "digitlab",
        "train",
        "--quiet",
        "--out",
        str(out),
        "--name",
        name,
        *flags,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # stdout is the benchmark's JSON
    wall = time.perf_counter() - start
    return wall, json.loads((out / name / "result.json").read_text())


def errors(probabilities: torch.Tensor, labels: torch.Tensor) -> int:
    """How many images the (averaged) probabilities (N, classes) misread."""
    return int((probabilities.argmax(1) != labels).sum())


def percentiles(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * len(ordered))], 2),
    }


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body holding `files` as PNG uploads, and its content type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@contextmanager
def running_server(serve_args: list[str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """`digitlab serve SERVE_ARGS` on a free port of 127.0.0.1, ready: (its URL, its process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "digitlab", "serve", *serve_args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=30)

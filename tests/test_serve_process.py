"""`digitlab serve` as a real process: hostile clients on raw sockets, graceful shutdown on SIGTERM,
several workers sharing the port and their metrics, and awkward image formats over HTTP.

Every socket has a timeout and every wait a deadline: a test fails, it never hangs."""

from __future__ import annotations

import base64
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.mmap_dict import MmapedDict

from conftest import free_port

pytestmark = pytest.mark.slow  # server processes: end to end

MB = 1024 * 1024


class Server:
    """A `digitlab serve` process, its stderr in a file."""

    def __init__(self, checkpoint: Path, folder: Path, *options: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = folder / f"serve-{self.port}.stderr"
        command = [sys.executable, "-m", "digitlab", "serve", str(checkpoint)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *options]
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **(env or {})}
            )
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop_now()
                raise RuntimeError(f"digitlab serve did not start: {self.stderr()[-3000:]}")
            time.sleep(0.3)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def memory_mb(self, field: str = "VmRSS") -> float:
        """VmRSS (now) or VmHWM (peak) of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def stop_now(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(trained_checkpoint, tmp_path_factory):
    server = Server(trained_checkpoint, tmp_path_factory.mktemp("serve"))
    yield server
    server.stop_now()


def image_bytes(image: np.ndarray | Image.Image, format: str = "PNG", **options) -> bytes:
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def seven_on_paper(mnist_test, size: int = 112) -> np.ndarray:
    """The first MNIST test digit, a 7, black on white paper, `size` pixels square."""
    ink = Image.fromarray(mnist_test.images[0].numpy()).resize((size, size), Image.Resampling.BICUBIC)
    return 255 - np.asarray(ink)


def multipart(files: list[tuple[str, bytes]], boundary: str = "digitlab-test-boundary") -> tuple[bytes, str]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def read_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict, bytes]:
    """Status, headers and body of one HTTP/1.1 answer with a Content-Length, read off `sock`."""
    deadline, data = time.monotonic() + timeout, b""
    while b"\r\n\r\n" not in data:
        data += receive(sock, deadline)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += receive(sock, deadline)
    return int(lines[0].split()[1]), headers, body


def receive(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    chunk = sock.recv(65536)
    if not chunk:
        raise AssertionError("the server closed the connection before its answer was complete")
    return chunk


def in_flight(server: Server) -> float:
    lines = [
        line for line in server.metrics().splitlines() if line.startswith("digitlab_requests_in_flight ")
    ]
    return float(lines[0].split()[-1])


def state_and_parent(stat: Path) -> tuple[str, int]:
    """A process's state letter and parent's pid from its /proc/PID/stat (an error once it is gone)."""
    state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
    return state, int(parent)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if state_and_parent(stat)[1] == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie left for its (new) parent to reap."""
    try:
        return state_and_parent(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except (OSError, IndexError, ValueError):
        return False


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


# 1. a body far over the limit, chunked (no Content-Length to refuse it by)


def test_an_endless_chunked_body_is_refused_early_and_not_read_on(server):
    """64 KB chunks, up to 500 MB: the server answers 413 and closes the connection after a few
    MB (what the socket buffers hold beyond the 5 MB limit), and its memory does not grow."""
    rss_before, peak_before = server.memory_mb("VmRSS"), server.memory_mb("VmHWM")
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with sock:
        sock.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.setblocking(False)
        sent, pending, answer, answered_at, closed_at = 0, b"", b"", None, None
        deadline = time.monotonic() + 60
        while sent < 500 * MB and closed_at is None:
            assert time.monotonic() < deadline, f"still sending after 60 s ({sent / MB:.0f} MB)"
            readable, writable, _ = select.select([sock], [sock], [], 10)
            assert readable or writable, f"the server neither read nor answered for 10 s ({sent / MB:.1f} MB)"
            try:
                if readable:
                    data = sock.recv(65536)
                    if not data:
                        closed_at = sent
                    answer += data
                    if answered_at is None and b"\r\n\r\n" in answer:
                        answered_at = sent
                elif writable:
                    pending = pending or chunk
                    count = sock.send(pending)
                    sent, pending = sent + count, pending[count:]
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed_at = sent
        sock.setblocking(True)
        sock.settimeout(5)
        try:  # what of the answer had not been read yet (Linux keeps it after a reset)
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    assert closed_at is not None, f"the server read all {sent / MB:.0f} MB without closing the connection"
    assert closed_at < 50 * MB, f"the connection was closed only after {closed_at / MB:.0f} MB"
    assert answered_at is None or answered_at < 50 * MB
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"\r\nconnection: close" in head.lower()  # said so, and done
    assert json.loads(body) == {"error": "request body is larger than 5,242,880 bytes", "code": "too_large"}
    assert server.memory_mb("VmRSS") - rss_before < 100
    assert server.memory_mb("VmHWM") - peak_before < 100  # no passing peak either
    assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200


# 2. a client that goes away in the middle of its request


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=xyz"])
def test_a_client_leaving_mid_body_costs_at_most_a_log_line(server, mnist_test, content_type):
    before = server.stderr()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            "Content-Length: 1000000\r\n\r\n".encode()
            + b"x" * 1000
        )
        wait_for(lambda: in_flight(server) == 1, 10, "the request being read")
    wait_for(lambda: in_flight(server) == 0, 10, "the abandoned request let go")  # no place held for ever
    assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200
    seven = httpx.post(
        f"{server.url}/api/predict",
        json={"image": base64.b64encode(image_bytes(seven_on_paper(mnist_test))).decode()},
        timeout=30,
    )
    assert seven.status_code == 200 and seven.json()["predictions"][0]["digit"] == "7"
    time.sleep(0.3)  # anything the server writes about it has been written
    logged = server.stderr()[len(before) :]
    assert "Traceback" not in logged, logged
    assert len(logged.splitlines()) <= 1, logged


# 3. graceful shutdown


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(trained_checkpoint, tmp_path, mnist_test):
    """SIGTERM arrives while a request of 20 big images is still being uploaded: the server stops
    taking connections, reads the rest, answers all 20, and exits with status 0."""
    # one process: with several, the parent holds the listening socket until every worker is done
    server = Server(trained_checkpoint, tmp_path, "--max-wait-ms", "0", "--workers", "1")
    try:
        seven = image_bytes(seven_on_paper(mnist_test, 280))
        body, content_type = multipart([(f"seven-{i}.png", seven) for i in range(20)])
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                f"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:-1000]
            )
            wait_for(lambda: in_flight(server) == 1, 10, "the request being read")
            server.process.send_signal(signal.SIGTERM)

            def refused() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                    return False
                except OSError:
                    return True

            wait_for(refused, 10, "the server to stop taking connections")  # it is shutting down
            assert server.process.poll() is None  # and waits for this request
            sock.sendall(body[-1000:])
            status, _, answer = read_response(sock, timeout=30)
        assert status == 200, answer[:300]
        predictions = json.loads(answer)["predictions"]
        assert [p["name"] for p in predictions] == [f"seven-{i}.png" for i in range(20)]
        assert [p["digit"] for p in predictions] == ["7"] * 20
        assert server.process.wait(timeout=30) == 0
        assert "Traceback" not in server.stderr(), server.stderr()
    finally:
        server.stop_now()


# 4. several workers


def writers(metrics_dir: Path, kind: str) -> set[int]:
    """The processes that wrote metrics of `kind` (counter, gauge_livesum, ...) into `metrics_dir`."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in metrics_dir.glob(f"{kind}_*.db")}


def predictions_by_worker(metrics_dir: Path) -> dict[int, float]:
    """Each worker's own count of /api/predict requests answered 200, read from its metrics file."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _, name, labels, _ = json.loads(key)
            if name == "digitlab_requests_total" and labels == {"path": "/api/predict", "status": "200"}:
                pid = int(path.stem.rsplit("_", 1)[1])
                counts[pid] = counts.get(pid, 0) + value
    return counts


def two_worker_server(checkpoint: Path, tmp_path: Path) -> tuple[Server, Path]:
    """A server of two workers with a TMPDIR of its own, and its metrics folder there, once
    both workers have loaded the model (the server is stopped if they do not)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    server = Server(checkpoint, tmp_path, "--workers", "2", env={"TMPDIR": str(temporary)})
    try:
        (metrics_dir,) = temporary.glob("digitlab-metrics-*")
        wait_for(lambda: len(writers(metrics_dir, "gauge_livesum")) == 2, 60, "both workers loaded")
    except BaseException:
        server.stop_now()
        raise
    return server, metrics_dir


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_two_workers_share_the_port_and_add_their_metrics_up(trained_checkpoint, tmp_path, mnist_test, stop):
    """Four clients post a real MNIST seven until both workers have answered some, 20 at least:
    every answer reads 7, /metrics counts every one of them whichever worker answers, and
    SIGINT or SIGTERM stops it all with status 0 and removes the metrics folder."""
    server, metrics_dir = two_worker_server(trained_checkpoint, tmp_path)
    try:
        workers = children(server.pid)
        assert writers(metrics_dir, "gauge_livesum") <= set(workers)
        seven = image_bytes(255 - mnist_test.images[0].numpy())
        answers, errors, lock = [], [], threading.Lock()

        def enough() -> bool:
            return len(answers) >= 20 and len(predictions_by_worker(metrics_dir)) == 2

        def client():
            try:
                while not enough() and len(answers) < 400 and not errors:
                    response = httpx.post(  # a new connection each time: either worker may take it
                        f"{server.url}/api/predict",
                        files={"file": ("seven.png", seven, "image/png")},
                        timeout=30,
                    )
                    with lock:
                        answers.append((response.status_code, response.json()["predictions"][0]["digit"]))
            except Exception as err:  # reported below, in the test's thread
                errors.append(err)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert enough(), f"{len(answers)} answers, by worker: {predictions_by_worker(metrics_dir)}"
        assert answers == [(200, "7")] * len(answers)

        def counted() -> float:
            prefix = 'digitlab_requests_total{path="/api/predict",status="200"}'
            return sum(
                float(line.split()[-1]) for line in server.metrics().splitlines() if line.startswith(prefix)
            )

        wait_for(
            lambda: sum(predictions_by_worker(metrics_dir).values()) == len(answers), 10, "counts written"
        )
        by_worker = predictions_by_worker(metrics_dir)
        assert set(by_worker) <= set(workers) and min(by_worker.values()) >= 1, (by_worker, workers)
        assert counted() == len(answers), (counted(), by_worker)  # /metrics adds the workers up

        server.process.send_signal(stop)
        assert server.process.wait(timeout=30) == 0
        assert not metrics_dir.exists()
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 10, "workers gone")
        assert "Traceback" not in server.stderr(), server.stderr()
    finally:
        server.stop_now()


# 5. image formats


def exif_rotated(upright: np.ndarray) -> bytes:
    """A JPEG whose pixels are stored turned a quarter left, with EXIF orientation 6 ("turn right
    to view"): upright only for a reader that applies the orientation."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return image_bytes(np.ascontiguousarray(np.rot90(upright)), "JPEG", quality=95, exif=exif.tobytes())


def palette_with_transparency(upright: np.ndarray) -> bytes:
    """Black ink on a transparent *black* background: readable only through its transparency."""
    image = Image.fromarray((upright < 128).astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 0, 0, 0])  # both entries black; entry 0 is transparent
    return image_bytes(image, transparency=0)


def image_variants(paper: np.ndarray) -> dict[str, bytes]:
    return {
        "grey-16-bit.png": image_bytes(Image.fromarray(paper.astype(np.uint16) * 257)),  # mode I;16
        "float.tiff": image_bytes(Image.fromarray(paper.astype(np.float32) / 255), "TIFF"),  # mode F
        "palette-transparent.png": palette_with_transparency(paper),
        "cmyk.jpg": image_bytes(Image.fromarray(paper).convert("CMYK"), "JPEG", quality=95),
        "exif-orientation-6.jpg": exif_rotated(paper),
    }


def test_awkward_image_formats_read_seven_over_http(server, mnist_test):
    paper = seven_on_paper(mnist_test)
    variants = image_variants(paper)
    modes = {
        name: (Image.open(io.BytesIO(data)).format, Image.open(io.BytesIO(data)).mode)
        for name, data in variants.items()
    }
    assert modes == {
        "grey-16-bit.png": ("PNG", "I;16"),
        "float.tiff": ("TIFF", "F"),
        "palette-transparent.png": ("PNG", "P"),
        "cmyk.jpg": ("JPEG", "CMYK"),
        "exif-orientation-6.jpg": ("JPEG", "L"),
    }
    files = [(name, data) for name, data in variants.items()]
    files += [("upright.jpg", image_bytes(paper, "JPEG", quality=95))]
    files += [("rotated-no-exif.jpg", image_bytes(np.ascontiguousarray(np.rot90(paper)), "JPEG", quality=95))]
    response = httpx.post(
        f"{server.url}/api/predict",
        files=[("file", (name, data, "application/octet-stream")) for name, data in files],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    read = {p["name"]: p for p in response.json()["predictions"]}
    assert {name: read[name]["digit"] for name in variants} == dict.fromkeys(variants, "7")

    def seen(name: str) -> np.ndarray:  # the 28x28 image the model was given
        data = base64.b64decode(read[name]["mnist_image"].split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64)

    turned = seen("exif-orientation-6.jpg")
    assert np.abs(turned - seen("upright.jpg")).mean() < 8  # turned upright before reading
    assert np.abs(turned - seen("rotated-no-exif.jpg")).mean() > 20  # which made a difference


def test_workers_stop_when_their_parent_is_killed(trained_checkpoint, tmp_path):
    """A parent killed with SIGKILL cannot stop its workers: they see it gone and stop
    themselves, and the port is free for the next server."""
    server, _ = two_worker_server(trained_checkpoint, tmp_path)
    workers = []
    try:
        workers = children(server.pid)
        assert len(workers) >= 2, workers
        server.process.kill()
        server.process.wait(timeout=10)
        wait_for(lambda: not any(running(pid) for pid in workers), 40, "orphaned workers gone")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", server.port))
    finally:
        server.stop_now()
        for pid in workers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_requests_beyond_max_pending_get_503_not_a_reset(trained_checkpoint, tmp_path, mnist_test):
    """With one worker busy, the requests over --max-pending are answered 503: the server reads
    their small bodies first, since closing on a body still arriving resets the connection."""
    import asyncio

    png = io.BytesIO()
    Image.fromarray(seven_on_paper(mnist_test, 280)).save(png, format="PNG")
    server = Server(trained_checkpoint, tmp_path, "--workers", "1")

    async def burst(count: int) -> list:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count)) as client:

            async def one():
                try:
                    answer = await client.post(
                        f"{server.url}/api/predict", files={"file": ("d.png", png.getvalue(), "image/png")}
                    )
                    return answer.status_code, answer.headers.get("retry-after")
                except httpx.HTTPError as err:
                    return type(err).__name__

            return await asyncio.gather(*[one() for _ in range(count)])

    try:
        answers = asyncio.run(burst(120))
    finally:
        server.stop_now()
    assert set(answers) <= {(200, None), (503, "1")}, sorted(map(str, set(answers)))
    assert answers.count((200, None)) >= 64 and (503, "1") in answers  # the default --max-pending: 64

"""`digitlab serve` under load: one client, then many concurrent clients, side by side; then
hostile requests, with the server's memory and the health check's latency measured throughout.

    python benchmarks/serve_load.py [MODEL] [--clients 16] [--requests 2000] [-- SERVE FLAGS]

The real server process (default settings unless SERVE FLAGS) on 127.0.0.1, real HTTP clients
(keep-alive connections, one thread each), one 200x200 PNG of an MNIST test digit per request.
While the clients run, a prober asks GET /api/health every 20 ms. Prints JSON lines, the last
one the goals: 0 errors, throughput >= 2.5x one client's, health p95 <= 20 ms under load,
no hostile request raising the server's memory by more than 300 MB.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import threading
import time
from urllib.parse import urlparse

import numpy as np
from common import multipart, percentiles, running_server
from PIL import Image

from digitlab import load_dataset


def png(image: np.ndarray, size: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(255 - image).resize((size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MB), from /proc."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, url: str):
        parts = urlparse(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, kind: str = "") -> tuple[int, float]:
        start = time.perf_counter()
        if self.connection.sock is None:
            self.connection.connect()
            # headers and body go out in separate writes: without this, Nagle's algorithm and the
            # server's delayed ACK hold every request back by up to 40 ms
            self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.request(method, path, body, {"Content-Type": kind} if kind else {})
        response = self.connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - start) * 1000


def drive(url: str, bodies: list[tuple[bytes, str]], clients: int, total: int) -> dict:
    """`total` POST /api/predict from `clients` threads; latency, throughput, errors."""
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(total))

    def work():
        client = Client(url)
        for i in counter:
            body, kind = bodies[i % len(bodies)]
            try:
                status, ms = client.request("POST", "/api/predict", body, kind)
            except OSError as err:
                status, ms = str(err), 0.0
                client = Client(url)
            with lock:
                (latencies if status == 200 else errors).append(ms if status == 200 else status)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": total,
        "errors": len(errors),
        "error_kinds": sorted({str(e) for e in errors})[:5],
        "req_per_s": round(total / seconds, 1),
        **percentiles(latencies),
    }


def probe(url: str, pid: int, stop: threading.Event, found: dict) -> None:
    """Until `stop`: GET /api/health every 20 ms (found["health"]: ms) and the server's peak RSS."""
    client = Client(url)
    found.update(health=[], peak_rss_mb=0.0)
    while not stop.is_set():
        found["health"].append(client.request("GET", "/api/health")[1])
        found["peak_rss_mb"] = max(found["peak_rss_mb"], rss_mb(pid))
        time.sleep(0.02)


def while_probed(url: str, pid: int, action) -> tuple[object, dict]:
    """Run `action()` while the prober watches; its result and what the prober found."""
    stop, found = threading.Event(), {}
    prober = threading.Thread(target=probe, args=(url, pid, stop, found))
    prober.start()
    try:
        result = action()
        time.sleep(0.3)
    finally:
        stop.set()
        prober.join()
    return result, found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", default="default", help="checkpoint or shipped model")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("serve_flags", nargs="*", help="after --: flags for digitlab serve")
    args = parser.parse_args()
    test = load_dataset("mnist", "test")
    bodies = [multipart([png(test.images[i].numpy())]) for i in range(200)]

    with running_server([args.model, *args.serve_flags]) as (url, server):
        drive(url, bodies, 1, 50)  # warm-up
        single = drive(url, bodies, 1, max(200, args.requests // 8))
        print(json.dumps({"phase": "one client", **single}), flush=True)

        loaded, found = while_probed(url, server.pid, lambda: drive(url, bodies, args.clients, args.requests))
        health = percentiles(found["health"])
        print(json.dumps({"phase": f"{args.clients} clients", **loaded, "health": health}), flush=True)

        before = rss_mb(server.pid)
        body, kind = multipart([png(test.images[i].numpy(), 4000) for i in range(10)])
        (status, ms), found = while_probed(
            url, server.pid, lambda: Client(url).request("POST", "/api/predict", body, kind)
        )
        hostile = {
            "phase": "ten 4000x4000 PNGs in one request",
            "bytes": len(body),
            "status": status,
            "ms": round(ms, 1),
            "server_rss_mb_before": round(before),
            "server_rss_mb_peak": round(found["peak_rss_mb"]),
            "health_while": percentiles(found["health"]),
        }
        print(json.dumps(hostile), flush=True)

    ratio = loaded["req_per_s"] / single["req_per_s"]
    print(
        json.dumps(
            {
                "goals": {
                    "zero_errors": loaded["errors"] == 0,
                    "throughput_ratio": round(ratio, 2),
                    "throughput_at_least_2_5x": ratio >= 2.5,
                    "health_p95_ms": health["p95_ms"],
                    "health_p95_at_most_20ms": health["p95_ms"] <= 20,
                    "hostile_memory_rise_mb": round(found["peak_rss_mb"] - before),
                    "hostile_memory_within_300mb": found["peak_rss_mb"] - before <= 300,
                }
            }
        )
    )


if __name__ == "__main__":
    main()

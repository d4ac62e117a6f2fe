"""A local HTTP server on 127.0.0.1 that plays good, dead, corrupt, slow and interrupted mirrors.

URLs: /good/NAME serves the file; /corrupt/NAME serves it with one byte changed;
/slow/NAME waits `SLOW_SECONDS` before answering; /cut/NAME announces the full length but
sends half and closes; /flaky/NAME cuts the first request for a name and serves later ones;
/trickle/NAME sends half, then a byte every 0.2 s (a transfer to kill midway); anything else is 404.
Every mode honours `Range: bytes=N-` (206 and the rest of the file), as real mirrors do.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_SECONDS = 3.0


class MirrorServer:
    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        self.ranges: list[str | None] = []  # each request's Range header
        self.flaky_seen: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append(self.path)
                server.ranges.append(self.headers.get("Range"))
                _, mode, name = (self.path.split("/", 2) + ["", ""])[:3]
                payload = server.files.get(name)
                if payload is None or mode not in ("good", "corrupt", "slow", "cut", "flaky", "trickle"):
                    self.send_error(404)
                    return
                if mode == "slow":
                    time.sleep(SLOW_SECONDS)
                if mode == "corrupt":
                    payload = payload[:-1] + bytes([payload[-1] ^ 0xFF])
                cut = mode == "cut" or (mode == "flaky" and name not in server.flaky_seen)
                server.flaky_seen.add(name)
                start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                payload = payload[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    if mode == "trickle":
                        half = len(payload) // 2
                        self.wfile.write(payload[:half])
                        for byte in payload[half:]:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.2)
                    else:
                        self.wfile.write(payload[: len(payload) // 2] if cut else payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if cut:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # a short poll interval: shutdown() waits for it, and every test stops a server
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> MirrorServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def dead_url() -> str:
    """A URL on a port where nothing listens (connection refused)."""
    from conftest import free_port

    return f"http://127.0.0.1:{free_port()}/"

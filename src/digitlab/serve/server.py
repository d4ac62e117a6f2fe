"""Running the app: one process, or several worker processes that share the port.

Each worker loads the model and runs its own micro-batcher; torch's threads are divided
between the workers so that they do not fight over the cores. On Ctrl-C or SIGTERM the
server stops taking connections and finishes the requests in flight first; a worker whose
parent was killed outright stops itself the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from uvicorn.protocols.http.h11_impl import H11Protocol

from digitlab.errors import ConfigError
from digitlab.serve.settings import Batching

SETTINGS_VARIABLE = "DIGITLAB_SERVE_SETTINGS"  # how the parent tells worker processes what to serve
GRACEFUL_SECONDS = 30  # how long requests in flight may take to finish at shutdown
PARENT_CHECK_SECONDS = 1.0  # how often a worker looks whether its parent is still there


class NoDelayProtocol(H11Protocol):
    """uvicorn's HTTP protocol with Nagle's algorithm off on every connection. With several
    workers the listening socket is shared from the parent with protocol number 0, so asyncio
    does not set TCP_NODELAY on the connections it accepts, and each answer written in two
    parts waits for the client's delayed ACK: 40 ms a request."""

    def connection_made(self, transport) -> None:
        connection = transport.get_extra_info("socket")
        if connection is not None and connection.family in (socket.AF_INET, socket.AF_INET6):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def torch_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def build_app(checkpoints: list[str], tta: bool, batching: Batching, threads: int):
    from digitlab.inference import Predictor
    from digitlab.serve.app import create_app

    torch.set_num_threads(threads)
    return create_app(Predictor.from_paths([Path(c) for c in checkpoints], tta=tta), batching=batching)


def stop_when_orphaned() -> None:
    """Stop this worker gracefully (SIGTERM to itself) once its parent is gone.

    A parent killed with SIGKILL (or by the out-of-memory killer) cannot stop its workers, and
    they would go on serving the port for ever, so that no new server could bind it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def app_from_environment():
    """The app of one worker process, from the settings its parent put in the environment."""
    stop_when_orphaned()
    settings = json.loads(os.environ[SETTINGS_VARIABLE])
    return build_app(
        settings["checkpoints"], settings["tta"], Batching(**settings["batching"]), settings["threads"]
    )


def check_address(host: str, port: int) -> None:
    """Fail with one clear error, before any model is loaded, if `host:port` cannot be listened on
    (a name that does not resolve, an address not on this machine, a port already taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as err:  # socket.gaierror too
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def serve(
    checkpoints: list[str],
    tta: bool,
    host: str,
    port: int,
    workers: int = 1,
    batching: Batching | None = None,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Serve until Ctrl-C or SIGTERM; `on_ready` runs once the address and checkpoints are checked,
    just before the server starts listening."""
    import uvicorn

    check_address(host, port)
    batching = batching or Batching(decode_threads=torch_threads(workers))
    options = dict(
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        http=NoDelayProtocol,
    )
    if workers == 1:
        app = build_app(checkpoints, tta, batching, torch_threads(1))
        on_ready()
        # uvicorn re-raises the SIGTERM it shut down on, which would kill the process (status -15)
        # after its graceful stop: let it exit with 0 instead, as Ctrl-C does
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        try:
            uvicorn.run(app, **options)
        finally:
            signal.signal(signal.SIGTERM, previous)
        return
    from digitlab.inference import Predictor

    Predictor.from_paths([Path(c) for c in checkpoints])  # a bad checkpoint fails here, before any worker
    on_ready()
    metrics_dir = tempfile.mkdtemp(prefix="digitlab-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # workers add their figures up there
    os.environ[SETTINGS_VARIABLE] = json.dumps(
        {
            "checkpoints": checkpoints,
            "tta": tta,
            "batching": asdict(batching),
            "threads": torch_threads(workers),
        }
    )
    try:
        uvicorn.run("digitlab.serve.server:app_from_environment", factory=True, workers=workers, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)

"""Prometheus metrics of the server (`GET /metrics`), with the standard client library.

With several worker processes (`digitlab serve --workers N`) every worker writes its figures
into PROMETHEUS_MULTIPROC_DIR and `/metrics` adds them up, whichever worker answers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

REQUESTS = Counter("digitlab_requests", "HTTP requests answered", ["path", "status"])
LATENCY = Histogram("digitlab_request_seconds", "time to answer a request", ["path"], buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("digitlab_batch_images", "images per model batch", buckets=BATCH_BUCKETS)
QUEUE_DEPTH = Gauge("digitlab_queue_depth", "requests waiting for the model", multiprocess_mode="livesum")
IN_FLIGHT = Gauge(
    "digitlab_requests_in_flight",
    "prediction requests being read, decoded or predicted",
    multiprocess_mode="livesum",
)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, summed over workers when there are several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

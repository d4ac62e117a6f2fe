"""Prediction latency (in-process and over HTTP, p50/p95) and batch throughput of a checkpoint.

    python benchmarks/inference.py CHECKPOINT [--requests 200]

Single-image latency covers the whole path a user's PNG takes: decode, MNIST-form
preprocessing, model. Over HTTP it adds `digitlab serve` (uvicorn) on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import urllib.request

import numpy as np
from common import multipart, percentiles, running_server
from PIL import Image

from digitlab import load_dataset
from digitlab.inference import Predictor


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(255 - image).resize((280, 280)).save(buffer, format="PNG")  # like a drawn canvas
    return buffer.getvalue()


def http_latency(checkpoint: str, images: list[bytes]) -> dict:
    with running_server([checkpoint]) as (url, _):
        samples = []
        for data in images:
            body, kind = multipart([data])
            request = urllib.request.Request(f"{url}/api/predict", body, {"Content-Type": kind})
            start = time.perf_counter()
            urllib.request.urlopen(request, timeout=10).read()
            samples.append((time.perf_counter() - start) * 1000)
        return percentiles(samples[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    test = load_dataset("mnist", "test")
    predictor = Predictor.from_paths([args.checkpoint])
    images = [png(test.images[i].numpy()) for i in range(args.requests)]

    samples = []
    for data in images:
        start = time.perf_counter()
        predictor.predict(data)
        samples.append((time.perf_counter() - start) * 1000)
    print(
        json.dumps(
            {"what": "single image, in-process (decode + preprocess + model)", **percentiles(samples[5:])}
        )
    )
    print(
        json.dumps({"what": "single image, HTTP POST /api/predict", **http_latency(args.checkpoint, images)})
    )

    start = time.perf_counter()
    for first in range(0, len(test), 1000):
        predictor.probabilities(test.images[first : first + 1000].numpy())
    seconds = time.perf_counter() - start
    print(
        json.dumps({"what": "batch of 28x28 images, model only", "images_per_s": round(len(test) / seconds)})
    )
    start = time.perf_counter()
    predictor.predict_many(images)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "what": "batch of 280x280 PNGs, decode + preprocess + model",
                "images_per_s": round(len(images) / seconds),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Batch prediction that streams: files are decoded in a pool of worker processes while the
model reads the previous chunk, results come out in input order as soon as their chunk is
done, and memory stays bounded whatever the number of files (a few chunks in flight)."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.errors import DigitlabError
from digitlab.imaging import to_mnist
from digitlab.inference.predictor import Prediction, Predictor

CHUNK = 256  # images per task and per forward pass


@dataclass
class BatchResult:
    """One file's outcome: a prediction (or a written number's digits), or why it has none."""

    path: str
    prediction: Prediction | None = None
    error: str | None = None
    number: list[Prediction] | None = None


def decode_chunk(paths: list[str]) -> tuple[np.ndarray, list[str | None]]:
    """MNIST-form images of `paths` (zeros where a file failed) and each file's error or None."""
    images = np.zeros((len(paths), 28, 28), np.uint8)
    errors: list[str | None] = [None] * len(paths)
    for i, path in enumerate(paths):
        try:
            images[i] = to_mnist(path, path)
        except DigitlabError as err:
            errors[i] = str(err)
    return images, errors


def _chunks(paths: Iterable[str | Path], size: int) -> Iterator[list[str]]:
    remaining = iter(paths)
    while part := [str(path) for path in itertools.islice(remaining, size)]:
        yield part


def _pool(workers: int) -> ProcessPoolExecutor:
    # fork starts workers in milliseconds; they only decode images (no torch), so it is safe
    method = "fork" if sys.platform.startswith("linux") else None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def predict_files(
    predictor: Predictor, paths: Iterable[str | Path], workers: int = 0, chunk: int = CHUNK
) -> Iterator[BatchResult]:
    """Predict every file of `paths`, in order; `workers` decoding processes (0: one per core)."""
    workers = workers or os.cpu_count() or 1
    chunks = _chunks(paths, chunk)
    with _pool(workers) as pool:
        pending = deque()
        for part in itertools.islice(chunks, workers + 1):  # a few chunks ahead, never all
            pending.append((part, pool.submit(decode_chunk, part)))
        while pending:
            part, future = pending.popleft()
            following = next(chunks, None)
            if following is not None:
                pending.append((following, pool.submit(decode_chunk, following)))
            images, errors = future.result()
            decoded = [i for i, error in enumerate(errors) if error is None]
            predictions = iter(predictor.predict_mnist(images[decoded]) if decoded else [])
            for path, error in zip(part, errors, strict=True):
                yield BatchResult(path, error=error) if error else BatchResult(path, next(predictions))

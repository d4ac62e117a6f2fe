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

from digitlab.errors import DigitlabError, NoDigitFound
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


BLANK = "blank"  # a decode status: the file holds no ink, which reads as not a digit


def decode_chunk(paths: list[str]) -> tuple[np.ndarray, list[str | None]]:
    """MNIST-form images of `paths` and each file's status: None (read), BLANK, or its error."""
    images = np.zeros((len(paths), 28, 28), np.uint8)
    status: list[str | None] = [None] * len(paths)
    for i, path in enumerate(paths):
        try:
            images[i] = to_mnist(path, path)
        except NoDigitFound:
            status[i] = BLANK
        except DigitlabError as err:
            status[i] = str(err)
    return images, status


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
            images, status = future.result()
            read = [i for i, state in enumerate(status) if state is None]
            predictions = iter(predictor.predict_mnist(images[read]) if read else [])
            for path, state in zip(part, status, strict=True):
                if state is None:
                    yield BatchResult(path, next(predictions))
                elif state == BLANK:
                    yield BatchResult(path, Prediction.blank(predictor.classes))
                else:
                    yield BatchResult(path, error=state)

"""Dynamic micro-batching: requests that arrive within a few milliseconds of each other are
run through the model as one batch, on a thread of its own, off the event loop.

A batch takes every request already waiting, and then waits up to `max_wait_ms` for more,
but only while `coming()` says more requests are on their way (being read or decoded): a
lone request is never held back. A batch holds at most `max_batch` images. The queue is
bounded: when `max_queue` requests already wait, `submit` raises `Overloaded` at once, and the
server answers 503 instead of growing without end.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class Overloaded(Exception):
    """The queue is full: the caller should come back later."""


@dataclass
class _Job:
    images: np.ndarray  # (n, 28, 28) uint8
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class MicroBatcher:
    """Runs `predict(images) -> list` over batches gathered from concurrent `submit` calls."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], list],
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        on_batch: Callable[[int], None] = lambda size: None,
        coming: Callable[[], int] = lambda: 0,
    ):
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self.on_batch, self.coming = on_batch, coming
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._carry: _Job | None = None  # a job that did not fit in the last batch
        self._thread = threading.Thread(target=self._serve, name="digitlab-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return self._jobs.qsize()

    async def submit(self, images: np.ndarray) -> list:
        """The predictions for `images`, computed in a batch with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        job = _Job(images, loop.create_future(), loop)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"{self._jobs.maxsize} requests are already waiting") from None
        return await job.future

    def close(self) -> None:
        """Finish the jobs already queued, then stop the thread."""
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _next_batch(self) -> list[_Job] | None:
        first = self._carry or self._jobs.get()
        self._carry = None
        if first is None:
            return None
        batch, size = [first], len(first.images)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            try:
                wait = deadline - time.monotonic() if self.coming() > len(batch) else 0
                job = self._jobs.get(timeout=wait) if wait > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # stop after this batch
                break
            if size + len(job.images) > self.max_batch:
                self._carry = job
                break
            batch.append(job)
            size += len(job.images)
        return batch

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            images = np.concatenate([job.images for job in batch])
            self.on_batch(len(images))
            try:
                predictions = self.predict(images)
            except Exception as err:  # handed to every waiting request, never lost
                for job in batch:
                    job.loop.call_soon_threadsafe(_set_exception, job.future, err)
                continue
            start = 0
            for job in batch:
                part = predictions[start : start + len(job.images)]
                start += len(job.images)
                job.loop.call_soon_threadsafe(_set_result, job.future, part)


def _set_result(future: asyncio.Future, value) -> None:
    if not future.done():  # a client that went away cancelled it
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)

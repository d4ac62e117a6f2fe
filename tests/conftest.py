"""Shared fixtures: real MNIST slices and small data folders the tests write themselves."""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from digitlab.config import TrainConfig
from digitlab.data import load_dataset, write_idx
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.engine.train import Trainer

TORCH_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def torch_threads_reset():
    """A training run sets torch's thread count for the whole process (the tests, and fixtures
    of a wider scope, train with one thread): each test starts with every core again."""
    torch.set_num_threads(TORCH_THREADS)


@pytest.fixture(autouse=True)
def unit_tests_train_nothing(request, monkeypatch):
    """The unit tier (`make test-fast`) trains nothing: a test that trains is marked slow."""
    if request.node.get_closest_marker("slow") is None:

        def refuse(trainer):
            raise AssertionError("this test trains a model: mark it @pytest.mark.slow")

        monkeypatch.setattr(Trainer, "train_one_epoch", refuse)


@pytest.fixture(scope="session")
def mnist_test():
    return load_dataset("mnist", "test")


@pytest.fixture(scope="session")
def small_idx_dir(tmp_path_factory, mnist_test) -> Path:
    """A folder with the four idx files (gzip'd) holding 600 train and 200 test real digits."""
    folder = tmp_path_factory.mktemp("idx")
    write_small_idx(folder, mnist_test)
    return folder


def write_small_idx(folder: Path, source, n_train: int = 600, n_test: int = 200) -> None:
    write_idx(folder / "train-images-idx3-ubyte.gz", source.images[:n_train].numpy())
    write_idx(folder / "train-labels-idx1-ubyte.gz", source.labels[:n_train].to(torch.uint8).numpy())
    write_idx(folder / "t10k-images-idx3-ubyte.gz", source.images[-n_test:].numpy())
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", source.labels[-n_test:].to(torch.uint8).numpy())


@contextmanager
def on_second_epoch(action):
    """While active, `action(trainer)` runs before the second epoch that any Trainer starts
    (raise KeyboardInterrupt in it to simulate Ctrl-C)."""
    real_epoch = Trainer.train_one_epoch
    calls = {"n": 0}

    def epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            action(self)
        return real_epoch(self)

    Trainer.train_one_epoch = epoch
    try:
        yield
    finally:
        Trainer.train_one_epoch = real_epoch


def ctrl_c(trainer) -> None:
    raise KeyboardInterrupt


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quick_config(tmp_path: Path, **overrides) -> TrainConfig:
    """A seconds-long real training run on a 3,000-image MNIST slice."""
    settings = dict(
        model="fastcnn",
        train_limit=3000,
        epochs=2,
        batch_size=64,
        lr=3e-3,
        schedule="onecycle",
        out_dir=str(tmp_path / "runs"),
        threads=1,
    )
    return TrainConfig(**{**settings, **overrides})


LEGACY_RUN = Path(__file__).parent / "data" / "legacy-run-v1"


def current_format_run(folder: Path, checkpoint=None) -> Path:
    """A finished run folder in today's format from the committed real run of tests/data
    (fastcnn, 96.49 % test accuracy): config, metrics, result, and `checkpoint` (default: that
    run's own model) saved as best. Milliseconds instead of a training run."""
    from digitlab.engine.runs import Run

    shutil.copytree(LEGACY_RUN, folder)
    (folder / "best.json").unlink()
    checkpoint = checkpoint or load_checkpoint(LEGACY_RUN)
    Run(folder).save_best(checkpoint.model, checkpoint.meta)
    return folder


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """A real, trained fastcnn run folder (96.49 % test accuracy) for inference, serving and analysis."""
    return current_format_run(tmp_path_factory.mktemp("trained") / "run")


@pytest.fixture(scope="session")
def second_checkpoint(tmp_path_factory) -> Path:
    """Another model for ensembles: the trained one with seeded noise on its weights."""
    checkpoint = load_checkpoint(LEGACY_RUN)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in checkpoint.model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1 * parameter.std())
    return current_format_run(tmp_path_factory.mktemp("second") / "run", checkpoint)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's) driven by Playwright; required in CI, skipped elsewhere if absent.
    One per test module: Playwright's sync API holds an event loop in the main thread while it
    runs, which later tests' asyncio.run would trip over."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()

"""The run folder, one typed owner for it: config, per-epoch metrics, log, best checkpoint,
resumable state and result. Every other module reads and writes a run through `Run`.

    config.json                 TrainConfig, complete: `--config` replays it
    metrics.jsonl               one row per finished epoch
    train.log                   the epoch lines, time-stamped
    best.safetensors (+ .json)  best-on-validation weights with CheckpointMeta
    last.pt                     state to continue from after the last finished epoch
    result.json                 RunResult: best epoch, validation and test metrics, time
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from digitlab.config import TrainConfig
from digitlab.engine.checkpoint import (
    Checkpoint,
    CheckpointMeta,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from digitlab.engine.evaluate import Metrics
from digitlab.errors import CheckpointError, DataError, DigitlabError
from digitlab.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_weights_only,
    remove_stale_temporaries,
)


@dataclass
class RunResult:
    """result.json: how a finished run ended, measured on the test set once."""

    best_epoch: int
    epochs_run: int
    stopped_early: bool
    val: Metrics | None  # of the best checkpoint; None without a validation split
    test: Metrics | None  # of the best checkpoint; None for a run trained with --no-test
    test_last: Metrics | None  # of the last epoch's weights, for comparison only
    train_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: object, source: Path) -> RunResult:
        try:
            metrics = {
                key: Metrics(**values[key]) if values.get(key) else None
                for key in ("val", "test", "test_last")
            }
            metrics["test_last"] = metrics["test_last"] or metrics["test"]
            result = cls(
                int(values["best_epoch"]),
                int(values["epochs_run"]),
                bool(values["stopped_early"]),
                train_seconds=float(values["train_seconds"]),
                **metrics,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(
                f"{source}: not a valid result file ({type(err).__name__}: {err})"
            ) from None
        if "test" not in values:  # null for a --no-test run; absent in no file digitlab wrote
            raise CheckpointError(f"{source}: not a valid result file (no test metrics)")
        return result


class Run:
    """One run folder: its paths and the only readers and writers of its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.log_path = self.path / "train.log"
        self.best_path = self.path / "best.safetensors"
        self.last_path = self.path / "last.pt"
        self.result_path = self.path / "result.json"
        self.made_parents: list[Path] = []  # folders above it that `create` made, deepest first

    @classmethod
    def create(cls, config: TrainConfig) -> Run:
        """Make a new, uniquely named run folder under `config.out_dir`."""
        parent = Path(config.out_dir)
        missing = [folder for folder in [parent, *parent.parents] if not folder.exists()]
        base = config.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{config.model}"
        for suffix in [""] + [f"-{i}" for i in range(2, 1000)]:
            path = parent / f"{base}{suffix}"
            try:
                path.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                continue
        run = cls(path)
        run.made_parents = missing
        run.save_config(config)
        return run

    @contextmanager
    def held(self) -> Iterator[Run]:
        """This run folder for this process alone while the block runs: a second process that
        would train it at the same time (a --resume while the run still goes) is refused."""
        folder = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DigitlabError(
                    f"{self.path}: another process is training this run; let it end, or stop it, first"
                ) from None
            yield self
        finally:
            os.close(folder)  # and with it the lock

    def save_config(self, config: TrainConfig) -> None:
        atomic_write_json(self.config_path, config.to_dict())

    def discard(self) -> None:
        """Delete a run folder that never got past its start (config and log only), and the
        folders above it that its creation made."""
        for name in (self.config_path, self.log_path):
            name.unlink(missing_ok=True)
        remove_stale_temporaries(self.path)
        for folder in [self.path, *self.made_parents]:
            try:
                folder.rmdir()  # only if nothing else is in it
            except OSError:
                return

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """An existing run folder; CheckpointError if it is missing or not a run."""
        run = cls(path)
        if not run.path.is_dir():
            raise CheckpointError(f"{run.path}: run folder not found")
        if not run.config_path.exists():
            raise CheckpointError(f"{run.path}: not a run folder (no config.json)")
        return run

    def config(self) -> TrainConfig:
        return TrainConfig.from_json(self.config_path)

    def log(self, line: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    # --- per-epoch metrics ---------------------------------------------------------------
    def metrics(self) -> list[dict]:
        """The rows of metrics.jsonl: epoch, train/val loss and accuracy, lr, seconds."""
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a crash: everything before it is good
        return rows

    def write_metrics(self, rows: list[dict]) -> None:
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    # --- checkpoints -----------------------------------------------------------------------
    def save_best(self, model: nn.Module, meta: CheckpointMeta) -> None:
        save_checkpoint(self.best_path, model, meta)

    def has_best(self) -> bool:
        return self.best_path.exists()

    def best_meta(self) -> CheckpointMeta | None:
        return read_meta(self.best_path) if self.has_best() else None

    def load_best(self, device: str = "cpu") -> Checkpoint:
        return load_checkpoint(self.best_path, device=device)

    def save_last(self, state: dict) -> None:
        buffer = io.BytesIO()  # in memory first: a full disk surfaces as an OSError, not torch's RuntimeError
        torch.save(state, buffer)
        atomic_write_bytes(self.last_path, buffer.getvalue())

    def has_last(self) -> bool:
        return self.last_path.exists()

    def load_last(self) -> dict:
        if not self.has_last():
            raise CheckpointError(f"{self.last_path}: no resumable state (no epoch finished yet?)")
        try:
            return load_weights_only(self.last_path)
        except DataError as err:
            raise CheckpointError(f"unreadable resume state: {err}") from None

    # --- the result ------------------------------------------------------------------------
    def save_result(self, result: RunResult) -> None:
        atomic_write_json(self.result_path, result.to_dict())

    def result(self) -> RunResult | None:
        """The finished run's result, or None while it has not finished."""
        if not self.result_path.exists():
            return None
        try:
            values = json.loads(self.result_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{self.result_path}: not valid JSON ({err})") from None
        return RunResult.from_dict(values, self.result_path)

    def finished_result(self) -> RunResult:
        """The result of a run that must have finished (for tables and comparisons)."""
        result = self.result()
        if result is None:
            raise DigitlabError(f"{self.path}: run has not finished (no result.json); resume it first")
        return result

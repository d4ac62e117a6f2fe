"""The run folder: config, per-epoch metrics, log, checkpoints and resumable state."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import torch

from digitlab.config import TrainConfig
from digitlab.errors import CheckpointError
from digitlab.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text


class RunFolder:
    """Paths and atomic writers for one run's folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.log_path = self.path / "train.log"
        self.best_stem = self.path / "best"
        self.last_path = self.path / "last.pt"
        self.result_path = self.path / "result.json"

    @classmethod
    def create(cls, config: TrainConfig) -> RunFolder:
        """Make a new, uniquely named run folder under `config.out_dir`."""
        parent = Path(config.out_dir)
        base = config.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{config.model}"
        for suffix in [""] + [f"-{i}" for i in range(2, 1000)]:
            path = parent / f"{base}{suffix}"
            try:
                path.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                continue
        run = cls(path)
        atomic_write_json(run.config_path, config.to_dict())
        return run

    @classmethod
    def existing(cls, path: str | Path) -> RunFolder:
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

    def read_metrics(self) -> list[dict]:
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

    def save_last(self, state: dict) -> None:
        buffer = io.BytesIO()  # in memory first: a full disk surfaces as an OSError, not torch's RuntimeError
        torch.save(state, buffer)
        atomic_write_bytes(self.last_path, buffer.getvalue())

    def load_last(self) -> dict:
        if not self.last_path.exists():
            raise CheckpointError(f"{self.last_path}: no resumable state (no epoch finished yet?)")
        try:
            return torch.load(self.last_path, map_location="cpu", weights_only=True)
        except Exception as err:  # a foreign or broken file
            raise CheckpointError(f"{self.last_path}: unreadable resume state ({err})") from None

    def save_result(self, result: dict) -> None:
        atomic_write_json(self.result_path, result)

"""Hyper-parameter sweeps: one run folder per grid point, resumable. The tables and the
report of a finished sweep are drawn by `analysis.sweep_report`."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from digitlab.config import TrainConfig
from digitlab.engine.runs import Run
from digitlab.engine.train import train, validate_config
from digitlab.errors import ConfigError, DigitlabError
from digitlab.fileio import atomic_write_json


@dataclass
class SweepResult:
    folder: Path
    grid: dict[str, list]
    run_dirs: list[Path]  # one finished run per grid point, in grid order


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in the order given."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def point_name(point: dict) -> str:
    return ",".join(f"{key}={value}" for key, value in point.items()).replace("/", "_") or "base"


def start_sweep(base: TrainConfig, grid: dict[str, list]) -> Path:
    """Create the sweep folder with its plan (sweep.json); return the folder."""
    if not grid or all(len(values) <= 1 for values in grid.values()):
        raise ConfigError("a sweep needs at least one setting with several values, e.g. --lr 1e-3,5e-4")
    for point in grid_points(grid):  # refuse impossible points before any training starts
        validate_config(TrainConfig.from_dict({**base.to_dict(), **point}))
    parent = Path(base.out_dir)
    folder = parent / (base.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-sweep")
    if folder.exists():
        raise ConfigError(f"{folder}: already exists; continue it with --resume {folder}")
    (folder / "runs").mkdir(parents=True)
    atomic_write_json(folder / "sweep.json", {"base": base.to_dict(), "grid": grid})
    return folder


def time_left(started: float, trained: int, todo: int) -> str:
    """ ", about 12 min left" from the mean time of the points trained so far; "" before the first."""
    if not trained:
        return ""
    seconds = (time.monotonic() - started) / trained * (todo - trained)
    return f", about {seconds / 60:.0f} min left" if seconds >= 90 else f", about {seconds:.0f} s left"


def run_sweep(folder: str | Path, quiet: bool = False) -> SweepResult:
    """Train every point of the sweep in `folder` that has not finished.

    Finished points are skipped, interrupted ones resume from their last epoch: running it
    again after Ctrl-C or a crash continues where it stopped.
    """
    folder = Path(folder)
    try:
        plan = json.loads((folder / "sweep.json").read_text())
    except FileNotFoundError:
        raise DigitlabError(f"{folder}: not a sweep folder (no sweep.json)") from None
    base = TrainConfig.from_dict(plan["base"], str(folder / "sweep.json"))
    points = grid_points(plan["grid"])
    run_dirs = [folder / "runs" / point_name(point) for point in points]
    todo = sum(not Run(run_dir).result_path.exists() for run_dir in run_dirs)
    started, trained = time.monotonic(), 0
    for number, (point, run_dir) in enumerate(zip(points, run_dirs, strict=True), 1):
        name, run = point_name(point), Run(run_dir)
        if run.result_path.exists():
            continue
        if not quiet:
            print(f"--- sweep point {number} of {len(points)}: {name}" + time_left(started, trained, todo))
        trained += 1
        if run.has_last():
            train(None, resume=run_dir, quiet=quiet)
            continue
        if run_dir.exists():  # stopped before its first epoch finished: nothing to keep
            shutil.rmtree(run_dir)
        config = TrainConfig.from_dict(
            {**base.to_dict(), **point, "out_dir": str(folder / "runs"), "run_name": name}
        )
        train(config, quiet=quiet)
    return SweepResult(folder, plan["grid"], run_dirs)

"""Hyper-parameter sweeps: one run folder per grid point, results table, resumable."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from digitlab.analysis import figures
from digitlab.analysis.compare import COLUMNS, compare_runs, format_cell, write_tables
from digitlab.analysis.document import Document
from digitlab.config import TrainConfig
from digitlab.engine.runs import RunFolder
from digitlab.engine.train import train
from digitlab.errors import ConfigError, DigitlabError
from digitlab.fileio import atomic_write_json


@dataclass
class SweepResult:
    folder: Path
    rows: list[dict]


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
        TrainConfig.from_dict({**base.to_dict(), **point}).validate()
    parent = Path(base.out_dir)
    folder = parent / (base.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-sweep")
    if folder.exists():
        raise ConfigError(f"{folder}: already exists; continue it with --resume {folder}")
    (folder / "runs").mkdir(parents=True)
    atomic_write_json(folder / "sweep.json", {"base": base.to_dict(), "grid": grid})
    return folder


def run_sweep(folder: str | Path, quiet: bool = False) -> SweepResult:
    """Train every point of the sweep in `folder` that has not finished, then write the tables.

    Finished points are skipped, interrupted ones resume from their last epoch: running it
    again after Ctrl-C or a crash continues where it stopped.
    """
    folder = Path(folder)
    try:
        plan = json.loads((folder / "sweep.json").read_text())
    except FileNotFoundError:
        raise DigitlabError(f"{folder}: not a sweep folder (no sweep.json)") from None
    base = TrainConfig.from_dict(plan["base"], str(folder / "sweep.json"))
    run_dirs = []
    for point in grid_points(plan["grid"]):
        name = point_name(point)
        run_dir = folder / "runs" / name
        run_dirs.append(run_dir)
        if (run_dir / "result.json").exists():
            continue
        if not quiet:
            print(f"--- sweep point {name}")
        if (run_dir / "last.pt").exists():
            train(None, resume=run_dir, quiet=quiet)
            continue
        if run_dir.exists():  # stopped before its first epoch finished: nothing to keep
            shutil.rmtree(run_dir)
        config = TrainConfig.from_dict(
            {**base.to_dict(), **point, "out_dir": str(folder / "runs"), "run_name": name}
        )
        train(config, quiet=quiet)
    rows = compare_runs(run_dirs)
    write_tables(rows, folder)
    _write_sweep_report(folder, plan["grid"], run_dirs, rows)
    return SweepResult(folder, rows)


def _write_sweep_report(folder: Path, grid: dict, run_dirs: list[Path], rows: list[dict]) -> None:
    curves = {run_dir.name: RunFolder(run_dir).read_metrics() for run_dir in run_dirs}
    doc = Document(f"sweep {folder.name}")
    doc.paragraph("Grid: " + "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in grid.items()))
    validated = [row for row in rows if row["best_val_acc"] is not None]
    if validated:
        best = max(validated, key=lambda r: r["best_val_acc"])
        doc.paragraph(
            f"Best on validation: {best['run']} (val acc {best['best_val_acc'] * 100:.2f} %, "
            f"test acc {best['best_test_acc'] * 100:.2f} %)."
        )
    doc.figure(
        figures.sweep_curves(curves, folder / "curves.png", f"sweep {folder.name}"),
        "Validation loss (solid), training loss (dotted) and validation accuracy per run.",
    )
    doc.table(COLUMNS, [[format_cell(row[c]) for c in COLUMNS] for row in rows])
    doc.write(folder)

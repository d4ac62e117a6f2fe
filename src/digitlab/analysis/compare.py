"""The results table of report 004 for any set of runs: best and last epoch side by side."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from digitlab.engine.runs import Run
from digitlab.errors import DigitlabError
from digitlab.fileio import atomic_write_text

COLUMNS = [
    "run",
    "model",
    "optimizer",
    "lr",
    "batch_size",
    "epochs_run",
    "best_epoch",
    "best_train_loss",
    "best_train_acc",
    "best_val_loss",
    "best_val_acc",
    "best_test_loss",
    "best_test_acc",
    "last_train_loss",
    "last_train_acc",
    "last_val_loss",
    "last_val_acc",
    "last_test_loss",
    "last_test_acc",
]


def run_row(path: str | Path) -> dict:
    """One row of the table for a finished run."""
    run = Run.open(path)
    config = run.config()
    result = run.finished_result()
    rows = run.metrics()
    best = next((r for r in rows if r["epoch"] == result.best_epoch), None)
    if best is None:
        raise DigitlabError(f"{run.metrics_path}: no row for the best epoch {result.best_epoch}")
    last = rows[-1]
    row = {
        "run": run.path.name,
        "model": config.model,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "epochs_run": len(rows),
        "best_epoch": result.best_epoch,
        "data": config.data,
    }
    for prefix, epoch_row, test in (("best", best, result.test), ("last", last, result.test_last)):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            row[f"{prefix}_{key}"] = epoch_row[key]
        row[f"{prefix}_test_loss"] = test.loss
        row[f"{prefix}_test_acc"] = test.accuracy
    return row


def compare_runs(paths: list[str | Path]) -> list[dict]:
    """Rows for every run; runs measured on different data sets cannot share a table."""
    if not paths:
        raise DigitlabError("no runs to compare")
    rows = [run_row(path) for path in paths]
    data_sets = {row["data"] for row in rows}
    if len(data_sets) > 1:
        raise DigitlabError(
            f"runs use different data sets ({', '.join(sorted(data_sets))}); compare like with like"
        )
    return rows


def format_cell(value) -> str:
    """A table cell: 4 significant digits for numbers, a dash for a missing value."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if value >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    header = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join(" --- " for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(format_cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join([header, rule, *body]) + "\n"


def csv_table(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_tables(rows: list[dict], folder: Path, stem: str = "results") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = folder / f"{stem}.md", folder / f"{stem}.csv"
    atomic_write_text(md_path, markdown_table(rows))
    atomic_write_text(csv_path, csv_table(rows))
    return md_path, csv_path
